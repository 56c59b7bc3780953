//! The origin a challenge and its proof are bound to: scheme, host and port (RFC 6454), in one
//! normal form, so that a provider, a facilitator and a payer compare the same string.
//!
//! Normal form: `scheme "://" host [":" port]`, where the scheme is `http` or `https` in lower
//! case, the host is a registered name, an IPv4 address or a bracketed IPv6 address in lower
//! case, and the port is written only when it is not the scheme's default (80, 443) — without
//! leading zeros. No user info, path, query or fragment. `HTTPS://API.Example.com:443` and
//! `https://api.example.com` are the same origin, `https://api.example.com:8443` another.
//!
//! Three ways in: a provider's configured origin ([`Origin::parse`], a config error when bad),
//! a request's scheme and `Host` header ([`push_request_origin`], the caller's 400 when bad) and
//! the URL a payer called ([`Origin::of_url`]).

use crate::error::{Error, Result};
use std::fmt;

/// Longest origin accepted (a DNS name is at most 253 characters).
pub const MAX_ORIGIN_BYTES: usize = 300;

/// An origin in normal form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// A configured origin such as `https://api.example.com` (one trailing `/` is allowed).
    /// Anything else — a path, a query, user info, another scheme — is `config_invalid`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("origin {:?}: {why}", echo(s)));
        let (scheme, rest) = split_scheme(s).ok_or_else(|| bad("must start with http:// or https://"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let mut out = String::with_capacity(s.len());
        push_normalized(&mut out, scheme, authority).map_err(bad)?;
        Ok(Self(out))
    }

    /// The origin of an absolute http(s) URL: what a payer called. User info is dropped (it is
    /// not part of an origin); a missing or malformed host is `request_malformed`.
    pub fn of_url(url: &str) -> Result<Self> {
        let (scheme, rest) = split_scheme(url)
            .ok_or_else(|| Error::RequestMalformed("URL must be absolute http(s)".into()))?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let mut out = String::with_capacity(url.len().min(MAX_ORIGIN_BYTES));
        push_normalized(&mut out, scheme, authority)
            .map_err(|why| Error::RequestMalformed(format!("URL origin: {why}")))?;
        Ok(Self(out))
    }

    /// From a request's scheme and `Host` header (see [`push_request_origin`]).
    pub fn of_request(scheme: &str, host: Option<&str>) -> Result<Self> {
        let mut out = String::new();
        push_request_origin(&mut out, scheme, host)?;
        Ok(Self(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `true` for an `https` origin.
    pub fn is_secure(&self) -> bool {
        self.0.starts_with("https:")
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Origin {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Append the normal form of a request's origin to `out`: `scheme` as the server received the
/// request (`http` or `https`) and `host` the `Host` header (or HTTP/2 `:authority`). A missing
/// or malformed host is `request_malformed` (400): there is nothing to bind a challenge to.
pub fn push_request_origin(out: &mut String, scheme: &str, host: Option<&str>) -> Result<()> {
    let host = host.ok_or_else(|| Error::RequestMalformed("the request has no Host header".into()))?;
    push_normalized(out, scheme, host).map_err(|why| Error::RequestMalformed(format!("Host header: {why}")))
}

/// Is `s` an origin in normal form (as a challenge must carry it)?
pub fn is_normal(s: &str) -> bool {
    let Some((scheme, authority)) = split_scheme(s) else { return false };
    let mut out = String::with_capacity(s.len());
    push_normalized(&mut out, scheme, authority).is_ok() && out == s
}

fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    Some((scheme, rest))
}

fn echo(s: &str) -> String {
    s.chars().take(80).collect()
}

/// `scheme "://" authority` in normal form, appended to `out`; on error `out` may hold a prefix.
fn push_normalized(out: &mut String, scheme: &str, authority: &str) -> std::result::Result<(), &'static str> {
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        out.push_str("https://");
        "443"
    } else if scheme.eq_ignore_ascii_case("http") {
        out.push_str("http://");
        "80"
    } else {
        return Err("scheme must be http or https");
    };
    if authority.is_empty() {
        return Err("no host");
    }
    if authority.len() > MAX_ORIGIN_BYTES {
        return Err("too long");
    }
    // Split host and port; an IPv6 literal keeps its brackets.
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']').ok_or("unclosed IPv6 literal")?;
        let (literal, after) = (&v6[..close], &v6[close + 1..]);
        if literal.is_empty() || !literal.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err("bad IPv6 literal");
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after the IPv6 literal")?),
        };
        (&authority[..close + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[')
            || host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')));
    if !host_ok {
        return Err("bad host");
    }
    for b in host.bytes() {
        out.push(b.to_ascii_lowercase() as char);
    }
    match port {
        // "host:" means the default port (RFC 3986 §3.2.3).
        None | Some("") => Ok(()),
        Some(p) => {
            if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err("bad port");
            }
            let n: u32 = p.parse().map_err(|_| "bad port")?;
            if n == 0 || n > 65_535 {
                return Err("port out of range");
            }
            // In range and non-zero, so at least one digit remains.
            let digits = p.trim_start_matches('0');
            if digits != default_port {
                out.push(':');
                out.push_str(digits);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(scheme: &str, host: &str) -> std::result::Result<String, &'static str> {
        let mut out = String::new();
        push_request_origin(&mut out, scheme, Some(host)).map(|()| out).map_err(|e| e.code())
    }

    #[test]
    fn normal_form() {
        for (scheme, host, want) in [
            ("http", "127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http", "127.0.0.1:80", "http://127.0.0.1"),
            ("https", "api.example.com:443", "https://api.example.com"),
            ("https", "api.example.com:80", "https://api.example.com:80"),
            ("http", "api.example.com:443", "http://api.example.com:443"),
            ("HTTPS", "API.Example.COM", "https://api.example.com"),
            ("https", "api.example.com:", "https://api.example.com"),
            ("http", "localhost:08080", "http://localhost:8080"),
            ("http", "[::1]:8080", "http://[::1]:8080"),
            ("http", "[::1]", "http://[::1]"),
            ("https", "[2001:DB8::1]:443", "https://[2001:db8::1]"),
            ("http", "my_host.internal", "http://my_host.internal"),
        ] {
            assert_eq!(req(scheme, host).as_deref(), Ok(want), "{scheme} {host}");
            assert!(is_normal(want), "{want}");
        }
    }

    #[test]
    fn bad_hosts_are_request_malformed() {
        for host in [
            "",
            ":8080",
            "a b",
            "evil.com/x",
            "user@host",
            "host:99999",
            "host:0",
            "host:-1",
            "host:80:80",
            "[::1",
            "[::1]x",
            "[zz]",
            "[]",
            "ho%73t",
            "host\u{e9}",
            "host?x",
            &"a".repeat(400),
        ] {
            assert_eq!(req("http", host), Err("request_malformed"), "{host:?}");
        }
        assert_eq!(req("ftp", "host"), Err("request_malformed"));
        let mut out = String::new();
        assert_eq!(push_request_origin(&mut out, "http", None).unwrap_err().code(), "request_malformed");
    }

    #[test]
    fn configured_origins() {
        assert_eq!(Origin::parse("https://API.example.com/").unwrap().as_str(), "https://api.example.com");
        assert_eq!(Origin::parse("http://10.0.0.1:8080").unwrap().as_str(), "http://10.0.0.1:8080");
        assert!(Origin::parse("https://a.example").unwrap().is_secure());
        for bad in [
            "api.example.com",
            "https://api.example.com/v1",
            "https://u@api.example.com",
            "ws://x",
            "https://",
            "https://x?y",
        ] {
            assert_eq!(Origin::parse(bad).unwrap_err().code(), "config_invalid", "{bad}");
        }
    }

    #[test]
    fn origins_of_urls() {
        for (url, want) in [
            ("http://127.0.0.1:8080/api/v1/x?y=1", "http://127.0.0.1:8080"),
            ("https://user:pw@API.example.com:443/a", "https://api.example.com"),
            ("https://api.example.com", "https://api.example.com"),
            ("https://api.example.com?q", "https://api.example.com"),
            ("http://[::1]:3000/#f", "http://[::1]:3000"),
        ] {
            assert_eq!(Origin::of_url(url).unwrap().as_str(), want, "{url}");
        }
        for bad in ["ftp://x/", "/relative", "https:///path", "http://bad host/"] {
            assert_eq!(Origin::of_url(bad).unwrap_err().code(), "request_malformed", "{bad}");
        }
    }

    #[test]
    fn is_normal_rejects_other_spellings() {
        for s in [
            "HTTP://a",
            "http://A",
            "http://a:80",
            "https://a:443",
            "http://a/",
            "http://a:08",
            "a",
            "http://",
        ] {
            assert!(!is_normal(s), "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn normalising_is_idempotent(scheme in "[hH][tT][tT][pP][sS]?", host in "[A-Za-z0-9.-]{1,20}", port in proptest::option::of(1u32..=65535)) {
            let authority = match port { Some(p) => format!("{host}:{p}"), None => host.clone() };
            let once = req(&scheme, &authority).unwrap();
            proptest::prop_assert!(is_normal(&once));
            let (s, a) = once.split_once("://").unwrap();
            proptest::prop_assert_eq!(req(s, a).unwrap(), once);
        }

        #[test]
        fn never_panics(scheme in "\\PC{0,8}", host in "\\PC{0,40}") {
            let _ = req(&scheme, &host);
            let _ = Origin::parse(&host);
            let _ = Origin::of_url(&host);
        }
    }
}
