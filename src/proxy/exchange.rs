//! A direct HTTP/1.1 exchange with an instance, driven by the request's own task.
//!
//! hyper's client runs every connection as a task of its own, which the
//! request reaches through channels: handing over the request, getting the
//! answer back and every chunk of its body each cost a wake-up and a poll of
//! another task. When the request's body is already in memory (empty, or
//! buffered for retries: nearly every request) none of that is needed. The
//! request's task writes head and body (in one write when the body is small)
//! and reads the answer's head by the try's deadline; the response body then
//! reads the rest straight from the socket each time the client's connection
//! asks for more. Streamed uploads, whose body
//! must flow while the answer may already be arriving, still go through
//! hyper's client (`upstream`).
//!
//! What is spoken (RFC 9112): requests in origin form with `Content-Length`
//! framing; answers framed by `Content-Length`, by the chunked transfer coding
//! or by the end of the connection; interim 1xx answers skipped; the
//! connection kept open unless the answer or its framing says otherwise.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, response, Method, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::deadline::LazyDeadline;
use super::fields::{Scanned, WireFields};
use super::headers::{self, Forwarding};

/// Header lines an answer may carry, as in hyper.
pub(super) const MAX_HEADERS: usize = 100;

/// Headers the proxy adds to an answer on its way back: `Via`,
/// `x-request-id`, and at times `Set-Cookie` and `Date`.
const ANSWER_ROOM: usize = 4;

/// Bytes an answer's head may take before the answer is refused.
const MAX_HEAD_BYTES: usize = 256 * 1024;

/// Bytes a chunk-size line or a trailer line may take before the answer is refused.
const MAX_LINE_BYTES: usize = 8 * 1024;

/// Bytes one read takes from the socket at most: the size of each thread's
/// scratch buffer.
const READ_BYTES: usize = 64 * 1024;

/// Request bodies up to this size go out in the same write as the head.
const INLINE_BODY_BYTES: usize = 16 * 1024;

/// Capacity a connection's read buffer starts with: room for many small
/// answers before it must be replaced.
const READ_BUFFER_BYTES: usize = 8 * 1024;

