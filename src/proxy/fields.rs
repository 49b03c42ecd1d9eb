//! An answer's header lines kept in the form the instance wrote them.
//!
//! Building a header map costs a name lookup, a hash and an insertion per
//! line, and writing it out again a copy per line: about a seventh of what a
//! proxied request costs, for lines that an HTTP/1.1 client receives
//! unchanged. So the direct exchange only reads which lines an answer
//! carries: it notes the framing and connection headers, leaves out the
//! hop-by-hop ones (and `x-request-id`, which the proxy sets itself), and
//! keeps the rest as runs of whole lines in the answer's head. The client's
//! HTTP/1.1 connection copies those runs as they are; hyper's server, which
//! needs a map (HTTP/2, connections hyper took over), gets them parsed into
//! one ([`WireFields::merge_into`]).
//!
//! An answer whose `Connection` header names other headers, or whose kept
//! lines fall into more runs than [`MAX_RUNS`], is read into a map as before.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::warn;

use super::exchange::{content_length, push_field, ExchangeError, HeaderSpan, HopInfo};

/// Runs of consecutive kept lines an answer may have before its head is read
/// into a header map instead: every line left out between kept ones starts a
/// new run, and an answer usually leaves out one or two (`Connection`,
/// `Transfer-Encoding`).
pub const MAX_RUNS: usize = 6;

/// The longest name a header map takes. httparse has checked the rest of
/// what a map asks of a name or value (the characters), so the lines kept
/// always go into one.
const MAX_NAME_BYTES: usize = u16::MAX as usize;

/// The end-to-end header lines of an answer, as runs of whole lines of its
/// head.
#[derive(Clone)]
pub struct WireFields {
    /// The answer's head, shared with nothing that writes to it.
    head: Bytes,
    /// Each run as `start..end` in `head`: from the first line's name to the
    /// last line's value, lines within it separated by CRLF.
    runs: [(u32, u32); MAX_RUNS],
    /// How many of `runs` are in use.
    len: u8,
    /// Whether a `Date` line is among the kept ones.
    pub date: bool,
    /// Whether a `Content-Length` line is among the kept ones.
    pub length: bool,
    /// Headers the proxy sets on the answer (`Via`, `x-request-id`, at
    /// times `Set-Cookie`), written after the instance's lines: while the
    /// answer carries these, its header map need not be allocated.
    added: [Option<(ProxyHeader, HeaderValue)>; MAX_ADDED],
}

/// A header the proxy sets on the answers it passes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `Via`: this hop, after the instance's.
    Via,
    /// `x-request-id`: the request's, in place of any the instance sent.
    RequestId,
    /// `Set-Cookie`: the session-affinity cookie, beside the instance's.
    SetCookie,
}

impl ProxyHeader {
    /// The header's name.
    pub fn name(self) -> HeaderName {
        match self {
            ProxyHeader::Via => http::header::VIA,
            ProxyHeader::RequestId => super::headers::X_REQUEST_ID.clone(),
            ProxyHeader::SetCookie => http::header::SET_COOKIE,
        }
    }

    /// Whether the instance's lines of this name give way to the proxy's
    /// (else both are sent). [`WireFields::scan`] leaves those lines out.
    pub fn replaces(self) -> bool {
        self == ProxyHeader::RequestId
    }
}

/// Headers of the proxy's own an answer's wire-form lines take before
/// further ones go to its header map.
const MAX_ADDED: usize = 3;

/// What [`WireFields::scan`] found.
// Returned and taken apart at once, on the stack.
#[allow(clippy::large_enum_variant)]
pub(super) enum Scanned {
    /// The kept lines, and what the connection and framing headers said.
    Wire(WireFields, HopInfo),
    /// The answer needs a header map: a `Connection` line names headers to
    /// remove, or the kept lines are too scattered.
    NeedsMap,
}

impl WireFields {
    /// Reads the header lines at `spans` of `head` (an answer's head, as
    /// parsed by httparse, which has checked every name and value).
    pub(super) fn scan(head: &Bytes, spans: &[HeaderSpan]) -> Result<Scanned, ExchangeError> {
        let mut fields = WireFields {
            head: head.clone(),
            runs: [(0, 0); MAX_RUNS],
            len: 0,
            date: false,
            length: false,
            added: [const { None }; MAX_ADDED],
        };
        let mut info = HopInfo::default();
        for span in spans {
            let name = &head[span.name.0..span.name.1];
            if name.len() > MAX_NAME_BYTES {
                // Longer than a header map takes: refused as the map is built.
                return Ok(Scanned::NeedsMap);
            }
            let (start, end) = span.value;
            match Line::of(name) {
                Line::Connection => {
                    if info.read_connection(head, start, end) {
                        return Ok(Scanned::NeedsMap);
                    }
                    continue;
                }
                Line::TransferEncoding => {
                    info.read_transfer_encoding(head, start, end);
                    continue;
                }
                Line::Dropped => continue,
                Line::ContentLength => {
                    content_length(head, start, end, &mut info.length)?;
                    fields.length = true;
                }
                Line::Date => fields.date = true,
                Line::Kept => {}
            }
            // An empty value is written as the name and its colon alone.
            let line_end = if start == end { span.name.1 + 1 } else { end };
            if !fields.extend(span.name.0, line_end) {
                return Ok(Scanned::NeedsMap);
            }
        }
        Ok(Scanned::Wire(fields, info))
    }

