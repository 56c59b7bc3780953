//! Live mode's records, on the facilitator's database (SQLite or PostgreSQL, migration 2 of
//! each): payout addresses, and one settlement record per live payment with its state.
//!
//! States: `signed` (recorded before the broadcast), `submitted` (the node took it),
//! `confirmed` (mined, successful, as deep as the facilitator waits), `failed` (refused,
//! reverted, or dropped and expired: nothing moved). Records are the scheme's (`eip3009`
//! today), network's and token's, so other schemes can share the table. A batched relay is one
//! transaction for many records: they share its hash, each names its call (`call_index`), and
//! the signed bytes are kept once, on call 0. A confirmation undone by a reorg sends the record
//! back to `submitted` (`reorgs` counts how often).

use crate::server::db::db_err;
use crate::server::pg::{LOCK_PAYER, pg_err, pool_err};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;
use vlexivo_core::paging::PaymentFilter;
use vlexivo_core::{Error, Result};

/// One settlement record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub account: String,
    pub nonce: String,
    pub scheme: String,
    pub network: String,
    pub asset: String,
    pub payer: String,
    pub pay_to: String,
    pub amount: i64,
    pub currency: String,
    pub resource: String,
    pub auth_nonce: String,
    pub valid_before: i64,
    pub tx_hash: String,
    pub raw_tx: Vec<u8>,
    pub relayer: String,
    pub relayer_nonce: i64,
    pub state: String,
    pub block_number: Option<i64>,
    pub block_hash: Option<String>,
    pub gas_used: Option<i64>,
    pub failure: Option<String>,
    pub token: String,
    pub paid_at: i64,
    pub expires_at: i64,
    pub updated_at: i64,
    /// The record's call in a batched relay (`None`: a relay of its own).
    pub call_index: Option<i64>,
    /// How many times a reorg undid its confirmation.
    pub reorgs: i64,
}

/// What [`LiveStore::summary`] returns: (count, sum) in total, (bucket start, count, sum) per
/// bucket in time order, and (key, count, sum) per top route and payer.
pub struct LiveSummary {
    pub total: (i64, i64),
    pub series: Vec<(i64, i64, i64)>,
    pub routes: Vec<(String, i64, i64)>,
    pub payers: Vec<(String, i64, i64)>,
}

const COLUMNS: &str = "account, nonce, scheme, network, asset, payer, pay_to, amount, currency, resource, \
    auth_nonce, valid_before, tx_hash, raw_tx, relayer, relayer_nonce, state, block_number, block_hash, \
    gas_used, failure, token, paid_at, expires_at, updated_at, call_index, reorgs";
/// How many columns [`COLUMNS`] names: a query selecting one more reads it at this index.
const COLUMN_COUNT: usize = {
    let (b, mut i, mut n) = (COLUMNS.as_bytes(), 0, 1);
    while i < b.len() {
        if b[i] == b',' {
            n += 1;
        }
        i += 1;
    }
    n
};

impl Settlement {
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Settlement {
            account: r.get(0)?,
            nonce: r.get(1)?,
            scheme: r.get(2)?,
            network: r.get(3)?,
            asset: r.get(4)?,
            payer: r.get(5)?,
            pay_to: r.get(6)?,
            amount: r.get(7)?,
            currency: r.get(8)?,
            resource: r.get(9)?,
            auth_nonce: r.get(10)?,
            valid_before: r.get(11)?,
            tx_hash: r.get(12)?,
            raw_tx: r.get(13)?,
            relayer: r.get(14)?,
            relayer_nonce: r.get(15)?,
            state: r.get(16)?,
            block_number: r.get(17)?,
            block_hash: r.get(18)?,
            gas_used: r.get(19)?,
            failure: r.get(20)?,
            token: r.get(21)?,
            paid_at: r.get(22)?,
            expires_at: r.get(23)?,
            updated_at: r.get(24)?,
            call_index: r.get(25)?,
            reorgs: r.get(26)?,
        })
    }

    fn from_pg(r: &tokio_postgres::Row) -> std::result::Result<Self, tokio_postgres::Error> {
        Ok(Settlement {
            account: r.try_get(0)?,
            nonce: r.try_get(1)?,
            scheme: r.try_get(2)?,
            network: r.try_get(3)?,
            asset: r.try_get(4)?,
            payer: r.try_get(5)?,
            pay_to: r.try_get(6)?,
            amount: r.try_get(7)?,
            currency: r.try_get(8)?,
            resource: r.try_get(9)?,
            auth_nonce: r.try_get(10)?,
            valid_before: r.try_get(11)?,
            tx_hash: r.try_get(12)?,
            raw_tx: r.try_get(13)?,
            relayer: r.try_get(14)?,
            relayer_nonce: r.try_get(15)?,
            state: r.try_get(16)?,
            block_number: r.try_get(17)?,
            block_hash: r.try_get(18)?,
            gas_used: r.try_get(19)?,
            failure: r.try_get(20)?,
            token: r.try_get(21)?,
            paid_at: r.try_get(22)?,
            expires_at: r.try_get(23)?,
            updated_at: r.try_get(24)?,
            call_index: r.try_get(25)?,
            reorgs: r.try_get(26)?,
        })
    }

    /// Still to be followed: signed or submitted.
    pub fn is_pending(&self) -> bool {
        self.state == "signed" || self.state == "submitted"
    }
}

