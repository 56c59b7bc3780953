//! Money strings and float prices, differential against `rust_decimal`: whatever core accepts
//! has the value `rust_decimal` reads, and a plain decimal within range and precision that
//! `rust_decimal` reads, core accepts with that value. Arithmetic agrees with `Decimal`'s.
#![no_main]
use rust_decimal::Decimal;
use std::str::FromStr;
use vlexivo_core::money::{MAX_AMOUNT, MAX_AMOUNT_CHARS, parse_decimal};
use vlexivo_core::{Currency, Money};

/// `rust_decimal`'s reading of a string in core's grammar. An exponent is applied by moving the
/// point in the text first, then leading zeros and trailing fraction zeros are dropped: they are
/// exact, and `rust_decimal` refuses more than 28 digits even when they are zeros (and its
/// `from_scientific` reads a long mantissa as 0: the long run found
/// "0.00000000000000000000000000000080e28", which is 0.008).
fn oracle(s: &str) -> Option<Decimal> {
    let (sign, u) = match s.strip_prefix('-') {
        Some(u) => ("-", u),
        None => ("", s.strip_prefix('+').unwrap_or(s)),
    };
    let (mantissa, exp) = match u.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok().filter(|e| e.abs() <= 200)?),
        None => (u, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let point = int.len() as i64 + exp;
    let (int, frac) = if point <= 0 {
        (String::new(), format!("{}{digits}", "0".repeat((-point) as usize)))
    } else if point as usize >= digits.len() {
        (format!("{digits}{}", "0".repeat(point as usize - digits.len())), String::new())
    } else {
        (digits[..point as usize].to_string(), digits[point as usize..].to_string())
    };
    let (int, frac) = (int.trim_start_matches('0'), frac.trim_end_matches('0'));
    let int = if int.is_empty() { "0" } else { int };
    let t = if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") };
    Decimal::from_str_exact(&t).ok()
}

/// `[+-]?digits(.digits)?` with at least one digit on each side of the point.
fn plain(s: &str) -> bool {
    let u = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (a, b) = u.split_once('.').unwrap_or((u, "1"));
    !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
}

fn check_str(s: &str) {
    let usd = Currency::Usd;
    let parsed = Money::parse(s, usd);
    let dec = parse_decimal(s);
    match &parsed {
        Ok(m) => {
            let d = dec.as_ref().expect("Money::parse accepted what parse_decimal refused");
            assert_eq!(m.amount(), *d);
            assert!(m.amount() >= Decimal::ZERO && m.amount() <= MAX_AMOUNT, "{s:?} -> {m:?}");
            assert!(
                m.amount().normalize().scale() <= usd.decimals(),
                "{s:?} kept more decimals than usd has"
            );
            if let Some(o) = oracle(s) {
                assert_eq!(o, m.amount(), "{s:?}: core and rust_decimal disagree");
            } else {
                assert!(!plain(s), "{s:?}: core accepted a plain decimal rust_decimal refuses");
            }
            // The canonical form reads back to the same amount; atomic units round-trip.
            let again = Money::parse(&m.to_string(), usd).expect("canonical form parses");
            assert_eq!(again, *m);
            assert_eq!(Money::from_atomic(m.to_atomic(), usd).expect("atomic"), *m);
        }
        Err(_) => {
            if s.len() <= MAX_AMOUNT_CHARS
                && plain(s)
                && let Some(o) = oracle(s)
            {
                let in_range = o >= Decimal::ZERO && o <= MAX_AMOUNT;
                let exact = o.normalize().scale() <= usd.decimals();
                assert!(!(in_range && exact && !o.is_sign_negative()), "{s:?} = {o} refused: {parsed:?}");
            }
        }
    }
}

fn check_f64(v: f64) {
    let usd = Currency::Usd;
    if let Ok(m) = Money::from_f64(v, usd) {
        // The float's shortest round-trip decimal form, exactly.
        let shown = format!("{v}");
        let d = Decimal::from_str(&shown).expect("a finite in-range float prints as a decimal");
        assert_eq!(m.amount(), d, "{v:?}");
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [a, b] = vlexivo_fuzz::fields::<2>(data);
    let (sa, sb) = (vlexivo_fuzz::text(a), vlexivo_fuzz::text(b));
    check_str(&sa);
    check_str(&sb);
    if let Ok(raw) = <[u8; 8]>::try_from(&a[..a.len().min(8)]) {
        check_f64(f64::from_le_bytes(raw));
    }
    let usd = Currency::Usd;
    if let (Ok(x), Ok(y)) = (Money::parse(&sa, usd), Money::parse(&sb, usd)) {
        let (dx, dy) = (x.amount(), y.amount());
        assert_eq!(x.cmp_amount(&y).expect("same currency"), dx.cmp(&dy));
        match x.checked_add(&y) {
            Ok(s) => assert_eq!(s.amount(), dx + dy),
            Err(_) => assert!(dx + dy > MAX_AMOUNT, "{dx} + {dy} refused"),
        }
        match x.checked_sub(&y) {
            Ok(s) => assert_eq!(s.amount(), dx - dy),
            Err(_) => assert!(dx < dy, "{dx} - {dy} refused"),
        }
    }
});
