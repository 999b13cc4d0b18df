//! A validated export request: the listing's filters, a format, and no pages (the whole
//! selection streams in `(occurred_at, id)` order).

use uuid::Uuid;

use super::Action;
use super::FieldError;
use super::pagination::{Filters, check};
use chrono::{DateTime, Utc};

/// The query string of `GET /api/v1/activities/export`, as sent.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportParams {
    /// Only this user's activities
    pub(crate) user_id: Option<String>,
    /// Only this action
    pub(crate) action: Option<String>,
    /// Earliest occurred_at (RFC 3339 or YYYY-MM-DD), inclusive
    pub(crate) from: Option<String>,
    /// Latest occurred_at, exclusive
    pub(crate) to: Option<String>,
    /// `ndjson` (default) or `csv`
    pub(crate) format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    /// One JSON object per line, as `GET /api/v1/activities/{id}` shows it.
    Ndjson,
    /// RFC 4180, with a header row; `properties` is JSON text in one column.
    Csv,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExportQuery {
    pub(crate) user_id: Option<Uuid>,
    pub(crate) action: Option<Action>,
    pub(crate) from: Option<DateTime<Utc>>,
    pub(crate) to: Option<DateTime<Utc>>,
    pub(crate) format: ExportFormat,
}

impl ExportQuery {
    pub(crate) fn parse(p: &ExportParams) -> Result<Self, Vec<FieldError>> {
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
        let format = match p.format.as_deref() {
            None | Some("ndjson") => Some(ExportFormat::Ndjson),
            Some("csv") => Some(ExportFormat::Csv),
            Some(_) => check(&mut errors, "format", Err("must be ndjson or csv".into())),
        };
        match format {
            Some(format) if errors.is_empty() => Ok(Self {
                user_id,
                action,
                from,
                to,
                format,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_broken_field_is_named() {
        let errors = ExportQuery::parse(&ExportParams {
            user_id: Some("x".into()),
            format: Some("xml".into()),
            from: Some("2026-11-02".into()),
            to: Some("2026-11-01".into()),
            ..ExportParams::default()
        })
        .expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["user_id", "from", "format"]);
    }

    #[test]
    fn the_default_format_is_ndjson() {
        let q = ExportQuery::parse(&ExportParams::default()).expect("valid");
        assert_eq!(q.format, ExportFormat::Ndjson);
    }
}
