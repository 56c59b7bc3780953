//! The 402 page for people: a browser that opens a paid URL without a proof gets an HTML page
//! (price, resource, what the payment buys, where to read how to pay) instead of the JSON an
//! agent reads. One rule and one template for every adapter: the adapter passes the request's
//! `Accept` header and whether it carried a proof to [`Rejection::for_browser`] (or, across a
//! language boundary, [`browser_page`]), and sends what comes back. The page carries the same challenge header, so nothing about paying changes.

use crate::paywall::Rejection;
use crate::wallet::Address;

/// Where the page points people who want to pay from code.
pub const DOCS_URL: &str = "https://vlexivo.online/docs";

/// The page's policy: no script, no style from elsewhere, no framing.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'sha256-d428Qz0TH24CA8CgBuMcJGMBjiuvRsDwWKmSureVDHQ='; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's only style, allowed by its hash in [`PAGE_CSP`] (no `unsafe-inline`).
const STYLE: &str = "button{font:inherit;padding:.5rem 1rem;cursor:pointer}pre{white-space:pre-wrap;word-break:break-all;background:#f6f8fa;padding:.8rem}body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1b1f24}main{max-width:40rem;margin:0 auto;padding:1.2rem}h1{font-size:1.5rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{color:#57606a}dd{margin:0;word-break:break-all}.price{font-size:2rem;font-weight:700}a{color:#1f5fbf}code{word-break:break-all}";

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

/// The sandbox payer script (`src/assets/paywall_pay.src.js` bundled with @noble/curves and
/// @noble/hashes by `src/assets/rebuild.sh`): a throwaway key in the browser pays the challenge
/// through the faucet and the facilitator, then calls the URL again with the proof.
const PAY_SCRIPT: &str = include_str!("assets/paywall_pay.js");

/// A paying page's policy: [`PAGE_CSP`] plus the payer script by its hash, and `fetch` to
/// the app itself and to the facilitator the challenge names.
fn paying_csp(facilitator_origin: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = HASH.get_or_init(|| {
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(PAY_SCRIPT.as_bytes()))
    });
    format!("{PAGE_CSP}; script-src 'sha256-{hash}'; connect-src 'self' {facilitator_origin}")
}

/// The facilitator's origin (`scheme://host[:port]`) when its URL is plain enough to name in a
/// CSP header; `None` turns the pay button off rather than widen the policy.
fn csp_origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    let ok = matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    ok.then(|| &url[..scheme.len() + 3 + host.len()])
}

/// How the page pays: a throwaway key signs this digest (sandbox), or an injected wallet signs
/// this typed data, valid until the challenge's expiry (live).
enum PayWith {
    TestWallet([u8; 32]),
    Injected(String, u64),
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
    let encoded = field("challenge");
    let challenge = crate::challenge::Challenge::decode(encoded).ok();
    let sandbox = challenge.as_ref().is_some_and(|c| c.mode == "sandbox");
    // The page pays from the browser with what core renders into it, so the rules stay here:
    // in sandbox a throwaway wallet signs the digest of the authorization the SDK payer signs;
    // in live mode an injected EIP-1193 wallet signs the EIP-3009 transfer the SDK payer signs
    // (typed data, `from` filled in with the wallet's account).
    let payable = challenge.as_ref().and_then(|c| {
        let with = if sandbox {
            PayWith::TestWallet(crate::payment::authorization(c, encoded).ok()?.signing_hash())
        } else {
            let (auth, domain) =
                crate::payment::transfer_authorization(c, Address([0; 20]), 0, c.exp).ok()?;
            PayWith::Injected(auth.typed_data(&domain).to_string(), c.exp)
        };
        Some((csp_origin(field("facilitator"))?, with))
    });
    let (intro, sign, label) = match &payable {
        Some((_, PayWith::TestWallet(digest))) => (
            "Pay with a throwaway test wallet made in this page and topped up by the sandbox faucet.",
            format!("data-digest=\"0x{}\"", hex::encode(digest)),
            "with a test wallet",
        ),
        Some((_, PayWith::Injected(typed, exp))) => (
            "Pay from your browser wallet (EIP-1193): it asks you to sign a USDC transfer authorization.",
            format!("data-typed=\"{}\" data-valid-before=\"{exp}\"", esc(typed)),
            "with your wallet",
        ),
        None => ("", String::new(), ""),
    };
    let pay = match payable {
        Some(_) => format!(
            "<section aria-labelledby=\"try\"><h2 id=\"try\">Pay in the browser</h2>\
             <p>{intro}</p><button type=\"button\" id=\"pay\" data-challenge=\"{ch}\" \
             {sign} data-facilitator=\"{fac}\" data-price=\"{price}\" \
             data-currency=\"{cur}\">Pay {price} {cur_up} {label}</button>\
             <p id=\"pay-status\" role=\"status\" aria-live=\"polite\"></p>\
             <pre id=\"paid\" hidden></pre></section><script>{PAY_SCRIPT}</script>",
            ch = esc(encoded),
            fac = esc(field("facilitator")),
            price = esc(price),
            cur = esc(currency),
            cur_up = esc(&currency.to_uppercase()),
        ),
        None => String::new(),
    };
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
         <a href=\"{DOCS_URL}\">How to pay for an API with Vlexivo</a>.</p>{pay}</main></body></html>",
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
            ("Content-Security-Policy", payable.map_or_else(|| PAGE_CSP.to_string(), |(o, _)| paying_csp(o))),
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

