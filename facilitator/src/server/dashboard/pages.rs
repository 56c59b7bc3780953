//! The dashboard's pages: what each shows, read through the same queries as the API.

use super::Session;
use super::html::{self, esc, query};
use crate::server::AppState;
use crate::server::api::{payment_page, usd};
use crate::server::reads::{Group, GroupBy, Point};
use crate::server::types::PaymentRecord;
use axum::http::StatusCode;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use vlexivo_core::money::Currency;
use vlexivo_core::paging::PaymentFilter;
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, Result};

pub const SIGNED_OUT: &str = "<h1>Signed out</h1><p>This needs a signed-in session. \
     <a href=\"/dashboard/login\">Sign in</a>.</p>";
pub const CSRF_REFUSED: &str = "<h1>Refused</h1><p class=\"error\" role=\"alert\">The form's security token \
     did not match this session. Reload the page and try again.</p>";

/// Rows per table page, default and most.
const PAGE_ROWS: u32 = 50;
const MAX_PAGE_ROWS: u32 = 500;
/// Groups shown in a breakdown.
const TOP: u32 = 10;
/// Empty buckets are filled in up to this many points.
const MAX_POINTS: i64 = 2_000;

pub fn login(csrf: &str, error: Option<&str>, sandbox: bool) -> String {
    let mut h = String::from("<div class=\"signin\"><h1>Sign in to your dashboard</h1>");
    if let Some(e) = error {
        let _ = write!(h, "<p class=\"error\" role=\"alert\" id=\"signin-error\">{}</p>", esc(e));
    }
    let _ = write!(
        h,
        "<form method=\"post\" action=\"/dashboard/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label for=\"secret\">API secret\
         <input id=\"secret\" name=\"secret\" type=\"password\" required autocomplete=\"off\" \
         spellcheck=\"false\" placeholder=\"{}…\"{}></label>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"muted\">The secret is checked once and not kept by the browser: you get a \
         session for 8 hours. It is the <code>api_secret</code> you got when you onboarded.</p></div>",
        esc(csrf),
        if sandbox { "sk_test_" } else { "sk_live_" },
        if error.is_some() { " aria-describedby=\"signin-error\"" } else { "" },
    );
    h
}

fn atomic_usd_f64(atomic: i64) -> f64 {
    atomic as f64 / 10f64.powi(Currency::Usd.decimals() as i32)
}

/// Totals, the series and the breakdowns of a provider's payments in `[from, ∞)`.
struct Summary {
    total: Group,
    series: Vec<Point>,
    routes: Vec<Group>,
    payers: Vec<Group>,
}

async fn summary(st: &AppState, account: &str, from: Option<i64>, bucket: i64) -> Result<Summary> {
    let Some(live) = &st.live else {
        let r = &st.reads;
        let a = || account.to_string();
        // Four scans of the range, each on its own read connection.
        let (mut total, series, routes, payers) = tokio::try_join!(
            r.group(a(), GroupBy::All, from, None, 1),
            r.series(a(), from, None, bucket),
            r.group(a(), GroupBy::Route, from, None, TOP),
            r.group(a(), GroupBy::Payer, from, None, TOP),
        )?;
        return Ok(Summary {
            total: total.pop().unwrap_or(Group { key: String::new(), count: 0, sum: 0 }),
            series,
            routes,
            payers,
        });
    };
    // Live: the settlement records, less those the chain refused (as the API's revenue).
    let l = live.store.summary(account, from, bucket, TOP).await?;
    let group = |(key, count, sum): (String, i64, i64)| Group { key, count, sum };
    Ok(Summary {
        total: Group { key: String::new(), count: l.total.0, sum: l.total.1 },
        series: l.series.into_iter().map(|(at, count, sum)| Point { at, count, sum }).collect(),
        routes: l.routes.into_iter().map(group).collect(),
        payers: l.payers.into_iter().map(group).collect(),
    })
}

