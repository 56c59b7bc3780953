//! The ledger's rules, once for both engines: what a top-up and a payment check, in which order,
//! and what they write. An engine supplies a [`Book`]: reads inside its open transaction, the
//! next link of its chain, and the writes of a decided transaction.

use super::{FAUCET, PayDone, PayOp, Provider, Record, TopUpDone, provider_id, usd, wallet_id};
use vlexivo_core::payment::PaymentReceipt;
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, Result};

/// A payment already recorded for a challenge.
#[derive(Debug, Clone)]
pub(crate) struct StoredPayment {
    pub payer: String,
    pub tx_hash: String,
    pub amount: i64,
    pub token: String,
    pub paid_at: i64,
    pub expires_at: i64,
}

/// The payment row of a payment transaction.
#[derive(Debug, Clone)]
pub(crate) struct PaymentRow {
    pub account: String,
    pub nonce: String,
    pub payer: String,
    pub amount: i64,
    pub currency: String,
    pub resource: String,
    pub token: String,
    pub paid_at: i64,
    pub expires_at: i64,
}

/// A decided transaction, linked into the writer's chain, to be written.
#[derive(Debug)]
pub(crate) struct Posting<'a> {
    pub rec: &'a Record,
    /// `rec` as stored (canonical JSON).
    pub record: &'a str,
    pub tx_hash: &'a str,
    pub payment: Option<PaymentRow>,
}

/// What the rules need from an engine, inside its open transaction.
pub(crate) trait Book {
    /// Balance and faucet total received of an account; (0, 0) if it does not exist.
    fn account(&mut self, id: &str) -> Result<(i64, i64)>;
    /// The payment recorded for a provider's challenge, if any.
    fn payment(&mut self, account: &str, nonce: &str) -> Result<Option<StoredPayment>>;
    /// The next link of the writer's chain for `rec` (sets its `seq`, and `stream` where there
    /// are several): (record JSON, tx_hash). Nothing is written.
    fn link(&self, rec: &mut Record) -> Result<(String, String)>;
    /// Write the transaction, its two entries (`from` −amount, `to` +amount), the balance moves
    /// (a top-up also counts toward the wallet's faucet total and creates the wallet), the
    /// payment row if any, and advance the chain. The provider being paid must exist. An error
    /// here fails the whole batch.
    fn post(&mut self, p: Posting<'_>) -> Result<()>;
    /// Record a new provider and its account.
    fn add_provider(&mut self, p: &Provider) -> Result<()>;
}

pub(crate) fn create_provider(book: &mut dyn Book, p: &Provider) -> Result<()> {
    book.add_provider(p)
}

/// A faucet top-up: refused past the wallet's lifetime cap.
pub(crate) fn top_up(
    book: &mut dyn Book,
    address: &Address,
    amount: u64,
    now: u64,
    faucet_cap: u64,
) -> Result<TopUpDone> {
    let id = wallet_id(address);
    let (balance, topped_up) = book.account(&id)?;
    if topped_up as u64 + amount > faucet_cap {
        return Err(Error::TopUpRefused(format!(
            "sandbox top-ups are capped at {} usd per wallet; this wallet already received {}",
            usd(faucet_cap),
            usd(topped_up as u64)
        )));
    }
    let mut rec = Record {
        stream: None,
        seq: 0,
        kind: "topup".into(),
        at: now,
        from: FAUCET.into(),
        to: id,
        amount: amount as i64,
        currency: "usd".into(),
        nonce: None,
        resource: None,
    };
    let (record, hash) = book.link(&mut rec)?;
    book.post(Posting { rec: &rec, record: &record, tx_hash: &hash, payment: None })?;
    Ok(TopUpDone { address: address.to_checksum(), amount, balance: balance as u64 + amount, tx_hash: hash })
}

/// A payment: the same challenge paid again answers the first receipt (to the same payer only),
/// a balance below the price is refused, otherwise payer −price, provider +price, one payment
/// row per challenge and a token naming the transaction's hash.
pub(crate) fn pay(book: &mut dyn Book, op: &PayOp, issuer_url: &str) -> Result<PayDone> {
    let v = &op.verified;
    let account = &op.provider.account;
    let nonce = &v.challenge.nonce;
    let payer = v.payer.to_checksum();
    let payer_id = format!("wallet:{payer}");
    let amount = v.price.to_atomic();
    let currency = v.price.currency();

    let existing = book.payment(account, nonce)?;
    let (balance, _) = book.account(&payer_id)?;
    if let Some(s) = existing {
        // Paid already: the same receipt to the same payer; never the token to another one.
        if s.payer != payer {
            return Err(Error::PaymentConflict);
        }
        return Ok(PayDone {
            receipt: PaymentReceipt {
                token: s.token,
                tx_hash: s.tx_hash,
                payer,
                amount: usd(s.amount as u64),
                currency: currency.code().into(),
                balance: usd(balance as u64),
                nonce: nonce.clone(),
                paid_at: s.paid_at as u64,
                expires_at: s.expires_at as u64,
                replayed: true,
            },
            amount: 0,
        });
    }
    if (balance as u64) < amount {
        return Err(Error::InsufficientFunds {
            required: v.price.to_string(),
            balance: usd(balance as u64),
            currency: currency.code().into(),
        });
    }
    let resource = v.challenge.resource();
    let mut rec = Record {
        stream: None,
        seq: 0,
        kind: "payment".into(),
        at: op.now,
        from: payer_id,
        to: provider_id(account),
        amount: amount as i64,
        currency: currency.code().into(),
        nonce: Some(nonce.clone()),
        resource: Some(resource.clone()),
    };
    let (record, tx_hash) = book.link(&mut rec)?;
    // The token names the tx hash, so it is signed here, before the first write.
    let claims = vlexivo_core::payment::claims(v, &tx_hash, issuer_url, op.now);
    let token = op.provider.issuer.issue(&claims)?;
    let row = PaymentRow {
        account: account.clone(),
        nonce: nonce.clone(),
        payer: payer.clone(),
        amount: amount as i64,
        currency: currency.code().into(),
        resource,
        token: token.clone(),
        paid_at: claims.iat as i64,
        expires_at: claims.exp as i64,
    };
    book.post(Posting { rec: &rec, record: &record, tx_hash: &tx_hash, payment: Some(row) })?;
    Ok(PayDone {
        receipt: PaymentReceipt {
            token,
            tx_hash,
            payer,
            amount: v.price.to_string(),
            currency: currency.code().into(),
            balance: usd(balance as u64 - amount),
            nonce: nonce.clone(),
            paid_at: claims.iat,
            expires_at: claims.exp,
            replayed: false,
        },
        amount,
    })
}
