//! A provider's payment list as asked for (`GET /v1/providers/me/payments` and the dashboard's
//! table): the `route`, `payer`, `from`, `to` and `limit` query values and a `cursor`. A cursor
//! opens only for the account and filters it was sealed for, at the position sealed; the seeds
//! hold real cursors, so the fuzzer mutates from ones that open.
#![no_main]
use vlexivo_core::paging::{CursorKey, MAX_LIMIT, PaymentFilter, parse_limit};
use vlexivo_core::wallet::Address;

const ACCOUNT: &str = "acct_fuzz";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [route, payer, from, to, limit, cursor, account] = vlexivo_fuzz::fields::<7>(data);
    let t = vlexivo_fuzz::text;
    let (route, payer, from, to, limit, cursor) = (t(route), t(payer), t(from), t(to), t(limit), t(cursor));
    let account = if account.is_empty() { ACCOUNT.to_string() } else { t(account).into_owned() };

    if let Ok(n) = parse_limit(Some(&limit)) {
        assert!((1..=MAX_LIMIT).contains(&n));
    }
    let query = |k: &str| {
        Some(match k {
            "route" => route.to_string(),
            "payer" => payer.to_string(),
            "from" => from.to_string(),
            "to" => to.to_string(),
            _ => return None,
        })
    };
    let Ok(filter) = PaymentFilter::parse(query) else { return };
    if let Some(p) = &filter.payer {
        assert_eq!(&Address::parse(p).expect("an address").to_checksum(), p);
    }
    assert!(filter.from.is_none_or(|f| f >= 0) && filter.to.is_none_or(|t| t >= 0));
    let _ = filter.admits(&route, &payer, filter.from.unwrap_or(0));

    let key = CursorKey::derive(&[7; 32]);
    if let Ok(position) = key.open(&account, &filter, &cursor) {
        // Only the cursor this key sealed for this list opens, and only there.
        assert_eq!(key.seal(&account, &filter, position), *cursor);
        assert!(key.open(&format!("{account}x"), &filter, &cursor).is_err(), "another account");
        assert!(CursorKey::derive(&[8; 32]).open(&account, &filter, &cursor).is_err(), "another key");
        let mut other = filter.clone();
        other.to = Some(other.to.map_or(0, |t| t ^ 1));
        assert!(key.open(&account, &other, &cursor).is_err(), "other filters");
    }
    // Any position seals to a cursor that opens at it.
    let position = cursor.bytes().fold(0i64, |p, b| p.wrapping_mul(31).wrapping_add(i64::from(b)));
    let sealed = key.seal(&account, &filter, position);
    assert_eq!(key.open(&account, &filter, &sealed).expect("our own cursor"), position);
});
