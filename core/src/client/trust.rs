//! What the payer compares before anything is signed: the URL it called (origin and path), and
//! the facilitators it is willing to pay through.

use crate::challenge::resource_path;
use crate::error::{Error, Result};
use crate::origin::Origin;

/// An absolute http(s) URL, split the way the payer compares URLs: its origin in the one
/// normal form ([`crate::origin`]), its authority as written (lower case: the key per-host
/// budgets count against), its path without query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    origin: Origin,
    authority: String,
    path: String,
    /// The whole URL as given (the request is sent there).
    url: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self> {
        let origin = Origin::of_url(url)?;
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let authority = authority.rsplit('@').next().unwrap_or(authority).to_ascii_lowercase();
        let path = resource_path(&rest[end..]);
        let path = if path.is_empty() { "/" } else { path };
        Ok(Self { origin, authority, path: path.to_string(), url: url.to_string() })
    }

    /// `scheme://host[:port]` in normal form (the default port omitted).
    pub fn origin(&self) -> &str {
        self.origin.as_str()
    }

    /// `host[:port]` as written, lower case.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A facilitator base URL in the one form the payer compares: `origin[/path]`, no trailing
/// slash, no query or fragment.
pub fn normalize_base_url(url: &str) -> Result<String> {
    let url = url.trim();
    if url.contains(['?', '#']) {
        return Err(Error::Config(format!("facilitator URL {url:?} must not carry a query")));
    }
    let t = Target::parse(url)
        .map_err(|_| Error::Config(format!("facilitator URL {url:?} must be an absolute http(s) URL")))?;
    let path = t.path().trim_end_matches('/');
    Ok(format!("{}{path}", t.origin()))
}

/// The facilitators a payer pays through. A challenge naming any other is refused before
/// anything is signed, queried or sent (`facilitator_untrusted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedFacilitators {
    urls: Vec<String>,
    https_only: bool,
}

impl TrustedFacilitators {
    /// The configured facilitator and the explicit list, if either is given; else the one
    /// named by `env` (the value of [`crate::envvars::FACILITATOR_URL`]); else the default
    /// facilitator ([`crate::paywall::DEFAULT_FACILITATOR_URL`]).
    pub fn new(configured: Option<&str>, list: &[String], env: Option<&str>) -> Result<Self> {
        let mut urls = Vec::new();
        for u in configured.into_iter().chain(list.iter().map(String::as_str)) {
            let n = normalize_base_url(u)?;
            if !urls.contains(&n) {
                urls.push(n);
            }
        }
        if urls.is_empty() {
            match env.map(str::trim).filter(|e| !e.is_empty()) {
                Some(e) => urls.push(normalize_base_url(e).map_err(|_| {
                    Error::Config(format!(
                        "{} must be an absolute http(s) URL",
                        crate::envvars::FACILITATOR_URL.name
                    ))
                })?),
                None => urls.push(crate::paywall::DEFAULT_FACILITATOR_URL.to_string()),
            }
        }
        Ok(Self { urls, https_only: false })
    }

    /// As [`TrustedFacilitators::new`], reading [`crate::envvars::FACILITATOR_URL`] (or its
    /// alias) from the process environment.
    pub fn from_env(configured: Option<&str>, list: &[String]) -> Result<Self> {
        let env = crate::envvars::FACILITATOR_URL.from_process()?;
        Self::new(configured, list, env.as_deref())
    }

    /// Trust only facilitators reached over https: a challenge naming a plain-http one is
    /// `facilitator_untrusted`, whatever the list says.
    pub fn with_https_only(mut self, on: bool) -> Self {
        self.https_only = on;
        self
    }

    /// The first one: where wallet operations (balance, top-up) go by default.
    pub fn primary(&self) -> &str {
        &self.urls[0]
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The normalized URL of the facilitator a challenge names, if it is trusted.
    pub fn check(&self, facilitator: &str) -> Result<String> {
        let n = normalize_base_url(facilitator).map_err(|_| Error::ChallengeMalformed("facilitator"))?;
        if self.urls.contains(&n) && !(self.https_only && n.starts_with("http://")) {
            Ok(n)
        } else {
            Err(Error::FacilitatorUntrusted { facilitator: n })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_and_normalize() {
        let t = Target::parse("HTTP://User@API.Example.com:8080/a/b?x=1#f").unwrap();
        assert_eq!(
            (t.origin(), t.authority(), t.path()),
            ("http://api.example.com:8080", "api.example.com:8080", "/a/b")
        );
        let t = Target::parse("https://api.example").unwrap();
        assert_eq!((t.origin(), t.path()), ("https://api.example", "/"));
        assert_eq!(Target::parse("https://a.example:443/").unwrap().origin(), "https://a.example");
        assert_eq!(Target::parse("http://[::1]:9000/x").unwrap().origin(), "http://[::1]:9000");
        for bad in [
            "ftp://x/",
            "/relative",
            "http://",
            "http://:80/",
            "http://a:b/",
            "http://a:99999/",
            "http://a b/",
        ] {
            assert_eq!(Target::parse(bad).unwrap_err().code(), "request_malformed", "{bad}");
        }
    }

    #[test]
    fn trust_comes_from_config_then_env_then_default() {
        let list = vec!["http://127.0.0.1:4021/".to_string()];
        let t =
            TrustedFacilitators::new(Some("HTTP://127.0.0.1:4020/"), &list, Some("http://env:1")).unwrap();
        assert_eq!(t.urls(), ["http://127.0.0.1:4020", "http://127.0.0.1:4021"]);
        assert_eq!(t.primary(), "http://127.0.0.1:4020");
        let t = TrustedFacilitators::new(None, &[], Some("https://f.example:443/base/")).unwrap();
        assert_eq!(t.urls(), ["https://f.example/base"]);
        let t = TrustedFacilitators::new(None, &[], Some("  ")).unwrap();
        assert_eq!(t.urls(), [crate::paywall::DEFAULT_FACILITATOR_URL]);
        assert_eq!(t.check("http://127.0.0.1:4020/").unwrap(), "http://127.0.0.1:4020");
        let e = t.check("http://127.0.0.1:4021").unwrap_err();
        assert_eq!((e.code(), e.http_status()), ("facilitator_untrusted", 403));
        assert_eq!(t.check("javascript:alert(1)").unwrap_err().code(), "challenge_malformed");
        for bad in ["ftp://x", "http://x/?q=1", "x"] {
            assert_eq!(TrustedFacilitators::new(Some(bad), &[], None).unwrap_err().code(), "config_invalid");
        }
        assert_eq!(TrustedFacilitators::new(None, &[], Some("nope")).unwrap_err().code(), "config_invalid");
    }

    #[test]
    fn https_only_refuses_plain_http_facilitators() {
        let list = vec!["http://fac.example".to_string(), "https://fac.example".to_string()];
        let t = TrustedFacilitators::new(None, &list, None).unwrap().with_https_only(true);
        let e = t.check("http://fac.example").unwrap_err();
        assert_eq!(e.code(), "facilitator_untrusted");
        assert!(e.to_string().contains("http://fac.example"), "{e}");
        assert_eq!(t.check("https://fac.example/").unwrap(), "https://fac.example");
        // Without it, plain http is payable when trusted (loopback sandboxes).
        let lax = TrustedFacilitators::new(None, &list, None).unwrap();
        assert_eq!(lax.check("http://fac.example").unwrap(), "http://fac.example");
    }
}
