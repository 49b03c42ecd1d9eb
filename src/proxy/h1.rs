//! Client connections speaking HTTP/1.1, served by the connection's own task.
//!
//! hyper's server drives every connection through a general dispatcher: a
//! state machine for both directions, a header-read timer set into tokio's
//! wheel and taken out again for every request, and buffers of 8 KiB each
//! way that an idle connection keeps. This module serves the requests a
//! proxy mostly sees, and nothing else:
//!
//! - HTTP/1.1 requests whose body is absent or framed by `Content-Length` and
//!   no larger than [`WHOLE_BODY_BYTES`], read whole with the head;
//! - answered with `Content-Length`, chunked, or no body (`HEAD`, 204, 304);
//! - kept alive unless the client says `close` or the proxy is shutting down;
//! - pipelined requests answered in order.
//!
//! Any other connection, or one whose next request is anything else (HTTP/1.0,
//! HTTP/2's preface, a chunked or larger body, `Expect`, `Upgrade`, `CONNECT`,
//! a head that does not parse or is too large), is handed to hyper together
//! with the bytes read so far, and hyper serves it from then on: it streams
//! the body, sends `100 Continue`, and answers a malformed head with its 400
//! or 431.
//!
//! Between requests the connection holds no buffer: reads land in a scratch
//! buffer of the thread and only the bytes of a request are copied out, and
//! an answer is written from a buffer the thread lends for the time it takes.
//! The idle deadline (`timeouts.idle`, which also bounds a new connection's
//! wait for its first byte) is a [`LazyDeadline`]: one timer per connection,
//! re-armed only when it fires early.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::header;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::body::{ClientBody, ResponseBody};
use super::deadline::LazyDeadline;
use super::exchange::{
    content_length, header_fields, poll_read_scratch, push_decimal, push_field, HeaderSpan,
    MAX_HEADERS,
};
use super::fields::WireFields;
use super::forward::{Downstream, Proxy};

/// Request bodies up to this size are read whole with their head; a larger
/// one hands the connection to hyper, which streams it.
pub const WHOLE_BODY_BYTES: u64 = 64 * 1024;

/// Body pieces up to this size are copied after the head or the previous
/// piece, so that small answers go out in one write; larger ones are written
/// from where they are.
const COPY_BYTES: usize = 16 * 1024;

/// What a connection is served with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Bytes a request head may take (`limits.max_header_bytes`).
    pub max_head_bytes: usize,
    /// How long a connection may wait for a request head (`timeouts.idle`).
    pub idle: Duration,
}

/// How a connection left this module.
pub enum Served<S> {
    /// It is closed, or is to be dropped: the client left, the idle deadline
    /// passed, the proxy is shutting down, or writing failed.
    Closed,
    /// hyper is to serve it from here, starting with the bytes already read.
    HandOver {
        /// The client's stream.
        stream: S,
        /// What was read from it and not served.
        read: Bytes,
    },
}

/// One client connection between its requests.
pub struct ClientConnection<S> {
    stream: S,
    /// Bytes read and not served yet: empty between requests.
    read: BytesMut,
    settings: Settings,
    /// When the wait for the next request head ends (`settings.idle` after
    /// the last answer, or after the accept).
    idle: LazyDeadline,
    /// Resolves once the proxy begins to shut down. Polled once, which
    /// registers the connection's task to be woken then; after that
    /// `shutdown` is read instead, which costs an atomic load.
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    stop_registered: bool,
    shutdown: watch::Receiver<bool>,
}

/// What waiting for more of a request came to.
enum Wait {
    /// Bytes arrived.
    Bytes,
    /// The connection is to close: end of stream, an error, the idle
    /// deadline or shutdown.
    Close,
}

/// The next request in the buffer, if it is one this module serves.
// Returned once per request and taken apart at once: boxing the request
// would cost an allocation for no memory saved.
#[allow(clippy::large_enum_variant)]
enum Next {
    /// A request, with what its connection needs to know about it.
    Request(Request<ClientBody>, Asked),
    /// The head or the body is not all here yet.
    NeedMore,
    /// Something for hyper to serve.
    HandOver,
}