pub async fn overview(st: &AppState, s: &Session, q: &HashMap<String, String>) -> Result<String> {
    let now = st.clock.now() as i64;
    let range = q.get("range").map(String::as_str).unwrap_or("7d");
    let (span, default_bucket) = match range {
        "24h" => (Some(86_400), "hour"),
        "7d" => (Some(7 * 86_400), "hour"),
        "30d" => (Some(30 * 86_400), "day"),
        "all" => (None, "day"),
        _ => return Err(Error::RequestMalformed("range is one of 24h, 7d, 30d, all".into())),
    };
    let bucket_name = q.get("bucket").map(String::as_str).unwrap_or(default_bucket);
    let bucket = match bucket_name {
        "hour" => 3600,
        "day" => 86_400,
        _ => return Err(Error::RequestMalformed("bucket is hour or day".into())),
    };
    let from = span.map(|s| now - s);
    let sum = summary(st, &s.account, from, bucket).await?;
    let me = st.provider(&s.key_account).await?;
    let name = me.as_ref().and_then(|p| p.name.clone());

    let mut h = String::new();
    let _ = write!(
        h,
        "<h1>Overview{}</h1><p class=\"muted\">Account <code id=\"account\">{}</code> · {} mode</p>",
        name.as_deref()
            .map(|n| format!(" · <span id=\"provider-name\">{}</span>", esc(n)))
            .unwrap_or_default(),
        esc(&s.account),
        if st.live.is_some() { "live" } else { "sandbox" },
    );
    // Range and bucket: a plain GET form, usable without the script.
    let opt = |v: &str, cur: &str, label: &str| {
        format!("<option value=\"{v}\"{}>{label}</option>", if v == cur { " selected" } else { "" })
    };
    let _ = write!(
        h,
        "<form class=\"filters\" method=\"get\" action=\"/dashboard\">\
         <label for=\"range\">Range<select id=\"range\" name=\"range\">{}{}{}{}</select></label>\
         <label for=\"bucket\">Per<select id=\"bucket\" name=\"bucket\">{}{}</select></label>\
         <button type=\"submit\">Show</button></form>",
        opt("24h", range, "Last 24 hours"),
        opt("7d", range, "Last 7 days"),
        opt("30d", range, "Last 30 days"),
        opt("all", range, "All time"),
        opt("hour", bucket_name, "hour"),
        opt("day", bucket_name, "day"),
    );
    let avg = if sum.total.count > 0 { sum.total.sum / sum.total.count } else { 0 };
    let _ = write!(
        h,
        "<dl class=\"cards\"><div class=\"card\"><dt>Revenue</dt><dd id=\"revenue\">${}</dd></div>\
         <div class=\"card\"><dt>Payments</dt><dd id=\"count\">{}</dd></div>\
         <div class=\"card\"><dt>Average price</dt><dd id=\"average\">${}</dd></div></dl>",
        usd(sum.total.sum),
        sum.total.count,
        usd(avg),
    );

    // The chart's series, with empty buckets filled in (when the range is not too long).
    let mut points: BTreeMap<i64, i64> = sum.series.iter().map(|p| (p.at, p.sum)).collect();
    let start = from.map(|f| f / bucket * bucket).or_else(|| sum.series.first().map(|p| p.at));
    if let Some(start) = start
        && (now - start) / bucket < MAX_POINTS
    {
        let mut t = start;
        while t <= now {
            points.entry(t).or_insert(0);
            t += bucket;
        }
    }
    let ts: Vec<i64> = points.keys().copied().collect();
    let vs: Vec<f64> = points.values().map(|a| atomic_usd_f64(*a)).collect();
    let json = serde_json::json!({ "t": ts, "usd": vs }).to_string().replace('<', "\\u003c");
    let _ = write!(
        h,
        "<h2 id=\"chart-title\">Revenue per {}</h2>\
         <div id=\"vlx-chart\" role=\"img\" aria-labelledby=\"chart-title\"></div>\
         <script type=\"application/json\" id=\"vlx-series\">{json}</script>\
         <details><summary>Revenue per {} as a table</summary><div class=\"table-wrap\">\
         <table id=\"series-table\"><thead><tr><th scope=\"col\">From (UTC)</th>\
         <th scope=\"col\" class=\"num\">Payments</th><th scope=\"col\" class=\"num\">Revenue</th></tr></thead><tbody>",
        bucket_name, bucket_name
    );
    for p in &sum.series {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            html::datetime(p.at),
            p.count,
            usd(p.sum)
        );
    }
    h.push_str("</tbody></table></div></details>");

    let breakdown = |h: &mut String, title: &str, id: &str, col: &str, filter: &str, groups: &[Group]| {
        let _ = write!(
            h,
            "<h2>{title}</h2><div class=\"table-wrap\"><table id=\"{id}\"><thead><tr><th scope=\"col\">{col}</th>\
             <th scope=\"col\" class=\"num\">Payments</th><th scope=\"col\" class=\"num\">Revenue</th></tr></thead><tbody>"
        );
        if groups.is_empty() {
            h.push_str("<tr><td colspan=\"3\" class=\"muted\">No payments in this range.</td></tr>");
        }
        for g in groups {
            let _ = write!(
                h,
                "<tr><td class=\"mono\"><a href=\"/dashboard/payments{}\">{}</a></td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td></tr>",
                esc(&query(&[(filter, Some(&g.key))])),
                esc(&g.key),
                g.count,
                usd(g.sum)
            );
        }
        h.push_str("</tbody></table></div>");
    };
    breakdown(&mut h, "Per route", "routes", "Route", "route", &sum.routes);
    breakdown(&mut h, "Top payers", "payers", "Payer", "payer", &sum.payers);
    h.push_str(
        "<script src=\"/dashboard/assets/uPlot.iife.min.js\"></script>\
         <script src=\"/dashboard/assets/dashboard.js\"></script>",
    );
    Ok(h)
}

