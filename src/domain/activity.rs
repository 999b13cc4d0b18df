//! Activities as stored and as written: `NewActivity` (a create), `ActivityPatch`
//! (a partial update) and `Activity` (a stored row). Parsing collects every broken rule,
//! each naming its field, so a client fixes a request in one round trip.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Action;
use super::FieldError;

/// Largest serialized `properties` object.
pub(crate) const MAX_PROPERTIES_BYTES: usize = 16 * 1024;
/// How far in the future `occurred_at` may lie (clock skew between clients and us).
pub(crate) const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);
/// Largest `value` either way: any amount of money, in any currency's smallest unit, fits, and
/// a sum of them stays far from where a double loses whole units or overflows.
pub(crate) const MAX_ABS_VALUE: f64 = 1e12;
/// Longest `duration_ms`: 30 days. Durations are summed for averages; bounded, a sum over
/// billions of activities stays an exact integer in a double.
pub(crate) const MAX_DURATION_MS: i64 = 30 * 24 * 3600 * 1000;
/// Largest decimal exponent of a number inside `properties`. Numbers are kept exactly as
/// written (not rounded to doubles); Postgres stores them as `numeric`, which refuses beyond
/// about 1e131072, so the rule stops far below that.
pub(crate) const MAX_PROPERTY_EXPONENT: i64 = 1000;

const WRITABLE: [&str; 6] = [
    "user_id",
    "action",
    "occurred_at",
    "duration_ms",
    "value",
    "properties",
];

/// The instants a write may date an activity at: at most `MAX_FUTURE_SKEW` after `now`, and,
/// when `RETENTION_DAYS` is set, not before the oldest instant still kept (an older backfill
/// would be dropped at once, or land in a month that is already gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteWindow {
    pub(crate) now: DateTime<Utc>,
    pub(crate) retention_days: Option<u32>,
}

impl WriteWindow {
    /// No retention: any past instant is accepted.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now,
            retention_days: None,
        }
    }

    /// The oldest instant a write may carry, if there is one.
    pub(crate) fn oldest(&self) -> Option<DateTime<Utc>> {
        self.retention_days
            .map(|days| self.now - Duration::days(i64::from(days)))
    }
}

/// A stored activity, as every endpoint returns it.
#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow, utoipa::ToSchema)]
pub struct Activity {
    pub(crate) id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) action: String,
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) value: Option<f64>,
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    pub(crate) properties: Option<Value>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// A valid activity to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewActivity {
    pub(crate) id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) action: Action,
    pub occurred_at: DateTime<Utc>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) value: Option<f64>,
    pub(crate) properties: Option<Value>,
}

/// A valid partial update: `None` leaves a field alone, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityPatch {
    pub(crate) user_id: Option<Uuid>,
    pub(crate) action: Option<Action>,
    pub(crate) occurred_at: Option<DateTime<Utc>>,
    pub(crate) duration_ms: Option<Option<i64>>,
    pub(crate) value: Option<Option<f64>>,
    pub(crate) properties: Option<Option<Value>>,
}

/// Reads one field of a JSON object, recording what is wrong with it under `prefix + name`.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    prefix: &'a str,
    errors: Vec<FieldError>,
    window: WriteWindow,
}

impl<'a> Fields<'a> {
    fn new(
        value: &'a Value,
        prefix: &'a str,
        window: WriteWindow,
    ) -> Result<Self, Vec<FieldError>> {
        let Some(object) = value.as_object() else {
            let field = if prefix.is_empty() {
                "body".to_owned()
            } else {
                prefix.trim_end_matches('.').to_owned()
            };
            return Err(vec![FieldError::new(field, "must be a JSON object")]);
        };
        let mut fields = Self {
            object,
            prefix,
            errors: Vec::new(),
            window,
        };
        for key in object.keys().filter(|k| !WRITABLE.contains(&k.as_str())) {
            fields.fail(key, "is not a writable field of an activity");
        }
        Ok(fields)
    }

    fn fail(&mut self, name: &str, message: impl Into<String>) {
        self.errors
            .push(FieldError::new(format!("{}{name}", self.prefix), message));
    }

