//! The facilitator's PostgreSQL database: connection settings, versioned schema migrations and
//! the read pool. Several facilitator processes share one database; everything lives in the
//! `vlexivo` schema (the same table names as the SQLite file), so the database may hold other
//! things too, the nonce store's table among them.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::{Client, NoTls};
use vlexivo_core::Error;
use vlexivo_core::store::spec::redact;

/// Ordered migrations; `vlexivo.schema_migrations` records which have run.
const MIGRATIONS: &[&str] = &[
    // 1: the ledger, with one hash chain per writer (`streams`).
    "
    CREATE TABLE meta (
        key   text PRIMARY KEY,
        value bytea NOT NULL
    );

    -- Secrets are never stored: only what is derived from them.
    CREATE TABLE providers (
        account       text PRIMARY KEY,
        mode          text NOT NULL CHECK (mode IN ('sandbox', 'live')),
        token_alg     text NOT NULL CHECK (token_alg IN ('HS256', 'EdDSA')),
        name          text,
        challenge_mac bytea NOT NULL CHECK (octet_length(challenge_mac) = 32),
        token_hs256   bytea NOT NULL CHECK (octet_length(token_hs256) = 32),
        auth_digest   bytea NOT NULL CHECK (octet_length(auth_digest) = 32),
        created_at    bigint NOT NULL
    );

    -- id: 'faucet', 'wallet:0x…' (EIP-55) or 'provider:acct_…'. Balances in atomic units.
    -- Only the faucet (the source of sandbox money) may go below zero.
    CREATE TABLE accounts (
        id        text PRIMARY KEY,
        kind      text NOT NULL CHECK (kind IN ('faucet', 'wallet', 'provider')),
        balance   bigint NOT NULL DEFAULT 0,
        topped_up bigint NOT NULL DEFAULT 0 CHECK (topped_up >= 0),
        CHECK (balance >= 0 OR kind = 'faucet')
    );
    INSERT INTO accounts (id, kind) VALUES ('faucet', 'faucet');

    -- One hash chain per writer: a writer holds its stream with a session advisory lock.
    CREATE TABLE streams (
        id         bigserial PRIMARY KEY,
        created_at bigint NOT NULL
    );

    -- tx_hash = 0x || hex(SHA-256(prev_hash || record)), chained within a stream.
    CREATE TABLE transactions (
        stream     bigint NOT NULL REFERENCES streams (id),
        seq        bigint NOT NULL,
        kind       text NOT NULL CHECK (kind IN ('topup', 'payment')),
        created_at bigint NOT NULL,
        record     text NOT NULL,
        prev_hash  text NOT NULL,
        tx_hash    text NOT NULL UNIQUE,
        PRIMARY KEY (stream, seq)
    );

    -- Double entry: the entries of a transaction sum to zero.
    CREATE TABLE entries (
        stream  bigint NOT NULL,
        tx_seq  bigint NOT NULL,
        account text NOT NULL,
        amount  bigint NOT NULL,
        PRIMARY KEY (stream, tx_seq, account)
    );

    -- One payment per challenge: the primary key (account, nonce) makes paying twice impossible,
    -- whichever facilitator takes the second attempt.
    CREATE TABLE payments (
        id         bigserial NOT NULL,
        account    text NOT NULL,
        nonce      text NOT NULL,
        stream     bigint NOT NULL,
        tx_seq     bigint NOT NULL,
        tx_hash    text NOT NULL,
        payer      text NOT NULL,
        amount     bigint NOT NULL CHECK (amount > 0),
        currency   text NOT NULL,
        resource   text NOT NULL,
        token      text NOT NULL,
        paid_at    bigint NOT NULL,
        expires_at bigint NOT NULL,
        PRIMARY KEY (account, nonce),
        UNIQUE (stream, tx_seq)
    );
    CREATE INDEX payments_by_account ON payments (account, id);
    ",
    // 2: provider keys sealed at rest (server::at_rest): 32 bytes plain or 61 sealed.
    "
    ALTER TABLE providers DROP CONSTRAINT providers_challenge_mac_check,
                          DROP CONSTRAINT providers_token_hs256_check,
                          ADD CONSTRAINT providers_challenge_mac_check CHECK (octet_length(challenge_mac) IN (32, 61)),
                          ADD CONSTRAINT providers_token_hs256_check CHECK (octet_length(token_hs256) IN (32, 61));
    ",
    // 3: apiSecret rotation. A rotated secret derives another account id: its row names the
    // account it pays into (`canonical`); `retire_at` ends a superseded secret's overlap window.
    "
    ALTER TABLE providers ADD COLUMN canonical text, ADD COLUMN retire_at bigint;
    ",
    // 4: live mode (see the SQLite migration 4): payout addresses and settlement records.
    "
    CREATE TABLE payouts (
        account    text PRIMARY KEY,
        address    text NOT NULL,
        created_at bigint NOT NULL
    );

    CREATE TABLE settlements (
        id            bigserial NOT NULL,
        account       text NOT NULL,
        nonce         text NOT NULL,
        scheme        text NOT NULL,
        network       text NOT NULL,
        asset         text NOT NULL,
        payer         text NOT NULL,
        pay_to        text NOT NULL,
        amount        bigint NOT NULL CHECK (amount > 0),
        currency      text NOT NULL,
        resource      text NOT NULL,
        auth_nonce    text NOT NULL,
        valid_before  bigint NOT NULL,
        tx_hash       text NOT NULL UNIQUE,
        raw_tx        bytea NOT NULL,
        relayer       text NOT NULL,
        relayer_nonce bigint NOT NULL,
        state         text NOT NULL CHECK (state IN ('signed', 'submitted', 'confirmed', 'failed')),
        block_number  bigint,
        block_hash    text,
        gas_used      bigint,
        failure       text,
        token         text NOT NULL,
        paid_at       bigint NOT NULL,
        expires_at    bigint NOT NULL,
        updated_at    bigint NOT NULL,
        PRIMARY KEY (account, nonce)
    );
    CREATE INDEX settlements_pending ON settlements (state) WHERE state IN ('signed', 'submitted');
    CREATE INDEX settlements_by_account ON settlements (account, id);
    ",
    // 5: usage counts per payer (see the SQLite migration 5).
    "
    CREATE INDEX payments_by_payer ON payments (account, payer, paid_at);
    CREATE INDEX settlements_by_payer ON settlements (account, payer, paid_at);
    ",
    // 6: batched relays and reorgs (see the SQLite migration 6).
    "
    ALTER TABLE settlements DROP CONSTRAINT settlements_tx_hash_key,
                            ADD COLUMN call_index bigint CHECK (call_index >= 0),
                            ADD COLUMN reorgs bigint NOT NULL DEFAULT 0;
    CREATE INDEX settlements_by_tx ON settlements (tx_hash);
    CREATE INDEX settlements_confirmed ON settlements (block_number) WHERE state = 'confirmed';
    ",
    // 7: live reservations in the ledger (see the SQLite migration 7).
    "
    CREATE TABLE reservations (
        account      text NOT NULL,
        nonce        text NOT NULL,
        payer        text NOT NULL,
        amount       bigint NOT NULL CHECK (amount > 0),
        auth_nonce   text NOT NULL,
        valid_before bigint NOT NULL,
        created_at   bigint NOT NULL,
        PRIMARY KEY (account, nonce)
    );
    CREATE INDEX reservations_by_payer ON reservations (payer);
    CREATE INDEX settlements_in_flight ON settlements (payer) WHERE state IN ('signed', 'submitted');
    ",
    // 8: a provider's credits spread over sub-accounts (`ledger::postgres`, credit shards): each
    // writer credits the shard of its stream, so facilitators paying one provider no longer
    // take turns on its row. A provider's balance is its accounts row (what it held before this
    // migration) plus its shards; entries and records still name the provider's account.
    "
    CREATE TABLE credit_shards (
        account text NOT NULL,
        shard   integer NOT NULL CHECK (shard >= 0),
        balance bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
        PRIMARY KEY (account, shard)
    );
    ",
    // 9: a provider's live records page newest first by payment time, then row, as on SQLite
    // (`LiveStore::page`). By row id alone, a batch (recorded in call order, not by its tokens'
    // times) could list an older payment above a newer one.
    "
    DROP INDEX settlements_by_account;
    CREATE INDEX settlements_by_account ON settlements (account, paid_at, id);
    ",
    // 10: the dashboard's overview and a payer's usage read indexes alone (see the SQLite
    // migration 8).
    "
    CREATE INDEX payments_by_time ON payments (account, paid_at) INCLUDE (amount, resource, payer);
    DROP INDEX payments_by_payer;
    CREATE INDEX payments_by_payer ON payments (account, payer, paid_at) INCLUDE (amount);
    ",
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
/// Advisory lock keys (first int of the two-int form): migrations, and writers' streams.
pub(crate) const LOCK_MIGRATE: i32 = 0x5658_0001;
pub(crate) const LOCK_STREAM: i32 = 0x5658_0002;
/// Live mode: a payer's admissions, across facilitators (second int: hashtext of the payer).
pub(crate) const LOCK_PAYER: i32 = 0x5658_0003;

/// Is this a PostgreSQL URL (`--db postgres://…`)?
pub fn is_url(db: &str) -> bool {
    let l = db.trim_start().to_ascii_lowercase();
    l.starts_with("postgres://") || l.starts_with("postgresql://")
}

/// Parse a libpq URL into the driver's config, with our schema on the search path.
pub fn config(url: &str) -> Result<tokio_postgres::Config, Error> {
    let mut cfg: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        Error::Config(format!("database URL {}: {}", redact(url), e.to_string().lines().next().unwrap_or("")))
    })?;
    let options = match cfg.get_options() {
        Some(o) if !o.is_empty() => format!("{o} -c search_path=vlexivo"),
        _ => "-c search_path=vlexivo".to_string(),
    };
    cfg.options(&options);
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    cfg.application_name("vlexivo-facilitator");
    Ok(cfg)
}