thread_local! {
    /// Where reads land before they are appended to a connection's buffer.
    /// Reading into initialised memory keeps this crate free of `unsafe`; one
    /// buffer per thread serves every connection, since a read never waits
    /// while it holds it.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BYTES].into_boxed_slice());
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The request could not be written.
    #[error("writing the request failed: {0}")]
    Write(#[source] io::Error),
    /// The connection failed before any byte of the answer arrived.
    #[error("the connection failed before the answer: {0}")]
    ResetBeforeAnswer(#[source] io::Error),
    /// The instance closed the connection without answering.
    #[error("the instance closed the connection without answering")]
    ClosedBeforeAnswer,
    /// Reading the answer failed after some of it had arrived.
    #[error("reading the answer failed: {0}")]
    Read(#[source] io::Error),
    /// The instance closed the connection in the middle of its answer.
    #[error("the instance closed the connection in the middle of its answer")]
    Closed,
    /// The answer is not valid HTTP/1.1.
    #[error("invalid answer from the instance: {0}")]
    Invalid(&'static str),
    /// The try's deadline passed before the answer's head arrived.
    #[error("no answer before the deadline")]
    TimedOut,
}

impl ExchangeError {
    /// Whether the instance never began to answer: on a connection that sat
    /// idle in a pool, the instance most likely closed it before reading the
    /// request, which may then be sent again on a fresh connection.
    pub fn unanswered(&self) -> bool {
        matches!(
            self,
            ExchangeError::Write(_)
                | ExchangeError::ResetBeforeAnswer(_)
                | ExchangeError::ClosedBeforeAnswer
        )
    }
}

/// One HTTP/1.1 connection to an instance, idle between exchanges.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// Bytes read from the instance and not consumed yet.
    read: BytesMut,
    /// The request head being written, kept from one request to the next.
    write: Vec<u8>,
    /// Where the header lines of the answer being parsed lie in `read`.
    spans: Vec<HeaderSpan>,
    /// The deadline of the exchange under way, kept from one exchange to the
    /// next: a new timer per request would cost an insertion into tokio's
    /// timer wheel and a removal, each under its lock, and a moved one only
    /// touches the timer when it moves earlier.
    deadline: Option<LazyDeadline>,
    /// The header lines of the answer being passed on, in the form the
    /// instance wrote them, until the client's side takes them. Kept here,
    /// behind the connection's box, so that the response moving through
    /// the request path stays small.
    fields: Option<WireFields>,
}

/// Where one header line's name and value lie in a head being parsed.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeaderSpan {
    pub(super) name: (usize, usize),
    pub(super) value: (usize, usize),
}

/// How an answer's body is delimited.
#[derive(Debug)]
pub enum Framing {
    /// No body: `HEAD`, 204, 304, or `Content-Length: 0` once read.
    Empty,
    /// `Content-Length`: the bytes still to come.
    Length(u64),
    /// The chunked transfer coding, at this point of its grammar.
    Chunked(Chunked),
    /// Until the instance closes the connection (HTTP/1.0 style).
    UntilClose,
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk, with this many bytes left.
    Data(u64),
    /// After a chunk's data, at its closing CRLF.
    DataEnd,
    /// After the last chunk, at the trailer section (discarded).
    Trailers,
    /// The body ended.
    Done,
}

/// An answer's head, and how to read its body.
#[derive(Debug)]
pub struct Answer {
    /// Status and version as the instance sent them; the headers too unless
    /// the connection holds them in wire form ([`Connection::fields_mut`]).
    pub head: response::Parts,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request once the body is read.
    pub keep_alive: bool,
}

impl Connection {
    /// A connection over a freshly connected stream.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            read: BytesMut::with_capacity(READ_BUFFER_BYTES),
            write: Vec::with_capacity(512),
            spans: Vec::with_capacity(16),
            deadline: None,
            fields: None,
        }
    }

    /// The current answer's header lines in wire form; `None` once taken,
    /// or when the answer's head was read into its header map.
    pub fn fields_mut(&mut self) -> &mut Option<WireFields> {
        &mut self.fields
    }

    /// Whether this idle connection should not be used again: the instance
    /// closed it or sent something unasked, as far as the reactor has seen.
    /// Without an event since the last read, this makes no system call.
    pub fn is_stale(&self) -> bool {
        if !self.read.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends a request whose body is in memory and reads the answer's head
    /// by `deadline`; interim (1xx) answers are skipped. `parts.uri` may be in
    /// any form: the request line carries its path and query.
    pub async fn send(
        &mut self,
        parts: &request::Parts,
        forwarding: Option<&Forwarding>,
        body: &Bytes,
        deadline: Instant,
    ) -> Result<Answer, ExchangeError> {
        let mut timer = match self.deadline.take() {
            Some(mut timer) => {
                timer.set(deadline);
                timer
            }
            None => LazyDeadline::new(deadline),
        };
        let answer = {
            let exchange = self.exchange(parts, forwarding, body);
            let mut exchange = std::pin::pin!(exchange);
            poll_fn(|cx| {
                if let Poll::Ready(answer) = exchange.as_mut().poll(cx) {
                    return Poll::Ready(answer);
                }
                ready!(timer.poll_expired(cx));
                Poll::Ready(Err(ExchangeError::TimedOut))
            })
            .await
        };
        self.deadline = Some(timer);
        answer
    }

    async fn exchange(
        &mut self,
        parts: &request::Parts,
        forwarding: Option<&Forwarding>,
        body: &Bytes,
    ) -> Result<Answer, ExchangeError> {
        encode_request(&mut self.write, parts, forwarding, body);
        if body.len() <= INLINE_BODY_BYTES {
            self.write.extend_from_slice(body);
            self.stream
                .write_all(&self.write)
                .await
                .map_err(ExchangeError::Write)?;
        } else {
            self.stream
                .write_all(&self.write)
                .await
                .map_err(ExchangeError::Write)?;
            self.stream
                .write_all(body)
                .await
                .map_err(ExchangeError::Write)?;
        }
        let mut received = false;
        loop {
            let (len, status, version) = loop {
                if let Some(parsed) = parse_head(&self.read, &mut self.spans)? {
                    break parsed;
                }
                if self.read.len() > MAX_HEAD_BYTES {
                    return Err(ExchangeError::Invalid("head too large"));
                }
                match poll_fn(|cx| self.poll_fill(cx)).await {
                    Ok(0) if received => return Err(ExchangeError::Closed),
                    Ok(0) => return Err(ExchangeError::ClosedBeforeAnswer),
                    Ok(_) => received = true,
                    Err(e) if received => return Err(ExchangeError::Read(e)),
                    Err(e) => return Err(ExchangeError::ResetBeforeAnswer(e)),
                }
            };
            let head = self.read.split_to(len).freeze();
            if (100..200).contains(&status) {
                if status == 101 {
                    // Upgrades are never asked for: `Upgrade` is hop-by-hop.
                    return Err(ExchangeError::Invalid("unrequested protocol switch"));
                }
                continue;
            }
            let status =
                StatusCode::from_u16(status).map_err(|_| ExchangeError::Invalid("status code"))?;
            let (headers, fields, info) = match WireFields::scan(&head, &self.spans)? {
                // The proxy's own headers join the wire-form lines: the
                // map stays empty and unallocated.
                Scanned::Wire(fields, info) => (HeaderMap::new(), Some(fields), info),
                Scanned::NeedsMap => {
                    let (headers, info) = header_fields(&head, &self.spans, ANSWER_ROOM)?;
                    (headers, None, info)
                }
            };
            let (framing, framed_keep_alive) = framing(&parts.method, status, &info);
            let keep_alive = framed_keep_alive && persistent(version, &info);
            let (mut answer, ()) = Response::new(()).into_parts();
            answer.status = status;
            answer.version = version;
            answer.headers = headers;
            self.fields = fields;
            return Ok(Answer {
                head: answer,
                framing,
                keep_alive,
            });
        }
    }

    /// Reads what the socket has into the buffer: the bytes read, 0 at the
    /// end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Self { stream, read, .. } = self;
        poll_read_scratch(Pin::new(stream), cx, |bytes| read.extend_from_slice(bytes))
    }

    /// The next piece of the body: `None` at its end. After the end, the
    /// connection is clean (nothing unread) when it can be reused.
    pub fn poll_body(
        &mut self,
        framing: &mut Framing,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, ExchangeError>>> {
        loop {
            match framing {
                Framing::Empty | Framing::Length(0) | Framing::Chunked(Chunked::Done) => {
                    return Poll::Ready(None);
                }
                Framing::Length(left) => {
                    if !self.read.is_empty() {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(self.read.len());
                        *left -= n as u64;
                        return Poll::Ready(Some(Ok(self.read.split_to(n).freeze())));
                    }
                }
                Framing::UntilClose => {
                    if !self.read.is_empty() {
                        return Poll::Ready(Some(Ok(self.read.split().freeze())));
                    }
                }
                Framing::Chunked(state) => match step_chunked(state, &mut self.read)? {
                    Step::Data(data) => return Poll::Ready(Some(Ok(data))),
                    Step::Again => continue,
                    Step::NeedMore => {}
                },
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) if matches!(framing, Framing::UntilClose) => {
                    *framing = Framing::Empty;
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(ExchangeError::Closed))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(ExchangeError::Read(e)))),
            }
        }
    }

    /// Whether nothing is left unread after an answer ended.
    pub fn is_clean(&self) -> bool {
        self.read.is_empty()
    }
}

