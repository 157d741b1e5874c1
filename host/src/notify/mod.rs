//! Webhook notifications: events (an alert firing or clearing) posted as JSON to every
//! subscriber, signed, retried with backoff, each attempt kept in a delivery log.
//! Subscribers are `http://` URLs ([`check_url`]): this build has no TLS client.
//!
//! Each request carries:
//! - `Content-Type: application/json` and the body `{"id", "event", "at", "data"}`;
//! - `X-Dualwrite-Event` (the event name, like `alert.fired`) and `X-Dualwrite-Delivery`
//!   (the event's id, the same on every retry, so a receiver can drop repeats);
//! - `X-Dualwrite-Signature: sha256=HEX`, the HMAC-SHA256 of the exact body bytes under
//!   the subscriber's secret. Receivers check it with [`verify`] (or any HMAC library)
//!   before trusting the body.
//!
//! A delivery that fails (a network error or a non-2xx answer) is tried again after a
//! delay that doubles from [`RetryPolicy::first_delay`], up to
//! [`RetryPolicy::attempts`] attempts. Deliveries run on their own thread, so a slow
//! receiver never holds up the sync loop. Secrets stay in [`Secret`]s: the `Debug` of a
//! subscriber is redacted, and neither the log nor [`SubscriberView`] holds them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::config::Secret;

/// The header holding the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Dualwrite-Signature";
/// The header naming the event.
pub const EVENT_HEADER: &str = "X-Dualwrite-Event";
/// The header holding the event's id.
pub const DELIVERY_HEADER: &str = "X-Dualwrite-Delivery";

/// Most delivery attempts kept in the log (the oldest go first).
const LOG_CAPACITY: usize = 1_000;

/// A webhook subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscriber {
    /// Its name.
    pub name: String,
    /// Where events are posted (`http://...`).
    pub url: String,
    /// The key the signature is made with.
    pub secret: Secret,
    /// The events it wants (like `alert.fired`); all when empty.
    pub events: Vec<String>,
    /// Extra CA certificates (PEM) trusted for its `https://` URL, besides the
    /// system's roots (a private CA).
    pub ca_pem: Option<String>,
}

/// A subscriber as the API shows it: no secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubscriberView {
    /// Its name.
    pub name: String,
    /// Where events are posted.
    pub url: String,
    /// The events it wants; all when empty.
    pub events: Vec<String>,
    /// Whether it trusts a CA of its own besides the system's roots.
    pub private_ca: bool,
}

impl Subscriber {
    /// What the API shows of it.
    pub fn view(&self) -> SubscriberView {
        SubscriberView {
            name: self.name.clone(),
            url: self.url.clone(),
            events: self.events.clone(),
            private_ca: self.ca_pem.is_some(),
        }
    }

    fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|wanted| wanted == event)
    }
}

/// How deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Delay before the second attempt; doubles after each failure.
    pub first_delay: Duration,
    /// How long one request may take.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_delay: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// One delivery attempt, for the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryAttempt {
    /// The event's id.
    pub event_id: u64,
    /// The event.
    pub event: String,
    /// The subscriber.
    pub subscriber: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it was made (RFC 3339).
    pub at: String,
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// What went wrong, if it did.
    pub error: Option<String>,
    /// `delivered`, `retrying` or `failed` (no attempts left).
    pub outcome: &'static str,
}

/// Checks a subscriber URL: `https://` (certificates checked against the system's
/// roots and the subscriber's own CA) or `http://`; the error says what is wrong.
pub fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
            Ok(())
        }
        _ => Err(format!("{url:?} is not an https:// or http:// URL")),
    }
}

/// Checks that `pem` holds at least one certificate.
pub fn check_ca_pem(pem: &str) -> Result<(), String> {
    match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
        Ok(certificates) if !certificates.is_empty() => Ok(()),
        Ok(_) => Err("no PEM certificate in it".to_owned()),
        Err(error) => Err(format!("not a PEM certificate bundle ({error})")),
    }
}

