//! `vlexivo pay`: curl for paid APIs. Shows the price, pays within `--max-price`, prints the
//! response body (stdout) and the receipt (stderr, so the body can be piped).
//!
//! Exit codes: `crate::exit`.

use crate::exit;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::PathBuf;
use vlexivo_client::VlexivoClient;
use vlexivo_client::tls::{self, TlsConfig, TrustRoots};
use vlexivo_core::client::{self as flow, AutoTopUp, MAX_RESPONSE_BODY, PaymentRequired};
use vlexivo_core::envvars;
use vlexivo_core::policy::SpendingPolicy;
use vlexivo_core::{Currency, Error, Money};

/// Cap when `--max-price` is not given: a typo'd URL should not cost much.
pub const DEFAULT_MAX_PRICE: &str = "0.10";

/// How the CLI's HTTP clients verify servers (every command that calls out: `pay`, `provider`,
/// `wallet`). Global: accepted before or after the subcommand.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Also trust the certificate authorities in this PEM file (a private CA).
    #[arg(long, global = true, env = envvars::CA_FILE.name, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Roots to trust: auto (the OS verifier on macOS and Windows, Mozilla's roots built in
    /// elsewhere), webpki (Mozilla's roots everywhere) or platform (the OS verifier).
    #[arg(long, global = true, env = envvars::TLS_ROOTS.name, value_name = "ROOTS", default_value = "auto",
          value_parser = ["auto", "webpki", "platform"])]
    pub tls_roots: String,
    /// Refuse plain-http URLs: the API's, and a facilitator a challenge names.
    #[arg(long, global = true, env = envvars::HTTPS_ONLY.name)]
    pub https_only: bool,
}

impl TlsArgs {
    pub fn config(&self) -> Result<TlsConfig, Error> {
        let mut cfg = TlsConfig::new().roots(TrustRoots::parse(&self.tls_roots)?).https_only(self.https_only);
        if let Some(path) = &self.ca_file {
            cfg = cfg.add_ca_file(path)?;
        }
        Ok(cfg)
    }
}

/// `vlexivo pay URL [-X METHOD] [-H 'K: V']... [-d BODY] [--max-price P] [--wallet-key KEY] [--json]`
#[derive(clap::Args, Debug, Clone)]
pub struct PayArgs {
    /// Absolute http(s) URL of the paid API.
    pub url: String,
    /// HTTP method (default GET, or POST when a body is given).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// Request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    pub headers: Vec<String>,
    /// Request body; "@file" reads a file, "@-" stdin. JSON bodies default to
    /// Content-Type: application/json.
    #[arg(short = 'd', long = "data", value_name = "BODY")]
    pub data: Option<String>,
    /// Refuse to pay more than this per call (decimal usd) [default: 0.10].
    #[arg(long, value_name = "PRICE")]
    pub max_price: Option<String>,
    /// Payer wallet key (0x + 64 hex); `vlexivo wallet new` makes one.
    #[arg(long, env = envvars::WALLET_KEY.name, hide_env_values = true, value_name = "KEY")]
    pub wallet_key: Option<String>,
    /// Only pay through this facilitator (default: the one the challenge names).
    #[arg(long, env = envvars::FACILITATOR_URL.name, value_name = "URL")]
    pub facilitator: Option<String>,
    /// Top up the wallet (sandbox faucet) by this amount first if it cannot cover the price.
    #[arg(long, value_name = "AMOUNT")]
    pub top_up: Option<String>,
    /// Print one JSON object (status, price, receipt, body) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print the response status line and headers (like curl -i).
    #[arg(short = 'i', long)]
    pub include: bool,
    /// Write the body to this file instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// A failure with its exit code and what to tell the user.
struct Failure {
    code: i32,
    error: &'static str,
    message: String,
    extra: Value,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self { code: exit::USAGE, error: "usage", message: message.into(), extra: Value::Null }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let (code, message, extra) = match &e {
            Error::BudgetExceeded { requested, remaining, .. } => (
                exit::OVER_MAX_PRICE,
                format!("the price ${requested} is above --max-price ${remaining}; nothing was paid"),
                json!({ "price": requested, "max_price": remaining }),
            ),
            Error::InsufficientFunds { required, balance, currency } => (
                exit::INSUFFICIENT_FUNDS,
                format!(
                    "insufficient funds: this call needs ${required} {currency}, the wallet has ${balance} \
                     (sandbox: `vlexivo wallet topup ADDRESS AMOUNT`, or pass --top-up AMOUNT)"
                ),
                json!({ "required": required, "balance": balance, "currency": currency }),
            ),
            Error::FacilitatorUnavailable(why) => (
                exit::FACILITATOR_UNAVAILABLE,
                format!("the facilitator is unavailable ({why}); nothing was paid"),
                Value::Null,
            ),
            Error::FacilitatorUntrusted { facilitator } => (
                exit::FAILED,
                format!(
                    "the API names the facilitator {facilitator}, which is not trusted (--facilitator or \
                     VLX_FACILITATOR_URL names the one to trust; with --https-only, an https one); nothing was paid"
                ),
                json!({ "facilitator": facilitator }),
            ),
            Error::WalletKeyInvalid | Error::RequestMalformed(_) | Error::Config(_) => {
                (exit::USAGE, e.to_string(), Value::Null)
            }
            _ => (exit::FAILED, e.to_string(), Value::Null),
        };
        Self { code, error: e.code(), message, extra }
    }
}