impl Framing {
    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        matches!(
            self,
            Framing::Empty | Framing::Length(0) | Framing::Chunked(Chunked::Done)
        )
    }

    /// The body bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Framing::Empty => Some(0),
            Framing::Length(left) => Some(*left),
            Framing::Chunked(Chunked::Done) => Some(0),
            _ => None,
        }
    }
}

/// Reads what `stream` has into this thread's scratch buffer and hands the
/// bytes to `take`: the count read, 0 at the end of the stream.
pub(super) fn poll_read_scratch<S: AsyncRead>(
    stream: Pin<&mut S>,
    cx: &mut Context<'_>,
    take: impl FnOnce(&[u8]),
) -> Poll<io::Result<usize>> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let mut buf = ReadBuf::new(&mut scratch[..]);
        ready!(stream.poll_read(cx, &mut buf))?;
        take(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    })
}

/// What one step of the chunked decoder produced.
enum Step {
    /// A piece of a chunk's data.
    Data(Bytes),
    /// The decoder moved on; step again.
    Again,
    /// The buffer holds too little; read more.
    NeedMore,
}

fn step_chunked(state: &mut Chunked, read: &mut BytesMut) -> Result<Step, ExchangeError> {
    match *state {
        Chunked::Size => match httparse::parse_chunk_size(read) {
            Ok(httparse::Status::Complete((consumed, size))) => {
                read.advance(consumed);
                *state = if size == 0 {
                    Chunked::Trailers
                } else {
                    Chunked::Data(size)
                };
                Ok(Step::Again)
            }
            Ok(httparse::Status::Partial) if read.len() <= MAX_LINE_BYTES => Ok(Step::NeedMore),
            _ => Err(ExchangeError::Invalid("chunk size")),
        },
        Chunked::Data(left) => {
            if read.is_empty() {
                return Ok(Step::NeedMore);
            }
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(read.len());
            let left = left - n as u64;
            *state = if left == 0 {
                Chunked::DataEnd
            } else {
                Chunked::Data(left)
            };
            Ok(Step::Data(read.split_to(n).freeze()))
        }
        Chunked::DataEnd => {
            if read.len() < 2 {
                return Ok(Step::NeedMore);
            }
            if &read[..2] != b"\r\n" {
                return Err(ExchangeError::Invalid("chunk end"));
            }
            read.advance(2);
            *state = Chunked::Size;
            Ok(Step::Again)
        }
        Chunked::Trailers => match read.windows(2).position(|w| w == b"\r\n") {
            // TODO: trailer fields are read and dropped, not forwarded; passing
            // them on needs a trailers frame at the end of the response body.
            Some(0) => {
                read.advance(2);
                *state = Chunked::Done;
                Ok(Step::Again)
            }
            Some(end) => {
                read.advance(end + 2);
                Ok(Step::Again)
            }
            None if read.len() <= MAX_LINE_BYTES => Ok(Step::NeedMore),
            None => Err(ExchangeError::Invalid("trailer line")),
        },
        Chunked::Done => Ok(Step::Again),
    }
}