/// Connect one session (its connection task runs on the current runtime).
pub async fn connect(cfg: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(async move {
        // Ends when the server or the network closes it; the client then reports is_closed().
        let _ = conn.await;
    });
    Ok(client)
}

/// Connect, create the schema and run the migrations not yet applied (several facilitators
/// starting at once take turns on an advisory lock). Returns the open client.
pub async fn open(url: &str) -> Result<(tokio_postgres::Config, Client), Error> {
    let cfg = config(url)?;
    let mut client = connect(&cfg)
        .await
        .map_err(|e| Error::Config(format!("cannot connect to {}: {}", redact(url), describe(&e))))?;
    migrate(&mut client).await?;
    Ok((cfg, client))
}

async fn migrate(client: &mut Client) -> Result<(), Error> {
    let fail = |e: tokio_postgres::Error| Error::Config(format!("schema migration failed: {}", describe(&e)));
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_MIGRATE]).await.map_err(fail)?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS vlexivo;
         CREATE TABLE IF NOT EXISTS vlexivo.schema_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await
    .map_err(fail)?;
    let current: i64 = tx
        .query_one("SELECT coalesce(max(version), 0)::bigint FROM vlexivo.schema_migrations", &[])
        .await
        .map_err(fail)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(Error::Config(format!(
            "database schema version {current} is newer than this vlexivo ({SCHEMA_VERSION})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        // Every migration and its version row commit with the lock's transaction.
        tx.batch_execute(sql).await.map_err(fail)?;
        tx.execute("INSERT INTO vlexivo.schema_migrations (version) VALUES ($1)", &[&(i as i32 + 1)])
            .await
            .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)
}

/// A pool for reads (balances, payment lists, providers another facilitator onboarded).
pub fn pool(cfg: &tokio_postgres::Config, size: usize) -> Result<Pool, Error> {
    let manager =
        Manager::from_config(cfg.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| Error::Internal(format!("database pool: {e}")))
}

/// What went wrong, without SQL, values or credentials.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    if e.is_closed() {
        return "connection closed".into();
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("connection error");
    if first.contains("password") { "authentication failed".into() } else { first.to_string() }
}

/// Did the connection (not the statement) fail: the server is down, restarting, or gone?
pub fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08 (connection exception), admin/crash shutdown, cannot connect now.
        Some(c) => {
            let c = c.code();
            c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"
        }
        // No SQLSTATE: an I/O or protocol failure on the socket.
        None => e.as_db_error().is_none(),
    }
}

/// A deadlock or serialization failure: the transaction can be retried as is.
pub fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code().map(|c| c.code()), Some("40001" | "40P01"))
}

pub(crate) fn pg_err(e: tokio_postgres::Error) -> Error {
    if is_connection_error(&e) {
        Error::FacilitatorUnavailable(format!("the ledger database cannot be reached: {}", describe(&e)))
    } else {
        Error::Internal(format!("database: {}", describe(&e)))
    }
}

pub(crate) fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(e),
        other => Error::FacilitatorUnavailable(format!("the ledger database cannot be reached: {other}")),
    }
}
