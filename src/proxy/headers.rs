//! Header rewriting between client and instance.
//!
//! Hop-by-hop headers (RFC 9110 section 7.6.1: `Connection`, every header it
//! names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`)
//! describe one connection and are removed in both directions. Requests gain
//! `X-Forwarded-For`, `-Proto`, `-Host`, `Via` and an `x-request-id`; `Host` is
//! kept as the client sent it.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The request id header, propagated or generated.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The hop-by-hop headers every message loses, `Connection` first.
static HOP_BY_HOP: [&HeaderName; 6] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// Whether a parsed header name is one of the fixed hop-by-hop headers.
pub fn is_hop_by_hop_name(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Removes hop-by-hop headers, including every header named in `Connection`.
///
/// One pass over the names present finds which are there, and only those are
/// removed: most messages carry none or only `Connection`, and a removal by
/// name hashes and probes the map whether or not the name is in it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| *hop == name) {
            present[i] = true;
        }
    }
    if present[0] {
        // Every `Connection` line counts, not only the first; `keep-alive` and
        // `close` are options rather than header names. Collecting nothing does
        // not allocate.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    // TODO: protocol upgrades (WebSocket) are refused by removing `Upgrade`;
    // tunnelling them needs hyper's upgrade API on both connections.
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(*name);
        }
    }
}

/// Room for the forwarding lines besides the `X-Forwarded-For` chain:
/// names, a 32-digit request id, `https`, a host of average length, `Via`.
const FORWARDING_LINE_BYTES: usize = 192;

/// The headers the proxy sets on a request for its instances: kept beside
/// the client's header map rather than inserted into it, so that a request
/// written by the direct exchange costs no map insertion for them. Each
/// replaces the client's lines of its name, except `Via`, which adds a hop.
#[derive(Debug, Clone)]
pub struct Forwarding {
    /// The request id, when the client sent none usable.
    request_id: Option<HeaderValue>,
    /// `X-Forwarded-For`: the client's chain with the client's address last.
    forwarded_for: HeaderValue,
    /// `X-Forwarded-Proto`.
    proto: &'static str,
    /// `X-Forwarded-Host`, when the request names a host.
    host: Option<HeaderValue>,
    /// This hop's `Via` entry.
    via: HeaderValue,
}

impl Forwarding {
    /// The forwarding headers for a request with these `headers` (hop-by-hop
    /// ones already removed) from `client_ip`; `request_id` is set when the
    /// client sent none usable.
    pub fn new(
        headers: &HeaderMap,
        client_ip: IpAddr,
        proto: &'static str,
        version: Version,
        host: Option<&HeaderValue>,
        request_id: Option<HeaderValue>,
    ) -> Self {
        Forwarding {
            request_id,
            forwarded_for: forwarded_for(headers, ip_header_value(client_ip)),
            proto,
            host: host.cloned(),
            via: via(version),
        }
    }

    /// Whether a client's header of this name gives way to one of these.
    pub fn replaces(&self, name: &HeaderName) -> bool {
        *name == X_FORWARDED_FOR
            || *name == X_FORWARDED_PROTO
            || (self.host.is_some() && *name == X_FORWARDED_HOST)
            || (self.request_id.is_some() && *name == X_REQUEST_ID)
    }

    /// Appends the header lines, for a request written as bytes. The
    /// client's lines that [`Forwarding::replaces`] must be left out.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Each line's fixed parts are constants the compiler copies inline;
        // only the values take a call to `memcpy`.
        #[inline(always)]
        fn line(out: &mut Vec<u8>, prefix: &[u8], value: &[u8]) {
            out.extend_from_slice(prefix);
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.reserve(FORWARDING_LINE_BYTES + self.forwarded_for.len());
        if let Some(id) = &self.request_id {
            line(out, b"x-request-id: ", id.as_bytes());
        }
        line(out, b"x-forwarded-for: ", self.forwarded_for.as_bytes());
        line(out, b"x-forwarded-proto: ", self.proto.as_bytes());
        if let Some(host) = &self.host {
            line(out, b"x-forwarded-host: ", host.as_bytes());
        }
        line(out, b"via: ", self.via.as_bytes());
    }

    /// Sets the headers in `headers`, for a request a header map carries.
    pub fn apply(self, headers: &mut HeaderMap) {
        if let Some(id) = self.request_id {
            headers.insert(X_REQUEST_ID.clone(), id);
        }
        headers.insert(X_FORWARDED_FOR.clone(), self.forwarded_for);
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(self.proto),
        );
        if let Some(host) = self.host {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        headers.append(header::VIA, self.via);
    }
}

/// The client's address appended to the chain, which may span several
/// `X-Forwarded-For` lines (one list, RFC 9110 section 5.3).
fn forwarded_for(headers: &HeaderMap, client: HeaderValue) -> HeaderValue {
    let mut prior = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
    if prior.peek().is_none() {
        return client;
    }
    let mut joined = Vec::with_capacity(64);
    for value in prior {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(client.as_bytes());
    HeaderValue::from_bytes(&joined).unwrap_or(client)
}

/// An IP address as a header value, formatted on the stack: `to_string` costs
/// an allocation and the formatting machinery on every request.
fn ip_header_value(ip: IpAddr) -> HeaderValue {
    let mut text = [0u8; 45];
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                len += write_decimal(octet, &mut text[len..]);
            }
            len
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let mut rest = &mut text[..];
            write!(rest, "{v6}").expect("45 bytes hold any IPv6 address");
            45 - rest.len()
        }
    };
    HeaderValue::from_bytes(&text[..len]).expect("an IP address is a valid header value")
}