/// What the client asked of the connection.
#[derive(Debug, Clone, Copy)]
struct Asked {
    /// The client did not say `Connection: close`.
    keep_alive: bool,
    /// A `HEAD` request: the answer has no body, whatever its headers say.
    head: bool,
}

impl<S> ClientConnection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// A connection just accepted; its first request head is due within
    /// `settings.idle`.
    pub fn new(stream: S, settings: Settings, shutdown: watch::Receiver<bool>) -> Self {
        let mut stop_rx = shutdown.clone();
        Self {
            stream,
            read: BytesMut::new(),
            settings,
            idle: LazyDeadline::new(Instant::now() + settings.idle),
            stop: Box::pin(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            }),
            stop_registered: false,
            shutdown,
        }
    }

    /// Serves requests until the connection closes or is handed to hyper.
    pub async fn serve(mut self, proxy: &Arc<Proxy>, downstream: Downstream) -> Served<S> {
        loop {
            let (request, asked) = loop {
                match next_request(&mut self.read, self.settings.max_head_bytes) {
                    Next::Request(request, asked) => break (request, asked),
                    Next::HandOver => {
                        return Served::HandOver {
                            stream: self.stream,
                            read: self.read.freeze(),
                        }
                    }
                    Next::NeedMore => {}
                }
                if let Wait::Close = self.wait_for_bytes().await {
                    self.close().await;
                    return Served::Closed;
                }
            };

            // The request's future is boxed: held inline it would make every
            // connection, busy or idle, that much larger.
            let mut answer = Box::pin(Arc::clone(proxy).handle(request, downstream));
            let response = poll_fn(|cx| {
                if let Poll::Ready(response) = answer.as_mut().poll(cx) {
                    return Poll::Ready(Some(response));
                }
                if self.poll_client_gone(cx) {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            drop(answer);
            // A client that leaves before its answer cancels the request.
            let Some(response) = response else {
                return Served::Closed;
            };

            let keep_alive = asked.keep_alive && !self.stopping();
            match self.write_response(response, asked.head, keep_alive).await {
                Ok(true) => self.idle.set(Instant::now() + self.settings.idle),
                Ok(false) => {
                    self.close().await;
                    return Served::Closed;
                }
                Err(_) => return Served::Closed,
            }
        }
    }

    /// Waits for more bytes of a request, by the idle deadline, unless the
    /// proxy shuts down first.
    async fn wait_for_bytes(&mut self) -> Wait {
        poll_fn(|cx| {
            let Self { stream, read, .. } = self;
            match poll_read_scratch(Pin::new(stream), cx, |bytes| append(read, bytes)) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Wait::Close),
                Poll::Ready(Ok(_)) => return Poll::Ready(Wait::Bytes),
                Poll::Pending => {}
            }
            let stopped = if self.stop_registered {
                self.stopping()
            } else {
                self.stop_registered = true;
                self.stop.as_mut().poll(cx).is_ready()
            };
            if stopped || self.idle.poll_expired(cx).is_ready() {
                return Poll::Ready(Wait::Close);
            }
            Poll::Pending
        })
        .await
    }

    /// Whether the proxy is shutting down (or its shutdown signal is gone).
    /// The signal only ever changes to `true`, so a receiver that has seen
    /// no change has nothing to read.
    fn stopping(&self) -> bool {
        match self.shutdown.has_changed() {
            Ok(false) => false,
            Ok(true) => *self.shutdown.borrow(),
            Err(_) => true,
        }
    }

    /// Whether the client has closed its side (or its connection failed)
    /// while its request is being answered. Bytes it pipelines meanwhile are
    /// kept, up to one head's worth.
    fn poll_client_gone(&mut self, cx: &mut Context<'_>) -> bool {
        let max = self.settings.max_head_bytes;
        let Self { stream, read, .. } = self;
        while read.len() < max {
            match poll_read_scratch(Pin::new(&mut *stream), cx, |bytes| append(read, bytes)) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return true,
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => return false,
            }
        }
        false
    }

    /// Writes one answer; resolves to whether the connection stays open.
    async fn write_response(
        &mut self,
        response: Response<ResponseBody>,
        head_request: bool,
        keep_alive: bool,
    ) -> io::Result<bool> {
        let (parts, mut body) = response.into_parts();
        let mut out = Lent::take();
        let status = parts.status;
        let bodiless = head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let wire = body.take_wire_fields();
        let fields = encode_fields(&mut out.buf, &parts, wire.as_ref());
        let framing = if bodiless {
            Framing::None
        } else if fields.length {
            Framing::Length { declare: None }
        } else if let Some(n) = body.size_hint().exact() {
            Framing::Length { declare: Some(n) }
        } else {
            Framing::Chunked
        };
        end_head(&mut out.buf, fields, framing, keep_alive);

        let mut ended = bodiless || body.is_end_stream();
        let mut trailers_sent = false;
        while !ended {
            let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
            let frame = match polled {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    // Nothing more yet: send what is ready before waiting.
                    self.send(&mut out.buf, None).await?;
                    poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
                }
            };
            let frame = match frame {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(_)) => {
                    // The answer is cut: what arrived is sent, then the
                    // connection closes, so the client sees it unfinished.
                    let _ = self.send(&mut out.buf, None).await;
                    return Ok(false);
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    ended = body.is_end_stream();
                    if data.is_empty() {
                        continue;
                    }
                    if framing == Framing::Chunked {
                        push_chunk_size(&mut out.buf, data.len());
                    }
                    if data.len() <= COPY_BYTES {
                        out.buf.extend_from_slice(&data);
                    } else {
                        self.send(&mut out.buf, Some(&data)).await?;
                    }
                    if framing == Framing::Chunked {
                        out.buf.extend_from_slice(b"\r\n");
                    }
                }
                Err(frame) => {
                    if let (Framing::Chunked, Ok(trailers)) = (framing, frame.into_trailers()) {
                        out.buf.extend_from_slice(b"0\r\n");
                        for (name, value) in &trailers {
                            push_field(&mut out.buf, name, value.as_bytes());
                        }
                        out.buf.extend_from_slice(b"\r\n");
                        trailers_sent = true;
                    }
                }
            }
        }
        if framing == Framing::Chunked && !trailers_sent {
            out.buf.extend_from_slice(b"0\r\n\r\n");
        }
        // The body goes first: its end returns the instance's connection to
        // its pool and ends the request's in-flight count.
        drop(body);
        self.send(&mut out.buf, None).await?;
        self.stream.flush().await?;
        Ok(keep_alive)
    }

    /// Writes `buf` and then `data`, in one system call when the stream
    /// takes both, and empties `buf`.
    async fn send(&mut self, buf: &mut Vec<u8>, data: Option<&Bytes>) -> io::Result<()> {
        match data {
            None if buf.is_empty() => Ok(()),
            None => {
                self.stream.write_all(buf).await?;
                buf.clear();
                Ok(())
            }
            Some(data) => {
                let mut both = (&buf[..]).chain(&data[..]);
                self.stream.write_all_buf(&mut both).await?;
                buf.clear();
                Ok(())
            }
        }
    }

    /// Closes the stream cleanly (a TLS stream sends its close notice),
    /// giving up after the idle timeout on a client that does not read.
    async fn close(&mut self) {
        let _ = tokio::time::timeout(self.settings.idle, self.stream.shutdown()).await;
    }
}