/// The table's filters from the page's query: dates (`YYYY-MM-DD`, UTC) become `[from, to+1 day)`.
fn table_filter(q: &HashMap<String, String>) -> Result<PaymentFilter> {
    let day = |k: &str, extra: i64| -> Result<Option<String>> {
        match q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => html::parse_date(v)
                .map(|s| Some((s + extra).to_string()))
                .ok_or_else(|| Error::RequestMalformed(format!("{k} must be a date (YYYY-MM-DD)"))),
        }
    };
    let (from, to) = (day("from", 0)?, day("to", 86_400)?);
    PaymentFilter::parse(|k| match k {
        "from" => from.clone(),
        "to" => to.clone(),
        k => q.get(k).cloned(),
    })
}

fn state_cell(p: &PaymentRecord) -> String {
    let Some(state) = &p.state else { return String::new() };
    let mut c = esc(state);
    if let Some(b) = p.block {
        let _ = write!(c, " · block {b}");
    }
    if let Some(i) = p.call_index {
        let _ = write!(c, " · call {i} of a batch");
    }
    if let Some(n) = p.reorgs {
        let _ = write!(c, " · reorged {n}×");
    }
    if let Some(f) = &p.failure {
        let _ = write!(c, " · {}", esc(f));
    }
    format!("<td>{c}</td>")
}