/// A state change.
#[derive(Debug, Clone)]
pub enum Update {
    Submitted,
    Confirmed {
        block: i64,
        block_hash: String,
        gas_used: i64,
    },
    Failed {
        reason: String,
        block: Option<i64>,
        gas_used: Option<i64>,
    },
    /// A reorg took the confirmed transaction out of its block: `submitted` again, followed
    /// anew, with `reorgs` counted and the reason kept in `failure` until it settles again.
    Reorged {
        reason: String,
    },
}

/// Which records a state change applies to.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    /// Every record of a relay transaction (a batch's records together).
    Tx(&'a str),
    /// One record: `(account, nonce)`.
    Record(&'a str, &'a str),
    /// Every record confirmed in block `.0` whose hash was `.1`.
    Block(i64, &'a str),
}

impl Which<'_> {
    /// The WHERE condition on the parameters numbered from `first`, and their values.
    fn condition(&self, first: usize, pg: bool) -> (String, Vec<String>) {
        let p = |i: usize| if pg { format!("${i}") } else { format!("?{i}") };
        match self {
            Which::Tx(tx) => (format!("tx_hash = {}", p(first)), vec![tx.to_string()]),
            Which::Record(account, nonce) => (
                format!("account = {} AND nonce = {}", p(first), p(first + 1)),
                vec![account.to_string(), nonce.to_string()],
            ),
            Which::Block(block, hash) => {
                // The keys are text parameters: the block number is cast back.
                let number = if pg {
                    format!("({}::text)::bigint", p(first))
                } else {
                    format!("CAST({} AS INTEGER)", p(first))
                };
                (
                    format!("block_number = {number} AND block_hash = {}", p(first + 1)),
                    vec![block.to_string(), hash.to_string()],
                )
            }
        }
    }
}

const UNRESERVE_SQLITE: &str = "DELETE FROM reservations WHERE account = ?1 AND nonce = ?2";
const UNRESERVE_PG: &str = "DELETE FROM reservations WHERE account = $1 AND nonce = $2";

/// An admitted payment not yet recorded as a settlement: its amount is held against its payer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub account: String,
    pub nonce: String,
    /// EIP-55.
    pub payer: String,
    pub amount: i64,
    pub auth_nonce: String,
    pub valid_before: i64,
    pub created_at: i64,
}

/// What a payer's admission counts against its balance: a reservation (no relay yet) or a
/// settlement that may not be in the balance read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub account: String,
    pub nonce: String,
    pub amount: i64,
    pub auth_nonce: String,
    /// Its relay, once recorded.
    pub tx_hash: Option<String>,
    pub call_index: Option<i64>,
    /// The block it was confirmed in (`None` while pending).
    pub block: Option<i64>,
}

/// What a payer's admission counts: its reservations whose authorization can still be carried
/// out, its pending settlements, and those confirmed after `block` (the block its balance is
/// read at).
const HELD_SQLITE: &str = "
    SELECT account, nonce, amount, auth_nonce, NULL, NULL, NULL FROM reservations
     WHERE payer = ?1 AND valid_before > ?2
    UNION ALL
    SELECT account, nonce, amount, auth_nonce, tx_hash, call_index, NULL FROM settlements
     WHERE payer = ?1 AND state IN ('signed', 'submitted')
    UNION ALL
    SELECT account, nonce, amount, auth_nonce, tx_hash, call_index, block_number FROM settlements
     WHERE state = 'confirmed' AND block_number > ?3 AND payer = ?1";