/// Appends freshly read bytes; an empty buffer takes a new allocation of
/// their size, so nothing of the previous request's is kept.
fn append(read: &mut BytesMut, bytes: &[u8]) {
    if read.is_empty() {
        *read = BytesMut::from(bytes);
    } else {
        read.extend_from_slice(bytes);
    }
}

/// How an answer's body is delimited on the client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body is sent.
    None,
    /// By `Content-Length`: the answer's own, or `declare`, the body's
    /// known size, written here.
    Length { declare: Option<u64> },
    /// The chunked transfer coding: the size is not known in advance.
    Chunked,
}

/// Which of the headers an answer's head gets from this connection it
/// carries already.
#[derive(Debug, Clone, Copy)]
struct Fields {
    /// `Content-Length`.
    length: bool,
    /// `Date`.
    date: bool,
}

/// The answer's status line and its own header lines: those still in the
/// instance's wire form first, then the map's. The lines it lacks are noted
/// on the way, which spares a lookup in the map for each.
fn encode_fields(
    buf: &mut Vec<u8>,
    parts: &http::response::Parts,
    wire: Option<&WireFields>,
) -> Fields {
    if parts.status == StatusCode::OK {
        // Most answers: one constant, copied inline.
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        buf.extend_from_slice(b"HTTP/1.1 ");
        buf.extend_from_slice(parts.status.as_str().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(
            parts
                .status
                .canonical_reason()
                .unwrap_or("Unknown")
                .as_bytes(),
        );
        buf.extend_from_slice(b"\r\n");
    }
    let mut fields = Fields {
        length: false,
        date: false,
    };
    if let Some(wire) = wire {
        wire.write_to(buf);
        fields.length = wire.length;
        fields.date = wire.date;
    }
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            fields.length = true;
        } else if name == header::DATE {
            fields.date = true;
        }
        push_field(buf, name, value.as_bytes());
    }
    fields
}