    /// `None` when absent; `Some(None)` when explicitly null.
    fn raw(&self, name: &str) -> Option<Option<&'a Value>> {
        self.object.get(name).map(|v| (!v.is_null()).then_some(v))
    }

    fn parse<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.raw(name)? {
            None => Some(None),
            Some(v) => match parse(v) {
                Ok(t) => Some(Some(t)),
                Err(m) => {
                    self.fail(name, m);
                    None
                }
            },
        }
    }

    /// A field that may not be null: absent → `None`; null → an error.
    fn required_if_present<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        match self.parse(name, parse)? {
            Some(t) => Some(t),
            None => {
                self.fail(name, "must not be null");
                None
            }
        }
    }

    fn user_id(&mut self) -> Option<Uuid> {
        self.required_if_present("user_id", |v| {
            v.as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| "must be a UUID string".to_owned())
        })
    }

    fn action(&mut self) -> Option<Action> {
        self.required_if_present("action", |v| {
            v.as_str()
                .ok_or("must be a string".to_owned())
                .and_then(Action::parse)
        })
    }

    fn occurred_at(&mut self) -> Option<DateTime<Utc>> {
        let window = self.window;
        self.required_if_present("occurred_at", |v| {
            let s = v.as_str().ok_or("must be an RFC 3339 timestamp string")?;
            let t = DateTime::parse_from_rfc3339(s)
                .map_err(|_| "must be an RFC 3339 timestamp such as 2026-11-29T10:15:00Z")?
                .with_timezone(&Utc);
            if t > window.now + MAX_FUTURE_SKEW {
                return Err("may be at most 5 minutes in the future".into());
            }
            if let (Some(oldest), Some(days)) = (window.oldest(), window.retention_days)
                && t < oldest
            {
                return Err(format!(
                    "must be at or after {} (activities older than RETENTION_DAYS = {days} days are not kept)",
                    oldest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ));
            }
            Ok(t)
        })
    }

    fn duration_ms(&mut self) -> Option<Option<i64>> {
        self.parse("duration_ms", |v| match v.as_i64() {
            Some(n) if (0..=MAX_DURATION_MS).contains(&n) => Ok(n),
            Some(n) if n > MAX_DURATION_MS => Err(format!(
                "must be at most {MAX_DURATION_MS} (30 days in milliseconds)"
            )),
            _ if v.as_u64().is_some() => Err(format!(
                "must be at most {MAX_DURATION_MS} (30 days in milliseconds)"
            )),
            _ => Err("must be an integer >= 0".into()),
        })
    }

    fn value(&mut self) -> Option<Option<f64>> {
        self.parse("value", |v| match v.as_f64() {
            Some(f) if f.is_finite() && f.abs() <= MAX_ABS_VALUE => Ok(f),
            Some(_) if v.is_number() => Err(format!(
                "must be between -{MAX_ABS_VALUE:e} and {MAX_ABS_VALUE:e}"
            )),
            _ => Err("must be a finite number".to_owned()),
        })
    }

    fn properties(&mut self) -> Option<Option<Value>> {
        self.parse("properties", |v| {
            if !v.is_object() {
                return Err("must be a JSON object".into());
            }
            let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
            if size > MAX_PROPERTIES_BYTES {
                return Err(format!(
                    "must be at most {MAX_PROPERTIES_BYTES} bytes of JSON (got {size})"
                ));
            }
            if contains_nul(v) {
                return Err(
                    "must not contain the character U+0000 (Postgres cannot store it)".into(),
                );
            }
            if let Some(n) = first_number_beyond(v, MAX_PROPERTY_EXPONENT) {
                return Err(format!(
                    "holds the number {n}: numbers must lie within 1e-{MAX_PROPERTY_EXPONENT} to 1e{MAX_PROPERTY_EXPONENT} in size"
                ));
            }
            Ok(v.clone())
        })
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => Err(self.errors),
        }
    }
}

/// The first number (depth first) whose decimal exponent lies beyond `limit` either way.
/// Numbers keep the text they were written in (serde_json's `arbitrary_precision`).
fn first_number_beyond(v: &Value, limit: i64) -> Option<&serde_json::Number> {
    match v {
        Value::Number(n) => (decimal_exponent(n.as_str()).abs() > limit).then_some(n),
        Value::Array(items) => items.iter().find_map(|i| first_number_beyond(i, limit)),
        Value::Object(map) => map.values().find_map(|i| first_number_beyond(i, limit)),
        _ => None,
    }
}

/// Roughly the power of ten of a JSON number's text (`-12.5e3` → 4; `0.001` → -3); saturates
/// rather than overflowing on absurd exponents.
fn decimal_exponent(text: &str) -> i64 {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (
            &text[..i],
            text[i + 1..].parse::<i64>().unwrap_or(i64::MAX / 2),
        ),
        None => (text, 0),
    };
    let digits = mantissa.trim_start_matches('-');
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let int = int.trim_start_matches('0');
    let magnitude = if !int.is_empty() {
        int.len() as i64
    } else {
        match frac.find(|c| c != '0') {
            Some(zeros) => -(zeros as i64),
            None => 0, // zero
        }
    };
    magnitude.saturating_add(exponent)
}