/// Writes the request line and headers, with the forwarding headers after
/// the client's. `Content-Length` is written from the body held, whatever
/// the client declared: the body was read whole.
fn encode_request(
    out: &mut Vec<u8>,
    parts: &request::Parts,
    forwarding: Option<&Forwarding>,
    body: &Bytes,
) {
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut declared = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            declared = true;
            continue;
        }
        if forwarding.is_some_and(|f| f.replaces(name)) {
            continue;
        }
        push_field(out, name, value.as_bytes());
    }
    if let Some(forwarding) = forwarding {
        forwarding.write_to(out);
    }
    let body_expected = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    if declared || body_expected || !body.is_empty() {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one header line.
pub(super) fn push_field(out: &mut Vec<u8>, name: &HeaderName, value: &[u8]) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
pub(super) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Parses an answer's head at the start of `buf`: its length, status and
/// version, with the header lines' places left in `spans`. `None` while the
/// head is incomplete.
pub(super) fn parse_head(
    buf: &[u8],
    spans: &mut Vec<HeaderSpan>,
) -> Result<Option<(usize, u16, Version)>, ExchangeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ExchangeError::Invalid("too many headers"))
        }
        Err(_) => return Err(ExchangeError::Invalid("malformed head")),
    };
    let base = buf.as_ptr() as usize;
    let span = |part: &[u8]| {
        let start = part.as_ptr() as usize - base;
        (start, start + part.len())
    };
    spans.clear();
    for line in response.headers.iter() {
        spans.push(HeaderSpan {
            name: span(line.name.as_bytes()),
            value: span(line.value),
        });
    }
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let status = response.code.ok_or(ExchangeError::Invalid("status code"))?;
    Ok(Some((len, status, version)))
}

