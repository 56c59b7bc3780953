//! Core's paywall page for browsers, for the JS adapters.

use crate::Rejection;
use napi_derive::napi;

/// The rejection as a browser should get it (core's `paywall_page::browser_page`): a 402
/// challenge to a request without a proof whose `Accept` prefers HTML gets the HTML page as its
/// body and the page's headers (`Content-Type` among them) added; any other rejection comes
/// back as it was.
#[napi]
pub fn for_browser(mut r: Rejection, accept: Option<String>, proof_present: bool) -> Rejection {
    let status = u16::try_from(r.status).unwrap_or(0);
    if let Some(page) =
        vlexivo_core::paywall_page::browser_page(status, &r.body, accept.as_deref(), proof_present)
    {
        r.body = page.body;
        r.headers.extend(page.headers.into_iter().map(|(k, v)| (k.to_string(), v)));
    }
    r
}
