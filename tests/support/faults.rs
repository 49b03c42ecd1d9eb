//! Origins that misbehave on purpose, over real sockets: they refuse, reset,
//! hang, drip, or fail on command. Each counts the requests it read, so tests
//! can compare what the origins saw with what clients sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{origin_on, text, Origin};

/// A raw-TCP origin with a scripted fault; stops when dropped.
pub struct Fault {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Fault {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address nothing listens on: connecting is refused.
pub async fn refusing_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Reads a request head, then writes `partial` and resets the connection (RST).
pub async fn resetting(partial: &'static [u8]) -> Fault {
    scripted(move |mut stream| async move {
        let _ = stream.write_all(partial).await;
        let _ = stream.flush().await;
        let _ = stream.set_zero_linger();
        drop(stream);
    })
    .await
}

/// Resets before any byte of the response.
pub async fn resetting_before_head() -> Fault {
    resetting(b"").await
}

/// Sends a head promising 100 bytes and 10 of them, then resets.
pub async fn resetting_mid_body() -> Fault {
    resetting(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789").await
}

/// Reads a request head and never answers, holding the connection open.
pub async fn hanging() -> Fault {
    scripted(|stream| async move {
        std::future::pending::<()>().await;
        drop(stream);
    })
    .await
}

/// Writes its response head one byte every `every`.
pub async fn dripping(every: Duration) -> Fault {
    scripted(move |mut stream| async move {
        for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    })
    .await
}

/// Accepts connections and, for each request head read, runs `script` on the stream.
async fn scripted<F, Fut>(script: F) -> Fault
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&hits);
    let script = Arc::new(script);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (script, counted) = (Arc::clone(&script), Arc::clone(&counted));
            tokio::spawn(async move {
                if read_head(&mut stream).await {
                    counted.fetch_add(1, Ordering::SeqCst);
                    script(stream).await;
                }
            });
        }
    });
    Fault { addr, hits, task }
}

async fn read_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// Turns a [`switchable`] origin bad (500 on every path, probes included) or good.
#[derive(Clone)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    pub fn set_bad(&self, bad: bool) {
        self.0.store(bad, Ordering::SeqCst);
    }
}

/// An origin answering `origin <port>` while good and 500 on every path while bad.
pub async fn switchable(bad: bool) -> (Origin, Switch) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let switch = Switch(Arc::new(AtomicBool::new(bad)));
    let flag = Arc::clone(&switch.0);
    let origin = origin_on(listener, move |_req| {
        let bad = flag.load(Ordering::SeqCst);
        async move {
            if bad {
                text(StatusCode::INTERNAL_SERVER_ERROR, "bad")
            } else {
                text(StatusCode::OK, format!("origin {port}"))
            }
        }
    });
    (origin, switch)
}

/// Polls `condition` every 10 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A one-service config routing `/` to these addresses, in this order.
pub fn config_for_addrs(addrs: &[SocketAddr], extra: &str) -> tidegate::config::Config {
    let instances: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    super::config(&format!(
        r#"
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        instances = [{}]
        {extra}
        "#,
        instances.join(", ")
    ))
}
