//! Helpers shared by the integration tests: an in-process tidegate on
//! ephemeral ports, scriptable origins, and a small HTTP client.
//!
//! Every server binds port 0, so tests run in parallel without a port registry.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, missing_docs)]

pub mod faults;
pub mod pg;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use tidegate::app::{self, Running};
use tidegate::config::Config;

/// A test origin: counts the requests it answered (health probes aside); stops when dropped.
pub struct Origin {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    probes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Origin {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Health probes it answered.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::SeqCst)
    }

    /// Stops accepting and closes the listener; open connections finish.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type OriginResponse = Response<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>;

/// A full response with a text body.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> OriginResponse {
    let mut r = Response::new(Full::new(body.into()).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r
}

/// Starts an origin on 127.0.0.1:0 answering every request with `handler`.
pub async fn origin<F, Fut>(handler: F) -> Origin
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = OriginResponse> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    origin_on(listener, handler)
}

/// Like [`origin`], on a listener the test already bound.
pub fn origin_on<F, Fut>(listener: TcpListener, handler: F) -> Origin
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = OriginResponse> + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let handler = Arc::new(handler);
    let counted = Arc::clone(&hits);
    let probes = Arc::new(AtomicU64::new(0));
    let probed = Arc::clone(&probes);
    let task = tokio::spawn(async move {
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = Arc::clone(&handler);
            let counted = Arc::clone(&counted);
            let probed = Arc::clone(&probed);
            let builder = Arc::clone(&builder);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = Arc::clone(&handler);
                    let counted = Arc::clone(&counted);
                    let probed = Arc::clone(&probed);
                    async move {
                        // Health probes run on their own jittered clock; counting them
                        // would make a test's tally depend on when one happened to land.
                        let probe = req
                            .headers()
                            .get(http::header::USER_AGENT)
                            .is_some_and(|agent| agent == "tidegate-probe");
                        let response = handler(req).await;
                        if probe { &probed } else { &counted }.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Origin {
        addr,
        hits,
        probes,
        task,
    }
}

/// An origin that answers 200 with a body naming itself (`origin <port>`).
pub async fn named_origin() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    origin_on(listener, move |_req| async move {
        text(StatusCode::OK, format!("origin {port}"))
    })
}

/// A config for tests: proxy and admin on port 0, in-memory-free SQLite in a temp dir.
pub fn config(services_toml: &str) -> Config {
    let text = format!(
        r#"
        [proxy]
        listen = ["127.0.0.1:0"]
        shutdown_grace = "5s"
        [admin]
        listen = "127.0.0.1:0"
        {services_toml}
        "#
    );
    match Config::parse(&text, &scratch_dir()) {
        Ok(config) => config,
        Err(e) => panic!("test config is invalid: {:?}", e.lines()),
    }
}

/// A fresh folder under the target directory, so a test's SQLite file (the
/// default store, resolved next to the config) never lands in the source tree.
pub fn scratch_dir() -> std::path::PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "tidegate-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("scratch folder is created");
    dir
}

/// A one-service config routing `/` to these origins.
pub fn config_for(origins: &[&Origin], extra: &str) -> Config {
    let instances: Vec<String> = origins
        .iter()
        .map(|o| format!("{{ address = \"{}\" }}", o.addr))
        .collect();
    config(&format!(
        r#"
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        instances = [{}]
        {extra}
        "#,
        instances.join(", ")
    ))
}

/// Starts tidegate in this process.
pub async fn start(config: Config) -> Running {
    app::start(config).await.expect("tidegate starts")
}

/// A plain HTTP/1.1 client with keep-alive.
pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a GET and returns status, headers and the whole body as text.
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, http::HeaderMap, String) {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(req).await
}

/// Sends any request with a full body and collects the answer.
pub async fn send(req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, String) {
    let response = client().request(req).await.expect("request is answered");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body is read").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Polls `condition` every 20 ms for at most `limit`; returns its last answer.
pub async fn eventually(limit: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    condition()
}

/// One service `app` running the demo backend (3 ms of CPU per request) on the
/// process orchestrator, 1 to 2 instances, sampled and evaluated every 200 ms
/// with no cooldowns. `store` and `policy` add lines to `[store]` and to the
/// service's `[scaling]` table.
pub fn autoscaled_app(store: &str, policy: &str) -> Config {
    config(&format!(
        r#"
        [store]
        metrics_interval = "200ms"
        {store}
        [scaler]
        evaluation_interval = "200ms"
        window = "1s"
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        [services.app.load_balancer]
        healthy_threshold = 1
        [services.app.scaling]
        min_instances = 1
        max_instances = 2
        target_cpu_percent = 30.0
        scale_up_threshold = 40.0
        scale_up_cooldown_minutes = 0
        scale_down_cooldown_minutes = 0
        {policy}
        [services.app.orchestrator]
        kind = "process"
        command = "{} demo-backend --port {{port}} --work-us 3000"
        port_range = "0-0"
        start_timeout = "20s"
        stop_grace = "2s"
        "#,
        env!("CARGO_BIN_EXE_tidegate")
    ))
}

/// Sends requests from `clients` tasks, each pausing `pace` between requests,
/// until `stop` is set; counts answers and failures.
pub fn load(
    addr: SocketAddr,
    clients: usize,
    pace: std::time::Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    for _ in 0..clients {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(format!("http://{addr}/work"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("a valid request");
                match client.request(req).await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
        });
    }
    (ok, failed)
}

/// A request body the test feeds chunk by chunk through a channel, so that it
/// decides what the client has produced at every moment.
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

/// A body and the sender that feeds it; dropping the sender ends the body.
pub fn channel_body(capacity: usize) -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    (tx, ChannelBody { rx })
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}