/// What this connection adds to the head (`Date`, the framing,
/// `Connection: close`), and the blank line that ends it.
fn end_head(buf: &mut Vec<u8>, fields: Fields, framing: Framing, keep_alive: bool) {
    if !fields.date {
        push_date(buf);
    }
    match framing {
        Framing::Length { declare: Some(n) } => {
            buf.extend_from_slice(b"content-length: ");
            push_decimal(buf, n);
            buf.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None | Framing::Length { declare: None } => {}
    }
    if !keep_alive {
        buf.extend_from_slice(b"connection: close\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

fn push_chunk_size(buf: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        buf.push(HEX[(len >> (i * 4)) & 0xf]);
    }
    buf.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `Date` value of the current second, formatted once per second.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [0; 29])) };
    /// A write buffer for whichever connection of the thread answers next.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

fn push_date(buf: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == date.1.len() {
                date.1.copy_from_slice(text.as_bytes());
                date.0 = second;
            }
        }
        if date.0 == second {
            buf.extend_from_slice(b"date: ");
            buf.extend_from_slice(&date.1);
            buf.extend_from_slice(b"\r\n");
        }
    });
}

/// A write buffer lent by the thread for one answer and given back after it,
/// so that neither an idle connection nor every answer allocates one.
struct Lent {
    buf: Vec<u8>,
}

impl Lent {
    /// The thread's spare buffer, or a new one if another answer has it.
    fn take() -> Self {
        let mut buf = SPARE.with(Cell::take);
        if buf.capacity() == 0 {
            buf.reserve(4096);
        }
        Self { buf }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // A buffer grown by a large answer is not kept.
        if self.buf.capacity() <= 4 * COPY_BYTES {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            SPARE.with(|spare| spare.set(buf));
        }
    }
}