    /// Adds the line at `start..end` to the last run if it follows it after
    /// a CRLF, else starts a run; false when no run is left.
    fn extend(&mut self, start: usize, end: usize) -> bool {
        let (start, end) = (start as u32, end as u32);
        if let Some(last) = self.len.checked_sub(1) {
            let run = &mut self.runs[usize::from(last)];
            let gap = run.1 as usize..start as usize;
            if gap.len() == 2 && &self.head[gap] == b"\r\n" {
                run.1 = end;
                return true;
            }
        }
        if usize::from(self.len) == MAX_RUNS {
            return false;
        }
        self.runs[usize::from(self.len)] = (start, end);
        self.len += 1;
        true
    }

    fn runs(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.runs[..usize::from(self.len)]
            .iter()
            .map(|&(start, end)| &self.head[start as usize..end as usize])
    }

    /// Adds a header of the proxy's own after the instance's lines; gives
    /// it back when there is no room left, for the answer's header map.
    pub fn add(&mut self, header: ProxyHeader, value: HeaderValue) -> Result<(), HeaderValue> {
        match self.added.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => {
                *slot = Some((header, value));
                Ok(())
            }
            None => Err(value),
        }
    }

    fn added(&self) -> impl Iterator<Item = &(ProxyHeader, HeaderValue)> + '_ {
        self.added.iter().map_while(Option::as_ref)
    }

    /// Appends the instance's lines, then the proxy's, each ending in CRLF.
    pub fn write_to(&self, buf: &mut Vec<u8>) {
        for run in self.runs() {
            buf.extend_from_slice(run);
            buf.extend_from_slice(b"\r\n");
        }
        for (header, value) in self.added() {
            push_field(buf, &header.name(), value.as_bytes());
        }
    }

    /// Puts the lines, the instance's and then the proxy's, into `headers`
    /// ahead of what it holds already, so that a header both the instance
    /// and the proxy set (`Via`, `Set-Cookie`) keeps the instance's lines
    /// first.
    pub fn merge_into(self, headers: &mut HeaderMap) {
        let held = std::mem::take(headers);
        let mut merged =
            HeaderMap::with_capacity(usize::from(self.len) * 4 + MAX_ADDED + held.len());
        for run in self.runs() {
            for line in run.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    continue;
                };
                let name = HeaderName::from_bytes(&line[..colon]);
                let value = self.head.slice_ref(line[colon + 1..].trim_ascii());
                match (name, HeaderValue::from_maybe_shared(value)) {
                    (Ok(name), Ok(value)) => {
                        merged.append(name, value);
                    }
                    // httparse checked the characters and `scan` the name's
                    // length, which is all a map asks: this never happens.
                    _ => {
                        warn!(line = %String::from_utf8_lossy(line), "header line left out of the map")
                    }
                }
            }
        }
        for (header, value) in self.added.into_iter().flatten() {
            merged.append(header.name(), value);
        }
        let mut current = None;
        for (name, value) in held {
            if name.is_some() {
                current = name;
            }
            if let Some(name) = &current {
                merged.append(name.clone(), value);
            }
        }
        *headers = merged;
    }
}

impl std::fmt::Debug for WireFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<_> = self.runs().map(String::from_utf8_lossy).collect();
        let added: Vec<_> = self.added().collect();
        f.debug_struct("WireFields")
            .field("runs", &lines)
            .field("added", &added)
            .finish()
    }
}

/// What one header line of an answer is to the proxy.
enum Line {
    /// `Connection`: read, then left out.
    Connection,
    /// `Transfer-Encoding`: read, then left out.
    TransferEncoding,
    /// Another hop-by-hop header, or one the proxy sets itself.
    Dropped,
    /// `Content-Length`: read and kept.
    ContentLength,
    /// `Date`: kept.
    Date,
    /// Anything else: kept.
    Kept,
}

