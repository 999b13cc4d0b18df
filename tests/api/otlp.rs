//! Spans leave over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: the real binary
//! exports to a collector endpoint served here, whose requests are decoded with the OTLP
//! protobuf types.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

use crate::helpers::{TestDatabase, redis_url};

/// Each request the collector received: its path and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP endpoint: records each request's path and body, answers 200 with an empty
/// (valid) protobuf response.
struct Collector {
    address: String,
    received: Received,
}

impl Collector {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the collector");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let received = Received::default();
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                log.lock().expect("log").push((path, body));
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Self { address, received }
    }

    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.received.lock().expect("log").clone()
    }
}

/// `analytics serve` as an operator runs it, with `extra` in its environment; answers the
/// child and the address it listens on.
fn serve(db: &TestDatabase, extra: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_analytics"))
        .args(["serve", "--no-migrate"])
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis_url())
        .env(
            "CACHE_PREFIX",
            format!("otlp-{}", uuid::Uuid::new_v4().simple()),
        )
        .env("APP_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .envs(extra.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start analytics serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("\"address\":\"").nth(1) {
                let _ = tx.send(rest.split('"').next().unwrap_or("").to_string());
            }
        }
    });
    let address = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server logged its address");
    (child, address)
}

/// SIGTERM, as an orchestrator stops it, so the exporter flushes on the way out.
fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn span_names_and_routes(
    requests: &[(String, Vec<u8>)],
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut names, mut routes, mut services) = (Vec::new(), Vec::new(), Vec::new());
    for (_, body) in requests {
        let export = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP body");
        for resource_spans in export.resource_spans {
            for attr in resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
            {
                if attr.key == "service.name"
                    && let Some(AnyValue::StringValue(s)) = attr.value.and_then(|v| v.value)
                {
                    services.push(s);
                }
            }
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    names.push(span.name.clone());
                    for attr in span.attributes {
                        if attr.key == "http.route"
                            && let Some(AnyValue::StringValue(s)) = attr.value.and_then(|v| v.value)
                        {
                            routes.push(s);
                        }
                    }
                }
            }
        }
    }
    (names, routes, services)
}

#[tokio::test]
async fn spans_are_exported_over_otlp_when_an_endpoint_is_set() {
    let db = TestDatabase::create().await;
    let collector = Collector::start();
    let (child, address) = serve(
        &db,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.address.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let client = reqwest::Client::new();
    for path in ["/healthz", "/api/v1/stats/summary"] {
        client
            .get(format!("http://{address}{path}"))
            .send()
            .await
            .expect("request");
    }
    stop(child);

    let requests = collector.requests();
    assert!(!requests.is_empty(), "the exporter sent nothing");
    assert!(requests.iter().all(|(path, _)| path == "/v1/traces"));
    let (names, routes, services) = span_names_and_routes(&requests);
    assert!(
        routes.iter().any(|r| r == "/healthz")
            && routes.iter().any(|r| r == "/api/v1/stats/summary"),
        "one span per request, by route: {routes:?} (spans {names:?})"
    );
    assert!(services.iter().all(|s| s == "activity-analytics") && !services.is_empty());
}
