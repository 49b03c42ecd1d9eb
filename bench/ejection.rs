//! Ejection benchmark: how many requests fail, and for how long, when one of
//! four instances turns bad under load.
//!
//! Runs tidegate in process in front of four loopback origins, drives a bounded
//! closed-loop load (a fixed number of clients for a fixed time), turns one
//! origin into a 500-answering one mid-run, and prints per round the requests
//! that failed between the fault and the ejection, and the time from the fault
//! to the ejection. Run with
//! `cargo run --example ejection -- [rounds] [clients] [max_retries]`.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tidegate::clock;
use tidegate::config::Config;
use tokio::net::TcpListener;

const FAULT_AFTER: Duration = Duration::from_millis(1000);
const RUN_FOR: Duration = Duration::from_millis(2500);
/// The default `resilience.base_ejection`, which the bench config keeps.
const BASE_EJECTION: Duration = Duration::from_secs(30);

/// One round's figures.
struct Round {
    requests: usize,
    failed_before_ejection: usize,
    failed_total: usize,
    to_ejection: Option<Duration>,
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are numbers"))
        .collect();
    let rounds = args.first().copied().unwrap_or(5);
    let clients = args.get(1).copied().unwrap_or(8);
    let retries = args.get(2).copied().unwrap_or(0);

    println!("rounds={rounds} clients={clients} max_retries={retries} fault_after={FAULT_AFTER:?} run_for={RUN_FOR:?}");
    println!("round  requests  failed_answered_before_ejection  failed_caused_by_fault  fault_to_ejection_ms");
    for n in 1..=rounds {
        let r = round(clients, retries).await;
        let ms = r.to_ejection.map_or("never".to_owned(), |d| {
            format!("{:.1}", d.as_secs_f64() * 1e3)
        });
        println!(
            "{n:>5}  {:>8}  {:>30}  {:>22}  {ms:>20}",
            r.requests, r.failed_before_ejection, r.failed_total
        );
    }
}

async fn round(clients: usize, retries: usize) -> Round {
    let mut origins = Vec::new();
    for _ in 0..4 {
        origins.push(origin().await);
    }
    let instances: Vec<String> = origins
        .iter()
        .map(|(a, _)| format!("{{ address = \"{a}\" }}"))
        .collect();
    let text = format!(
        r#"
        [proxy]
        listen = ["127.0.0.1:0"]
        [admin]
        listen = "127.0.0.1:0"
        [services.bench]
        routes = [{{ path_prefix = "/" }}]
        instances = [{}]
        [services.bench.load_balancer]
        max_retries = {retries}
        health_check_interval_seconds = 1
        "#,
        instances.join(", ")
    );
    let config = Config::parse(&text, Path::new(".")).expect("bench config is valid");
    let tidegate = tidegate::app::start(config).await.expect("tidegate starts");
    let proxy = tidegate.proxy_addr();
    let bad = tidegate.registry.services()[0].table.load().instances()[0].clone();

    let started = Instant::now();
    let load: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client_loop(proxy, started + RUN_FOR)))
        .collect();
    tokio::time::sleep_until((started + FAULT_AFTER).into()).await;
    let fault = clock::now_ns();
    origins[0].1.store(true, Ordering::SeqCst);

    let mut outcomes = Vec::new();
    for task in load {
        outcomes.extend(task.await.expect("client task"));
    }
    // The ejection's start, exactly: its end minus the first ejection's length.
    let ends = bad.state.health.ejection_ends_ns();
    let ejected_at = (ends != 0).then(|| ends - clock::duration_ns(BASE_EJECTION));
    tidegate.shutdown().await;
    let failed = |until: Option<u64>| {
        outcomes
            .iter()
            .filter(|(at, ok)| !ok && *at >= fault && until.is_none_or(|u| *at <= u))
            .count()
    };
    Round {
        requests: outcomes.len(),
        failed_before_ejection: failed(ejected_at),
        failed_total: failed(None),
        to_ejection: ejected_at.map(|at| Duration::from_nanos(at - fault)),
    }
}

/// Sends GETs back to back until `until`; each outcome with its completion time (`clock::now_ns`).
async fn client_loop(proxy: SocketAddr, until: Instant) -> Vec<(u64, bool)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{proxy}/").parse().expect("valid uri");
    let mut outcomes = Vec::new();
    while Instant::now() < until {
        let req = Request::get(uri.clone())
            .body(Empty::new())
            .expect("valid request");
        let ok = match client.request(req).await {
            Ok(response) => {
                let status = response.status();
                response.into_body().collect().await.is_ok() && status == StatusCode::OK
            }
            Err(_) => false,
        };
        outcomes.push((clock::now_ns(), ok));
    }
    outcomes
}

/// A loopback origin answering 200, or 500 on every path once its flag is set.
async fn origin() -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("bound address");
    let bad = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&bad);
    tokio::spawn(async move {
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        while let Ok((stream, _)) = listener.accept().await {
            let (builder, flag) = (Arc::clone(&builder), Arc::clone(&flag));
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let status = if flag.load(Ordering::SeqCst) {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                    *response.status_mut() = status;
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, bad)
}
