use std::time::{Duration, Instant};

use activity_analytics::auth::{Role, create_key};
use activity_analytics::db;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{assert_problem, header, spawn_app};

#[tokio::test]
async fn requests_without_a_valid_token_are_401_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let cases = [
        (None, "no token"),
        (Some("Bearer wrong-token-entirely"), "unknown token"),
        (Some("Basic dXNlcjpwYXNz"), "another scheme"),
        (Some("Bearer "), "empty token"),
    ];
    for (authorization, case) in cases {
        let mut request = app.client.get(app.url("/api/v1/stats/summary"));
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        let response = request.send().await.expect("send");
        assert_eq!(header(&response, "www-authenticate"), "Bearer", "{case}");
        assert_problem(response, StatusCode::UNAUTHORIZED, case).await;
    }
}

#[tokio::test]
async fn a_role_too_low_is_403() {
    let app = spawn_app().await;
    let body = json!({"user_id": Uuid::new_v4(), "action": "x"});
    let response = app
        .client
        .post(app.url("/api/v1/activities"))
        .bearer_auth(&app.read_token)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_problem(response, StatusCode::FORBIDDEN, "read token on a write").await;
    let response = app
        .send(Method::DELETE, "/api/v1/cache", &app.write_token, &[])
        .await;
    assert_problem(
        response,
        StatusCode::FORBIDDEN,
        "write token on a cache clear",
    )
    .await;
    let response = app
        .send(Method::DELETE, "/api/v1/cache", &app.admin_token, &[])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_revoked_key_stops_working_within_a_second() {
    let app = spawn_app().await;
    let token = create_key(&app.pool, "soon-revoked", Role::Read, None)
        .await
        .expect("key");
    let get = || {
        app.client
            .get(app.url("/api/v1/cache/stats"))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(
        get().await.expect("send").status(),
        StatusCode::OK,
        "works while active"
    );
    assert!(
        db::keys::revoke_key(&app.pool, "soon-revoked")
            .await
            .expect("revoke")
    );
    let revoked_at = Instant::now();
    loop {
        let status = get().await.expect("send").status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still {status} a second after revocation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    let token = create_key(&app.pool, "hashed", Role::Read, None)
        .await
        .expect("key");
    let stored: Vec<u8> =
        sqlx::query_scalar("select token_hash from api_keys where name = 'hashed'")
            .fetch_one(&app.pool)
            .await
            .expect("row");
    // Exactly the token's SHA-256, computed here independently of the service's helper: a
    // truncated, random or reversible value would not match.
    use sha2::{Digest, Sha256};
    assert_eq!(stored, Sha256::digest(token.as_bytes()).to_vec());
    assert!(!String::from_utf8_lossy(&stored).contains(&token));
}

#[tokio::test]
async fn operational_routes_need_no_token() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = app.client.get(app.url(path)).send().await.expect("send");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let ready: serde_json::Value = app.get_json("/readyz", None).await;
    assert_eq!(ready, json!({"database": "ok", "cache": "ok"}));
}

#[tokio::test]
async fn cors_preflight_allows_configured_origins_only() {
    let app = spawn_app().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/activities"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://dashboard.example").await.expect("send");
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        "https://dashboard.example"
    );
    assert!(
        header(&allowed, "access-control-allow-credentials").is_empty(),
        "credentials stay off"
    );
    let refused = preflight("https://evil.example").await.expect("send");
    assert!(header(&refused, "access-control-allow-origin").is_empty());
    let response = app
        .client
        .get(app.url("/api/v1/stats/summary"))
        .bearer_auth(&app.read_token)
        .header("origin", "https://dashboard.example")
        .send()
        .await
        .expect("send");
    let exposed = header(&response, "access-control-expose-headers").to_lowercase();
    for name in ["x-cache", "etag", "x-request-id", "location"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}
