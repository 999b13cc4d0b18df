//! `spawn_app` and `TestApp`: the real application on port 0 with a fresh database (created,
//! migrated, dropped afterwards) and a fresh cache prefix (its keys removed afterwards).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use activity_analytics::auth::{Role, create_key};
use activity_analytics::config::{LogFormat, Settings};
use activity_analytics::db;
use activity_analytics::startup::Application;
use activity_analytics::state::AppState;
use actix_web::web;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgPool};
use uuid::Uuid;

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `host:port` of the Postgres the tests use (`TEST_DATABASE_URL`).
pub fn postgres_address() -> String {
    let options = PgConnectOptions::from_str(&admin_database_url()).expect("TEST_DATABASE_URL");
    format!("{}:{}", options.get_host(), options.get_port())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.into())
}

/// Seed URLs of the Redis Cluster the Redis tests run on instead of one Redis, when
/// `TEST_REDIS_CLUSTER_URLS` is set (`scripts/cluster-tests.sh` sets it).
pub fn redis_cluster_urls() -> Option<Vec<String>> {
    let urls = std::env::var("TEST_REDIS_CLUSTER_URLS").ok()?;
    let urls: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    (!urls.is_empty()).then_some(urls)
}

/// Which cache backend an app uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Redis(String),
    Cluster(Vec<String>),
    Memory,
}

impl Backend {
    /// The shared Redis: one Redis, or the cluster `TEST_REDIS_CLUSTER_URLS` names.
    pub fn redis() -> Self {
        match redis_cluster_urls() {
            Some(urls) => Self::Cluster(urls),
            None => Self::Redis(redis_url()),
        }
    }

    pub fn is_shared(&self) -> bool {
        !matches!(self, Self::Memory)
    }

    /// Both backends, for tests of cache semantics that must hold for each; on a cluster run
    /// only the cluster (the in-process cache was tested by the ordinary run).
    pub fn all() -> Vec<Self> {
        match Self::redis() {
            cluster @ Self::Cluster(_) => vec![cluster],
            redis => vec![redis, Self::Memory],
        }
    }
}

/// A database that exists for one test and is dropped with it.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// A migrated database, cloned from the migrated template (`template_database`): copying a
    /// database is much faster than running every migration again for each test.
    pub async fn create() -> Arc<Self> {
        let template = template_database().await;
        Self::create_from(Some(template)).await
    }

    /// An empty database, for tests of the migrations themselves.
    pub async fn create_unmigrated() -> Arc<Self> {
        Self::create_from(None).await
    }

    async fn create_from(template: Option<&str>) -> Arc<Self> {
        let name = format!("aa_test_{}", Uuid::new_v4().simple());
        let admin = PgConnectOptions::from_str(&admin_database_url()).expect("TEST_DATABASE_URL");
        let mut conn = admin.connect().await.expect("connect to Postgres as admin");
        let template = template
            .map(|t| format!(" template {t}"))
            .unwrap_or_default();
        conn.execute(sqlx::AssertSqlSafe(format!(
            "create database {name}{template}"
        )))
        .await
        .expect("create test database");
        conn.close().await.ok();
        let url = admin.database(&name).to_url_lossy().to_string();
        Arc::new(Self { name, url })
    }
}

