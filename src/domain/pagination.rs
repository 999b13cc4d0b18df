//! Listing activities: filters, page size and the keyset cursor.
//!
//! Pages are ordered by `(occurred_at desc, id desc)` and the cursor is the key of the last
//! row returned, so the next page starts strictly after it: rows inserted while a client walks
//! the pages can never shift a row it has not seen yet into a page it has already read
//! (which offset pagination would do).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::FieldError;
use super::{Action, parse_instant};

pub(crate) const DEFAULT_PAGE_SIZE: i64 = 100;
pub(crate) const MAX_PAGE_SIZE: i64 = 1000;

/// The position after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) id: Uuid,
}

impl Cursor {
    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            self.occurred_at.timestamp_micros(),
            self.id
        ))
    }

    pub(crate) fn decode(raw: &str) -> Result<Self, String> {
        let invalid = || "is not a cursor this service issued".to_owned();
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (micros, id) = text.split_once('|').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        Ok(Self {
            occurred_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
            id: Uuid::parse_str(id).map_err(|_| invalid())?,
        })
    }
}

/// The raw query string of `GET /api/v1/activities`.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ListActivitiesParams {
    pub(crate) user_id: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) cursor: Option<String>,
}

/// A validated listing request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListActivitiesQuery {
    pub(crate) user_id: Option<Uuid>,
    pub(crate) action: Option<Action>,
    pub(crate) from: Option<DateTime<Utc>>,
    pub(crate) to: Option<DateTime<Utc>>,
    pub(crate) limit: i64,
    pub(crate) after: Option<Cursor>,
}

/// The filters the listing and the export share, parsed from their query-string values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Filters {
    pub(crate) user_id: Option<Uuid>,
    pub(crate) action: Option<Action>,
    pub(crate) from: Option<DateTime<Utc>>,
    pub(crate) to: Option<DateTime<Utc>>,
}

impl Filters {
    /// Records each broken filter in `errors` under its parameter's name.
    pub(crate) fn parse(
        errors: &mut Vec<FieldError>,
        user_id: Option<&str>,
        action: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Self {
        let user_id = user_id.and_then(|u| {
            check(
                errors,
                "user_id",
                Uuid::parse_str(u).map_err(|_| "must be a UUID".into()),
            )
        });
        let action = action.and_then(|a| check(errors, "action", Action::parse(a)));
        let from = from.and_then(|t| check(errors, "from", parse_instant(t)));
        let to = to.and_then(|t| check(errors, "to", parse_instant(t)));
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            errors.push(FieldError::new("from", "must be earlier than `to`"));
        }
        Self {
            user_id,
            action,
            from,
            to,
        }
    }
}

impl ListActivitiesQuery {
    pub(crate) fn parse(p: &ListActivitiesParams) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let Filters {
            user_id,
            action,
            from,
            to,
        } = Filters::parse(
            &mut errors,
            p.user_id.as_deref(),
            p.action.as_deref(),
            p.from.as_deref(),
            p.to.as_deref(),
        );
        let limit = match p.limit.as_deref() {
            None => Some(DEFAULT_PAGE_SIZE),
            Some(l) => check(&mut errors, "limit", parse_bounded(l, 1, MAX_PAGE_SIZE)),
        };
        let after = p
            .cursor
            .as_deref()
            .and_then(|c| check(&mut errors, "cursor", Cursor::decode(c)));
        match limit {
            Some(limit) if errors.is_empty() => Ok(Self {
                user_id,
                action,
                from,
                to,
                limit,
                after,
            }),
            _ => Err(errors),
        }
    }
}

pub(crate) fn check<T>(
    errors: &mut Vec<FieldError>,
    field: &str,
    result: Result<T, String>,
) -> Option<T> {
    result
        .map_err(|m| errors.push(FieldError::new(field, m)))
        .ok()
}

/// Parses an integer in `min..=max`, with a message that states the bounds.
pub(crate) fn parse_bounded(raw: &str, min: i64, max: i64) -> Result<i64, String> {
    match raw.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be an integer from {min} to {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        let c = Cursor {
            occurred_at: "2026-11-29T10:15:00.123456Z".parse().expect("valid"),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn a_forged_cursor_is_refused() {
        for forged in [
            "",
            "abc",
            "!!!!",
            &URL_SAFE_NO_PAD.encode("12|not-a-uuid"),
            &URL_SAFE_NO_PAD.encode("x|y"),
        ] {
            assert!(Cursor::decode(forged).is_err(), "{forged:?}");
        }
    }

    #[test]
    fn limit_must_be_within_bounds() {
        for (raw, ok) in [
            ("0", false),
            ("1", true),
            ("1000", true),
            ("1001", false),
            ("x", false),
        ] {
            let p = ListActivitiesParams {
                limit: Some(raw.into()),
                ..Default::default()
            };
            assert_eq!(ListActivitiesQuery::parse(&p).is_ok(), ok, "limit={raw}");
        }
    }
}