/// What a head's connection and framing headers say, read as its lines
/// become a header map.
#[derive(Debug, Default)]
pub(super) struct HopInfo {
    /// `Connection: close`.
    pub(super) close: bool,
    /// `Connection: keep-alive`.
    pub(super) keep_alive: bool,
    /// Whether the last coding of the last `Transfer-Encoding` line is
    /// chunked; `None` without that header.
    pub(super) chunked_last: Option<bool>,
    /// `Content-Length`, every line and list item agreeing.
    pub(super) length: Option<u64>,
}

impl HopInfo {
    /// Reads a `Connection` value at `start..end` of `head`: whether it
    /// names headers of this hop besides its `close` and `keep-alive` options.
    pub(super) fn read_connection(&mut self, head: &[u8], start: usize, end: usize) -> bool {
        let mut names_listed = false;
        for (from, to) in items(head, start, end) {
            let token = &head[from..to];
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else {
                names_listed = true;
            }
        }
        names_listed
    }

    /// Reads a `Transfer-Encoding` value at `start..end` of `head`.
    pub(super) fn read_transfer_encoding(&mut self, head: &[u8], start: usize, end: usize) {
        let last = items(head, start, end).last();
        self.chunked_last =
            Some(last.is_some_and(|(from, to)| head[from..to].eq_ignore_ascii_case(b"chunked")));
    }
}

/// Reads the `Content-Length` value at `start..end` into `length`: every
/// list item must be a decimal number agreeing with what was seen before.
pub(super) fn content_length(
    head: &[u8],
    start: usize,
    end: usize,
    length: &mut Option<u64>,
) -> Result<(), ExchangeError> {
    for (from, to) in items(head, start, end) {
        let digits = &head[from..to];
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(ExchangeError::Invalid("content-length"));
        }
        let n = digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if length.is_some_and(|seen| seen != n) {
            return Err(ExchangeError::Invalid("conflicting content-length"));
        }
        *length = Some(n);
    }
    Ok(())
}

/// The header map of a parsed head, without its hop-by-hop headers (those of
/// RFC 9110 section 7.6.1 and those its `Connection` lines name), and what
/// those said. Values share the head's bytes. Each name is parsed once and
/// then told apart by comparing parsed names, which for the standard ones is
/// a comparison of two small numbers. The map has room for `room` more
/// headers without growing: a growth moves and rehashes every entry.
pub(super) fn header_fields(
    head: &Bytes,
    spans: &[HeaderSpan],
    room: usize,
) -> Result<(HeaderMap, HopInfo), ExchangeError> {
    let mut headers = HeaderMap::with_capacity(spans.len() + room);
    let mut info = HopInfo::default();
    let mut names_listed = false;
    for span in spans {
        let name = HeaderName::from_bytes(&head[span.name.0..span.name.1])
            .map_err(|_| ExchangeError::Invalid("header name"))?;
        let (start, end) = span.value;
        if name == header::CONNECTION {
            names_listed |= info.read_connection(head, start, end);
            continue;
        }
        if name == header::TRANSFER_ENCODING {
            info.read_transfer_encoding(head, start, end);
            continue;
        }
        if name == header::CONTENT_LENGTH {
            content_length(head, start, end, &mut info.length)?;
        } else if headers::is_hop_by_hop_name(&name) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| ExchangeError::Invalid("header value"))?;
        headers.append(name, value);
    }
    if names_listed {
        // Rare: a `Connection` line names headers of this hop.
        for span in spans {
            if !head[span.name.0..span.name.1].eq_ignore_ascii_case(b"connection") {
                continue;
            }
            for (from, to) in items(head, span.value.0, span.value.1) {
                if let Ok(listed) = HeaderName::from_bytes(&head[from..to]) {
                    headers.remove(listed);
                }
            }
        }
    }
    Ok((headers, info))
}

