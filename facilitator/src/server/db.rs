//! The facilitator's SQLite file: connection settings and schema migrations.
//!
//! Durability: WAL with `synchronous=FULL` (every commit fsyncs the WAL); the ledger writer
//! keeps FULL unless the operator chose `--synchronous normal` (`ledger`).

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;
use vlexivo_core::Error;

/// Ordered migrations; `PRAGMA user_version` records how many have been applied.
const MIGRATIONS: &[&str] = &[
    // 1: the ledger.
    "
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;

    -- Secrets are never stored: only what is derived from them.
    CREATE TABLE providers (
        account       TEXT PRIMARY KEY,
        mode          TEXT NOT NULL CHECK (mode IN ('sandbox', 'live')),
        token_alg     TEXT NOT NULL CHECK (token_alg IN ('HS256', 'EdDSA')),
        name          TEXT,
        challenge_mac BLOB NOT NULL CHECK (length(challenge_mac) = 32),
        token_hs256   BLOB NOT NULL CHECK (length(token_hs256) = 32),
        auth_digest   BLOB NOT NULL CHECK (length(auth_digest) = 32),
        created_at    INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- id: 'faucet', 'wallet:0x…' (EIP-55) or 'provider:acct_…'. Balances in atomic units.
    -- Only the faucet (the source of sandbox money) may go below zero.
    CREATE TABLE accounts (
        id        TEXT PRIMARY KEY,
        kind      TEXT NOT NULL CHECK (kind IN ('faucet', 'wallet', 'provider')),
        balance   INTEGER NOT NULL DEFAULT 0,
        topped_up INTEGER NOT NULL DEFAULT 0 CHECK (topped_up >= 0),
        CHECK (balance >= 0 OR kind = 'faucet')
    ) WITHOUT ROWID;
    INSERT INTO accounts (id, kind) VALUES ('faucet', 'faucet');

    -- The hash chain: tx_hash = 0x || hex(SHA-256(prev_hash || record)).
    CREATE TABLE transactions (
        seq        INTEGER PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('topup', 'payment')),
        created_at INTEGER NOT NULL,
        record     TEXT NOT NULL,
        prev_hash  TEXT NOT NULL,
        tx_hash    TEXT NOT NULL UNIQUE
    );

    -- Double entry: the entries of a transaction sum to zero.
    CREATE TABLE entries (
        tx_seq  INTEGER NOT NULL,
        account TEXT NOT NULL,
        amount  INTEGER NOT NULL,
        PRIMARY KEY (tx_seq, account)
    ) WITHOUT ROWID;

    -- One payment per challenge: UNIQUE (account, nonce) is what makes paying twice impossible.
    CREATE TABLE payments (
        account    TEXT NOT NULL,
        nonce      TEXT NOT NULL,
        tx_seq     INTEGER NOT NULL UNIQUE,
        tx_hash    TEXT NOT NULL,
        payer      TEXT NOT NULL,
        amount     INTEGER NOT NULL CHECK (amount > 0),
        currency   TEXT NOT NULL,
        resource   TEXT NOT NULL,
        token      TEXT NOT NULL,
        paid_at    INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (account, nonce)
    ) WITHOUT ROWID;
    CREATE INDEX payments_by_account ON payments (account, tx_seq);
    ",
    // 2: provider keys sealed at rest (server::at_rest): 32 bytes plain or 61 sealed. SQLite
    // cannot alter a CHECK: the table is rebuilt.
    "
    CREATE TABLE providers_v2 (
        account       TEXT PRIMARY KEY,
        mode          TEXT NOT NULL CHECK (mode IN ('sandbox', 'live')),
        token_alg     TEXT NOT NULL CHECK (token_alg IN ('HS256', 'EdDSA')),
        name          TEXT,
        challenge_mac BLOB NOT NULL CHECK (length(challenge_mac) IN (32, 61)),
        token_hs256   BLOB NOT NULL CHECK (length(token_hs256) IN (32, 61)),
        auth_digest   BLOB NOT NULL CHECK (length(auth_digest) = 32),
        created_at    INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO providers_v2 SELECT * FROM providers;
    DROP TABLE providers;
    ALTER TABLE providers_v2 RENAME TO providers;
    ",
    // 3: apiSecret rotation. A rotated secret derives another account id: its row names the
    // account it pays into (`canonical`); `retire_at` ends a superseded secret's overlap window.
    "
    ALTER TABLE providers ADD COLUMN canonical TEXT;
    ALTER TABLE providers ADD COLUMN retire_at INTEGER;
    ",
    // 4: live mode. A live provider's payout address, and one settlement record per live
    // payment: the relay transaction is signed, recorded here, then broadcast, so a restart
    // follows it (re-broadcasting the same bytes) and never signs a second one.
    "
    CREATE TABLE payouts (
        account    TEXT PRIMARY KEY,
        address    TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE settlements (
        account       TEXT NOT NULL,
        nonce         TEXT NOT NULL,
        scheme        TEXT NOT NULL,
        network       TEXT NOT NULL,
        asset         TEXT NOT NULL,
        payer         TEXT NOT NULL,
        pay_to        TEXT NOT NULL,
        amount        INTEGER NOT NULL CHECK (amount > 0),
        currency      TEXT NOT NULL,
        resource      TEXT NOT NULL,
        auth_nonce    TEXT NOT NULL,
        valid_before  INTEGER NOT NULL,
        tx_hash       TEXT NOT NULL UNIQUE,
        raw_tx        BLOB NOT NULL,
        relayer       TEXT NOT NULL,
        relayer_nonce INTEGER NOT NULL,
        state         TEXT NOT NULL CHECK (state IN ('signed', 'submitted', 'confirmed', 'failed')),
        block_number  INTEGER,
        block_hash    TEXT,
        gas_used      INTEGER,
        failure       TEXT,
        token         TEXT NOT NULL,
        paid_at       INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        PRIMARY KEY (account, nonce)
    );
    CREATE INDEX settlements_pending ON settlements (state) WHERE state IN ('signed', 'submitted');
    CREATE INDEX settlements_by_account ON settlements (account, paid_at);
    ",
    // 5: usage counts per payer (`GET /v1/providers/me/payers/{address}/usage?since=`).
    "
    CREATE INDEX payments_by_payer ON payments (account, payer, paid_at);
    CREATE INDEX settlements_by_payer ON settlements (account, payer, paid_at);
    ",
    // 6: batched relays and reorgs. One Multicall3 `aggregate3` transaction carries many
    // settlements, so a transaction hash is no longer unique: `call_index` names a record's call
    // in it (NULL for a relay of its own), and only call 0 keeps the signed bytes. `reorgs`
    // counts the times a confirmation was undone by a reorg (the record was followed again).
    // SQLite cannot drop a UNIQUE constraint: the table is rebuilt, rowids kept.
    "
    CREATE TABLE settlements_v6 (
        account       TEXT NOT NULL,
        nonce         TEXT NOT NULL,
        scheme        TEXT NOT NULL,
        network       TEXT NOT NULL,
        asset         TEXT NOT NULL,
        payer         TEXT NOT NULL,
        pay_to        TEXT NOT NULL,
        amount        INTEGER NOT NULL CHECK (amount > 0),
        currency      TEXT NOT NULL,
        resource      TEXT NOT NULL,
        auth_nonce    TEXT NOT NULL,
        valid_before  INTEGER NOT NULL,
        tx_hash       TEXT NOT NULL,
        raw_tx        BLOB NOT NULL,
        relayer       TEXT NOT NULL,
        relayer_nonce INTEGER NOT NULL,
        state         TEXT NOT NULL CHECK (state IN ('signed', 'submitted', 'confirmed', 'failed')),
        block_number  INTEGER,
        block_hash    TEXT,
        gas_used      INTEGER,
        failure       TEXT,
        token         TEXT NOT NULL,
        paid_at       INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        call_index    INTEGER CHECK (call_index >= 0),
        reorgs        INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, nonce)
    );
    INSERT INTO settlements_v6 (rowid, account, nonce, scheme, network, asset, payer, pay_to, amount,
        currency, resource, auth_nonce, valid_before, tx_hash, raw_tx, relayer, relayer_nonce, state,
        block_number, block_hash, gas_used, failure, token, paid_at, expires_at, updated_at)
    SELECT rowid, account, nonce, scheme, network, asset, payer, pay_to, amount,
        currency, resource, auth_nonce, valid_before, tx_hash, raw_tx, relayer, relayer_nonce, state,
        block_number, block_hash, gas_used, failure, token, paid_at, expires_at, updated_at
    FROM settlements;
    DROP TABLE settlements;
    ALTER TABLE settlements_v6 RENAME TO settlements;
    CREATE INDEX settlements_pending ON settlements (state) WHERE state IN ('signed', 'submitted');
    CREATE INDEX settlements_by_account ON settlements (account, paid_at);
    CREATE INDEX settlements_by_payer ON settlements (account, payer, paid_at);
    CREATE INDEX settlements_by_tx ON settlements (tx_hash);
    CREATE INDEX settlements_confirmed ON settlements (block_number) WHERE state = 'confirmed';
    ",
    // 7: live reservations in the ledger. A payment admitted (its payer's balance checked) but
    // not yet recorded as a settlement (waiting for its batch, or being signed) holds a row here;
    // recording the settlement deletes it in the same transaction. A payer's next admission
    // counts these rows and its settlements not yet known to be in the balance it reads, so
    // facilitators sharing one database never admit more than the balance between them.
    "
    CREATE TABLE reservations (
        account      TEXT NOT NULL,
        nonce        TEXT NOT NULL,
        payer        TEXT NOT NULL,
        amount       INTEGER NOT NULL CHECK (amount > 0),
        auth_nonce   TEXT NOT NULL,
        valid_before INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (account, nonce)
    );
    CREATE INDEX reservations_by_payer ON reservations (payer);
    CREATE INDEX settlements_in_flight ON settlements (payer) WHERE state IN ('signed', 'submitted');
    ",
    // 8: the dashboard's overview and a payer's usage read indexes alone. `payments` is clustered
    // on (account, nonce) with its 400-byte tokens: each row an index found was a second search of
    // that tree. Its four scans of a range (totals, per bucket, per route, per payer) read
    // `payments_by_time`; the usage count per payer (and the overview per payer) read
    // `payments_by_payer`, which now carries the amount.
    "
    CREATE INDEX payments_by_time ON payments (account, paid_at, amount, resource, payer);
    DROP INDEX payments_by_payer;
    CREATE INDEX payments_by_payer ON payments (account, payer, paid_at, amount);
    ",
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn db_err(e: rusqlite::Error) -> Error {
    Error::Internal(format!("database: {e}"))
}

fn configure(conn: &Connection) -> Result<(), Error> {
    conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(db_err)?;
    conn.pragma_update(None, "foreign_keys", "OFF").map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Open (creating and migrating if needed) the read-write connection.
pub fn open_rw(path: &Path) -> Result<Connection, Error> {
    open_rw_with(path, Connection::open(path))
}

/// The same through a named SQLite VFS (tests use one whose fsyncs fail on demand).
#[cfg(test)]
pub(crate) fn open_rw_vfs(path: &Path, vfs: &str) -> Result<Connection, Error> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_URI;
    open_rw_with(path, Connection::open_with_flags_and_vfs(path, flags, vfs))
}

fn open_rw_with(path: &Path, conn: rusqlite::Result<Connection>) -> Result<Connection, Error> {
    let conn = conn.map_err(|e| Error::Config(format!("cannot open database {}: {e}", path.display())))?;
    configure(&conn)?;
    migrate(&conn)?;
    Ok(conn)
}

/// A read-only connection (the schema must already exist).
pub fn open_ro(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| Error::Config(format!("cannot open database {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(32);
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db_err)?;
    if v != SCHEMA_VERSION {
        return Err(Error::Config(format!(
            "database {} has schema version {v}, this vlexivo expects {SCHEMA_VERSION}",
            path.display()
        )));
    }
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), Error> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db_err)?;
    if current > SCHEMA_VERSION {
        return Err(Error::Config(format!(
            "database schema version {current} is newer than this vlexivo ({SCHEMA_VERSION})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        // Each migration and its version bump commit together.
        let batch = format!("BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1);
        if let Err(e) = conn.execute_batch(&batch) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(Error::Config(format!("schema migration {} failed: {e}", i + 1)));
        }
    }
    Ok(())
}