/// Takes the next request off the front of `read` when it is one this
/// module serves.
fn next_request(read: &mut BytesMut, max_head_bytes: usize) -> Next {
    if read.is_empty() {
        return Next::NeedMore;
    }
    SPANS.with(|spans| {
        let spans = &mut *spans.borrow_mut();
        let parsed = match parse_request_head(read, spans) {
            Ok(Some(parsed)) => parsed,
            Ok(None) if read.len() < max_head_bytes => return Next::NeedMore,
            Ok(None) | Err(()) => return Next::HandOver,
        };
        if parsed.len > max_head_bytes {
            return Next::HandOver;
        }
        // Before waiting for a body: its length, and the headers that make
        // the request hyper's (a client sending `Expect` waits for hyper's
        // `100 Continue` before its body). The rest are read once, as the map
        // is built; only `Connection` and `Content-Length` matter there.
        let mut declared = None;
        for span in spans.iter() {
            let name = &read[span.name.0..span.name.1];
            if name.eq_ignore_ascii_case(b"content-length") {
                if content_length(read, span.value.0, span.value.1, &mut declared).is_err() {
                    return Next::HandOver;
                }
            } else if name.eq_ignore_ascii_case(b"expect")
                || name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"upgrade")
            {
                return Next::HandOver;
            }
        }
        let body_len = declared.unwrap_or(0);
        if body_len > WHOLE_BODY_BYTES {
            return Next::HandOver;
        }
        let body_len = body_len as usize;
        if read.len() < parsed.len + body_len {
            return Next::NeedMore;
        }

        let head = read.split_to(parsed.len).freeze();
        let built = Uri::from_maybe_shared(head.slice(parsed.target.0..parsed.target.1))
            .ok()
            // No room for more: the forwarding headers are written beside
            // the map (`headers::Forwarding`).
            .zip(header_fields(&head, spans, 0).ok());
        let Some((uri, (headers, info))) = built else {
            // A target or a header line that does not parse: put the head
            // back for hyper, which answers it with a 400.
            let mut all = BytesMut::with_capacity(head.len() + read.len());
            all.extend_from_slice(&head);
            all.extend_from_slice(read);
            *read = all;
            return Next::HandOver;
        };
        let body = read.split_to(body_len).freeze();
        let asked = Asked {
            keep_alive: !info.close,
            head: parsed.method == Method::HEAD,
        };
        let mut request = Request::new(ClientBody::Whole(body));
        *request.method_mut() = parsed.method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        Next::Request(request, asked)
    })
}

thread_local! {
    /// Where the header lines of the head being parsed lie: parsing never
    /// waits, so one list serves every connection of the thread.
    static SPANS: RefCell<Vec<HeaderSpan>> = RefCell::new(Vec::with_capacity(32));
}

/// A request head parsed at the start of a buffer.
struct ParsedHead {
    /// Bytes the head takes, final blank line included.
    len: usize,
    method: Method,
    /// Where the request target lies.
    target: (usize, usize),
}

/// Parses an HTTP/1.1 request head at the start of `buf`, leaving its header
/// lines' places in `spans`: `None` while incomplete, `Err` for anything this
/// module leaves to hyper (another version, `CONNECT`, a malformed head).
fn parse_request_head(buf: &[u8], spans: &mut Vec<HeaderSpan>) -> Result<Option<ParsedHead>, ()> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    if request.version != Some(1) {
        return Err(());
    }
    let method = request.method.ok_or(())?;
    if method == "CONNECT" {
        return Err(());
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| ())?;
    let base = buf.as_ptr() as usize;
    let span = |part: &[u8]| {
        let start = part.as_ptr() as usize - base;
        (start, start + part.len())
    };
    let target = span(request.path.ok_or(())?.as_bytes());
    spans.clear();
    for line in request.headers.iter() {
        spans.push(HeaderSpan {
            name: span(line.name.as_bytes()),
            value: span(line.value),
        });
    }
    Ok(Some(ParsedHead {
        len,
        method,
        target,
    }))
}

/// A client stream with bytes already read from it put back in front.
pub struct Rewound<S> {
    read: Bytes,
    inner: S,
}