impl Line {
    /// Told apart by length first: most names match none of the lengths
    /// compared.
    fn of(name: &[u8]) -> Line {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        match name.len() {
            2 if is(b"te") => Line::Dropped,
            4 if is(b"date") => Line::Date,
            7 if is(b"upgrade") => Line::Dropped,
            10 if is(b"connection") => Line::Connection,
            10 if is(b"keep-alive") => Line::Dropped,
            // The proxy sets its own (`ProxyHeader::RequestId`).
            12 if is(b"x-request-id") => Line::Dropped,
            14 if is(b"content-length") => Line::ContentLength,
            16 if is(b"proxy-connection") => Line::Dropped,
            17 if is(b"transfer-encoding") => Line::TransferEncoding,
            _ => Line::Kept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::exchange::parse_head;

    fn scanned(text: &str) -> Scanned {
        let mut spans = Vec::new();
        let (len, _, _) = parse_head(text.as_bytes(), &mut spans)
            .expect("valid")
            .expect("complete");
        let head = Bytes::copy_from_slice(&text.as_bytes()[..len]);
        WireFields::scan(&head, &spans).expect("valid head")
    }

    fn wire(text: &str) -> (WireFields, HopInfo) {
        match scanned(text) {
            Scanned::Wire(fields, info) => (fields, info),
            Scanned::NeedsMap => panic!("expected wire fields for {text:?}"),
        }
    }

    fn written(fields: &WireFields) -> String {
        let mut out = Vec::new();
        fields.write_to(&mut out);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn keeps_end_to_end_lines_as_written_in_as_few_runs_as_they_allow() {
        let (fields, info) = wire(
            "HTTP/1.1 200 OK\r\nServer: origin\r\nDate: Fri, 04 Dec 2026 07:00:00 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n",
        );
        assert_eq!(fields.len, 1, "consecutive kept lines are one run");
        assert_eq!(
            written(&fields),
            "Server: origin\r\nDate: Fri, 04 Dec 2026 07:00:00 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 3\r\n"
        );
        assert!(fields.date && fields.length);
        assert_eq!(info.length, Some(3));
        assert!(info.keep_alive && !info.close);
    }

    #[test]
    fn leaves_out_hop_by_hop_lines_and_the_request_id() {
        let (fields, info) = wire(
            "HTTP/1.1 200 OK\r\nA: 1\r\nTransfer-Encoding: gzip, chunked\r\nB: 2\r\n\
             keep-alive: timeout=5\r\nX-Request-Id: theirs\r\nC:\r\nUpgrade: h2c\r\n\
             TE: trailers\r\nProxy-Connection: close\r\nCONNECTION: close\r\n\r\n",
        );
        assert_eq!(written(&fields), "A: 1\r\nB: 2\r\nC:\r\n");
        assert_eq!(fields.len, 3);
        assert!(!fields.date && !fields.length);
        assert_eq!(info.chunked_last, Some(true));
        assert!(info.close);
    }

    #[test]
    fn lines_that_need_a_header_map_are_told() {
        assert!(matches!(
            scanned("HTTP/1.1 200 OK\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n"),
            Scanned::NeedsMap
        ));
        let scattered: String = (0..=MAX_RUNS)
            .map(|i| format!("X-{i}: {i}\r\nTE: x\r\n"))
            .collect();
        assert!(matches!(
            scanned(&format!("HTTP/1.1 200 OK\r\n{scattered}\r\n")),
            Scanned::NeedsMap
        ));
        let mut spans = Vec::new();
        let text = b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n";
        let (len, _, _) = parse_head(text, &mut spans)
            .expect("valid")
            .expect("complete");
        let head = Bytes::copy_from_slice(&text[..len]);
        assert!(
            WireFields::scan(&head, &spans).is_err(),
            "conflicting lengths are refused"
        );
    }

    #[test]
    fn the_proxys_own_headers_follow_the_instances_lines() {
        let (mut fields, _) = wire("HTTP/1.1 200 OK\r\nVia: 1.1 inner\r\n\r\n");
        let via = || HeaderValue::from_static("1.1 tidegate");
        for _ in 0..MAX_ADDED {
            fields
                .add(ProxyHeader::Via, via())
                .expect("room for the proxy's own");
        }
        assert!(
            fields.add(ProxyHeader::Via, via()).is_err(),
            "past its room a header is given back, for the map"
        );
        let mut expected = String::from("Via: 1.1 inner\r\n");
        expected += &"via: 1.1 tidegate\r\n".repeat(MAX_ADDED);
        assert_eq!(written(&fields), expected);
        let mut headers = HeaderMap::new();
        headers.append("via", HeaderValue::from_static("from the map"));
        fields.merge_into(&mut headers);
        let all: Vec<_> = headers.get_all("via").iter().collect();
        assert_eq!(all.len(), MAX_ADDED + 2);
        assert_eq!(all[0], "1.1 inner");
        assert_eq!(all[MAX_ADDED + 1], "from the map");
    }

    #[test]
    fn merged_lines_come_before_the_proxys_own() {
        let (fields, _) = wire(
            "HTTP/1.1 200 OK\r\nVia: 1.1 inner\r\nSet-Cookie: a=1\r\nX-Empty:\r\n\
             Set-Cookie: b=2\r\nX-Pad:   spaced  \r\n\r\n",
        );
        let mut headers = HeaderMap::new();
        headers.append("via", HeaderValue::from_static("1.1 tidegate"));
        headers.append("set-cookie", HeaderValue::from_static("c=3"));
        headers.append("set-cookie", HeaderValue::from_static("d=4"));
        fields.merge_into(&mut headers);
        let via: Vec<_> = headers.get_all("via").iter().collect();
        assert_eq!(via, ["1.1 inner", "1.1 tidegate"]);
        let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2", "c=3", "d=4"]);
        assert_eq!(headers["x-empty"], "");
        assert_eq!(headers["x-pad"], "spaced");
        assert_eq!(headers.len(), 8, "every value, counted once");
    }
}