/// The name of a database holding every migration, made once and kept for later runs. Its name
/// carries the migrations' checksums (a changed migration makes a new one; older ones are
/// dropped) and the month, so its partitions include the current month's.
async fn template_database() -> &'static str {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::hash::DefaultHasher::new();
            for m in db::MIGRATOR.iter() {
                m.version.hash(&mut hasher);
                m.checksum.hash(&mut hasher);
            }
            let name = format!(
                "aa_template_{:016x}_{}",
                hasher.finish(),
                chrono::Utc::now().format("%Y%m")
            );
            let admin =
                PgConnectOptions::from_str(&admin_database_url()).expect("TEST_DATABASE_URL");
            let mut conn = admin.connect().await.expect("connect to Postgres as admin");
            let exists: bool =
                sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut conn)
                    .await
                    .expect("look for the template");
            if !exists {
                // Built under another name and renamed when complete, so a run that dies half
                // way (or another test process building the same one) never leaves a template
                // that is missing migrations.
                let building = format!("aa_building_{}", Uuid::new_v4().simple());
                conn.execute(sqlx::AssertSqlSafe(format!("create database {building}")))
                    .await
                    .expect("create template database");
                let url = admin.clone().database(&building).to_url_lossy().to_string();
                let pool = PgPool::connect(&url).await.expect("connect to template");
                db::migrate(&pool).await.expect("migrate template database");
                pool.close().await;
                let renamed = conn
                    .execute(sqlx::AssertSqlSafe(format!(
                        "alter database {building} rename to {name}"
                    )))
                    .await;
                if renamed.is_err() {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "drop database if exists {building}"
                        )))
                        .await;
                }
                let stale: Vec<String> = sqlx::query_scalar(
                    "select datname::text from pg_database
                     where datname like 'aa\\_template\\_%' and datname <> $1",
                )
                .bind(&name)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
                for old in stale {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "drop database if exists {old}"
                        )))
                        .await;
                }
            }
            conn.close().await.ok();
            name
        })
        .await
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async; a small runtime of its own does the cleanup.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = PgConnectOptions::from_str(&admin_database_url())
                    .expect("url")
                    .connect()
                    .await
                {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "drop database if exists {name} with (force)"
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Removes every key under a prefix when dropped, from one Redis or from every node of a
/// cluster (a replica refuses the `DEL`; its master's is replicated to it).
pub struct PrefixCleanup {
    pub prefix: String,
    pub redis_urls: Vec<String>,
}

impl Drop for PrefixCleanup {
    fn drop(&mut self) {
        // `{prefix}:…` on one Redis, `{prefix.N}:…` on a cluster.
        let pattern = format!("{{{}[}}.]*", self.prefix);
        let urls = std::mem::take(&mut self.redis_urls);
        let _ = std::thread::spawn(move || {
            for url in urls {
                let Ok(client) = redis::Client::open(url) else {
                    continue;
                };
                let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1))
                else {
                    continue;
                };
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query(&mut conn)
                    .unwrap_or_default();
                for key in keys {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(key).query(&mut conn);
                }
            }
        })
        .join();
    }
}