/// The comma-separated items of the value at `start..end`, trimmed of spaces
/// and tabs, empty ones skipped, as places in `head`.
pub(super) fn items(
    head: &[u8],
    start: usize,
    end: usize,
) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut at = start;
    std::iter::from_fn(move || {
        while at < end {
            let item_end = head[at..end]
                .iter()
                .position(|&b| b == b',')
                .map_or(end, |i| at + i);
            let (mut from, mut to) = (at, item_end);
            at = item_end + 1;
            while from < to && matches!(head[from], b' ' | b'\t') {
                from += 1;
            }
            while to > from && matches!(head[to - 1], b' ' | b'\t') {
                to -= 1;
            }
            if from < to {
                return Some((from, to));
            }
        }
        None
    })
}

/// How the body of an answer to `method` is delimited (RFC 9112 section 6.3),
/// and whether that framing lets the connection be reused.
fn framing(method: &Method, status: StatusCode, info: &HopInfo) -> (Framing, bool) {
    if method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return (Framing::Empty, true);
    }
    match (info.chunked_last, info.length) {
        // With both framings present the message may be a smuggling attempt:
        // read it by its transfer coding and close the connection after it.
        (Some(true), length) => (Framing::Chunked(Chunked::Size), length.is_none()),
        (Some(false), _) => (Framing::UntilClose, false),
        (None, Some(0)) => (Framing::Empty, true),
        (None, Some(n)) => (Framing::Length(n), true),
        (None, None) => (Framing::UntilClose, false),
    }
}

