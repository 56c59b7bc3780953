//! The 402 page for people: a browser that opens a paid URL without a proof gets an HTML page
//! (price, resource, what the payment buys, where to read how to pay) instead of the JSON an
//! agent reads. One rule and one template for every adapter: the adapter passes the request's
//! `Accept` header and whether it carried a proof to [`Rejection::for_browser`] (or, across a
//! language boundary, [`browser_page`]), and sends what comes back. The page carries the same challenge header, so nothing about paying changes.

use crate::paywall::Rejection;

/// Where the page points people who want to pay from code.
pub const DOCS_URL: &str = "https://vlexivo.online/docs";

/// The page's policy: no script, no style from elsewhere, no framing.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'sha256-TPJbEwqGyP80Mfd62kznjuPxh9SwFZ+TW/LVH8Dvs6U='; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's only style, allowed by its hash in [`PAGE_CSP`] (no `unsafe-inline`).
const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1b1f24}main{max-width:40rem;margin:0 auto;padding:1.2rem}h1{font-size:1.5rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{color:#57606a}dd{margin:0;word-break:break-all}.price{font-size:2rem;font-weight:700}a{color:#1f5fbf}code{word-break:break-all}";

/// Whether a request's `Accept` prefers an HTML page to JSON: `text/html` is acceptable and
/// ranked above JSON (browsers send `text/html,…,*/*;q=0.8`; `fetch`, curl and the SDKs send
/// `*/*` or `application/json`, and keep getting JSON).
pub fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let (mut html, mut json) = (None::<f32>, None::<f32>);
    let (mut html_wild, mut json_wild) = (None::<f32>, None::<f32>);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let ty = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        let keep = |slot: &mut Option<f32>| *slot = Some(slot.map_or(q, |s| s.max(q)));
        match ty.as_str() {
            "text/html" | "application/xhtml+xml" => keep(&mut html),
            "application/json" => keep(&mut json),
            "text/*" => keep(&mut html_wild),
            "application/*" => keep(&mut json_wild),
            "*/*" => {
                keep(&mut html_wild);
                keep(&mut json_wild);
            }
            _ => {}
        }
    }
    let html = html.or(html_wild).unwrap_or(0.0);
    let json = json.or(json_wild).unwrap_or(0.0);
    html > 0.0 && html > json
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn what_it_buys(scope: &str) -> String {
    match scope {
        "per-call" => "one call to this resource".into(),
        other => format!("access to this resource ({})", esc(other)),
    }
}

/// The HTML page that replaces a rejection's JSON body for a browser, and the headers it adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserPage {
    pub body: String,
    /// `Content-Type`, the page's CSP, `X-Content-Type-Options`, `Vary: Accept`: set after the
    /// rejection's own headers, replacing the JSON content type.
    pub headers: Vec<(&'static str, String)>,
}

/// The page for a rejection (`status`, JSON `body`) when it is a payment challenge, the request
/// carries no proof and its `Accept` prefers HTML ([`prefers_html`]); `None` otherwise: agents
/// and SDKs keep the JSON. The rejection's status (402) and headers (the challenge) stay.
pub fn browser_page(
    status: u16,
    body: &str,
    accept: Option<&str>,
    proof_present: bool,
) -> Option<BrowserPage> {
    if status != 402 || proof_present || !prefers_html(accept) {
        return None;
    }
    let v = serde_json::from_str::<serde_json::Value>(body).ok()?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    if field("challenge").is_empty() {
        return None;
    }
    let (price, currency, resource) = (field("price"), field("currency"), field("resource"));
    let sandbox = crate::challenge::Challenge::decode(field("challenge")).is_ok_and(|c| c.mode == "sandbox");
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Payment required · {price} {cur}</title><style>{STYLE}</style></head><body><main>\
         <h1>Payment required</h1>\
         <p class=\"price\" id=\"price\">{price} <abbr title=\"{cur_long}\">{cur}</abbr></p>\
         <p>This URL is paid per use: the payment buys <strong>{buys}</strong>.{mode}</p>\
         <dl><dt>Resource</dt><dd><code id=\"resource\">{resource}</code></dd>\
         <dt>Paid through</dt><dd><code>{facilitator}</code></dd></dl>\
         <p>Programs pay it with an HTTP 402 client (Node, Python, Rust, Kotlin, Swift), which \
         reads the <code>Vlexivo-Challenge</code> header of this response, pays and calls again. \
         <a href=\"{DOCS_URL}\">How to pay for an API with Vlexivo</a>.</p></main></body></html>",
        price = esc(price),
        cur = esc(&currency.to_uppercase()),
        cur_long = esc(currency),
        buys = what_it_buys(field("scope")),
        mode = if sandbox { " This is a sandbox (test) service: no real money moves." } else { "" },
        resource = esc(resource),
        facilitator = esc(field("facilitator")),
    );
    Some(BrowserPage {
        body,
        headers: vec![
            ("Content-Type", "text/html; charset=utf-8".into()),
            ("Content-Security-Policy", PAGE_CSP.into()),
            ("X-Content-Type-Options", "nosniff".into()),
            ("Vary", "Accept".into()),
        ],
    })
}

impl Rejection {
    /// This rejection as a browser should get it ([`browser_page`]): the HTML page with its
    /// headers added, or `self` unchanged.
    pub fn for_browser(mut self, accept: Option<&str>, proof_present: bool) -> Rejection {
        if let Some(page) = browser_page(self.status, &self.body, accept, proof_present) {
            self.body = page.body;
            self.headers.extend(page.headers);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_prefer_html_and_clients_do_not() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        for a in [chrome, firefox, "text/html", "text/*"] {
            assert!(prefers_html(Some(a)), "{a}");
        }
        for a in [
            None,
            Some("*/*"),
            Some("application/json"),
            Some("application/json, text/html;q=0.5"),
            Some("text/html;q=0"),
            Some("text/html, application/json"),
            Some(""),
            Some("image/png"),
        ] {
            assert!(!prefers_html(a), "{a:?}");
        }
    }

    #[test]
    fn the_page_shows_the_terms_inert_and_only_for_a_challenge() {
        let body = serde_json::json!({
            "error": "token_missing", "price": "0.25", "currency": "usd", "scope": "per-call",
            "resource": "GET https://api.example/<script>alert(1)</script>?a=\"'",
            "facilitator": "https://f.example", "challenge": "c"
        })
        .to_string();
        let html = "text/html";
        let page = browser_page(402, &body, Some(html), false).unwrap();
        assert!(page.body.contains("0.25 <abbr title=\"usd\">USD</abbr>"));
        assert!(page.body.contains("one call to this resource"));
        assert!(
            page.body.contains("GET https://api.example/&lt;script&gt;alert(1)&lt;/script&gt;?a=&quot;&#39;")
        );
        assert!(!page.body.contains("<script"));
        assert_eq!(page.headers[0], ("Content-Type", "text/html; charset=utf-8".to_string()));
        assert!(browser_page(402, &body, Some(html), true).is_none(), "a proof was sent");
        assert!(browser_page(402, &body, Some("*/*"), false).is_none());
        assert!(browser_page(409, &body, Some(html), false).is_none());
        assert!(browser_page(402, r#"{"error":"x"}"#, Some(html), false).is_none(), "no challenge");
    }

    #[test]
    fn the_style_hash_in_the_csp_is_the_style() {
        use base64::Engine;
        use sha2::Digest;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE.as_bytes()));
        assert!(PAGE_CSP.contains(&format!("'sha256-{hash}'")), "{hash}");
    }
}
