//! `GET /api/v1/activities/export`: every matching activity, streamed from a database cursor
//! to the socket as NDJSON or CSV, one page of rows in memory at a time.

use super::responses::{BadQuery, Guarded};
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use chrono::SecondsFormat;
use futures_util::{StreamExt, stream};

use crate::auth::{Authorized, ReadRole};
use crate::db;
use crate::domain::{Activity, ExportFormat, ExportParams, ExportQuery};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/activities/export").route(web::get().to(export_activities)));
}

/// The CSV columns, in order.
const CSV_HEADER: &str =
    "id,user_id,action,occurred_at,duration_ms,value,properties,created_at,updated_at\r\n";

#[utoipa::path(get, path = "/api/v1/activities/export", tag = "activities", security(("bearer" = [])),
    params(ExportParams),
    responses((status = 200, description = "Every matching activity in (occurred_at, id) order: one JSON object per line (ndjson), or RFC 4180 CSV with a header row and properties as JSON text",
            content((String = "application/x-ndjson"), (String = "text/csv"))), BadQuery, Guarded))]
pub(crate) async fn export_activities(
    _: Authorized<ReadRole>,
    params: web::Query<ExportParams>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let q = ExportQuery::parse(&params).map_err(ApiError::Validation)?;
    let pages = db::export::pages(&state.pool, &q).await?;
    let format = q.format;
    let rows = pages.map(move |page| match page {
        Ok(page) => Ok(encode(format, &page)),
        Err(error) => {
            // The status line is long gone: ending the body early is how the client learns
            // (a chunked body without its last chunk is an error to every HTTP client).
            tracing::error!(%error, "export failed mid-stream");
            Err(actix_web::error::ErrorInternalServerError("export failed"))
        }
    });
    let (content_type, extension) = match format {
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let header_row = match format {
        ExportFormat::Csv => Some(Ok(Bytes::from_static(CSV_HEADER.as_bytes()))),
        ExportFormat::Ndjson => None,
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"activities.{extension}\""),
        ))
        .streaming(stream::iter(header_row).chain(rows)))
}

fn encode(format: ExportFormat, page: &[Activity]) -> Bytes {
    let mut out = Vec::with_capacity(page.len() * 256);
    match format {
        ExportFormat::Ndjson => {
            for a in page {
                // Serialising our own row type into memory cannot fail.
                let _ = serde_json::to_writer(&mut out, a);
                out.push(b'\n');
            }
        }
        ExportFormat::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(&mut out);
            for a in page {
                let _ = writer.write_record(csv_row(a));
            }
            let _ = writer.flush();
        }
    }
    Bytes::from(out)
}

/// One row: times as the JSON shows them, numbers as JSON writes them (shortest exact form),
/// empty fields for absent values.
fn csv_row(a: &Activity) -> [String; 9] {
    let time = |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    [
        a.id.to_string(),
        a.user_id.to_string(),
        a.action.clone(),
        time(&a.occurred_at),
        a.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
        a.value
            .and_then(|v| serde_json::to_string(&v).ok())
            .unwrap_or_default(),
        a.properties
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        time(&a.created_at),
        time(&a.updated_at),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    fn activity(action: &str, properties: Option<serde_json::Value>) -> Activity {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
            .single()
            .expect("time");
        Activity {
            id: Uuid::nil(),
            user_id: Uuid::nil(),
            action: action.into(),
            occurred_at: at,
            duration_ms: None,
            value: Some(0.1),
            properties,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn csv_quotes_what_rfc_4180_asks_and_keeps_properties_as_json() {
        let props = serde_json::json!({"q": "say \"hi\", then\nleave"});
        let out = encode(ExportFormat::Csv, &[activity("view", Some(props.clone()))]);
        let text = String::from_utf8(out.to_vec()).expect("utf-8");
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes());
        let record = reader.records().next().expect("a row").expect("valid csv");
        assert_eq!(&record[2], "view");
        assert_eq!(&record[3], "2026-11-30T12:00:00Z");
        assert_eq!(&record[4], "", "no duration");
        assert_eq!(&record[5], "0.1");
        let parsed: serde_json::Value = serde_json::from_str(&record[6]).expect("json text");
        assert_eq!(parsed, props);
        assert!(text.ends_with("\r\n"));
        assert!(
            text.contains("\"{\"\"q\"\":"),
            "quotes doubled inside a quoted field: {text}"
        );
    }

    #[test]
    fn ndjson_is_one_object_per_line() {
        let out = encode(
            ExportFormat::Ndjson,
            &[activity("a", None), activity("b", None)],
        );
        let text = String::from_utf8(out.to_vec()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let second: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
        assert_eq!(second["action"], "b");
    }
}