pub async fn run(args: PayArgs, tls: &TlsArgs) -> i32 {
    let json_out = args.json;
    match pay(args, tls).await {
        Ok(code) => code,
        Err(f) => {
            if json_out {
                let mut v = json!({ "error": f.error, "message": f.message, "exit_code": f.code });
                if let (Value::Object(m), Value::Object(extra)) = (&mut v, f.extra) {
                    m.extend(extra);
                }
                println!("{v}");
            } else {
                eprintln!("vlexivo pay: {}", f.message);
            }
            f.code
        }
    }
}

async fn pay(args: PayArgs, tls: &TlsArgs) -> Result<i32, Failure> {
    // --- arguments ---
    let url =
        reqwest::Url::parse(&args.url).map_err(|e| Failure::usage(format!("URL {:?}: {e}", args.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure::usage("the URL must be http:// or https://"));
    }
    let body = match &args.data {
        None => None,
        Some(d) => Some(read_data(d).map_err(Failure::usage)?),
    };
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| Failure::usage(format!("bad method {m:?}")))?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut headers = parse_headers(&args.headers).map_err(Failure::usage)?;
    // A JSON body without a Content-Type is almost always meant as JSON (curl would say form).
    if let Some(b) = &body
        && !headers.contains_key(http::header::CONTENT_TYPE)
        && serde_json::from_slice::<Value>(b).is_ok()
    {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let max_price = args.max_price.as_deref().unwrap_or(DEFAULT_MAX_PRICE);
    let max_price = Money::parse(max_price, Currency::Usd)
        .map_err(|e| Failure::usage(format!("--max-price {max_price:?}: {e}")))?;
    let Some(key) = args.wallet_key.as_deref().filter(|k| !k.trim().is_empty()) else {
        return Err(Failure::usage(
            "no wallet key: pass --wallet-key or set VLX_WALLET_KEY (`vlexivo wallet new` makes one)",
        ));
    };
    let tls = tls.config()?;
    let http = tls.client()?;
    let mut builder = VlexivoClient::builder()
        .wallet_key(key)
        .tls(tls)
        .facilitator_url(args.facilitator.clone())
        .spending(SpendingPolicy { max_per_call: Some(max_price), ..SpendingPolicy::default() });
    if let Some(amount) = &args.top_up {
        // Trigger 0: top up only when the wallet cannot cover this call.
        let auto =
            AutoTopUp::new("0", amount).map_err(|e| Failure::usage(format!("--top-up {amount:?}: {e}")))?;
        builder = builder.auto_top_up(auto);
    }
    let client = builder.build()?;

    // --- the unpaid request ---
    let send = |proof: Option<String>| {
        let mut req = http.request(method.clone(), url.clone()).headers(headers.clone());
        if let Some(p) = proof {
            let (k, v) = flow::proof_header(&p);
            req = req.header(k, v);
        }
        if let Some(b) = &body {
            req = req.body(b.clone());
        }
        req.send()
    };
    let unreachable = |e: reqwest::Error| Failure {
        code: exit::API_UNREACHABLE,
        error: "api_unreachable",
        message: format!("cannot reach the API: {}", tls::describe(&e)),
        extra: Value::Null,
    };
    let res = send(None).await.map_err(unreachable)?;
    if res.status().as_u16() != 402 {
        if !args.json {
            eprintln!("vlexivo pay: no payment asked (HTTP {})", res.status().as_u16());
        }
        return output(&args, res, None, None).await;
    }
    let status = res.status().as_u16();
    let res_headers = res.headers().clone();
    let raw = vlexivo_client::read_limited(res, MAX_RESPONSE_BODY).await.unwrap_or_default();
    let pairs = res_headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
    let pr = match flow::parse_payment_required(status, pairs, &raw) {
        Ok(pr) => pr,
        Err(Error::NotPaymentRequired) => {
            return Err(Failure {
                code: exit::FAILED,
                error: "not_payment_required",
                message: format!(
                    "HTTP 402 without a Vlexivo challenge: {}",
                    String::from_utf8_lossy(&raw[..raw.len().min(300)])
                ),
                extra: Value::Null,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let c = &pr.challenge;
    if !args.json {
        eprintln!(
            "vlexivo pay: {} costs ${} {} ({}), paid through {} (your cap: ${max_price})",
            c.resource(),
            pr.price,
            c.currency,
            c.scope,
            c.facilitator
        );
    }

    // --- pay, then the paid retry ---
    let receipt = client.pay_challenge(&pr, method.as_str(), url.as_str()).await?;
    if !args.json {
        eprintln!(
            "vlexivo pay: paid ${} from {} (tx {}), balance ${}",
            receipt.amount, receipt.payer, receipt.tx_hash, receipt.balance
        );
    }
    let res = send(Some(receipt.token.clone())).await.map_err(|e| {
        let mut f = unreachable(e);
        f.message.push_str("; the payment was made: its proof stays valid for a retry until it expires");
        f
    })?;
    output(&args, res, Some(&pr), Some(&receipt)).await
}

async fn output(
    args: &PayArgs,
    res: reqwest::Response,
    pr: Option<&PaymentRequired>,
    receipt: Option<&vlexivo_core::payment::PaymentReceipt>,
) -> Result<i32, Failure> {
    let status = res.status();
    let receipt_header =
        res.headers().get(vlexivo_core::headers::RECEIPT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let head: Vec<String> = res
        .headers()
        .iter()
        .map(|(k, v)| format!("{}: {}", k, String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let version = res.version();
    let body = res
        .bytes()
        .await
        .map_err(|e| Failure::from(Error::Internal(format!("reading the response: {e}"))))?;
    let code = if status.is_success() || status.is_redirection() { exit::OK } else { exit::FAILED };

    if args.json {
        let body_v = serde_json::from_slice::<Value>(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        let out = json!({
            "status": status.as_u16(),
            "price": pr.map(|p| p.price.to_string()),
            "currency": pr.map(|p| p.challenge.currency.clone()),
            "resource": pr.map(|p| p.challenge.resource()),
            "receipt": receipt.map(|r| json!({
                "tx_hash": r.tx_hash, "amount": r.amount, "currency": r.currency, "payer": r.payer,
                "balance": r.balance, "nonce": r.nonce, "paid_at": r.paid_at,
            })),
            "receipt_header": receipt_header,
            "body": body_v,
        });
        println!("{out}");
        return Ok(code);
    }

    let mut head_text = String::new();
    if args.include {
        head_text.push_str(&format!("{version:?} {status}\n"));
        for h in &head {
            head_text.push_str(h);
            head_text.push('\n');
        }
        head_text.push('\n');
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, &body).map_err(|e| Failure {
                code: exit::FAILED,
                error: "io",
                message: format!("cannot write {}: {e}", path.display()),
                extra: Value::Null,
            })?;
            print!("{head_text}");
        }
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(head_text.as_bytes());
            let _ = out.write_all(&body);
            if !body.ends_with(b"\n") && !body.is_empty() {
                let _ = out.write_all(b"\n");
            }
            let _ = out.flush();
        }
    }
    if let Some(r) = receipt_header {
        eprintln!("vlexivo pay: receipt {r}");
    }
    if code != exit::OK {
        let why = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string));
        eprintln!(
            "vlexivo pay: HTTP {}{}",
            status.as_u16(),
            why.map(|w| format!(" ({w})")).unwrap_or_default()
        );
        if receipt.is_some() && status.is_server_error() {
            eprintln!(
                "vlexivo pay: the API failed after payment; its proof stays valid for a retry until it expires"
            );
        }
    }
    Ok(code)
}

fn read_data(d: &str) -> Result<Bytes, String> {
    match d.strip_prefix('@') {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| format!("reading stdin: {e}"))?;
            Ok(Bytes::from(buf))
        }
        Some(path) => std::fs::read(path).map(Bytes::from).map_err(|e| format!("-d @{path}: {e}")),
        None => Ok(Bytes::from(d.to_string())),
    }
}

fn parse_headers(raw: &[String]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for h in raw {
        let (k, v) = h.split_once(':').ok_or_else(|| format!("header {h:?} is not \"Name: value\""))?;
        let name =
            HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| format!("bad header name {k:?}"))?;
        let value = HeaderValue::from_str(v.trim()).map_err(|_| format!("bad value for header {k:?}"))?;
        map.append(name, value);
    }
    Ok(map)
}
