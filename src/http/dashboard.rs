//! `GET /` and its assets: the dashboard, compiled into the binary so it needs no files,
//! CDN or network at run time. It calls the public API with the token the person gives it.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

const INDEX: &str = include_str!("../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../assets/dashboard/app.js");
const STYLE: &str = include_str!("../../assets/dashboard/style.css");

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|| asset("text/html; charset=utf-8", INDEX)),
    )
    .route(
        "/assets/app.js",
        web::get().to(|| asset("text/javascript; charset=utf-8", APP_JS)),
    )
    .route(
        "/assets/style.css",
        web::get().to(|| asset("text/css; charset=utf-8", STYLE)),
    );
}

async fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}