#[derive(Clone)]
pub struct AppOptions {
    pub backend: Backend,
    /// Share a database with another app (two instances); a fresh one when `None`.
    pub database: Option<Arc<TestDatabase>>,
    /// Connect through this URL instead of the database's own (a fault-injecting proxy).
    pub database_url: Option<String>,
    /// A streaming replica of the database (`DATABASE_REPLICA_URL`).
    pub database_replica_url: Option<String>,
    pub prefix: Option<String>,
    pub cache_op_timeout: Duration,
    /// (requests per second, burst) per API key
    pub rate_limit: (u32, u32),
    pub db_max_connections: u32,
    pub retention_days: Option<u32>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            backend: Backend::redis(),
            database: None,
            database_url: None,
            database_replica_url: None,
            prefix: None,
            // Generous, so a CI machine starved of CPU does not turn hits into bypasses; the
            // fault tests set the contract's 50 ms themselves.
            cache_op_timeout: Duration::from_millis(1000),
            rate_limit: (100_000, 100_000),
            db_max_connections: 10,
            retention_days: None,
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_token: String,
    pub write_token: String,
    pub read_token: String,
    pub state: web::Data<AppState>,
    pub pool: PgPool,
    pub prefix: String,
    pub options: AppOptions,
    _cleanup: Arc<PrefixCleanup>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// An app on the given cache backend, otherwise with the defaults.
pub async fn spawn_app_on(backend: Backend) -> TestApp {
    spawn_app_with(AppOptions {
        backend,
        ..AppOptions::default()
    })
    .await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    try_spawn_app_with(options)
        .await
        .expect("build application")
}

/// The application, or why it refused to start.
pub async fn try_spawn_app_with(mut options: AppOptions) -> anyhow::Result<TestApp> {
    let database = match options.database.clone() {
        Some(db) => db,
        None => TestDatabase::create().await,
    };
    options.database = Some(database.clone());
    let prefix = options
        .prefix
        .clone()
        .unwrap_or_else(|| format!("test-{}", Uuid::new_v4().simple()));
    options.prefix = Some(prefix.clone());
    let (redis_url, redis_cluster_urls) = match &options.backend {
        Backend::Redis(url) => (Some(url.clone()), Vec::new()),
        Backend::Cluster(urls) => (None, urls.clone()),
        Backend::Memory => (None, Vec::new()),
    };
    let settings = Settings {
        database_url: options
            .database_url
            .clone()
            .unwrap_or_else(|| database.url.clone()),
        database_replica_url: options.database_replica_url.clone(),
        redis_url: redis_url.clone(),
        redis_cluster_urls: (!redis_cluster_urls.is_empty()).then(|| redis_cluster_urls.join(",")),
        app_addr: "127.0.0.1:0".parse().expect("address"),
        cache_prefix: prefix.clone(),
        cache_ttl: Duration::from_secs(300),
        cache_op_timeout: options.cache_op_timeout,
        cors_allowed_origins: vec!["https://dashboard.example".into()],
        log_format: LogFormat::Pretty,
        log_filter: "info".into(),
        otlp_endpoint: None,
        otel_service_name: "activity-analytics".into(),
        db_acquire_timeout: Duration::from_millis(1000),
        db_max_connections: options.db_max_connections,
        rate_limit_per_second: options.rate_limit.0,
        rate_limit_burst: options.rate_limit.1,
        retention_days: options.retention_days,
    };
    let app = Application::build(settings).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    let pool = PgPool::connect(&database.url).await.expect("test pool");
    let suffix = Uuid::new_v4().simple().to_string();
    let token = |role: Role| {
        let pool = pool.clone();
        let name = format!("{}-{suffix}", role.as_str());
        async move {
            create_key(&pool, &name, role, None)
                .await
                .expect("create key")
        }
    };
    Ok(TestApp {
        address,
        client: reqwest::Client::new(),
        admin_token: token(Role::Admin).await,
        write_token: token(Role::Write).await,
        read_token: token(Role::Read).await,
        state,
        pool,
        prefix: prefix.clone(),
        options,
        _cleanup: Arc::new(PrefixCleanup {
            prefix,
            redis_urls: redis_url.into_iter().chain(redis_cluster_urls).collect(),
        }),
    })
}

impl TestApp {
    /// Partitions for every month from `first` to `last`, for tests that insert rows straight
    /// into `activities` (the service makes them itself before a write).
    pub async fn ensure_partitions(&self, first: &str, last: &str) {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("an RFC 3339 instant")
                .to_utc()
        };
        db::partitions::ensure(&self.pool, at(first), at(last))
            .await
            .expect("create partitions");
    }

    /// Partitions for every month from `ago` before now through now.
    pub async fn ensure_partitions_since(&self, ago: Duration) {
        let now = chrono::Utc::now();
        let first = now - chrono::Duration::from_std(ago).expect("a short duration");
        db::partitions::ensure(&self.pool, first, now)
            .await
            .expect("create partitions");
    }

    /// Another instance sharing this one's database and cache prefix.
    pub async fn spawn_sibling(&self) -> TestApp {
        let mut sibling = spawn_app_with(self.options.clone()).await;
        sibling.admin_token = self.admin_token.clone();
        sibling.write_token = self.write_token.clone();
        sibling.read_token = self.read_token.clone();
        sibling
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// GETs `path` (with a token, if given) and parses the JSON answer.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        let mut request = self.client.get(self.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json body")
    }