/// Whether the answer lets the connection stay open: HTTP/1.1 unless it says
/// `close`, HTTP/1.0 only if it says `keep-alive`.
fn persistent(version: Version, info: &HopInfo) -> bool {
    if version == Version::HTTP_10 {
        info.keep_alive && !info.close
    } else {
        !info.close
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, uri: &str, headers: &[(&str, &str)]) -> request::Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a valid request").into_parts().0
    }

    #[test]
    fn encodes_the_request_line_headers_and_length() {
        let mut out = Vec::new();
        let head = parts(
            Method::POST,
            "http://example.test/a?b=1",
            &[("host", "example.test"), ("content-length", "99")],
        );
        encode_request(&mut out, &head, None, &Bytes::from_static(b"hello"));
        assert_eq!(
            out,
            b"POST /a?b=1 HTTP/1.1\r\nhost: example.test\r\ncontent-length: 5\r\n\r\n"
        );
        encode_request(&mut out, &parts(Method::GET, "/", &[]), None, &Bytes::new());
        assert_eq!(
            out, b"GET / HTTP/1.1\r\n\r\n",
            "a GET without a body has no length"
        );
    }

    /// Parses a whole head: its header map and what it says of framing.
    fn parsed(text: &str) -> (HeaderMap, HopInfo) {
        let mut spans = Vec::new();
        let (len, _, _) = parse_head(text.as_bytes(), &mut spans)
            .expect("valid")
            .expect("complete");
        let head = Bytes::copy_from_slice(&text.as_bytes()[..len]);
        header_fields(&head, &spans, 0).expect("valid head")
    }

    #[test]
    fn parses_a_head_in_pieces() {
        let mut spans = Vec::new();
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nok\n";
        assert!(parse_head(&whole[..20], &mut spans)
            .expect("valid so far")
            .is_none());
        let (len, status, version) = parse_head(whole, &mut spans)
            .expect("valid")
            .expect("complete");
        assert_eq!(
            (len, status, version),
            (whole.len() - 3, 200, Version::HTTP_11)
        );
        let (headers, info) = parsed(std::str::from_utf8(whole).expect("ASCII"));
        assert_eq!(headers["content-length"], "3");
        assert_eq!(headers["x-a"], "b");
        assert_eq!(info.length, Some(3));
    }

    #[test]
    fn drops_hop_by_hop_headers_and_those_connection_names() {
        let (headers, info) = parsed(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n\
             x-hop: 1\r\nTransfer-Encoding: chunked\r\nX-Kept: 2\r\n\r\n",
        );
        assert!(info.keep_alive && !info.close);
        assert_eq!(info.chunked_last, Some(true));
        let names: Vec<_> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn frames_bodies_as_rfc_9112_says() {
        let head = |lines: &str| parsed(&format!("HTTP/1.1 200 OK\r\n{lines}\r\n")).1;
        let ok = StatusCode::OK;
        let (f, reuse) = framing(&Method::HEAD, ok, &head("content-length: 10\r\n"));
        assert!(
            matches!(f, Framing::Empty) && reuse,
            "HEAD answers have no body"
        );
        let (f, reuse) = framing(
            &Method::GET,
            ok,
            &head("transfer-encoding: gzip, chunked\r\n"),
        );
        assert!(matches!(f, Framing::Chunked(Chunked::Size)) && reuse);
        let (f, reuse) = framing(
            &Method::GET,
            ok,
            &head("transfer-encoding: chunked\r\ncontent-length: 3\r\n"),
        );
        assert!(
            matches!(f, Framing::Chunked(_)) && !reuse,
            "both framings: read as chunked, then close"
        );
        let (f, reuse) = framing(&Method::GET, ok, &head(""));
        assert!(matches!(f, Framing::UntilClose) && !reuse);
        let (f, _) = framing(&Method::GET, ok, &head("content-length: 7, 7\r\n"));
        assert!(matches!(f, Framing::Length(7)));
        for bad in ["3, 4", "+3", "3 4", "99999999999999999999"] {
            let text = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
            let mut spans = Vec::new();
            let (len, _, _) = parse_head(text.as_bytes(), &mut spans)
                .expect("valid")
                .expect("complete");
            let head = Bytes::copy_from_slice(&text.as_bytes()[..len]);
            assert!(
                header_fields(&head, &spans, 0).is_err(),
                "content-length {bad:?} is refused"
            );
        }
    }

    #[test]
    fn decodes_chunks_split_anywhere() {
        let wire = b"4;ext=1\r\nRust\r\n1\r\n!\r\n0\r\nx-trailer: 1\r\n\r\n";
        for split in 0..wire.len() {
            let mut read = BytesMut::from(&wire[..split]);
            let mut state = Chunked::Size;
            let mut body = Vec::new();
            let mut fed = split;
            loop {
                match step_chunked(&mut state, &mut read).expect("valid chunks") {
                    Step::Data(data) => body.extend_from_slice(&data),
                    Step::Again if state == Chunked::Done => break,
                    Step::Again => {}
                    Step::NeedMore => {
                        assert!(fed < wire.len(), "the decoder asked for bytes past the end");
                        read.extend_from_slice(&wire[fed..fed + 1]);
                        fed += 1;
                    }
                }
            }
            assert_eq!(body, b"Rust!", "split at {split}");
            assert!(read.is_empty(), "the trailers are consumed");
        }
    }

    #[test]
    fn persistence_follows_version_and_connection() {
        let info = |lines: &str| parsed(&format!("HTTP/1.1 200 OK\r\n{lines}\r\n")).1;
        assert!(persistent(Version::HTTP_11, &info("")));
        assert!(!persistent(
            Version::HTTP_11,
            &info("Connection: Close\r\n")
        ));
        assert!(!persistent(Version::HTTP_10, &info("")));
        assert!(persistent(
            Version::HTTP_10,
            &info("connection: keep-alive\r\n")
        ));
    }
}