impl<S> Rewound<S> {
    /// `inner`, whose next reads return `read` first.
    pub fn new(inner: S, read: Bytes) -> Self {
        Self { read, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(text: &str) -> BytesMut {
        BytesMut::from(text.as_bytes())
    }

    fn taken(read: &mut BytesMut) -> (Request<ClientBody>, Asked) {
        match next_request(read, 64 * 1024) {
            Next::Request(request, asked) => (request, asked),
            Next::NeedMore => panic!("the request is complete"),
            Next::HandOver => panic!("the request is one this module serves"),
        }
    }

    #[test]
    fn takes_a_request_and_leaves_the_next_in_the_buffer() {
        let mut read = buffer(
            "GET /a?b=c HTTP/1.1\r\nHost: app\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nAccept: */*\r\n\r\nGET /next",
        );

        let (request, asked) = taken(&mut read);

        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/a?b=c");
        assert_eq!(request.headers()["host"], "app");
        assert_eq!(request.headers()["accept"], "*/*");
        assert!(
            !request.headers().contains_key("connection")
                && !request.headers().contains_key("x-hop"),
            "hop-by-hop headers stay on this hop"
        );
        assert!(!asked.keep_alive, "the client asked to close");
        assert_eq!(&read[..], b"GET /next");
        assert!(matches!(next_request(&mut read, 64 * 1024), Next::NeedMore));
    }

    #[test]
    fn waits_for_the_whole_body_and_takes_it_with_the_head() {
        let mut read = buffer("PUT /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel");
        assert!(matches!(next_request(&mut read, 64 * 1024), Next::NeedMore));
        read.extend_from_slice(b"lo");

        let (request, _) = taken(&mut read);

        match request.body() {
            ClientBody::Whole(body) => assert_eq!(&body[..], b"hello"),
            ClientBody::Streaming(_) => panic!("a small body is read whole"),
        }
        assert!(read.is_empty());
    }

    #[test]
    fn hands_hyper_what_it_does_not_serve_with_every_byte_kept() {
        let cases = [
            "GET / HTTP/1.0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "CONNECT app:443 HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\n\r\n",
        ];
        for case in cases {
            let mut read = buffer(case);
            assert!(
                matches!(next_request(&mut read, 64 * 1024), Next::HandOver),
                "{case:?} goes to hyper"
            );
            assert_eq!(&read[..], case.as_bytes(), "hyper gets {case:?} whole");
        }
    }

    #[test]
    fn a_head_over_the_limit_goes_to_hyper_which_refuses_it() {
        let mut read = buffer(&format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(9000)));
        assert!(matches!(next_request(&mut read, 8192), Next::HandOver));
        let mut read = buffer("GET / HTTP/1.1\r\nX-Small: a");
        assert!(matches!(next_request(&mut read, 8192), Next::NeedMore));
    }

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        for (len, text) in [
            (1, "1"),
            (15, "f"),
            (16, "10"),
            (4096, "1000"),
            (65535, "ffff"),
        ] {
            let mut buf = Vec::new();
            push_chunk_size(&mut buf, len);
            assert_eq!(buf, format!("{text}\r\n").into_bytes());
        }
    }

    #[test]
    fn the_head_says_how_the_body_is_framed_and_whether_the_connection_stays() {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.headers.insert(
            header::DATE,
            "Thu, 03 Dec 2026 00:00:00 GMT".parse().expect("a date"),
        );
        let mut out = Vec::new();
        let fields = encode_fields(&mut out, &parts, None);
        assert!(fields.date && !fields.length);
        end_head(
            &mut out,
            fields,
            Framing::Length { declare: Some(12) },
            true,
        );
        assert_eq!(
            String::from_utf8(out).expect("a head is text"),
            "HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 00:00:00 GMT\r\ncontent-length: 12\r\n\r\n"
        );

        let mut out = Vec::new();
        parts.status = StatusCode::BAD_GATEWAY;
        let fields = encode_fields(&mut out, &parts, None);
        end_head(&mut out, fields, Framing::Chunked, false);
        assert_eq!(
            String::from_utf8(out).expect("a head is text"),
            "HTTP/1.1 502 Bad Gateway\r\ndate: Thu, 03 Dec 2026 00:00:00 GMT\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
    }
}
