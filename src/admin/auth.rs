//! Who may change state through the admin API: a bearer token from the config.
//!
//! Without `admin.token` every write is refused, so a forgotten setting never
//! leaves drain and undrain open to anyone who can reach the admin port. The
//! token is compared in constant time.

use http::{header, HeaderMap, StatusCode};

/// Why a write was refused, with the status it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Denied {
    /// No token is configured.
    #[error("admin writes are disabled: set admin.token in the config to enable them")]
    NoTokenConfigured,
    /// The request's bearer token is missing or wrong.
    #[error("missing or wrong bearer token")]
    WrongToken,
}

impl Denied {
    pub(super) fn status(self) -> StatusCode {
        match self {
            Denied::NoTokenConfigured => StatusCode::FORBIDDEN,
            Denied::WrongToken => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Checks the request's `Authorization: Bearer <token>` against the configured token.
pub(super) fn authorize(configured: Option<&str>, headers: &HeaderMap) -> Result<(), Denied> {
    let expected = configured.ok_or(Denied::NoTokenConfigured)?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(Denied::WrongToken)?;
    if constant_time_eq(presented.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Denied::WrongToken)
    }
}

/// Compares without an early exit, so the time taken does not reveal where the
/// first difference is. The length is not secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("valid header"),
        );
        h
    }

    #[test]
    fn refuses_every_write_without_a_configured_token() {
        assert_eq!(
            authorize(None, &bearer("anything")),
            Err(Denied::NoTokenConfigured)
        );
    }

    #[test]
    fn accepts_only_the_configured_token() {
        let token = Some("0123456789abcdef");
        assert_eq!(authorize(token, &bearer("0123456789abcdef")), Ok(()));
        assert_eq!(
            authorize(token, &bearer("0123456789abcdeX")),
            Err(Denied::WrongToken)
        );
        assert_eq!(authorize(token, &HeaderMap::new()), Err(Denied::WrongToken));
    }
}