pub async fn payments(st: &AppState, s: &Session, q: &HashMap<String, String>) -> (StatusCode, String) {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let live = st.live.is_some();
    let mut h = String::from("<h1>Payments</h1>");
    let _ = write!(
        h,
        "<form class=\"filters\" method=\"get\" action=\"/dashboard/payments\" aria-label=\"Filters\">\
         <label for=\"f-route\">Route<input id=\"f-route\" name=\"route\" value=\"{}\" size=\"34\"></label>\
         <label for=\"f-payer\">Payer<input id=\"f-payer\" name=\"payer\" value=\"{}\" size=\"44\" \
         placeholder=\"0x…\"></label>\
         <label for=\"f-from\">From<input id=\"f-from\" name=\"from\" type=\"date\" value=\"{}\"></label>\
         <label for=\"f-to\">To<input id=\"f-to\" name=\"to\" type=\"date\" value=\"{}\"></label>\
         <button type=\"submit\">Filter</button> <a href=\"/dashboard/payments\">Clear</a></form>",
        esc(get("route").unwrap_or("")),
        esc(get("payer").unwrap_or("")),
        esc(get("from").unwrap_or("")),
        esc(get("to").unwrap_or("")),
    );
    let limit = match get("limit").map(|l| l.parse::<u32>()) {
        None => PAGE_ROWS,
        Some(Ok(n)) if (1..=MAX_PAGE_ROWS).contains(&n) => n,
        Some(_) => {
            let _ = write!(h, "<p class=\"error\" role=\"alert\">limit is 1..={MAX_PAGE_ROWS}</p>");
            return (StatusCode::BAD_REQUEST, h);
        }
    };
    let page = match table_filter(q) {
        Ok(f) => payment_page(st, &s.account, &f, get("cursor"), limit).await,
        Err(e) => Err(e),
    };
    let page = match page {
        Ok(p) => p,
        Err(e) => {
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let msg = if status.is_server_error() { "internal error".to_string() } else { e.to_string() };
            if status.is_server_error() {
                tracing::error!(error = %e, "dashboard: payments");
            }
            let _ = write!(h, "<p class=\"error\" role=\"alert\" id=\"error\">{}</p>", esc(&msg));
            return (status, h);
        }
    };
    let filters =
        [("route", get("route")), ("payer", get("payer")), ("from", get("from")), ("to", get("to"))];
    let _ = write!(
        h,
        "<p><a id=\"csv\" href=\"/dashboard/payments.csv{}\" download>Export CSV</a> \
         <span class=\"muted\">(every payment under these filters)</span></p>",
        esc(&query(&filters))
    );
    let _ = write!(
        h,
        "<div class=\"table-wrap\"><table id=\"payments\"><caption class=\"sr-only\">Payments, newest first</caption>\
         <thead><tr><th scope=\"col\">Time (UTC)</th><th scope=\"col\">Route</th><th scope=\"col\">Payer</th>\
         <th scope=\"col\" class=\"num\">Amount</th><th scope=\"col\">Transaction</th>{}</tr></thead><tbody>",
        if live { "<th scope=\"col\">Settlement</th>" } else { "" }
    );
    if page.payments.is_empty() {
        let _ = write!(
            h,
            "<tr><td colspan=\"{}\" class=\"muted\">No payments.</td></tr>",
            if live { 6 } else { 5 }
        );
    }
    for p in &page.payments {
        let _ = write!(
            h,
            "<tr data-nonce=\"{}\"><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td>\
             <td class=\"num\">{} {}</td><td class=\"mono\">{}</td>{}</tr>",
            esc(&p.nonce),
            html::datetime(p.paid_at as i64),
            esc(&p.resource),
            esc(&p.payer),
            esc(&p.amount),
            esc(&p.currency.to_uppercase()),
            esc(&p.tx_hash),
            state_cell(p),
        );
    }
    h.push_str("</tbody></table></div><nav class=\"pager\" aria-label=\"Pages\">");
    if get("cursor").is_some() {
        let _ =
            write!(h, "<a id=\"newest\" href=\"/dashboard/payments{}\">Newest</a>", esc(&query(&filters)));
    }
    if let Some(next) = &page.next_cursor {
        let mut with = filters.to_vec();
        let lim = limit.to_string();
        if limit != PAGE_ROWS {
            with.push(("limit", Some(&lim)));
        }
        with.push(("cursor", Some(next)));
        let _ = write!(
            h,
            "<a id=\"older\" rel=\"next\" href=\"/dashboard/payments{}\">Older →</a>",
            esc(&query(&with))
        );
    }
    h.push_str("</nav>");
    (StatusCode::OK, h)
}