/// Postgres' jsonb refuses `\u0000` in any string or key.
fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

impl NewActivity {
    /// Parses one activity; `prefix` names its place in a batch (`activities[3].`).
    pub fn parse(
        value: &Value,
        prefix: &str,
        window: WriteWindow,
    ) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(value, prefix, window)?;
        let user_id = f.user_id();
        let action = f.action();
        let occurred_at = f.occurred_at();
        let duration_ms = f.duration_ms();
        let value = f.value();
        let properties = f.properties();
        if f.raw("user_id").is_none() {
            f.fail("user_id", "is required");
        }
        if f.raw("action").is_none() {
            f.fail("action", "is required");
        }
        let parsed = (|| {
            Some(Self {
                id: Uuid::now_v7(),
                user_id: user_id?,
                action: action?,
                occurred_at: occurred_at.unwrap_or(window.now),
                duration_ms: duration_ms.unwrap_or(None),
                value: value.unwrap_or(None),
                properties: properties.unwrap_or(None),
            })
        })();
        // A field that failed to parse recorded its error, so `finish` refuses even
        // though `parsed` was built with that field defaulted.
        f.finish(parsed)
    }
}

impl ActivityPatch {
    pub(crate) fn parse(value: &Value, window: WriteWindow) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(value, "", window)?;
        let patch = Self {
            user_id: f.user_id(),
            action: f.action(),
            occurred_at: f.occurred_at(),
            duration_ms: f.duration_ms(),
            value: f.value(),
            properties: f.properties(),
        };
        f.finish(Some(patch))
    }

    /// The row as it will be once this patch is applied.
    pub(crate) fn apply(&self, row: &Activity) -> Activity {
        Activity {
            user_id: self.user_id.unwrap_or(row.user_id),
            action: self
                .action
                .as_ref()
                .map_or_else(|| row.action.clone(), |a| a.as_str().to_owned()),
            occurred_at: self.occurred_at.unwrap_or(row.occurred_at),
            duration_ms: self.duration_ms.unwrap_or(row.duration_ms),
            value: self.value.unwrap_or(row.value),
            properties: self
                .properties
                .clone()
                .unwrap_or_else(|| row.properties.clone()),
            ..row.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-29T12:00:00Z".parse().expect("valid")
    }

    fn fields_of(result: Result<NewActivity, Vec<FieldError>>) -> Vec<String> {
        result
            .expect_err("should be invalid")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_backfill_older_than_retention_names_occurred_at() {
        let window = WriteWindow {
            now: now(),
            retention_days: Some(30),
        };
        let dated = |at: &str| json!({"user_id": "6f1c7a1e-4b8f-4c1b-9d4f-3c2d1e0f9a8b", "action": "x", "occurred_at": at});
        let errors = NewActivity::parse(&dated("2026-10-30T11:59:59Z"), "", window)
            .expect_err("older than 30 days");
        assert_eq!(errors[0].field, "occurred_at");
        assert!(
            errors[0].message.contains("2026-10-30T12:00:00Z"),
            "{}",
            errors[0].message
        );
        assert!(NewActivity::parse(&dated("2026-10-30T12:00:00Z"), "", window).is_ok());
        assert!(
            NewActivity::parse(&dated("2020-01-01T00:00:00Z"), "", WriteWindow::at(now())).is_ok()
        );
        let patch = ActivityPatch::parse(&json!({"occurred_at": "2026-10-01T00:00:00Z"}), window);
        assert_eq!(patch.expect_err("too old")[0].field, "occurred_at");
    }

    #[test]
    fn a_minimal_activity_defaults_the_rest() {
        let a = NewActivity::parse(
            &json!({"user_id": "6f1c7a1e-4b8f-4c1b-9d4f-3c2d1e0f9a8b", "action": "page_view"}),
            "",
            WriteWindow::at(now()),
        )
        .expect("valid");
        assert_eq!(a.occurred_at, now());
        assert_eq!(a.duration_ms, None);
        assert_eq!(a.properties, None);
    }

    #[test]
    fn each_broken_rule_names_its_field() {
        let user = "6f1c7a1e-4b8f-4c1b-9d4f-3c2d1e0f9a8b";
        let cases = [
            (json!({"action": "x"}), "user_id", "missing user"),
            (json!({"user_id": user}), "action", "missing action"),
            (
                json!({"user_id": "nope", "action": "x"}),
                "user_id",
                "bad uuid",
            ),
            (json!({"user_id": user, "action": "X"}), "action", "capital"),
            (
                json!({"user_id": user, "action": "x", "occurred_at": "2026-11-29T13:00:00Z"}),
                "occurred_at",
                "future",
            ),
            (
                json!({"user_id": user, "action": "x", "occurred_at": "yesterday"}),
                "occurred_at",
                "not rfc3339",
            ),
            (
                json!({"user_id": user, "action": "x", "duration_ms": -1}),
                "duration_ms",
                "negative",
            ),
            (
                json!({"user_id": user, "action": "x", "duration_ms": 1.5}),
                "duration_ms",
                "fraction",
            ),
            (
                json!({"user_id": user, "action": "x", "value": "12"}),
                "value",
                "string value",
            ),
            (
                json!({"user_id": user, "action": "x", "properties": [1]}),
                "properties",
                "array",
            ),
            (
                json!({"user_id": user, "action": "x", "value": -1.7976931348623157e308}),
                "value",
                "a sum of two would overflow",
            ),
            (
                json!({"user_id": user, "action": "x", "value": 1.000001e12}),
                "value",
                "just over the bound",
            ),
            (
                json!({"user_id": user, "action": "x", "duration_ms": MAX_DURATION_MS + 1}),
                "duration_ms",
                "longer than 30 days",
            ),
            (
                json!({"user_id": user, "action": "x", "duration_ms": u64::MAX}),
                "duration_ms",
                "beyond i64",
            ),
            (
                serde_json::from_str(&format!(
                    r#"{{"user_id": "{user}", "action": "x", "properties": {{"a": [{{"b": 1e1001}}]}}}}"#
                ))
                .expect("json"),
                "properties",
                "a number Postgres could not store",
            ),
            (
                json!({"user_id": user, "action": "x", "id": user}),
                "id",
                "read-only field",
            ),
        ];
        for (body, field, case) in cases {
            assert_eq!(
                fields_of(NewActivity::parse(&body, "", WriteWindow::at(now()))),
                vec![field.to_owned()],
                "{case}"
            );
        }
    }

    #[test]
    fn values_at_the_bounds_and_extreme_property_numbers_are_accepted() {
        let user = "6f1c7a1e-4b8f-4c1b-9d4f-3c2d1e0f9a8b";
        let body: Value = serde_json::from_str(&format!(
            r#"{{"user_id": "{user}", "action": "x", "value": -1e12, "duration_ms": {MAX_DURATION_MS},
                "properties": {{"max": -1.7976931348623157e308, "big": 123456789012345678901234567890123,
                                "tiny": 1e-1000, "huge": 9.99e999}}}}"#
        ))
        .expect("json");
        let parsed = NewActivity::parse(&body, "", WriteWindow::at(now())).expect("valid");
        assert_eq!(parsed.value, Some(-1e12));
        // Numbers are kept as written, not rounded to a double.
        assert_eq!(
            serde_json::to_string(&parsed.properties).expect("json"),
            r#"{"big":123456789012345678901234567890123,"huge":9.99e+999,"max":-1.7976931348623157e+308,"tiny":1e-1000}"#
        );
    }

    #[test]
    fn a_number_s_decimal_exponent() {
        for (text, exponent) in [
            ("0", 0),
            ("7", 1),
            ("-12.5e3", 5),
            ("0.001", -2),
            ("1e-1000", -999),
            ("9.99e999", 1000),
            ("1e99999999999999999999", i64::MAX / 2 + 1),
        ] {
            assert_eq!(decimal_exponent(text), exponent, "{text}");
        }
    }

    #[test]
    fn batch_items_are_named_by_index() {
        let fields = fields_of(NewActivity::parse(
            &json!({"action": "x"}),
            "activities[17].",
            WriteWindow::at(now()),
        ));
        assert_eq!(fields, vec!["activities[17].user_id"]);
    }

    #[test]
    fn a_patch_can_clear_optional_fields_but_not_required_ones() {
        let p =
            ActivityPatch::parse(&json!({"value": null}), WriteWindow::at(now())).expect("valid");
        assert_eq!(p.value, Some(None));
        assert!(ActivityPatch::parse(&json!({"action": null}), WriteWindow::at(now())).is_err());
    }
}