    fn sandbox_body(facilitator: &str) -> (String, String) {
        use crate::challenge::{Challenge, ChallengeParams};
        use crate::money::{Currency, Money};
        let price = Money::parse("0.02", Currency::Usd).unwrap();
        let c = Challenge::create(
            &ChallengeParams {
                price: &price,
                scope: "per-call",
                method: "get",
                origin: "http://127.0.0.1:3000",
                path: "/api/forecast",
                body_sha256: None,
                account: "acct_00112233445566778899",
                facilitator,
                mode: "sandbox",
                network: "sandbox",
                live: None,
                payer: None,
                ttl_secs: 300,
            },
            &[7; 32],
            1_800_000_000,
            &crate::env::OsEntropy,
        )
        .unwrap();
        let encoded = c.encode();
        let body = serde_json::json!({
            "error": "token_missing", "price": "0.02", "currency": "usd", "scope": "per-call",
            "resource": c.resource(), "facilitator": facilitator, "challenge": encoded
        });
        (body.to_string(), encoded)
    }

    #[test]
    fn a_sandbox_page_carries_the_payer_script_allowed_by_hash_and_the_digest_the_sdk_signs() {
        use base64::Engine;
        use sha2::Digest;
        let (body, encoded) = sandbox_body("http://127.0.0.1:4020");
        let page = browser_page(402, &body, Some("text/html"), false).unwrap();
        let auth =
            crate::payment::authorization(&crate::challenge::Challenge::decode(&encoded).unwrap(), &encoded)
                .unwrap();
        assert!(page.body.contains(&format!("data-digest=\"0x{}\"", hex::encode(auth.signing_hash()))));
        assert!(page.body.contains(&format!("data-challenge=\"{encoded}\"")));
        assert!(page.body.contains(&format!("<script>{PAY_SCRIPT}</script>")));
        assert!(
            !PAY_SCRIPT.to_ascii_lowercase().contains("</script"),
            "the bundle cannot end the element early"
        );
        assert_eq!(page.body.matches("<script").count(), 1);
        let csp = &page.headers.iter().find(|(k, _)| *k == "Content-Security-Policy").unwrap().1;
        let hash =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(PAY_SCRIPT.as_bytes()));
        assert!(csp.contains(&format!("script-src 'sha256-{hash}'")), "{csp}");
        assert!(csp.ends_with("connect-src 'self' http://127.0.0.1:4020"), "{csp}");
        assert!(!csp.contains("unsafe"));
    }

    #[test]
    fn no_pay_button_when_the_facilitator_cannot_be_named_in_the_policy() {
        assert_eq!(csp_origin("https://f.example:8443/base"), Some("https://f.example:8443"));
        assert_eq!(csp_origin("http://[::1]:4020"), Some("http://[::1]:4020"));
        for bad in [
            "https://f.example; script-src *",
            "javascript:alert(1)",
            "https://",
            "ftp://f.example",
            "f.example",
        ] {
            assert_eq!(csp_origin(bad), None, "{bad}");
        }
        let (body, _) = sandbox_body("https://f.example; script-src *");
        let page = browser_page(402, &body, Some("text/html"), false).unwrap();
        assert!(!page.body.contains("<script"));
        assert!(page.headers.iter().any(|(k, v)| *k == "Content-Security-Policy" && v == PAGE_CSP));
    }
}