/// One CSV field, quoted when needed; with `defuse`, a leading `= + - @` (a formula to a
/// spreadsheet) is quoted and prefixed with `'`.
fn csv_field(out: &mut String, v: &str, defuse: bool) {
    let risky = defuse && v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky || v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if risky {
            out.push('\'');
        }
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

pub async fn csv(st: &AppState, s: &Session, q: &HashMap<String, String>) -> Result<String> {
    let f = table_filter(q)?;
    let mut out = String::from("paid_at,time_utc,resource,payer,amount,currency,tx_hash,nonce,state\r\n");
    let mut cursor: Option<String> = None;
    loop {
        let page = payment_page(st, &s.account, &f, cursor.as_deref(), 1000).await?;
        for p in &page.payments {
            let paid = p.paid_at.to_string();
            let time = html::datetime(p.paid_at as i64);
            let fields = [
                paid.as_str(),
                &time,
                &p.resource,
                &p.payer,
                &p.amount,
                &p.currency,
                &p.tx_hash,
                &p.nonce,
                p.state.as_deref().unwrap_or(""),
            ];
            for (i, v) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // Only the resource comes from callers; the other fields are made here.
                csv_field(&mut out, v, i == 2);
            }
            out.push_str("\r\n");
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

fn wallet_forms(h: &mut String, address: &str, csrf: &str) {
    let _ = write!(
        h,
        "<h2>Look up a wallet</h2><form class=\"filters\" method=\"get\" action=\"/dashboard/wallets\">\
         <label for=\"w-address\">Address<input id=\"w-address\" name=\"address\" value=\"{a}\" size=\"44\" \
         placeholder=\"0x…\" required></label><button type=\"submit\">Look up</button></form>\
         <h2>Faucet top-up</h2><form class=\"filters\" method=\"post\" action=\"/dashboard/wallets/topup\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <label for=\"t-address\">Address<input id=\"t-address\" name=\"address\" value=\"{a}\" size=\"44\" \
         placeholder=\"0x…\" required></label>\
         <label for=\"t-amount\">Amount (USD)<input id=\"t-amount\" name=\"amount\" value=\"10\" size=\"8\" \
         inputmode=\"decimal\" required></label><button type=\"submit\">Top up</button></form>",
        a = esc(address),
        c = esc(csrf),
    );
}

const LIVE_WALLETS: &str = "<h1>Wallets</h1><p>Live wallets hold the token on chain: fund them with a \
     transfer, not a faucet.</p>";

pub async fn wallets(st: &AppState, q: &HashMap<String, String>, csrf: &str) -> (StatusCode, String) {
    if st.live.is_some() {
        return (StatusCode::OK, LIVE_WALLETS.into());
    }
    let mut h = String::from("<h1>Sandbox wallets</h1>");
    let address = q.get("address").map(|a| a.trim()).unwrap_or("");
    let mut status = StatusCode::OK;
    if !address.is_empty() {
        match Address::parse(address) {
            Ok(a) => match st.wallet_balance(a).await {
                Ok(b) => {
                    let _ = write!(
                        h,
                        "<p role=\"status\">Wallet <code>{}</code> holds <strong id=\"balance\">${}</strong>.</p>",
                        a.to_checksum(),
                        usd(b)
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "dashboard: wallet balance");
                    status = StatusCode::INTERNAL_SERVER_ERROR;
                    h.push_str("<p class=\"error\" role=\"alert\">internal error</p>");
                }
            },
            Err(e) => {
                status = StatusCode::BAD_REQUEST;
                let _ = write!(h, "<p class=\"error\" role=\"alert\">{}</p>", esc(&e.to_string()));
            }
        }
    }
    wallet_forms(&mut h, address, csrf);
    (status, h)
}

pub async fn top_up(st: &AppState, form: &HashMap<String, String>, csrf: &str) -> (StatusCode, String) {
    if st.live.is_some() {
        return (StatusCode::OK, LIVE_WALLETS.into());
    }
    let address = form.get("address").map(|a| a.trim()).unwrap_or("");
    let amount = form.get("amount").map(|a| a.trim()).unwrap_or("");
    let mut h = String::from("<h1>Sandbox wallets</h1>");
    let done = async {
        let a = Address::parse(address)?;
        st.top_up(a, &crate::server::types::TopUpRequest::of(amount)).await
    }
    .await;
    let status = match done {
        Ok(r) => {
            let _ = write!(
                h,
                "<p role=\"status\">Topped up <code>{}</code> by ${}: it now holds <strong id=\"balance\">${}</strong>.</p>",
                esc(&r.address),
                esc(&r.amount),
                esc(&r.balance)
            );
            StatusCode::OK
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let msg = if status.is_server_error() { "internal error".into() } else { e.to_string() };
            let _ = write!(h, "<p class=\"error\" role=\"alert\">{}</p>", esc(&msg));
            status
        }
    };
    wallet_forms(&mut h, address, csrf);
    (status, h)
}
