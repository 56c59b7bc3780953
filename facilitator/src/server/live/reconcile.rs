//! `vlexivo ledger reconcile`: the facilitator's settlement records (SQLite or PostgreSQL)
//! against the chain, through `vlexivo_live::reconcile`.

use super::store::{LiveStore, Settlement};
use crate::server::{db, pg};
use std::sync::Arc;
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, Result};
use vlexivo_live::reconcile::{self, Reconciliation, Record, RecordState};

/// Open the live records of the database at `db` (a SQLite file, read only, or a PostgreSQL URL).
pub fn open_store(db: &str) -> Result<LiveStore> {
    if pg::is_url(db) {
        Ok(LiveStore::Postgres(pg::pool(&pg::config(db)?, 2)?))
    } else {
        let path = std::path::Path::new(db);
        if !path.exists() {
            return Err(Error::Config(format!("no database at {}", path.display())));
        }
        Ok(LiveStore::Sqlite(Arc::new(parking_lot::Mutex::new(db::open_ro(path)?))))
    }
}

fn record(s: &Settlement) -> Result<Record> {
    Ok(Record {
        account: s.account.clone(),
        nonce: s.nonce.clone(),
        tx_hash: s.tx_hash.clone(),
        state: match s.state.as_str() {
            "confirmed" => RecordState::Confirmed,
            "failed" => RecordState::Failed,
            _ => RecordState::Pending,
        },
        payer: Address::parse(&s.payer)?,
        pay_to: Address::parse(&s.pay_to)?,
        amount: u64::try_from(s.amount).map_err(|_| Error::Internal("a negative amount".into()))?,
        relayer: Address::parse(&s.relayer)?,
        block: s.block_number.map(|b| b as u64),
        block_hash: s.block_hash.clone(),
        authorization: Some(vlexivo_live::chain::parse_hash(&s.auth_nonce)?),
    })
}

/// Reconcile the records of `store` with the chain at `rpc_url`: those in `asset` (needed
/// when the records hold more than one token, or none), scanning logs from `from_block`.
pub async fn run(
    store: &LiveStore,
    rpc_url: &str,
    asset: Option<Address>,
    from_block: Option<u64>,
) -> Result<Reconciliation> {
    let all = store.all().await?;
    let mut assets: Vec<Address> = all.iter().map(|s| Address::parse(&s.asset)).collect::<Result<_>>()?;
    assets.sort_by_key(|a| a.0);
    assets.dedup();
    let token = match (asset, assets.as_slice()) {
        (Some(a), _) => a,
        (None, [one]) => *one,
        (None, []) => {
            return Err(Error::Config("no settlement records: name the token with --asset".into()));
        }
        (None, _) => {
            return Err(Error::Config("the records hold several tokens: pick one with --asset".into()));
        }
    };
    let records = all
        .iter()
        .filter(|s| Address::parse(&s.asset).is_ok_and(|a| a == token))
        .map(record)
        .collect::<Result<Vec<_>>>()?;
    let payouts = store.payouts().await?.iter().map(|a| Address::parse(a)).collect::<Result<Vec<_>>>()?;
    let provider = vlexivo_live::chain::connect(rpc_url)?;
    reconcile::reconcile(&provider, token, &records, &payouts, from_block).await
}