    /// Sends `method path` with `token` and extra headers.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request")
    }

    pub async fn post_activity(&self, body: &Value) -> Response {
        self.client
            .post(self.url("/api/v1/activities"))
            .bearer_auth(&self.write_token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Creates an activity that must succeed, returning the stored JSON.
    pub async fn create(&self, user: Uuid, action: &str, at: &str, value: Option<f64>) -> Value {
        let mut body = json!({"user_id": user, "action": action, "occurred_at": at});
        if let Some(v) = value {
            body["value"] = json!(v);
        }
        let response = self.post_activity(&body).await;
        assert_eq!(response.status(), StatusCode::CREATED, "create {body}");
        response.json().await.expect("json")
    }

    pub async fn post_batch(&self, body: &Value) -> Response {
        self.client
            .post(self.url("/api/v1/activities/batch"))
            .bearer_auth(&self.write_token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_activity(&self, id: &str) -> Response {
        self.client
            .get(self.url(&format!("/api/v1/activities/{id}")))
            .bearer_auth(&self.read_token)
            .send()
            .await
            .expect("request")
    }

    pub async fn list(&self, query: &str) -> Response {
        self.client
            .get(self.url(&format!("/api/v1/activities?{query}")))
            .bearer_auth(&self.read_token)
            .send()
            .await
            .expect("request")
    }

    pub async fn patch(&self, id: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(&format!("/api/v1/activities/{id}")))
            .bearer_auth(&self.write_token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/api/v1/activities/{id}")))
            .bearer_auth(&self.write_token)
            .send()
            .await
            .expect("request")
    }

    /// GET a statistics path (`summary?from=...`), returning the response.
    pub async fn stats_response(&self, path_and_query: &str) -> Response {
        self.client
            .get(self.url(&format!("/api/v1/stats/{path_and_query}")))
            .bearer_auth(&self.read_token)
            .send()
            .await
            .expect("request")
    }

    /// A statistics path computed now from Postgres (`Cache-Control: no-cache`), which must
    /// succeed: what a cached answer must equal.
    pub async fn stats_fresh(&self, path_and_query: &str) -> Value {
        let response = self
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/stats/{path_and_query}"),
                &self.read_token,
                &[("Cache-Control", "no-cache")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path_and_query}");
        response.json().await.expect("json")
    }

    /// GET a statistics path that must succeed: (X-Cache, body).
    pub async fn stats(&self, path_and_query: &str) -> (String, Value) {
        let response = self.stats_response(path_and_query).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path_and_query}");
        let cache = header(&response, "x-cache");
        (cache, response.json().await.expect("json"))
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text")
    }

    /// The value of one series in `/metrics`, 0 when it is absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }
}

/// Finds `name{labels} value` in a Prometheus text exposition.
pub fn metric_value(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

pub fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Asserts a problem+json response with this status, returning its body.
pub async fn assert_problem(response: Response, status: StatusCode, case: &str) -> Value {
    assert_eq!(response.status(), status, "{case}");
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json",
        "{case}"
    );
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status.as_u16(), "{case}");
    body
}

/// The field names a 422 problem lists.
pub fn problem_fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A redis-server of the test's own, on a free port, so that a test can stop and restart it
/// without touching the shared one.
pub struct OwnRedis {
    pub port: u16,
    child: Option<std::process::Child>,
    settings: Vec<String>,
}

impl OwnRedis {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A server with more settings (`["--maxmemory", "2mb"]`).
    pub async fn start_with(settings: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut redis = Self {
            port,
            child: None,
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.settings)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed to run the fault tests");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("url");
        for _ in 0..200 {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(100))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("own redis-server did not start on port {}", self.port);
    }

    /// Makes the server stop answering every client for `length`, keeping its data.
    pub fn pause(&self, length: Duration) {
        let client = redis::Client::open(self.url()).expect("url");
        let mut conn = client.get_connection().expect("connection");
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(length.as_millis() as u64)
            .arg("ALL")
            .query(&mut conn)
            .expect("pause");
    }

    /// Kills the server at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy in front of Postgres that a test can take down (cutting every connection and
/// refusing new ones) and bring back, to simulate the database going away.
pub struct FaultyProxy {
    pub port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl FaultyProxy {
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("address").port();
        let (up, watch) = tokio::sync::watch::channel(true);
        let target = target.to_owned();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*watch.borrow() {
                    continue; // dropped: the connection is refused
                }
                let mut watch = watch.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up }
    }

    pub fn set_up(&self, up: bool) {
        let _ = self.up.send(up);
    }

    /// `database_url` with its host and port replaced by this proxy's.
    pub fn url_for(&self, database_url: &str) -> String {
        let options = PgConnectOptions::from_str(database_url).expect("url");
        options
            .host("127.0.0.1")
            .port(self.port)
            .to_url_lossy()
            .to_string()
    }
}

/// A test hook (before a store, or before a create's cache update) that, the first time it runs,
/// tells the test it has been reached and then waits until the test releases it.
pub fn pause_once() -> (
    activity_analytics::cache::StoreHook,
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (reached_tx, reached_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let once = Arc::new(tokio::sync::Mutex::new(Some((reached_tx, release_rx))));
    let hook: activity_analytics::cache::StoreHook = Arc::new(move || {
        let once = once.clone();
        Box::pin(async move {
            if let Some((reached, release)) = once.lock().await.take() {
                let _ = reached.send(());
                let _ = release.await;
            }
        })
    });
    (hook, reached_rx, release_tx)
}

/// A Redis Cluster of the test's own (`scripts/redis-cluster.sh`): real redis-server processes
/// on free ports, which a test may kill or reshard without touching anyone else's.
pub struct OwnCluster {
    dir: std::path::PathBuf,
    pub urls: Vec<String>,
}

impl OwnCluster {
    pub fn start(masters: u32, replicas: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("aa-cluster-{}", Uuid::new_v4().simple()));
        let out = local_servers("redis-cluster.sh")
            .arg("start")
            .arg(&dir)
            .arg(masters.to_string())
            .arg(replicas.to_string())
            .output();
        let mut cluster = Self {
            dir,
            urls: Vec::new(),
        };
        cluster.urls = started(out, "a Redis Cluster (redis-server, redis-cli)")
            .split(',')
            .map(str::to_owned)
            .collect();
        cluster
    }

    pub fn ports(&self) -> Vec<u16> {
        self.urls
            .iter()
            .filter_map(|u| u.rsplit(':').next()?.parse().ok())
            .collect()
    }

    pub fn node(port: u16) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .expect("url")
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("connect to a cluster node")
    }

    fn is_alive(&self, port: u16) -> bool {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .ok()
            .and_then(|c| {
                c.get_connection_with_timeout(Duration::from_millis(200))
                    .ok()
            })
            .is_some()
    }

    /// The masters that answer, by port.
    pub fn masters(&self) -> Vec<u16> {
        self.ports()
            .into_iter()
            .filter(|p| self.is_alive(*p))
            .filter(|p| {
                let role: Vec<redis::Value> = redis::cmd("ROLE")
                    .query(&mut Self::node(*p))
                    .unwrap_or_default();
                matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
            })
            .collect()
    }

    pub fn node_id(port: u16) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut Self::node(port))
            .expect("cluster myid")
    }

    /// Every key on the node at `port` matching `pattern`.
    pub fn keys(port: u16, pattern: &str) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut Self::node(port))
            .unwrap_or_default()
    }

    pub fn slot_of(&self, key: &str) -> u16 {
        let port = self.masters()[0];
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut Self::node(port))
            .expect("cluster keyslot")
    }

    /// Kills a node at once, as a crash would.
    pub fn kill(&self, port: u16) {
        let pid = std::fs::read_to_string(self.dir.join(port.to_string()).join("redis.pid"))
            .expect("the node's pid file");
        let status = std::process::Command::new("kill")
            .arg("-9")
            .arg(pid.trim())
            .status()
            .expect("kill");
        assert!(status.success(), "kill node {port}");
    }

    /// The port of the master serving `slot`, as the first live node's slot map says.
    pub fn master_of(&self, slot: u16) -> Option<u16> {
        let port = self.ports().into_iter().find(|p| self.is_alive(*p))?;
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut Self::node(port))
            .ok()?;
        ranges.into_iter().find_map(|range| {
            let redis::Value::Array(range) = range else {
                return None;
            };
            let int = |v: &redis::Value| match v {
                redis::Value::Int(i) => Some(*i),
                _ => None,
            };
            let (lo, hi) = (int(range.first()?)?, int(range.get(1)?)?);
            if !(lo..=hi).contains(&i64::from(slot)) {
                return None;
            }
            let redis::Value::Array(master) = range.get(2)? else {
                return None;
            };
            u16::try_from(int(master.get(1)?)?).ok()
        })
    }

    /// Waits until a live master other than `dead` serves `slot` and every live node reports
    /// every slot served.
    pub async fn wait_for_failover(&self, slot: u16, dead: u16, limit: Duration) -> u16 {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            let whole = self
                .ports()
                .into_iter()
                .filter(|p| self.is_alive(*p))
                .all(|p| {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut Self::node(p))
                        .is_ok_and(|i| i.contains("cluster_state:ok"))
                });
            match self.master_of(slot) {
                Some(master) if whole && master != dead && self.is_alive(master) => return master,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("no replica took over slot {slot} within {limit:?}");
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = local_servers("redis-cluster.sh")
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// `scripts/NAME`, one of the scripts that start and stop servers of a test's own.
fn local_servers(name: &str) -> std::process::Command {
    std::process::Command::new(format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR")))
}

/// The last line a script that started `what` printed; what it said on stderr if it failed.
fn started(out: std::io::Result<std::process::Output>, what: &str) -> String {
    let out = out.unwrap_or_else(|e| panic!("cannot run the script that starts {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

/// A private Postgres primary with a hot standby streaming from it (`scripts/pg-standby.sh`),
/// which a test may pause, lag or stop without touching the machine's own Postgres.
pub struct OwnStandby {
    dir: std::path::PathBuf,
    pub primary_port: u16,
    pub standby_port: u16,
}

impl OwnStandby {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("aa-standby-{}", Uuid::new_v4().simple()));
        let out = local_servers("pg-standby.sh")
            .arg("start")
            .arg(&dir)
            .output();
        let mut standby = Self {
            dir,
            primary_port: 0,
            standby_port: 0,
        };
        let ports: Vec<u16> = started(out, "a Postgres primary and standby (initdb, pg_ctl)")
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        standby.primary_port = ports[0];
        standby.standby_port = ports[1];
        standby
    }

    pub fn primary_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.primary_port
        )
    }

    pub fn standby_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.standby_port
        )
    }

    /// Runs one statement on the standby (`select pg_wal_replay_pause()`).
    pub async fn on_standby(&self, sql: &'static str) {
        let mut conn = sqlx::PgConnection::connect(&self.standby_url("postgres"))
            .await
            .expect("connect to the standby");
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .expect("statement on the standby");
        conn.close().await.ok();
    }

    /// Stops the standby at once, as a crash would.
    pub fn stop_standby(&self) {
        let status = local_servers("pg-standby.sh")
            .arg("stop-standby")
            .arg(&self.dir)
            .status()
            .expect("pg-standby.sh stop-standby");
        assert!(status.success(), "stop the standby");
    }
}

impl Drop for OwnStandby {
    fn drop(&mut self) {
        let _ = local_servers("pg-standby.sh")
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}
