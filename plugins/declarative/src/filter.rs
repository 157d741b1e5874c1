//! A side's filter: a CEL expression compiled once by `configure`, evaluated per change
//! over the fields of the change's row.
//!
//! Fields are CEL variables by name. Values cross as CEL values: null, bool, int, double
//! and string as themselves; an exact decimal as a double (filters compare amounts, they
//! do not compute money); a timestamp as its seconds since 1970 (UTC), a date as its days
//! since 1970-01-01; bytes as bytes; a JSON document as its text. Only the variables the
//! expression names are converted, and only when it reads them.

use std::sync::Arc;

use cel::common::value::CowVal;
use cel::context::VariableResolver;
use cel::{Context, Env, Program};
use dualwrite_guest::{Change, FieldId, Value};

/// A compiled filter of one side.
pub struct Filter {
    /// The expression as written, for messages.
    source: String,
    program: Program,
    /// The fields the expression reads, by name.
    reads: Vec<(String, FieldId)>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("source", &self.source)
            .field("reads", &self.reads)
            .finish()
    }
}

impl Filter {
    /// Compiles `source`; `field_id` gives the id of a field of the side by name. Errors
    /// are messages for the config error: a syntax error with its line and column, or a
    /// name that is not a field of the side.
    pub fn compile(
        source: &str,
        field_id: impl Fn(&str) -> Option<FieldId>,
        known: &str,
    ) -> Result<Filter, String> {
        let program = Program::compile(source).map_err(|errors| {
            errors
                .errors
                .iter()
                .map(|error| {
                    format!(
                        "CEL syntax error at line {}, column {}: {}",
                        error.pos.0,
                        error.pos.1 + 1,
                        error.msg
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let references = program.references();
        let mut names = references.variables();
        names.sort_unstable();
        let mut reads = Vec::with_capacity(names.len());
        let mut bound = Vec::new();
        bound_names(program.expression(), &mut bound);
        for name in names {
            if bound.contains(&name) {
                continue;
            }
            match field_id(name) {
                Some(id) => reads.push((name.to_owned(), id)),
                None => {
                    return Err(format!(
                        "{name:?} is not a field of this side (fields: {known}); declare a field read only by the filter under erp.fields or crm.fields"
                    ));
                }
            }
        }
        drop(references);
        Ok(Filter {
            source: source.to_owned(),
            program,
            reads,
        })
    }

    /// The ids of the fields the expression reads.
    pub fn reads(&self) -> impl Iterator<Item = FieldId> + '_ {
        self.reads.iter().map(|(_, id)| *id)
    }

    /// Whether the change's row passes: the expression's value, which must be a boolean.
    /// An error is a message for the rejection.
    pub fn passes(&self, env: &Arc<Env>, change: &Change) -> Result<bool, String> {
        let row = RowVariables {
            reads: &self.reads,
            change,
        };
        let mut context = Context::with_env(env.clone());
        context.set_variable_resolver(&row);
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(passes)) => Ok(passes),
            Ok(other) => Err(format!(
                "the filter {:?} gave {other:?}, not a boolean",
                self.source
            )),
            Err(error) => Err(format!("the filter {:?} failed: {error}", self.source)),
        }
    }
}

/// Collects the names macros bind (`exists(x, ...)` binds `x`), which are not fields.
fn bound_names<'e>(expression: &'e cel::common::ast::IdedExpr, out: &mut Vec<&'e str>) {
    use cel::common::ast::{EntryExpr, Expr};
    let entry =
        |entry: &'e cel::common::ast::IdedEntryExpr, out: &mut Vec<&'e str>| match &entry.expr {
            EntryExpr::StructField(field) => bound_names(&field.value, out),
            EntryExpr::MapEntry(pair) => {
                bound_names(&pair.key, out);
                bound_names(&pair.value, out);
            }
        };
    match &expression.expr {
        Expr::Comprehension(comprehension) => {
            out.push(&comprehension.iter_var);
            if let Some(second) = &comprehension.iter_var2 {
                out.push(second);
            }
            out.push(&comprehension.accu_var);
            for part in [
                &comprehension.iter_range,
                &comprehension.accu_init,
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                bound_names(part, out);
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                bound_names(target, out);
            }
            for argument in &call.args {
                bound_names(argument, out);
            }
        }
        Expr::List(list) => {
            for element in &list.elements {
                bound_names(element, out);
            }
        }
        Expr::Map(map) => {
            for item in &map.entries {
                entry(item, out);
            }
        }
        Expr::Struct(structure) => {
            for item in &structure.entries {
                entry(item, out);
            }
        }
        Expr::Select(select) => bound_names(&select.operand, out),
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => {}
    }
}

/// The variables of one row, converted when the expression reads them.
struct RowVariables<'a> {
    reads: &'a [(String, FieldId)],
    change: &'a Change,
}

impl VariableResolver for RowVariables<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let (_, id) = self.reads.iter().find(|(name, _)| name == variable)?;
        to_cel(self.change.get(*id))
            .try_into()
            .ok()
            .map(CowVal::Owned)
    }
}

/// A value as CEL sees it; see the module doc.
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Boolean(flag) => cel::Value::Bool(*flag),
        Value::Integer(number) => cel::Value::Int(*number),
        Value::Float(number) => cel::Value::Float(*number),
        Value::Decimal(digits) => digits
            .parse::<f64>()
            .map_or(cel::Value::Null, cel::Value::Float),
        Value::Text(text) => cel::Value::String(Arc::new(text.clone())),
        Value::Timestamp(timestamp) => cel::Value::Int(timestamp.seconds),
        Value::Date(days) => cel::Value::Int(i64::from(*days)),
        Value::Bytes(bytes) => cel::Value::Bytes(Arc::new(bytes.clone())),
        Value::Json(text) => cel::Value::String(Arc::new(text.clone())),
    }
}