/// Writes `n` in decimal at the start of `out` and returns the digits written.
fn write_decimal(n: u8, out: &mut [u8]) -> usize {
    let digits = [n / 100, n / 10 % 10, n % 10];
    let skip = if n >= 100 {
        0
    } else if n >= 10 {
        1
    } else {
        2
    };
    for (slot, digit) in out.iter_mut().zip(&digits[skip..]) {
        *slot = b'0' + digit;
    }
    3 - skip
}

/// The `Via` entry for a hop of this HTTP version.
pub fn via(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_10 => "1.0 tidegate",
        Version::HTTP_2 => "2 tidegate",
        _ => "1.1 tidegate",
    })
}

/// The client's `x-request-id` if it sent a usable one, else a new one:
/// the value, and whether it was generated (and must be set upstream).
pub fn request_id(headers: &HeaderMap) -> (HeaderValue, bool) {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        if !id.is_empty() && id.len() <= 128 {
            return (id.clone(), false);
        }
    }
    (new_request_id(), true)
}

fn new_request_id() -> HeaderValue {
    let bits: u128 = rand::random();
    let mut text = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in text.iter_mut().enumerate() {
        *byte = HEX[((bits >> (i * 4)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&text).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_headers_named_in_connection() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-custom"),
        );
        h.insert("x-custom", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(
            h.get("x-custom").is_none(),
            "a header named in Connection is hop-by-hop"
        );
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::TE).is_none());
        assert!(h.get("x-kept").is_some());
    }

    /// The lines `forwarding` writes after the client's `headers`, as a
    /// request written as bytes carries them, and as a map gets them.
    fn both_ways(headers: &HeaderMap, forwarding: Forwarding) -> (String, HeaderMap) {
        let mut out = Vec::new();
        for (name, value) in headers {
            if !forwarding.replaces(name) {
                out.extend_from_slice(format!("{name}: ").as_bytes());
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        forwarding.write_to(&mut out);
        let mut map = headers.clone();
        forwarding.apply(&mut map);
        (String::from_utf8(out).expect("ASCII"), map)
    }

    #[test]
    fn appends_to_an_existing_forwarded_for_and_replaces_the_rest() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("gopher"));
        h.insert("x-forwarded-host", HeaderValue::from_static("spoofed"));
        h.insert("x-request-id", HeaderValue::from_static(""));
        h.insert(header::VIA, HeaderValue::from_static("1.1 outer"));
        let id = HeaderValue::from_static("0123");
        let host = HeaderValue::from_static("app");
        let forwarding = Forwarding::new(
            &h,
            "192.0.2.7".parse().expect("ip"),
            "http",
            Version::HTTP_11,
            Some(&host),
            Some(id),
        );
        let (written, map) = both_ways(&h, forwarding);
        assert_eq!(
            written,
            "host: app\r\nvia: 1.1 outer\r\nx-request-id: 0123\r\n\
             x-forwarded-for: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: app\r\nvia: 1.1 tidegate\r\n"
        );
        assert_eq!(map["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 192.0.2.7");
        assert_eq!(map["x-forwarded-proto"], "http");
        assert_eq!(map["x-forwarded-host"], "app");
        assert_eq!(map["x-request-id"], "0123");
        let via: Vec<_> = map.get_all(header::VIA).iter().collect();
        assert_eq!(via, ["1.1 outer", "1.1 tidegate"]);
    }

    #[test]
    fn without_a_host_or_a_new_id_the_clients_lines_stay() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-host", HeaderValue::from_static("edge"));
        h.insert("x-request-id", HeaderValue::from_static("theirs"));
        let forwarding = Forwarding::new(
            &h,
            "192.0.2.7".parse().expect("ip"),
            "https",
            Version::HTTP_2,
            None,
            None,
        );
        let (written, map) = both_ways(&h, forwarding);
        assert_eq!(
            written,
            "x-forwarded-host: edge\r\nx-request-id: theirs\r\n\
             x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: https\r\nvia: 2 tidegate\r\n"
        );
        assert_eq!(map["x-forwarded-host"], "edge");
        assert_eq!(map["x-request-id"], "theirs");
    }

    #[test]
    fn formats_client_addresses_like_display() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "192.0.2.255",
            "127.0.0.1",
            "2001:db8::7",
            "::ffff:10.0.0.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        ] {
            let addr: IpAddr = ip.parse().expect("a valid address");
            assert_eq!(
                ip_header_value(addr),
                addr.to_string().as_str(),
                "the header carries the address's standard text form"
            );
        }
    }

    #[test]
    fn generates_a_request_id_only_when_missing() {
        let mut h = HeaderMap::new();
        let (id, generated) = request_id(&h);
        assert_eq!(id.len(), 32);
        assert!(generated);
        h.insert(X_REQUEST_ID.clone(), id.clone());
        assert_eq!(request_id(&h), (id, false), "an existing id is kept");
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static(""));
        assert!(request_id(&h).1, "an empty id is replaced");
    }
}
