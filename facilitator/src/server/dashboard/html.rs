//! HTML building blocks: escaping (every value that reaches a page goes through [`esc`]), query
//! strings, dates, and the page frame with its security headers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;

/// No inline script or style, nothing from another origin, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Text or a double-quoted attribute value, made inert.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
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

/// A query string from the pairs with a value (`?a=1&b=x%20y`), or "" when none has one.
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        let Some(v) = v.filter(|v| !v.is_empty()) else { continue };
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` (a date input's value) as Unix seconds at 00:00 UTC.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || civil_from_days(days_from_civil(y, m, d)) != (y, m, d)
    {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400)
}

/// `YYYY-MM-DD HH:MM:SS` UTC.
pub fn datetime(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Which page the navigation marks as current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    None,
    Overview,
    Payments,
    Wallets,
}

/// A whole page: the frame (navigation and sign-out when signed in) around `body`.
pub fn page(title: &str, nav: Nav, csrf: Option<&str>, sandbox: bool, body: &str) -> String {
    let mut h = String::with_capacity(body.len() + 2048);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{} · Vlexivo dashboard</title>\
         <link rel=\"stylesheet\" href=\"/dashboard/assets/dashboard.css\">\
         <link rel=\"stylesheet\" href=\"/dashboard/assets/uPlot.min.css\"></head><body>\
         <header><span class=\"brand\">Vlexivo</span>",
        esc(title)
    );
    if let Some(csrf) = csrf {
        let cur = |n: Nav| if n == nav { " aria-current=\"page\"" } else { "" };
        let _ = write!(
            h,
            "<nav aria-label=\"Dashboard\"><a href=\"/dashboard\"{}>Overview</a>\
             <a href=\"/dashboard/payments\"{}>Payments</a>",
            cur(Nav::Overview),
            cur(Nav::Payments)
        );
        if sandbox {
            let _ = write!(h, "<a href=\"/dashboard/wallets\"{}>Sandbox wallets</a>", cur(Nav::Wallets));
        }
        let _ = write!(
            h,
            "</nav><form method=\"post\" action=\"/dashboard/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button class=\"quiet\" type=\"submit\">Sign out</button></form>",
            esc(csrf)
        );
    }
    let _ = write!(h, "</header><main id=\"main\">{body}</main></body></html>");
    h
}

/// An HTML answer with the dashboard's headers (CSP, no caching, no framing, no sniffing).
pub fn respond(status: StatusCode, html: String, cookies: &[String]) -> Response {
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

pub fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// A redirect after a form (303: the browser follows with GET).
pub fn see_other(to: &str, cookies: &[String]) -> Response {
    let mut r = respond(StatusCode::SEE_OTHER, String::new(), cookies);
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_makes_markup_inert() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(query(&[("a", Some("x y&z")), ("b", None), ("c", Some(""))]), "?a=x%20y%26z");
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2026-11-29"), Some(1_795_910_400));
        assert_eq!(datetime(1_795_910_400 + 3661), "2026-11-29 01:01:01");
        for bad in ["2026-02-30", "2026-13-01", "26-01-01", "x", "2026-1-01"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        for d in [-1000, 0, 59, 60, 365, 20_000, 30_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
