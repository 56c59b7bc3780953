//! An agent that pays per call, with auto top-up and a spending cap, as in the article.
//!
//!     VLX_WALLET_KEY=0x… cargo run -p vlexivo-facilitator --example agent -- http://127.0.0.1:3000/api/v1/inference

use vlexivo_client::{VlexivoClient, receipt_of};
use vlexivo_core::client::AutoTopUp;
use vlexivo_core::policy::SpendingPolicy;
use vlexivo_core::{Currency, Error, Money};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:3000/api/v1/inference".into());
    let agent = VlexivoClient::builder()
        .wallet_key(&std::env::var("VLX_WALLET_KEY")?)
        .auto_top_up(AutoTopUp::new("1.00", "10.00")?)
        .spending(SpendingPolicy { max_total: Some(Money::parse("5", Currency::Usd)?), ..Default::default() })
        .on_payment(|r| eprintln!("paid ${} (tx {}), balance ${}", r.amount, r.tx_hash, r.balance))
        .build()?;
    match agent.post_json(&url, &serde_json::json!({ "model": "large-v2", "prompt": "hello" })).await {
        Ok(res) => {
            let paid = receipt_of(&res).map(|r| r.amount.clone());
            println!("HTTP {} (paid {:?}): {}", res.status(), paid, res.text().await?);
        }
        // Agent-readable: the exact amount it would take to continue.
        Err(Error::InsufficientFunds { required, .. }) => {
            eprintln!("task paused: needs ${required} to continue")
        }
        Err(e) => eprintln!("{} ({})", e, e.code()),
    }
    Ok(())
}
