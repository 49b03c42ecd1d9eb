//! Session affinity: a cookie pins a client to the instance that served it.
//!
//! The cookie names its instance by an opaque token, the first 128 bits of
//! HMAC-SHA256 over the service and instance id under a key drawn at random
//! when the process starts. A client can replay a token it was given, but it
//! cannot make one up for an address of its choosing: a token is only ever
//! looked up among the current table's tokens, and a token for an instance not
//! in the table (or a tampered one) matches nothing. Tokens change when the
//! process restarts; clients then fall back to the algorithm once and receive
//! a new cookie, which is what affinity across restarts costs.
//!
//! Tokens and the ready-made `Set-Cookie` values are computed when a table is
//! published ([`AffinityIndex::build`]), so the request path parses one cookie,
//! binary-searches a sorted array and clones a shared header value.

use std::sync::{Arc, OnceLock};

use hmac::{Hmac, Mac};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

use super::instance::Instance;

/// Hex digits of a token in a cookie.
const TOKEN_HEX_LEN: usize = 32;

/// The tokens and cookies of one instance table.
#[derive(Debug, Default)]
pub struct AffinityIndex {
    cookie_name: String,
    /// `(token, index into the table)`, sorted by token.
    by_token: Vec<(u128, u32)>,
    /// The `Set-Cookie` value of each instance, in table order.
    set_cookie: Vec<HeaderValue>,
}

impl AffinityIndex {
    /// Computes every instance's token and cookie.
    pub fn build(instances: &[Arc<Instance>]) -> Self {
        let Some(first) = instances.first() else {
            return Self::default();
        };
        let cookie_name = cookie_name(first.service().as_str());
        let tokens: Vec<u128> = instances
            .iter()
            .map(|i| token(i.service().as_str(), i.id().as_str()))
            .collect();
        let set_cookie = tokens
            .iter()
            .map(|t| {
                let value = format!("{cookie_name}={t:032x}; Path=/; HttpOnly; SameSite=Lax");
                HeaderValue::try_from(value)
                    .expect("a sanitised name and hex digits are a valid header")
            })
            .collect();
        let mut by_token: Vec<(u128, u32)> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i as u32))
            .collect();
        by_token.sort_unstable();
        Self {
            cookie_name,
            by_token,
            set_cookie,
        }
    }

    /// The table index the request's affinity cookie names, if it names one.
    pub fn pinned(&self, headers: &HeaderMap) -> Option<usize> {
        let token = self.cookie_token(headers)?;
        let at = self
            .by_token
            .binary_search_by_key(&token, |(t, _)| *t)
            .ok()?;
        Some(self.by_token[at].1 as usize)
    }

    /// The `Set-Cookie` value pinning a client to the instance at `index`.
    pub fn set_cookie(&self, index: usize) -> Option<&HeaderValue> {
        self.set_cookie.get(index)
    }

    /// The cookie's name, `tidegate_<service>`.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    fn cookie_token(&self, headers: &HeaderMap) -> Option<u128> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let value = pair.trim().strip_prefix(self.cookie_name.as_str())?;
                parse_token(value.strip_prefix('=')?)
            })
    }
}

fn parse_token(hex: &str) -> Option<u128> {
    if hex.len() != TOKEN_HEX_LEN || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

/// The affinity cookie of a service: `tidegate_` and the name, with anything
/// outside `[A-Za-z0-9_-]` replaced so the name is a valid cookie name.
pub fn cookie_name(service: &str) -> String {
    let safe: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("tidegate_{safe}")
}

/// The token of an instance of a service under this process's key.
pub fn token(service: &str, instance: &str) -> u128 {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(process_key()).expect("HMAC accepts keys of any length");
    mac.update(service.as_bytes());
    mac.update(&[0]);
    mac.update(instance.as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut first = [0u8; 16];
    first.copy_from_slice(&tag[..16]);
    u128::from_be_bytes(first)
}

// TODO: the key is per process, so several tidegate nodes behind one address
// (or a restart) do not honour each other's cookies and re-pin the client once;
// a shared `session_affinity_key` in the config would make affinity hold across
// nodes. Left out because no issue asks for multi-node affinity yet.
fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn table(n: u16) -> Vec<Arc<Instance>> {
        (0..n)
            .map(|i| {
                Instance::from_addr(
                    "web app".into(),
                    SocketAddr::from(([10, 0, 0, 1], 8000 + i)),
                    1,
                )
            })
            .collect()
    }

    fn cookie_header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::try_from(value).expect("test cookie"));
        headers
    }

    fn issued(index: &AffinityIndex, i: usize) -> String {
        let set = index.set_cookie(i).expect("every instance has a cookie");
        let pair = set
            .to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("a pair");
        pair.to_owned()
    }

    #[test]
    fn issued_cookie_names_its_instance_among_other_cookies() {
        let instances = table(4);
        let index = AffinityIndex::build(&instances);
        let pair = issued(&index, 2);
        assert!(
            pair.starts_with("tidegate_web_app="),
            "cookie name is sanitised: {pair}"
        );
        let headers = cookie_header(&format!("theme=dark; {pair}; lang=en"));
        assert_eq!(index.pinned(&headers), Some(2));
    }

    #[test]
    fn tampered_or_foreign_tokens_match_nothing() {
        let index = AffinityIndex::build(&table(4));
        let pair = issued(&index, 1);
        let (name, token) = pair.split_once('=').expect("name=value");
        let mut flipped = token.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("hex");
        for value in [
            flipped.as_str(),
            "10.0.0.1:8000",
            "",
            &token[..31],
            "+0000000000000000000000000000001",
        ] {
            let headers = cookie_header(&format!("{name}={value}"));
            assert_eq!(index.pinned(&headers), None, "token {value:?} must not pin");
        }
        let other_service = token_for_other_service();
        let headers = cookie_header(&format!("{name}={other_service:032x}"));
        assert_eq!(
            index.pinned(&headers),
            None,
            "another service's token must not pin"
        );
    }

    fn token_for_other_service() -> u128 {
        token("other", "10.0.0.1:8000")
    }

    #[test]
    fn tokens_do_not_reveal_the_address() {
        let index = AffinityIndex::build(&table(1));
        let pair = issued(&index, 0);
        assert!(
            !pair.contains("10.0.0.1") && !pair.contains("8000"),
            "opaque: {pair}"
        );
    }
}
