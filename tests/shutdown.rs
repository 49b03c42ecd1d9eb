//! Graceful shutdown: stop accepting, let in-flight requests finish within the
//! grace period, then stop; in process through `Running::shutdown`, and in the
//! real binary through SIGTERM (exit 0) and a second signal (exit at once).

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::net::TcpStream;
use tokio::process::Child;

use support::{free_port, held_origin, Origin};

/// Bound on every wait; reaching it fails the test.
const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until connecting to `addr` is refused: the listener is closed.
async fn until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        // A connection caught in the backlog as the listener closes is reset;
        // only a refusal shows that the listener is gone.
        if let Err(e) = TcpStream::connect(addr).await {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the listener {addr} is closed soon after shutdown starts"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what} within {DEADLINE:?}"))
}

/// Holds a request (HTTP/2 when `h2`) at the origin, shuts down, checks that
/// the listener closes and the request still completes.
async fn in_flight_request_survives_shutdown(h2: bool) {
    let held = held_origin().await;
    let tidegate = support::start(support::config_for(&[&held.origin], "")).await;
    let proxy = tidegate.proxy_addr();

    let req = http::Request::get(format!("http://{proxy}/slow"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let request = tokio::spawn(support::client_with(h2).request(req));
    within("the request reaches the origin", held.arrived)
        .await
        .unwrap();
    let admin = tidegate.admin_addr;
    let shutdown = tokio::spawn(tidegate.shutdown());
    until_refused(proxy).await;
    let (ready, _, text) = support::get(admin, "/ready").await;
    assert_eq!(
        (ready, text.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "while draining, /ready tells load balancers in front to stop sending"
    );
    held.release.send(()).unwrap();

    let response = within("the request finishes", request).await.unwrap();
    let response = response.expect("the in-flight request is answered");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the in-flight request completes"
    );
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("the whole body arrives")
        .to_bytes();
    assert_eq!(body, "finished");
    assert!(
        within("shutdown returns", shutdown).await.unwrap(),
        "shutdown reports that every request finished within the grace period"
    );
    until_refused(admin).await;
}

#[tokio::test]
async fn shutdown_finishes_the_in_flight_request_and_refuses_new_connections() {
    in_flight_request_survives_shutdown(false).await;
}

#[tokio::test]
async fn shutdown_finishes_an_in_flight_http2_stream() {
    in_flight_request_survives_shutdown(true).await;
}

#[tokio::test]
async fn shutdown_reports_a_request_cut_off_by_the_grace_period() {
    let held = held_origin().await;
    let mut config = support::config_for(&[&held.origin], "");
    config.proxy.shutdown_grace = Duration::from_millis(100);
    let tidegate = support::start(config).await;

    let _request = tokio::spawn(support::get(tidegate.proxy_addr(), "/slow"));
    within("the request reaches the origin", held.arrived)
        .await
        .unwrap();

    assert!(
        !within("shutdown returns", tidegate.shutdown()).await,
        "a request still held after the grace period is reported"
    );
}

/// The `tidegate serve` binary on free ports, proxying to `origin`.
struct Binary {
    child: Child,
    proxy: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Binary {
    async fn serve(origin: &Origin) -> Binary {
        let proxy: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let config = format!(
            r#"
            [proxy]
            listen = ["{proxy}"]
            shutdown_grace = "30s"
            [admin]
            listen = "{admin}"
            [scaler]
            enabled = false
            [services.app]
            routes = [{{ path_prefix = "/" }}]
            instances = [{{ address = "{}" }}]
            "#,
            origin.addr
        );
        let (child, dir) = support::serve_binary(&config);
        let mut binary = Binary {
            child,
            proxy,
            _dir: dir,
        };
        binary.until_ready(admin).await;
        binary
    }

    async fn until_ready(&mut self, admin: SocketAddr) {
        let deadline = Instant::now() + DEADLINE;
        let url = format!("http://{admin}/ready");
        loop {
            let req = http::Request::get(&url)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            if let Ok(response) = support::client().request(req).await {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                // Most likely another process took a port between its release and the bind.
                panic!("tidegate serve exited before it was ready: {status}");
            }
            assert!(Instant::now() < deadline, "tidegate serve becomes ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("the child is running");
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), signal).unwrap();
    }

    async fn exit_code(&mut self) -> Option<i32> {
        within("tidegate exits", self.child.wait())
            .await
            .unwrap()
            .code()
    }
}

#[tokio::test]
async fn sigterm_stops_an_idle_binary_with_exit_code_0() {
    let origin = support::named_origin().await;
    let mut tidegate = Binary::serve(&origin).await;
    let (status, _, _) = support::get(tidegate.proxy, "/").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the binary proxies before the signal"
    );

    tidegate.signal(Signal::SIGTERM);

    assert_eq!(tidegate.exit_code().await, Some(0));
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    let held = held_origin().await;
    let mut tidegate = Binary::serve(&held.origin).await;

    let request = tokio::spawn(support::get(tidegate.proxy, "/slow"));
    within("the request reaches the origin", held.arrived)
        .await
        .unwrap();
    tidegate.signal(Signal::SIGTERM);
    until_refused(tidegate.proxy).await;
    held.release.send(()).unwrap();

    let (status, _, body) = within("the request finishes", request).await.unwrap();
    assert_eq!(status, StatusCode::OK, "the in-flight request completes");
    assert_eq!(body, "finished");
    assert_eq!(tidegate.exit_code().await, Some(0));
}

#[tokio::test]
async fn a_second_signal_exits_at_once_without_waiting_for_the_drain() {
    let held = held_origin().await;
    let mut tidegate = Binary::serve(&held.origin).await;

    let req = http::Request::get(format!("http://{}/slow", tidegate.proxy))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let request = tokio::spawn(support::client().request(req));
    within("the request reaches the origin", held.arrived)
        .await
        .unwrap();
    tidegate.signal(Signal::SIGTERM);
    until_refused(tidegate.proxy).await;
    tidegate.signal(Signal::SIGINT);

    assert_eq!(
        tidegate.exit_code().await,
        Some(1),
        "the second signal ends the process while a request is still held"
    );
    assert!(
        request.await.unwrap().is_err(),
        "the held request dies with the process"
    );
    drop(held.release);
}
