//! A deadline for a new client connection's first byte.
//!
//! hyper bounds the wait for every request head once it knows the protocol,
//! but hyper-util's automatic HTTP/1.1-or-HTTP/2 detection reads the first
//! bytes with no deadline, so a client that connects and stays silent would
//! hold a connection slot forever. [`FirstByteDeadline`] fails the read with
//! `TimedOut` when nothing arrives in time; once a byte has arrived it passes
//! reads and writes straight through.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pin_project! {
    /// A client stream whose first read must complete within a deadline.
    pub struct FirstByteDeadline<S> {
        #[pin]
        inner: S,
        deadline: Option<Pin<Box<Sleep>>>,
    }
}

impl<S> FirstByteDeadline<S> {
    /// Wraps `inner`; its first byte must arrive within `timeout` from now.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<S: AsyncRead> AsyncRead for FirstByteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if let Some(deadline) = this.deadline.as_mut() {
            match &result {
                Poll::Ready(Ok(())) if buf.filled().len() > before => *this.deadline = None,
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                _ => {}
            }
        }
        result
    }
}

impl<S: AsyncWrite> AsyncWrite for FirstByteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (_peer, ours) = tokio::io::duplex(64);
        let mut stream = FirstByteDeadline::new(ours, Duration::from_secs(5));

        let error = stream.read(&mut [0u8; 8]).await.expect_err("no byte came");

        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_first_byte_reads_may_wait_as_long_as_they_like() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let mut stream = FirstByteDeadline::new(ours, Duration::from_secs(5));
        peer.write_all(b"G").await.expect("duplex write");
        assert_eq!(stream.read(&mut [0u8; 8]).await.expect("first byte"), 1);

        tokio::time::advance(Duration::from_secs(60)).await;
        peer.write_all(b"ET").await.expect("duplex write");

        assert_eq!(
            stream.read(&mut [0u8; 8]).await.expect("later bytes"),
            2,
            "the deadline covers only the first byte"
        );
    }
}
