//! Who may do what: reads are open (to whoever reaches the address), an
//! action needs the token, a JSON body and no other site's Origin.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::ApiError;
use super::Dashboard;
use crate::error::{CliError, CliResult};

/// The header that carries the token besides `Authorization: Bearer`.
pub const TOKEN_HEADER: &str = "x-eddy-token";

/// The token actions need.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token; an empty one (or one a header cannot carry) is refused.
    pub fn new(token: &str) -> CliResult<Self> {
        if token.is_empty() {
            return Err(CliError::new(
                "--token is empty: give a secret, or leave --token out for a read-only dashboard",
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CliError::new(
                "--token must be printable ASCII without spaces (it travels in an HTTP header)",
            ));
        }
        Ok(Self(token.as_bytes().to_vec()))
    }

    /// Whether `given` is the token, in a time that does not depend on
    /// where the two first differ.
    pub fn matches(&self, given: &[u8]) -> bool {
        let mut diff = self.0.len() ^ given.len();
        for (i, a) in self.0.iter().enumerate() {
            diff |= usize::from(a ^ given.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

/// The token a request carries: `Authorization: Bearer T` or
/// `X-Eddy-Token: T`.
fn given_token(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        let scheme = b"bearer ";
        if v.len() > scheme.len() && v[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(v[scheme.len()..].trim_ascii());
        }
    }
    headers.get(TOKEN_HEADER).map(|v| v.as_bytes().trim_ascii())
}

/// Whether an action may run: the dashboard has a token (else 403), the
/// request comes from this dashboard's own page or no page at all (an
/// `Origin` that is not this host: 403), its body is JSON (else 415: a
/// cross-site HTML form cannot send one), and it carries the token (else
/// 401).
pub fn authorize(dashboard: &Dashboard, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &dashboard.inner.token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the dashboard is read-only: restart it with --token T to allow requeue and delete",
        ));
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).map(|h| h.as_bytes());
        let origin_host = origin
            .as_bytes()
            .strip_prefix(b"http://")
            .or_else(|| origin.as_bytes().strip_prefix(b"https://"));
        let same = match (origin_host, host) {
            (Some(o), Some(h)) => o.eq_ignore_ascii_case(h),
            _ => false,
        };
        if !same {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross-site request refused: the Origin header is not this dashboard's address",
            ));
        }
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "actions take a JSON body: send Content-Type: application/json",
        ));
    }
    match given_token(headers) {
        Some(given) if token.matches(given) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong token: send the token the dashboard was started with",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this action needs the token: send Authorization: Bearer T (or X-Eddy-Token: T)",
        )),
    }
}

/// On a loopback listener, answer only requests for a loopback host
/// (`localhost`, `127.0.0.1`, `[::1]`): a page of another site whose name
/// was made to resolve to 127.0.0.1 (DNS rebinding) names its own host, and
/// must not read the API.
pub async fn check_host(State(dashboard): State<Dashboard>, req: Request, next: Next) -> Response {
    if dashboard.inner.loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !is_loopback_host(host) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "this dashboard listens on loopback: open it as http://127.0.0.1:PORT/ or http://localhost:PORT/",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Whether a `Host` header names this machine's loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens() {
        let t = Token::new("s3cret").unwrap();
        assert!(t.matches(b"s3cret"));
        assert!(!t.matches(b"s3cre"));
        assert!(!t.matches(b"s3cretx"));
        assert!(!t.matches(b""));
        assert!(Token::new("").is_err());
        assert!(Token::new("a b").is_err());
    }

    #[test]
    fn knows_loopback_hosts() {
        for h in [
            "127.0.0.1:9470",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["evil.example:9470", "10.0.0.1:9470", "", "[::2]:1"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