/// A client for any body type (HTTP/1.1, or HTTP/2 with prior knowledge when `h2`).
pub fn client_with<B>(h2: bool) -> Client<hyper_util::client::legacy::connect::HttpConnector, B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build_http()
}

/// An origin that holds its answer to `/slow` until the test releases it,
/// answers `/fail` with 502 and any other path (a health probe, say) with 200.
pub struct HeldOrigin {
    pub origin: Origin,
    pub arrived: tokio::sync::oneshot::Receiver<()>,
    pub release: tokio::sync::oneshot::Sender<()>,
}

pub async fn held_origin() -> HeldOrigin {
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel::<()>();
    let slot = Arc::new(std::sync::Mutex::new(Some((arrived_tx, release_rx))));
    let origin = origin(move |req| {
        let held = (req.uri().path() == "/slow")
            .then(|| slot.lock().unwrap().take())
            .flatten();
        let status = if req.uri().path() == "/fail" {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::OK
        };
        async move {
            if let Some((arrived_tx, release_rx)) = held {
                let _ = arrived_tx.send(());
                let _ = release_rx.await;
            }
            text(status, "finished")
        }
    })
    .await;
    HeldOrigin {
        origin,
        arrived,
        release,
    }
}

/// Runs one scaling evaluation of `service` with every instance of its table
/// reporting `cpu` percent for the last minute, requires it to decide a
/// scale-up, and returns the events it recorded.
pub async fn evaluate_under_load(
    service: &Arc<tidegate::registry::Service>,
    orchestrator: Arc<dyn tidegate::orchestrate::Orchestrator>,
    cpu: f64,
) -> Vec<tidegate::scale::event::ScalingEvent> {
    use tidegate::scale::recorder::MemorySink;
    use tidegate::scale::scaler::{Scaled, Scaler};
    use tidegate::scale::source::MemorySource;
    use tidegate::scale::{Sample, SampleSink};

    let samples = Arc::new(MemorySink::new(1_000));
    let events = Arc::new(tidegate::scale::event::MemoryEvents::default());
    let now = chrono::Utc::now();
    let busy: Vec<Sample> = service
        .table
        .load()
        .instances()
        .iter()
        .flat_map(|instance| {
            (0..12).map(move |k| Sample {
                cpu_usage_percent: Some(cpu),
                recorded_at: now - chrono::Duration::seconds(5 * k + 2),
                ..Sample::new(service.name.clone(), instance.id().clone())
            })
        })
        .collect();
    samples.push(busy);
    let scaled = Scaled {
        service: Arc::clone(service),
        orchestrator,
    };
    let scaler = Scaler {
        services: vec![scaled.clone()],
        source: Arc::new(MemorySource::new(samples, events.clone())),
        config: tidegate::config::ScalerConfig {
            enabled: true,
            evaluation_interval: std::time::Duration::from_secs(5),
            window: std::time::Duration::from_secs(60),
            tolerance_percent: 10.0,
            instance_hourly_cost: 0.0,
        },
        metrics_interval: std::time::Duration::from_secs(5),
        local_events: None,
    };
    let decision = scaler
        .evaluate(&scaled)
        .await
        .expect("the in-memory source answers")
        .expect("the service has an enabled policy");
    assert!(
        decision.should_scale,
        "the load asks for a scale-up: {decision}"
    );
    events.all()
}

/// A port free at the time of the call (bound to port 0, then released), for
/// a `tidegate` binary whose address the test must know before it starts.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Polls `GET http://{admin}/ready` until it answers 200; false after `limit`.
pub async fn until_ready(admin: SocketAddr, limit: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let req = Request::get(format!("http://{admin}/ready"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        if let Ok(response) = client().request(req).await {
            if response.status() == StatusCode::OK {
                return true;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// The value of one sample of a Prometheus text exposition, matched by name and labels.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (label_text, value) = rest.split_once("} ")?;
        let matches = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|l| l == format!("{k}=\"{v}\"")));
        matches.then(|| value.trim().parse().ok()).flatten()
    })
}

/// The admin endpoint's `/metrics` text.
pub async fn metrics_text(admin: SocketAddr) -> String {
    let (status, _, body) = get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK, "/metrics answers");
    body
}

/// `tidegate serve` as a child process on `config` (written to a temporary
/// folder, which also holds its SQLite store), output discarded, killed if dropped.
pub fn serve_binary(config: &str) -> (tokio::process::Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("tidegate.toml");
    std::fs::write(&path, config).expect("the config is written");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("tidegate starts");
    (child, dir)
}

/// An upstream client with short timeouts, for tests of the client alone.
pub fn upstream_client() -> tidegate::proxy::upstream::UpstreamClient {
    tidegate::proxy::upstream::client(&tidegate::config::Timeouts {
        connect: std::time::Duration::from_secs(2),
        request: std::time::Duration::from_secs(5),
        idle: std::time::Duration::from_secs(60),
    })
}

/// The instance authority an upstream client is given next to an origin-form request.
pub fn authority(addr: SocketAddr) -> http::uri::Authority {
    http::uri::Authority::try_from(addr.to_string().as_str()).expect("an address is an authority")
}
