//! `vlexivo demo --live`: the sandbox demo's paid API and agent, settled on chain. A local
//! anvil with Circle's FiatTokenV2_2 (USDC), a live facilitator relaying each payer's EIP-3009
//! authorization, a live provider paid at its payout address; each call prints its transaction
//! hash, block and gas, is checked on chain the way a provider would (`verify-payment`), and
//! the end compares the balances on chain with what was paid and reconciles the records.

use crate::demo::{Demo, DynError, agent_calls, current_year, mask, paid_api, short_hash};
use crate::server::at_rest::MasterKey;
use crate::server::live::{LiveConfig, reconcile};
use crate::server::{self, ServerConfig};
use alloy::providers::Provider;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vlexivo_client::{VlexivoClient, receipt_of};
use vlexivo_core::env::{Entropy, OsEntropy};
use vlexivo_core::paywall::{Paywall, PaywallConfig};
use vlexivo_core::store::{NonceStore, SqliteStore};
use vlexivo_core::wallet::Wallet;
use vlexivo_core::{Currency, Error, Money};
use vlexivo_live::ChainConfig;
use vlexivo_live::devnet::Devnet;
use vlexivo_live::verify::{Expected, verify_payment};

/// What the agent's wallet is funded with on chain (atomic units: $10).
const FUNDING: u64 = 10_000_000;

