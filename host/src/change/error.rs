//! Why a change could not be synced: the error classes admins see in the error queue.

use std::fmt;

/// The class of a failed change. Classes decide retry behaviour and alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The plugin refused the change (bad data, business rule).
    PluginRejected,
    /// The plugin crashed, hit a sandbox limit, or broke the contract on this change.
    PluginTrapped,
    /// The target store refused the write.
    TargetRejected,
    /// A store needed for the change could not be reached (or a lookup's side was
    /// offline); retried with backoff.
    TargetUnavailable,
    /// The change refers to a row of another map that is not linked yet; retried once
    /// the dependency syncs.
    DependencyMissing,
    /// Both sides changed the row since the last sync and the policy parked it.
    Conflict,
}

impl ErrorClass {
    /// The class's stable name, as used in logs, APIs and change-set outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::PluginRejected => "plugin-rejected",
            ErrorClass::PluginTrapped => "plugin-trapped",
            ErrorClass::TargetRejected => "target-rejected",
            ErrorClass::TargetUnavailable => "target-unavailable",
            ErrorClass::DependencyMissing => "dependency-missing",
            ErrorClass::Conflict => "conflict",
        }
    }

    /// Parses a class name.
    pub fn parse(name: &str) -> Option<ErrorClass> {
        [
            ErrorClass::PluginRejected,
            ErrorClass::PluginTrapped,
            ErrorClass::TargetRejected,
            ErrorClass::TargetUnavailable,
            ErrorClass::DependencyMissing,
            ErrorClass::Conflict,
        ]
        .into_iter()
        .find(|class| class.as_str() == name)
    }

    /// Whether changes of this class are retried automatically.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::TargetUnavailable | ErrorClass::DependencyMissing
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What exactly went wrong when a change is `plugin-trapped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrapReason {
    /// The plugin trapped (a panic, `unreachable`, an out-of-bounds access...).
    Trap,
    /// The call ran past its wall-clock deadline.
    Deadline,
    /// The call used up its fuel (instruction budget).
    Fuel,
    /// The plugin tried to grow its memory past the cap.
    Memory,
    /// The plugin exhausted its call stack.
    Stack,
    /// The plugin returned more output than the host accepts.
    OutputLimit,
    /// The plugin returned output that breaks the contract (unknown field id, missing
    /// key field, wrong number of outcomes...).
    InvalidOutput,
    /// The plugin kept trapping and is quarantined; the change was not attempted.
    Quarantined,
}

impl TrapReason {
    /// The reason's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            TrapReason::Trap => "trap",
            TrapReason::Deadline => "deadline",
            TrapReason::Fuel => "fuel",
            TrapReason::Memory => "memory",
            TrapReason::Stack => "stack",
            TrapReason::OutputLimit => "output-limit",
            TrapReason::InvalidOutput => "invalid-output",
            TrapReason::Quarantined => "quarantined",
        }
    }
}

/// A change that could not be synced, with everything an admin needs to act on it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncError {
    /// The class.
    pub class: ErrorClass,
    /// For `plugin-trapped`, what limit or fault it was.
    pub reason: Option<TrapReason>,
    /// A message naming the problem.
    pub message: String,
    /// The field concerned, by name, if any.
    pub field: Option<String>,
    /// Whether the engine retries it automatically.
    pub retryable: bool,
}

impl SyncError {
    /// An error of `class` with its default retry behaviour.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> SyncError {
        SyncError {
            class,
            reason: None,
            message: message.into(),
            field: None,
            retryable: class.retryable(),
        }
    }

    /// A `plugin-trapped` error with its reason.
    pub fn trapped(reason: TrapReason, message: impl Into<String>) -> SyncError {
        SyncError {
            reason: Some(reason),
            ..SyncError::new(ErrorClass::PluginTrapped, message)
        }
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.class)?;
        if let Some(reason) = self.reason {
            write!(f, " ({})", reason.as_str())?;
        }
        write!(f, ": {}", self.message)
    }
}
