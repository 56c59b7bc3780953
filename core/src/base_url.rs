//! Base URLs (a facilitator's, a trusted list's) in one normal form, so two spellings of the same
//! service compare equal and anything unusual compares unequal.
//!
//! Normal form: the origin in [`crate::origin`]'s normal form (lower-case `http`/`https` scheme
//! and host, the port only when it is not the scheme's default), then the path without trailing
//! slashes. Credentials, a query, a fragment, whitespace, control characters and backslashes are
//! refused rather than guessed at: a comparison against a refused URL fails closed.

use crate::origin::Origin;

/// `url` in normal form, or `None` if it is not an absolute http(s) base URL.
///
/// ```
/// use vlexivo_core::base_url::normalize;
/// assert_eq!(normalize("HTTP://Pay.Example:80/v1/").as_deref(), Some("http://pay.example/v1"));
/// assert_eq!(normalize("https://[::1]:8443").as_deref(), Some("https://[::1]:8443"));
/// assert_eq!(normalize("https://user@pay.example"), None);
/// ```
pub fn normalize(url: &str) -> Option<String> {
    if url.bytes().any(|b| b <= b' ' || b >= 0x7f || matches!(b, b'?' | b'#' | b'@' | b'\\')) {
        return None;
    }
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let origin = Origin::parse(&format!("{scheme}://{authority}")).ok()?;
    let mut out = origin.as_str().to_string();
    out.push_str(path.trim_end_matches('/'));
    Some(out)
}

/// True when both are base URLs and name the same one. A URL that does not normalize matches
/// nothing, not even itself.
pub fn same(a: &str, b: &str) -> bool {
    matches!((normalize(a), normalize(b)), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_url_are_the_same() {
        for (a, b) in [
            ("http://127.0.0.1:4020", "http://127.0.0.1:4020/"),
            ("http://127.0.0.1:4020", "HTTP://127.0.0.1:4020"),
            ("https://Pay.Example.COM", "https://pay.example.com:443/"),
            ("http://pay.example", "http://pay.example:80"),
            ("http://pay.example:0080", "http://pay.example"),
            ("https://pay.example/base", "https://pay.example/base//"),
            ("http://[::1]:4020", "http://[::1]:4020/"),
            ("http://[FE80::1]", "http://[fe80::1]:80"),
            ("http://pay.example:", "http://pay.example"),
        ] {
            assert!(same(a, b), "{a} vs {b}");
            assert_eq!(normalize(a), normalize(b));
        }
    }

    #[test]
    fn different_services_differ() {
        for (a, b) in [
            ("http://127.0.0.1:4020", "http://127.0.0.1:4021"),
            ("http://127.0.0.1:4020", "https://127.0.0.1:4020"),
            ("http://127.0.0.1", "http://localhost"),
            ("https://pay.example", "https://pay.example.evil.test"),
            ("https://pay.example/a", "https://pay.example"),
            ("https://pay.example/a", "https://pay.example/A"),
            ("https://pay.example:443", "http://pay.example:443"),
        ] {
            assert!(!same(a, b), "{a} vs {b}");
        }
    }

    #[test]
    fn unusual_urls_are_refused_and_match_nothing() {
        for u in [
            "",
            "pay.example",
            "//pay.example",
            "ftp://pay.example",
            "javascript://pay.example",
            "http://",
            "http:///path",
            "http://user:pw@pay.example",
            "http://pay.example@evil.test",
            "http://pay.example?x=1",
            "http://pay.example/#frag",
            "http://pay.example\\@evil.test",
            "http://pay example",
            "http://pay.example\n",
            "http://pay.exämple",
            "http://pay.example:65536",
            "http://pay.example:-1",
            "http://pay.example:1:2",
            "http://[::1",
            "http://[]:80",
            "http://[::1]x",
            "http://[::1]:80:80",
            "http://[zz::1]",
        ] {
            assert_eq!(normalize(u), None, "{u:?}");
            assert!(!same(u, u), "{u:?}");
        }
    }
}