/// The HTTP client for deliveries: TLS through rustls with the platform's roots, plus
/// `ca_pem`'s certificates when given; no redirects.
fn http_client(
    timeout: Duration,
    ca_pem: Option<&str>,
) -> anyhow::Result<reqwest::blocking::Client> {
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        for certificate in reqwest::Certificate::from_pem_bundle(pem.as_bytes())? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder.build()?)
}

/// The HMAC-SHA256 signature header value of `body` under `secret`: `sha256=HEX`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` (`sha256=HEX`) is the signature of `body` under `secret`; compared
/// in constant time.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(digest) = header
        .strip_prefix("sha256=")
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&digest).is_ok()
}

struct Shared {
    subscribers: Mutex<Vec<Subscriber>>,
    log: Mutex<VecDeque<DeliveryAttempt>>,
    next_event: AtomicU64,
}

struct Job {
    id: u64,
    event: String,
    body: Arc<Vec<u8>>,
}

/// Sends events to the subscribers from a thread of its own. Cheap to clone; the
/// thread ends when the last clone is dropped (retries still waiting are dropped).
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("subscribers", &self.subscribers().len())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts the delivery thread.
    pub fn start(subscribers: Vec<Subscriber>, policy: RetryPolicy) -> anyhow::Result<Notifier> {
        let shared = Arc::new(Shared {
            subscribers: Mutex::new(subscribers),
            log: Mutex::new(VecDeque::new()),
            next_event: AtomicU64::new(1),
        });
        let client = http_client(policy.timeout, None)?;
        let (jobs, receiver) = mpsc::channel();
        let worker_shared = shared.clone();
        std::thread::Builder::new()
            .name("dualwrite-webhooks".to_owned())
            .spawn(move || deliver_loop(&worker_shared, &client, &receiver, policy))?;
        Ok(Notifier { shared, jobs })
    }

    /// Queues `event` with `data` for every subscriber that wants it; returns the
    /// event's id.
    pub fn send(&self, event: &str, data: serde_json::Value) -> u64 {
        let id = self.shared.next_event.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({
            "id": id,
            "event": event,
            "at": Utc::now().to_rfc3339(),
            "data": data,
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        // A send fails only once the thread is gone, when nothing can be delivered.
        let _ = self.jobs.send(Job {
            id,
            event: event.to_owned(),
            body: Arc::new(body),
        });
        id
    }

    /// The subscribers, without secrets.
    pub fn subscribers(&self) -> Vec<SubscriberView> {
        lock(&self.shared.subscribers)
            .iter()
            .map(Subscriber::view)
            .collect()
    }

    /// Adds or replaces (by name) a subscriber.
    pub fn upsert_subscriber(&self, subscriber: Subscriber) {
        let mut subscribers = lock(&self.shared.subscribers);
        subscribers.retain(|existing| existing.name != subscriber.name);
        subscribers.push(subscriber);
    }

    /// Removes a subscriber; whether it existed.
    pub fn remove_subscriber(&self, name: &str) -> bool {
        let mut subscribers = lock(&self.shared.subscribers);
        let before = subscribers.len();
        subscribers.retain(|existing| existing.name != name);
        subscribers.len() != before
    }

    /// The delivery log, oldest first; only `subscriber`'s when given.
    pub fn deliveries(&self, subscriber: Option<&str>) -> Vec<DeliveryAttempt> {
        lock(&self.shared.log)
            .iter()
            .filter(|attempt| subscriber.is_none_or(|name| attempt.subscriber == name))
            .cloned()
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Pending {
    due: Instant,
    attempt: u32,
    subscriber: String,
    job: Arc<Job>,
}

fn deliver_loop(
    shared: &Shared,
    client: &reqwest::blocking::Client,
    jobs: &mpsc::Receiver<Job>,
    policy: RetryPolicy,
) {
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        let wait = pending
            .iter()
            .map(|item| item.due.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        match jobs.recv_timeout(wait) {
            Ok(job) => {
                let job = Arc::new(job);
                for subscriber in lock(&shared.subscribers).iter() {
                    if subscriber.wants(&job.event) {
                        pending.push(Pending {
                            due: Instant::now(),
                            attempt: 1,
                            subscriber: subscriber.name.clone(),
                            job: job.clone(),
                        });
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let (due, later): (Vec<Pending>, Vec<Pending>) =
            pending.drain(..).partition(|item| item.due <= now);
        pending = later;
        for item in due {
            let subscriber = lock(&shared.subscribers)
                .iter()
                .find(|subscriber| subscriber.name == item.subscriber)
                .cloned();
            // Removed meanwhile: nothing to deliver to.
            let Some(subscriber) = subscriber else {
                continue;
            };
            // A subscriber with a CA of its own gets a client that trusts it.
            let own_client = match &subscriber.ca_pem {
                Some(pem) => match http_client(policy.timeout, Some(pem)) {
                    Ok(client) => Some(client),
                    Err(error) => {
                        tracing::warn!(subscriber = %subscriber.name, %error, "its CA certificates do not load");
                        None
                    }
                },
                None => None,
            };
            let (status, error) = post(
                own_client.as_ref().unwrap_or(client),
                &subscriber,
                &item.job,
            );
            let delivered = error.is_none();
            let retry = !delivered && item.attempt < policy.attempts;
            let attempt = DeliveryAttempt {
                event_id: item.job.id,
                event: item.job.event.clone(),
                subscriber: subscriber.name.clone(),
                attempt: item.attempt,
                at: Utc::now().to_rfc3339(),
                status,
                error,
                outcome: if delivered {
                    "delivered"
                } else if retry {
                    "retrying"
                } else {
                    "failed"
                },
            };
            if !delivered {
                tracing::warn!(
                    subscriber = %attempt.subscriber,
                    event = %attempt.event,
                    attempt = attempt.attempt,
                    error = attempt.error.as_deref().unwrap_or_default(),
                    "webhook delivery failed"
                );
            }
            {
                let mut log = lock(&shared.log);
                if log.len() == LOG_CAPACITY {
                    log.pop_front();
                }
                log.push_back(attempt);
            }
            if retry {
                let delay = policy.first_delay * 2u32.saturating_pow(item.attempt - 1);
                pending.push(Pending {
                    due: Instant::now() + delay,
                    attempt: item.attempt + 1,
                    ..item
                });
            }
        }
    }
}

/// Posts one event; the status answered and, unless it is a 2xx, what went wrong.
fn post(
    client: &reqwest::blocking::Client,
    subscriber: &Subscriber,
    job: &Job,
) -> (Option<u16>, Option<String>) {
    let signature = sign(subscriber.secret.expose().as_bytes(), &job.body);
    let answer = client
        .post(&subscriber.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_HEADER, &job.event)
        .header(DELIVERY_HEADER, job.id.to_string())
        .header(SIGNATURE_HEADER, signature)
        .body(job.body.as_ref().clone())
        .send();
    match answer {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) => (
            Some(response.status().as_u16()),
            Some(format!("the receiver answered {}", response.status())),
        ),
        // Without the URL: the error names the problem, the subscriber names the target.
        Err(error) => (None, Some(error.without_url().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let body = br#"{"event":"alert.fired"}"#;
        let header = sign(b"s3cret", body);
        assert!(header.starts_with("sha256="));
        assert_eq!(header.len(), "sha256=".len() + 64);
        assert!(verify(b"s3cret", body, &header));
        assert!(!verify(b"other", body, &header));
        assert!(!verify(b"s3cret", br#"{"event":"alert.cleared"}"#, &header));
        assert!(!verify(b"s3cret", body, "sha256=zz"));
        assert!(!verify(
            b"s3cret",
            body,
            &header.replace("sha256=", "sha1=")
        ));
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("https://example.com/hook").is_ok());
        assert!(check_url("ftp://example.com").is_err());
        assert!(check_url("http://").is_err());
    }

    #[test]
    fn subscriber_debug_and_view_hold_no_secret() {
        let subscriber = Subscriber {
            name: "ops".to_owned(),
            url: "http://127.0.0.1:1/hook".to_owned(),
            secret: Secret::new("do-not-print-me"),
            events: Vec::new(),
            ca_pem: None,
        };
        assert!(!format!("{subscriber:?}").contains("do-not-print-me"));
        let view = serde_json::to_string(&subscriber.view()).expect("json");
        assert!(!view.contains("do-not-print-me"));
    }
}