impl Demo {
    pub(crate) async fn run_live(
        &mut self,
        dir: &Path,
        confirmations: u64,
        serve: bool,
    ) -> Result<(), DynError> {
        let started = Instant::now();
        if serve {
            self.quiet = true;
        } else {
            println!(
                "Vlexivo demo, live mode: per-call payments settled on chain (a local anvil devnet, USDC), {confirmations} confirmation(s)\n"
            );
        }

        // 1. The chain and the token.
        let net = Devnet::start().await?;
        self.say(format!("  devnet        {}   chain id {}   (anvil, automine)", net.rpc_url, net.chain_id));
        self.say(format!("  token         {}   USD Coin (FiatTokenV2_2, EIP-3009)", net.token));

        // 2. A live facilitator: its relayer pays gas and never holds payments.
        let mut key = [0u8; 32];
        OsEntropy.fill(&mut key);
        let db_path = dir.join("facilitator.db");
        let srv = server::spawn(ServerConfig {
            addr: "127.0.0.1:0".parse()?,
            db_path: db_path.clone(),
            master_key: Some(Arc::new(MasterKey::parse(&hex::encode(key))?)),
            live: Some(LiveConfig {
                chain: ChainConfig {
                    rpc_url: net.rpc_url.clone(),
                    token: net.token,
                    relayer_key: net.dev_key(1),
                    poll: Duration::from_millis(50),
                },
                confirmations,
                confirm_timeout: Duration::from_secs(60),
                batch: None,
            }),
            ..ServerConfig::default()
        })
        .await?;
        let chain = &srv.live().ok_or("the facilitator is not live")?.chain;
        self.say(format!("  facilitator   {}   relayer {}", srv.url, chain.relayer()));

        // 3. A live provider onboards with its payout address and gets its paywall's terms.
        let payout = net.dev_address(2);
        let http = reqwest::Client::new();
        let created: Value = http
            .post(format!("{}/v1/providers", srv.url))
            .json(&json!({ "mode": "live", "name": "demo-provider", "payout_address": payout.to_checksum() }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let secret = created["api_secret"].as_str().ok_or("onboarding returned no api_secret")?.to_string();
        let terms: crate::server::types::LiveTermsBody = serde_json::from_value(created["terms"].clone())?;
        self.say(format!(
            "  provider      {}   apiSecret {}",
            created["account"].as_str().unwrap_or("?"),
            mask(&secret)
        ));
        self.say(format!("                paid at {payout} on {}", terms.network));

        // 4. The same paid API as the sandbox demo, its paywall in live mode.
        let mut cfg = PaywallConfig::new(secret.clone());
        cfg.facilitator_url = srv.url.clone();
        cfg.live = Some(terms.to_terms()?);
        let store: Arc<dyn NonceStore> = Arc::new(SqliteStore::open(dir.join("nonces.db"))?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api = format!("http://{}", listener.local_addr()?);
        let app = paid_api(Arc::new(Paywall::new(cfg)?), store);
        let api_task = tokio::spawn(async move { axum::serve(listener, app).await });
        self.say(format!("  paid API      {api}"));

        // 5. The agent: its wallet holds $10 of the token on chain (minted by the devnet's minter).
        let wallet = Wallet::generate(&OsEntropy);
        net.mint(wallet.address(), FUNDING).await?;
        let agent =
            VlexivoClient::builder().wallet(wallet.clone()).facilitator_url(Some(srv.url.clone())).build()?;
        self.say(format!("  agent         {}   ${} on chain\n", agent.address(), usd(FUNDING)));
        if serve {
            use vlexivo_core::envvars as v;
            let lines = [
                (v::RPC_URL.name, net.rpc_url.clone()),
                (v::FACILITATOR_URL.name, srv.url.clone()),
                (v::SECRET_KEY.name, secret.clone()),
                (v::WALLET_KEY.name, wallet.secret_hex()),
            ];
            for (name, value) in lines {
                println!("{name}={value}");
            }
            println!("{}\nREADY", terms.env_lines());
            // Until stdin closes (the parent went away) or Ctrl-C.
            let stdin_closed = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            });
            // SIGTERM too: anvil is this process's child and is stopped when the devnet drops.
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = stdin_closed => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            api_task.abort();
            srv.shutdown().await;
            return Ok(());
        }

        // 6. The calls, each settled payer → provider on chain and checked there.
        self.say(format!(
            "  {:<2}  {:<46} {:>9}  {:<16} {:>6} {:>7}  {:>7}",
            "#", "call", "price", "tx", "block", "gas", "ms"
        ));
        self.say(format!("  {}", "─".repeat(104)));
        let mut spent = Money::zero(Currency::Usd);
        let mut paid = 0u32;
        let mut first_token = None;
        for (i, (call, method, path, body)) in agent_calls(current_year()).into_iter().enumerate() {
            let t = Instant::now();
            let url = format!("{api}{path}");
            let res = match &body {
                Some(b) => agent.post_json(&url, b).await,
                None => agent.fetch(method, &url, Default::default(), None).await,
            };
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let res = match res {
                Ok(r) => r,
                Err(e) => {
                    self.check(false, format!("call {} ({}) failed: {e} ({})", i + 1, call.label, e.code()));
                    continue;
                }
            };
            let status = res.status();
            let Some(r) = receipt_of(&res).cloned() else {
                self.check(false, format!("call {} ({}) was not paid (HTTP {status})", i + 1, call.label));
                continue;
            };
            let _ = res.bytes().await;
            let price = Money::parse(&r.amount, Currency::Usd)?;
            let expected = Expected {
                token: net.token,
                payer: wallet.address(),
                payee: payout,
                amount: price.to_atomic(),
                confirmations: 1,
                authorization_nonce: None,
            };
            let hash = vlexivo_live::chain::parse_hash(&r.tx_hash)?;
            // At 0 confirmations the proof comes before the block: wait for it (automine: at once).
            let mined = chain.wait(hash, 1, Duration::from_secs(30)).await?;
            let onchain = verify_payment(chain.provider(), hash, &expected).await;
            let (block, gas) =
                mined.map(|m| (m.block.to_string(), m.gas_used.to_string())).unwrap_or_default();
            self.say(format!(
                "  {:<2}  {:<46} {:>9}  {:<16} {:>6} {:>7}  {:>7.1}",
                i + 1,
                call.label,
                format!("${}", r.amount),
                short_hash(&r.tx_hash),
                block,
                gas,
                ms
            ));
            self.check(status.is_success(), format!("call {} answered HTTP {status}", i + 1));
            self.check(
                r.amount == call.expected,
                format!("call {} charged {} instead of {}", i + 1, r.amount, call.expected),
            );
            if let Err(e) = onchain {
                self.check(false, format!("call {}: its transaction does not pay as claimed: {e}", i + 1));
            }
            paid += 1;
            spent = spent.checked_add(&price)?;
            if first_token.is_none() {
                first_token = Some((url, r.token.clone(), r.tx_hash.clone()));
            }
        }

        // 7. Single use, and a payer the chain says cannot pay.
        self.say("");
        if let Some((url, token, tx)) = &first_token {
            let res = http.get(url).header("Vlexivo-Proof", token).send().await?;
            let status = res.status().as_u16();
            let code =
                res.json::<Value>().await.unwrap_or(Value::Null)["error"].as_str().unwrap_or("?").to_string();
            self.say(format!("  replay           call 1's token sent again → HTTP {status} {code}"));
            self.check(
                status == 409 && code == "token_replayed",
                "a replayed token was not refused with 409",
            );
            self.say(format!(
                "  provider check   every tx hash checked on chain (receipt; Transfer payer → payout, amount, token)\n                   as `vlexivo verify-payment {tx} …` does"
            ));
        }
        let poor = Wallet::generate(&OsEntropy);
        net.mint(poor.address(), 5_000).await?;
        let res = VlexivoClient::builder()
            .wallet(poor.clone())
            .facilitator_url(Some(srv.url.clone()))
            .build()?
            .post_json(&format!("{api}/api/v1/inference"), &json!({ "model": "large-v2", "prompt": "hi" }))
            .await;
        match res {
            Err(Error::InsufficientFunds { required, balance, .. }) => {
                self.say(format!(
                    "  no funds         2nd wallet (${balance} on chain) → large model: insufficient_funds, needs ${required}; nothing relayed"
                ));
                self.check(
                    required == "0.01" && balance == "0.005",
                    "insufficient_funds carried wrong amounts",
                );
            }
            other => {
                self.check(
                    false,
                    format!("expected insufficient_funds, got {:?}", other.map(|r| r.status())),
                );
            }
        }
        self.check(net.balance(poor.address()).await? == 5_000, "the unfunded wallet's balance moved");

        // 8. The chain's balances against what was paid; the provider's records; reconciliation.
        let agent_left = net.balance(wallet.address()).await?;
        let provider_got = net.balance(payout).await?;
        let relayer_gas = chain.provider().get_balance(vlexivo_live::chain::evm(&chain.relayer())).await?;
        println!(
            "\n  totals           {paid} paid calls, ${spent} paid: agent ${} → ${} on chain, provider ${} on chain",
            usd(FUNDING),
            usd(agent_left),
            usd(provider_got)
        );
        println!(
            "                   relayer's gas balance {relayer_gas} wei (it paid every transaction's gas)"
        );
        self.check(
            FUNDING - agent_left == spent.to_atomic(),
            "the agent's balance on chain moved by another amount",
        );
        self.check(provider_got == spent.to_atomic(), "the provider received another amount on chain");
        let live = srv.live().ok_or("the facilitator is not live")?;
        for _ in 0..200 {
            if live.store.pending().await?.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = reconcile::run(&live.store, &net.rpc_url, None, None).await?;
        println!(
            "  reconcile        {} records ({} confirmed), {} transfers on chain: {}",
            r.records,
            r.confirmed,
            r.transfers,
            if r.is_clean() {
                "the records and the chain agree".to_string()
            } else {
                format!("{} difference(s)", r.differences.len())
            }
        );
        for d in &r.differences {
            self.check(false, format!("reconcile: {} {}: {}", d.kind.as_str(), d.tx_hash, d.detail));
        }
        self.check(
            r.confirmed == paid as usize,
            format!("{} confirmed records for {paid} paid calls", r.confirmed),
        );

        api_task.abort();
        srv.shutdown().await;
        let ok = self.failures.is_empty();
        println!(
            "\n{} in {:.2} s",
            if ok { "✓ live demo complete" } else { "✗ live demo finished with failures" },
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

fn usd(atomic: u64) -> String {
    Money::from_atomic(atomic, Currency::Usd).map(|m| m.to_string()).unwrap_or_else(|_| atomic.to_string())
}