const HELD_PG: &str = "
    SELECT account, nonce, amount, auth_nonce, NULL::text, NULL::bigint, NULL::bigint FROM reservations
     WHERE payer = $1 AND valid_before > $2
    UNION ALL
    SELECT account, nonce, amount, auth_nonce, tx_hash, call_index, NULL::bigint FROM settlements
     WHERE payer = $1 AND state IN ('signed', 'submitted')
    UNION ALL
    SELECT account, nonce, amount, auth_nonce, tx_hash, call_index, block_number FROM settlements
     WHERE state = 'confirmed' AND block_number > $3 AND payer = $1";

/// One payment's admission. On PostgreSQL a transaction holding the payer's advisory lock, so
/// facilitators sharing the database admit a payer's payments one at a time; on SQLite
/// nothing (one process: its own payer lock is enough). Dropped unfinished (a cancelled
/// request), its connection is closed rather than returned to the pool, which ends the
/// transaction and frees the lock.
pub struct Admission {
    pg: Option<deadpool_postgres::Object>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(c) = self.pg.take() {
            drop(deadpool_postgres::Object::take(c));
        }
    }
}

impl Admission {
    /// End without reserving.
    pub async fn abandon(mut self) {
        if let Some(c) = self.pg.take()
            && c.batch_execute("ROLLBACK").await.is_err()
        {
            drop(deadpool_postgres::Object::take(c));
        }
    }
}

/// Where live records live: the facilitator's SQLite file or its PostgreSQL database.
#[derive(Clone)]
pub enum LiveStore {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(deadpool_postgres::Pool),
}

impl std::fmt::Debug for LiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LiveStore::Sqlite(_) => "LiveStore::Sqlite",
            LiveStore::Postgres(_) => "LiveStore::Postgres",
        })
    }
}

impl LiveStore {
    async fn sqlite<T: Send + 'static>(
        c: &Arc<Mutex<Connection>>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let c = c.clone();
        tokio::task::spawn_blocking(move || f(&c.lock()).map_err(db_err))
            .await
            .map_err(|e| Error::Internal(format!("live store task: {e}")))?
    }

    pub async fn set_payout(&self, account: &str, address: &str, now: u64) -> Result<()> {
        let (account, address) = (account.to_string(), address.to_string());
        match self {
            LiveStore::Sqlite(c) => {
                Self::sqlite(c, move |c| {
                    c.execute(
                        "INSERT INTO payouts (account, address, created_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (account) DO UPDATE SET address = excluded.address",
                        params![account, address, now as i64],
                    )
                    .map(drop)
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                c.execute(
                    "INSERT INTO payouts (account, address, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (account) DO UPDATE SET address = excluded.address",
                    &[&account, &address, &(now as i64)],
                )
                .await
                .map_err(pg_err)?;
                Ok(())
            }
        }
    }

    pub async fn payout(&self, account: &str) -> Result<Option<String>> {
        let account = account.to_string();
        match self {
            LiveStore::Sqlite(c) => {
                Self::sqlite(c, move |c| {
                    c.query_row("SELECT address FROM payouts WHERE account = ?1", [account], |r| r.get(0))
                        .optional()
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let row = c
                    .query_opt("SELECT address FROM payouts WHERE account = $1", &[&account])
                    .await
                    .map_err(pg_err)?;
                Ok(row.map(|r| r.get(0)))
            }
        }
    }

    /// Every provider's payout address.
    pub async fn payouts(&self) -> Result<Vec<String>> {
        match self {
            LiveStore::Sqlite(c) => {
                Self::sqlite(c, |c| {
                    let mut st = c.prepare("SELECT address FROM payouts ORDER BY account")?;
                    let rows = st.query_map([], |r| r.get(0))?;
                    rows.collect()
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let rows =
                    c.query("SELECT address FROM payouts ORDER BY account", &[]).await.map_err(pg_err)?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            }
        }
    }

    /// Record signed relays (one, or a batch's records), all or none. A second record for the
    /// same challenge fails (`payment_conflict`): the caller holds the payer's lock and checked,
    /// so this only happens across facilitators.
    pub async fn insert(&self, records: Vec<Settlement>) -> Result<()> {
        let conflict = |msg: &str| msg.contains("UNIQUE") || msg.contains("unique") || msg.contains("23505");
        match self {
            LiveStore::Sqlite(c) => {
                let sql = format!(
                    "INSERT INTO settlements ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, \
                     ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)"
                );
                let r = Self::sqlite(c, move |c| {
                    let tx = c.unchecked_transaction()?;
                    {
                        let mut st = tx.prepare_cached(&sql)?;
                        for s in &records {
                            st.execute(params![
                                s.account,
                                s.nonce,
                                s.scheme,
                                s.network,
                                s.asset,
                                s.payer,
                                s.pay_to,
                                s.amount,
                                s.currency,
                                s.resource,
                                s.auth_nonce,
                                s.valid_before,
                                s.tx_hash,
                                s.raw_tx,
                                s.relayer,
                                s.relayer_nonce,
                                s.state,
                                s.block_number,
                                s.block_hash,
                                s.gas_used,
                                s.failure,
                                s.token,
                                s.paid_at,
                                s.expires_at,
                                s.updated_at,
                                s.call_index,
                                s.reorgs
                            ])?;
                        }
                        // The reservation becomes the record, atomically.
                        let mut st = tx.prepare_cached(UNRESERVE_SQLITE)?;
                        for s in &records {
                            st.execute(params![s.account, s.nonce])?;
                        }
                    }
                    tx.commit()
                })
                .await;
                match r {
                    Err(Error::Internal(m)) if conflict(&m) => Err(Error::PaymentConflict),
                    other => other,
                }
            }
            LiveStore::Postgres(p) => {
                let mut c = p.get().await.map_err(pool_err)?;
                let sql = format!(
                    "INSERT INTO settlements ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                     $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)"
                );
                let r = async {
                    let tx = c.transaction().await?;
                    let st = tx.prepare_cached(&sql).await?;
                    for s in &records {
                        tx.execute(
                            &st,
                            &[
                                &s.account,
                                &s.nonce,
                                &s.scheme,
                                &s.network,
                                &s.asset,
                                &s.payer,
                                &s.pay_to,
                                &s.amount,
                                &s.currency,
                                &s.resource,
                                &s.auth_nonce,
                                &s.valid_before,
                                &s.tx_hash,
                                &s.raw_tx,
                                &s.relayer,
                                &s.relayer_nonce,
                                &s.state,
                                &s.block_number,
                                &s.block_hash,
                                &s.gas_used,
                                &s.failure,
                                &s.token,
                                &s.paid_at,
                                &s.expires_at,
                                &s.updated_at,
                                &s.call_index,
                                &s.reorgs,
                            ],
                        )
                        .await?;
                    }
                    // The reservation becomes the record, atomically.
                    let st = tx.prepare_cached(UNRESERVE_PG).await?;
                    for s in &records {
                        tx.execute(&st, &[&s.account, &s.nonce]).await?;
                    }
                    tx.commit().await
                }
                .await;
                match r {
                    Ok(()) => Ok(()),
                    Err(e) if e.code().is_some_and(|c| c.code() == "23505") => Err(Error::PaymentConflict),
                    Err(e) => Err(pg_err(e)),
                }
            }
        }
    }

    /// Apply `u` to the records `which` names, if their state allows it.
    pub async fn update(&self, which: Which<'_>, u: Update, now: u64) -> Result<()> {
        // States only move forward (a reorg aside): a follower pass that read the record before
        // the payment request confirmed it must not set it back to `submitted`.
        let from = match &u {
            Update::Submitted => "'signed'",
            Update::Confirmed { .. } => "'signed', 'submitted', 'confirmed'",
            Update::Failed { .. } => "'signed', 'submitted'",
            Update::Reorged { .. } => "'confirmed'",
        };
        let (state, block, hash, gas, failure, reorged) = match u {
            Update::Submitted => ("submitted", None, None, None, None, 0i64),
            Update::Confirmed { block, block_hash, gas_used } => {
                ("confirmed", Some(block), Some(block_hash), Some(gas_used), None, 0)
            }
            Update::Failed { reason, block, gas_used } => ("failed", block, None, gas_used, Some(reason), 0),
            Update::Reorged { reason } => ("submitted", None, None, None, Some(reason), 1),
        };
        let now = now as i64;
        // A reorged record forgets its block; otherwise a known block is kept.
        let set = |p: &dyn Fn(usize) -> String| {
            format!(
                "UPDATE settlements SET state = {s}, block_number = CASE WHEN CAST({r} AS BIGINT) = 1 THEN NULL ELSE coalesce({b}, block_number) END,
                     block_hash = CASE WHEN CAST({r} AS BIGINT) = 1 THEN NULL ELSE coalesce({h}, block_hash) END,
                     gas_used = coalesce({g}, gas_used), failure = {f}, updated_at = {n},
                     reorgs = reorgs + CAST({r} AS BIGINT)",
                s = p(1),
                b = p(2),
                h = p(3),
                g = p(4),
                f = p(5),
                n = p(6),
                r = p(7)
            )
        };
        match self {
            LiveStore::Sqlite(c) => {
                let (cond, keys) = which.condition(8, false);
                let sql = format!("{} WHERE {cond} AND state IN ({from})", set(&|i| format!("?{i}")));
                Self::sqlite(c, move |c| {
                    let mut values: Vec<rusqlite::types::Value> = vec![
                        state.to_string().into(),
                        block.into(),
                        hash.into(),
                        gas.into(),
                        failure.into(),
                        now.into(),
                        reorged.into(),
                    ];
                    values.extend(keys.into_iter().map(rusqlite::types::Value::from));
                    c.execute(&sql, rusqlite::params_from_iter(values)).map(drop)
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let (cond, keys) = which.condition(8, true);
                let sql = format!("{} WHERE {cond} AND state IN ({from})", set(&|i| format!("${i}")));
                let c = p.get().await.map_err(pool_err)?;
                let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    vec![&state, &block, &hash, &gas, &failure, &now, &reorged];
                params.extend(keys.iter().map(|k| k as &(dyn tokio_postgres::types::ToSql + Sync)));
                c.execute(&sql, &params).await.map_err(pg_err)?;
                Ok(())
            }
        }
    }

    /// Begin the admission of a payment of `payer` (EIP-55).
    pub async fn admit(&self, payer: &str) -> Result<Admission> {
        match self {
            LiveStore::Sqlite(_) => Ok(Admission { pg: None }),
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let adm = Admission { pg: Some(c) };
                let c = adm.pg.as_ref().expect("just set");
                c.batch_execute("BEGIN").await.map_err(pg_err)?;
                c.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&LOCK_PAYER, &payer])
                    .await
                    .map_err(pg_err)?;
                Ok(adm)
            }
        }
    }

    /// What `payer`'s next admission counts (see [`Held`]): inside `adm` when given.
    pub async fn held(
        &self,
        adm: Option<&Admission>,
        payer: &str,
        now: u64,
        block: u64,
    ) -> Result<Vec<Held>> {
        let (payer, now, block) = (payer.to_string(), now as i64, block as i64);
        match self {
            LiveStore::Sqlite(c) => {
                Self::sqlite(c, move |c| {
                    let mut st = c.prepare_cached(HELD_SQLITE)?;
                    let rows = st.query_map(params![payer, now, block], |r| {
                        Ok(Held {
                            account: r.get(0)?,
                            nonce: r.get(1)?,
                            amount: r.get(2)?,
                            auth_nonce: r.get(3)?,
                            tx_hash: r.get(4)?,
                            call_index: r.get(5)?,
                            block: r.get(6)?,
                        })
                    })?;
                    rows.collect()
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let pooled;
                let c = match adm.and_then(|a| a.pg.as_ref()) {
                    Some(c) => c,
                    None => {
                        pooled = p.get().await.map_err(pool_err)?;
                        &pooled
                    }
                };
                let rows = c.query(HELD_PG, &[&payer, &now, &block]).await.map_err(pg_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(Held {
                            account: r.try_get(0)?,
                            nonce: r.try_get(1)?,
                            amount: r.try_get(2)?,
                            auth_nonce: r.try_get(3)?,
                            tx_hash: r.try_get(4)?,
                            call_index: r.try_get(5)?,
                            block: r.try_get(6)?,
                        })
                    })
                    .collect::<std::result::Result<_, tokio_postgres::Error>>()
                    .map_err(pg_err)
            }
        }
    }

    /// Hold `r` and end the admission. The same challenge already held (admitted concurrently
    /// by another facilitator) is `payment_conflict`.
    pub async fn reserve(&self, mut adm: Admission, r: Reservation) -> Result<()> {
        const SQL: &str =
            "INSERT INTO reservations (account, nonce, payer, amount, auth_nonce, valid_before, created_at)";
        match self {
            LiveStore::Sqlite(c) => {
                let r = Self::sqlite(c, move |c| {
                    c.execute(
                        &format!("{SQL} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                        params![
                            r.account,
                            r.nonce,
                            r.payer,
                            r.amount,
                            r.auth_nonce,
                            r.valid_before,
                            r.created_at
                        ],
                    )
                    .map(drop)
                })
                .await;
                match r {
                    Err(Error::Internal(m)) if m.contains("UNIQUE") => Err(Error::PaymentConflict),
                    other => other,
                }
            }
            LiveStore::Postgres(_) => {
                let c = adm
                    .pg
                    .take()
                    .ok_or_else(|| Error::Internal("admission without its transaction".into()))?;
                let done = async {
                    c.execute(
                        &format!("{SQL} VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                        &[
                            &r.account,
                            &r.nonce,
                            &r.payer,
                            &r.amount,
                            &r.auth_nonce,
                            &r.valid_before,
                            &r.created_at,
                        ],
                    )
                    .await?;
                    c.batch_execute("COMMIT").await
                }
                .await;
                match done {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let conflict = e.code().is_some_and(|c| c.code() == "23505");
                        if c.batch_execute("ROLLBACK").await.is_err() {
                            drop(deadpool_postgres::Object::take(c));
                        }
                        Err(if conflict { Error::PaymentConflict } else { pg_err(e) })
                    }
                }
            }
        }
    }

    /// Release reservations whose payments were never recorded (the relay failed before it).
    pub async fn unreserve(&self, keys: Vec<(String, String)>) -> Result<()> {
        match self {
            LiveStore::Sqlite(c) => {
                Self::sqlite(c, move |c| {
                    let mut st = c.prepare_cached(UNRESERVE_SQLITE)?;
                    for (account, nonce) in &keys {
                        st.execute(params![account, nonce])?;
                    }
                    Ok(())
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                for (account, nonce) in &keys {
                    c.execute(UNRESERVE_PG, &[account, nonce]).await.map_err(pg_err)?;
                }
                Ok(())
            }
        }
    }

    /// Is the payment `(account, nonce)` reserved (admitted, its relay not recorded yet)?
    pub async fn is_reserved(&self, account: &str, nonce: &str) -> Result<bool> {
        let (account, nonce) = (account.to_string(), nonce.to_string());
        match self {
            LiveStore::Sqlite(c) => {
                Self::sqlite(c, move |c| {
                    c.query_row(
                        "SELECT 1 FROM reservations WHERE account = ?1 AND nonce = ?2",
                        params![account, nonce],
                        |_| Ok(()),
                    )
                    .optional()
                    .map(|r| r.is_some())
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let row = c
                    .query_opt(
                        "SELECT 1 FROM reservations WHERE account = $1 AND nonce = $2",
                        &[&account, &nonce],
                    )
                    .await
                    .map_err(pg_err)?;
                Ok(row.is_some())
            }
        }
    }

    /// Drop reservations whose authorization expired before `now` without a record: a relay
    /// that died before recording them (they no longer count either).
    pub async fn drop_expired_reservations(&self, now: u64) -> Result<()> {
        let now = now as i64;
        match self {
            LiveStore::Sqlite(c) => {
                Self::sqlite(c, move |c| {
                    c.execute("DELETE FROM reservations WHERE valid_before <= ?1", [now]).map(drop)
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                c.execute("DELETE FROM reservations WHERE valid_before <= $1", &[&now])
                    .await
                    .map_err(pg_err)?;
                Ok(())
            }
        }
    }

    async fn select(
        &self,
        where_sqlite: &'static str,
        where_pg: &'static str,
        args: Vec<String>,
        limit: i64,
    ) -> Result<Vec<Settlement>> {
        match self {
            LiveStore::Sqlite(c) => {
                Self::sqlite(c, move |c| {
                    let sql = format!("SELECT {COLUMNS} FROM settlements {where_sqlite} LIMIT {limit}");
                    let mut st = c.prepare_cached(&sql)?;
                    let rows =
                        st.query_map(rusqlite::params_from_iter(args.iter()), Settlement::from_sqlite)?;
                    rows.collect()
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let sql = format!("SELECT {COLUMNS} FROM settlements {where_pg} LIMIT {limit}");
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    args.iter().map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                let rows = c.query(&sql, &params).await.map_err(pg_err)?;
                rows.iter().map(|r| Settlement::from_pg(r).map_err(pg_err)).collect()
            }
        }
    }

    pub async fn get(&self, account: &str, nonce: &str) -> Result<Option<Settlement>> {
        let rows = self
            .select(
                "WHERE account = ?1 AND nonce = ?2",
                "WHERE account = $1 AND nonce = $2",
                vec![account.into(), nonce.into()],
                1,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The record of a relay that carries the signed bytes (a batch's call 0).
    pub async fn by_tx(&self, tx_hash: &str) -> Result<Option<Settlement>> {
        let rows = self
            .select(
                "WHERE tx_hash = ?1 AND length(raw_tx) > 0",
                "WHERE tx_hash = $1 AND octet_length(raw_tx) > 0",
                vec![tx_hash.into()],
                1,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// Every record of a relay transaction, by call.
    pub async fn of_tx(&self, tx_hash: &str) -> Result<Vec<Settlement>> {
        self.select(
            "WHERE tx_hash = ?1 ORDER BY call_index",
            "WHERE tx_hash = $1 ORDER BY call_index",
            vec![tx_hash.into()],
            1_000_000,
        )
        .await
    }

    /// Every record still to be followed, oldest first.
    pub async fn pending(&self) -> Result<Vec<Settlement>> {
        self.select(
            "WHERE state IN ('signed', 'submitted') ORDER BY paid_at",
            "WHERE state IN ('signed', 'submitted') ORDER BY id",
            vec![],
            100_000,
        )
        .await
    }

    /// One page of a provider's records under `filter`, newest first (by payment time, then by
    /// row: a later record has a higher one), each with its position (the row's id), starting
    /// after the record at `before` in that order.
    /// The filter, the order and the limit are the database's: a page reads `limit` rows, not
    /// the provider's whole history.
    pub async fn page(
        &self,
        account: &str,
        filter: &PaymentFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, Settlement)>> {
        let sqlite = matches!(self, LiveStore::Sqlite(_));
        let mut args = vec![account.to_string()];
        let mut conds = vec!["account = {}".to_string()];
        let int = if sqlite { "CAST({} AS INTEGER)" } else { "({}::text)::bigint" };
        let mut add = |cond: &str, arg: String| {
            args.push(arg);
            conds.push(cond.to_string());
        };
        if let Some(r) = &filter.route {
            add("resource = {}", r.clone());
        }
        if let Some(p) = &filter.payer {
            add("payer = {}", p.clone());
        }
        if let Some(f) = filter.from {
            add(&format!("paid_at >= {int}"), f.to_string());
        }
        if let Some(t) = filter.to {
            add(&format!("paid_at < {int}"), t.to_string());
        }
        if let Some(b) = before {
            // Newest first by payment time (the index), then row: the page starts below the
            // cursor's record in that order.
            let after = if sqlite {
                "(paid_at, rowid) < (SELECT paid_at, rowid FROM settlements WHERE rowid = CAST({} AS INTEGER))"
            } else {
                "(paid_at, id) < (SELECT paid_at, id FROM settlements WHERE id = ({}::text)::bigint)"
            };
            add(after, b.to_string());
        }
        let mut sql = String::new();
        for (i, c) in conds.iter().enumerate() {
            let n = if sqlite { format!("?{}", i + 1) } else { format!("${}", i + 1) };
            sql.push_str(if i == 0 { "WHERE " } else { " AND " });
            sql.push_str(&c.replace("{}", &n));
        }
        match self {
            LiveStore::Sqlite(c) => {
                let sql = format!(
                    "SELECT {COLUMNS}, rowid FROM settlements {sql} ORDER BY paid_at DESC, rowid DESC LIMIT {limit}"
                );
                Self::sqlite(c, move |c| {
                    let mut st = c.prepare_cached(&sql)?;
                    let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        Ok((r.get(COLUMN_COUNT)?, Settlement::from_sqlite(r)?))
                    })?;
                    rows.collect()
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let sql = format!(
                    "SELECT {COLUMNS}, id FROM settlements {sql} ORDER BY paid_at DESC, id DESC LIMIT {limit}"
                );
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    args.iter().map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                let rows = c.query(&sql, &params).await.map_err(pg_err)?;
                rows.iter()
                    .map(|r| Ok((r.try_get(COLUMN_COUNT)?, Settlement::from_pg(r)?)))
                    .collect::<std::result::Result<_, tokio_postgres::Error>>()
                    .map_err(pg_err)
            }
        }
    }

    /// The count and sum of a provider's records the chain did not refuse (settled, or on their
    /// way), optionally of one payer since a time: revenue and usage, summed by the database.
    pub async fn paid_total(
        &self,
        account: &str,
        payer: Option<&str>,
        since: Option<u64>,
    ) -> Result<(i64, i64)> {
        let (account, payer) = (account.to_string(), payer.map(str::to_string));
        let since = since.map_or(i64::MIN, |s| i64::try_from(s).unwrap_or(i64::MAX));
        const SQL: &str = "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM settlements \
             WHERE account = {1} AND state <> 'failed' AND ({2} IS NULL OR payer = {2}) AND paid_at >= {3}";
        match self {
            LiveStore::Sqlite(c) => {
                Self::sqlite(c, move |c| {
                    let sql = SQL.replace("{1}", "?1").replace("{2}", "?2").replace("{3}", "?3");
                    c.prepare_cached(&sql)?
                        .query_row(params![account, payer, since], |r| Ok((r.get(0)?, r.get(1)?)))
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let sql = SQL
                    .replace("COALESCE(SUM(amount), 0)", "COALESCE(SUM(amount), 0)::bigint")
                    .replace("{1}", "$1")
                    .replace("{2}", "$2::text")
                    .replace("{3}", "$3");
                let r = c.query_one(&sql, &[&account, &payer, &since]).await.map_err(pg_err)?;
                Ok((r.get(0), r.get(1)))
            }
        }
    }

    /// The dashboard's overview of a provider's records the chain did not refuse, paid at or
    /// after `from`: the total (count, sum), the sums per `bucket` seconds, and the `top` routes
    /// and payers by sum (then by key, bytewise) — grouped by the database.
    pub async fn summary(
        &self,
        account: &str,
        from: Option<i64>,
        bucket: i64,
        top: u32,
    ) -> Result<LiveSummary> {
        let (account, from, bucket) = (account.to_string(), from.unwrap_or(i64::MIN), bucket.max(1));
        const WHERE: &str = "FROM settlements WHERE account = {1} AND state <> 'failed' AND paid_at >= {2}";
        let total = format!("SELECT COUNT(*), COALESCE(SUM(amount), 0) {WHERE}");
        let series = format!(
            "SELECT paid_at / {bucket} * {bucket} AS at, COUNT(*), SUM(amount) {WHERE} GROUP BY at ORDER BY at"
        );
        let by = |col: &str, collate: &str| {
            format!(
                "SELECT {col}, COUNT(*), SUM(amount) AS s {WHERE} GROUP BY {col} ORDER BY s DESC, {col}{collate} LIMIT {top}"
            )
        };
        match self {
            LiveStore::Sqlite(c) => {
                let sql = |q: &str| q.replace("{1}", "?1").replace("{2}", "?2");
                let (total, series, routes, payers) =
                    (sql(&total), sql(&series), sql(&by("resource", "")), sql(&by("payer", "")));
                Self::sqlite(c, move |c| {
                    let total = c
                        .prepare(&total)?
                        .query_row(params![account, from], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    let rows = |q: &str| -> rusqlite::Result<Vec<(String, i64, i64)>> {
                        let mut st = c.prepare(q)?;
                        let rows =
                            st.query_map(params![account, from], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                        rows.collect()
                    };
                    let mut st = c.prepare(&series)?;
                    let series = st
                        .query_map(params![account, from], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect::<rusqlite::Result<_>>()?;
                    Ok(LiveSummary { total, series, routes: rows(&routes)?, payers: rows(&payers)? })
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let sql = |q: &str| {
                    q.replace("SUM(amount)", "SUM(amount)::bigint").replace("{1}", "$1").replace("{2}", "$2")
                };
                let args: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&account, &from];
                let r = c.query_one(&sql(&total), &args).await.map_err(pg_err)?;
                let total = (r.get(0), r.get(1));
                let series = c.query(&sql(&series), &args).await.map_err(pg_err)?;
                let series = series.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
                let mut groups = Vec::new();
                for col in ["resource", "payer"] {
                    let rows = c.query(&sql(&by(col, " COLLATE \"C\"")), &args).await.map_err(pg_err)?;
                    groups.push(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect::<Vec<_>>());
                }
                let payers = groups.pop().unwrap_or_default();
                let routes = groups.pop().unwrap_or_default();
                Ok(LiveSummary { total, series, routes, payers })
            }
        }
    }

    /// The blocks (number, hash) holding confirmed records, from `block` on, newest first: what
    /// the follower re-checks for reorgs.
    pub async fn confirmed_blocks_from(&self, block: u64) -> Result<Vec<(i64, String)>> {
        const SQL: &str = "SELECT DISTINCT block_number, block_hash FROM settlements
             WHERE state = 'confirmed' AND block_number >= {p} ORDER BY block_number DESC";
        let block = block as i64;
        match self {
            LiveStore::Sqlite(c) => {
                Self::sqlite(c, move |c| {
                    let mut st = c.prepare_cached(&SQL.replace("{p}", "?1"))?;
                    let rows = st.query_map([block], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect()
                })
                .await
            }
            LiveStore::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let rows = c.query(&SQL.replace("{p}", "$1"), &[&block]).await.map_err(pg_err)?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            }
        }
    }

    /// Every record (for reconciliation), oldest first.
    pub async fn all(&self) -> Result<Vec<Settlement>> {
        self.select("ORDER BY paid_at, rowid", "ORDER BY id", vec![], 1_000_000).await
    }
}
