//! Decimal money. Amounts cross every boundary (wire, FFI, database) as decimal strings and are
//! held as `rust_decimal::Decimal`; floats never carry money. A currency fixes how many decimals
//! it carries and how it settles: `usd` settles as a 6-decimal stablecoin, so $0.0001 = 100
//! atomic units.

use crate::error::{Error, Result};
use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// Supported currencies. Wire form is the lowercase code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Currency {
    /// US dollars, settled as a 6-decimal USDC-like stablecoin.
    Usd,
}

impl Currency {
    pub fn code(self) -> &'static str {
        match self {
            Currency::Usd => "usd",
        }
    }

    /// Decimals carried by the settlement asset.
    pub fn decimals(self) -> u32 {
        match self {
            Currency::Usd => 6,
        }
    }

    /// Parse a currency code (case-insensitive: "usd", "USD").
    pub fn parse(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("usd") {
            Ok(Currency::Usd)
        } else {
            Err(Error::CurrencyUnsupported(truncate(s, 16)))
        }
    }
}

impl FromStr for Currency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Currency::parse(s)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The largest single amount accepted anywhere (a price, a payment, a top-up): 1,000,000.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
/// Longest amount string accepted before parsing.
pub const MAX_AMOUNT_CHARS: usize = 40;

/// A non-negative amount of one currency, exact to the currency's decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Parse a decimal string such as "0.001". Exponent forms ("1e-3") are accepted only when
    /// exact within the currency's decimals. Each kind of bad input has its own error code.
    pub fn parse(s: &str, currency: Currency) -> Result<Self> {
        let amount = parse_decimal(s)?;
        Self::new(amount, currency)
    }

    /// Parse a price given as a float (a JS number, a Python float). The float is read through
    /// its shortest round-trip decimal form, so `0.001` is exactly 0.001 and `0.1 + 0.2`
    /// (0.30000000000000004) is refused as over-precise rather than silently rounded.
    pub fn from_f64(v: f64, currency: Currency) -> Result<Self> {
        if !v.is_finite() {
            return Err(Error::AmountNotFinite);
        }
        // Rust's `Display` for f64 is the shortest string that round-trips, never exponent form.
        Self::parse(&format!("{v}"), currency)
    }

    /// Build from a decimal, checking the sign, the maximum and precision, in §3's order.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(Error::AmountNegative);
        }
        let amount = amount.normalize();
        if amount > MAX_AMOUNT {
            return Err(Error::AmountTooLarge { max: MAX_AMOUNT.to_string() });
        }
        if amount.scale() > currency.decimals() {
            return Err(Error::AmountPrecision { max_decimals: currency.decimals() });
        }
        // Store without a negative zero.
        let amount = if amount.is_zero() { Decimal::ZERO } else { amount };
        Ok(Self { amount, currency })
    }

    pub fn zero(currency: Currency) -> Self {
        Self { amount: Decimal::ZERO, currency }
    }

    /// From atomic units of the settlement asset (100 = $0.0001 for `usd`).
    pub fn from_atomic(units: u64, currency: Currency) -> Result<Self> {
        let amount = Decimal::from_i128_with_scale(units as i128, currency.decimals());
        Self::new(amount, currency)
    }

    /// Exact atomic units (amount × 10^decimals). Never rounds: precision was checked on entry.
    pub fn to_atomic(&self) -> u64 {
        let scaled = self.amount * Decimal::from(10u64.pow(self.currency.decimals()));
        // In range and integral by construction (scale ≤ decimals, amount ≤ MAX_AMOUNT).
        u64::try_from(scaled.trunc().mantissa() / 10i128.pow(scaled.trunc().scale()))
            .expect("money within range")
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// Require a strictly positive amount (prices, payments, top-ups).
    pub fn positive(self) -> Result<Self> {
        if self.is_zero() { Err(Error::AmountZero) } else { Ok(self) }
    }

    fn same_currency(&self, other: &Money) -> Result<()> {
        if self.currency != other.currency {
            return Err(Error::CurrencyMismatch {
                expected: self.currency.code().into(),
                got: other.currency.code().into(),
            });
        }
        Ok(())
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money> {
        self.same_currency(other)?;
        Money::new(self.amount + other.amount, self.currency)
    }

    /// Subtract; a negative result is an error (`amount_negative`), never a wrap.
    pub fn checked_sub(&self, other: &Money) -> Result<Money> {
        self.same_currency(other)?;
        Money::new(self.amount - other.amount, self.currency)
    }

    /// Multiply by an exact factor; refuses a result with more decimals than the currency.
    pub fn checked_mul(&self, factor: Decimal) -> Result<Money> {
        let product =
            self.amount.checked_mul(factor).ok_or(Error::AmountTooLarge { max: MAX_AMOUNT.to_string() })?;
        Money::new(product, self.currency)
    }

    /// Multiply and round half away from zero to the currency's decimals: for price formulas
    /// that knowingly produce fractions of an atomic unit.
    pub fn mul_rounded(&self, factor: Decimal) -> Result<Money> {
        let product =
            self.amount.checked_mul(factor).ok_or(Error::AmountTooLarge { max: MAX_AMOUNT.to_string() })?;
        let rounded = product.round_dp_with_strategy(
            self.currency.decimals(),
            rust_decimal::RoundingStrategy::MidpointAwayFromZero,
        );
        Money::new(rounded, self.currency)
    }

    /// Compare amounts of the same currency.
    pub fn cmp_amount(&self, other: &Money) -> Result<std::cmp::Ordering> {
        self.same_currency(other)?;
        Ok(self.amount.cmp(&other.amount))
    }
}

impl fmt::Display for Money {
    /// The canonical decimal string: no exponent, no trailing zeros ("0.001", "10", "0").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.amount)
    }
}

/// Parse the decimal grammar `[+-]?(digits[.digits]|.digits)([eE][+-]?digits)?` exactly.
/// NaN/Infinity spellings are `amount_not_finite`; anything else off-grammar is malformed.
/// Allocation-free on success: it runs on every paid request (a token's `amt`).
pub fn parse_decimal(s: &str) -> Result<Decimal> {
    if let Some(d) = plain_decimal(s) {
        return Ok(d);
    }
    if s.len() > MAX_AMOUNT_CHARS {
        return Err(Error::AmountMalformed(format!("{}…", truncate(s, 16))));
    }
    let unsigned = s.trim_start_matches(['+', '-']);
    if ["nan", "inf", "infinity"].iter().any(|w| unsigned.eq_ignore_ascii_case(w)) {
        return Err(Error::AmountNotFinite);
    }
    let malformed = || Error::AmountMalformed(truncate(s, 16));
    let bytes = s.as_bytes();
    let mut i = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let (mantissa_part, exp_part) = match s[i..].find(['e', 'E']) {
        Some(p) => (&s[i..i + p], Some(&s[i + p + 1..])),
        None => (&s[i..], None),
    };
    let (int_part, frac_part) = match mantissa_part.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mantissa_part, ""),
    };
    let digits_ok = |d: &str| d.bytes().all(|c| c.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !digits_ok(int_part)
        || !digits_ok(frac_part)
        // §3: a point has digits after it ("5." and "." are not amounts).
        || (mantissa_part.contains('.') && frac_part.is_empty())
    {
        return Err(malformed());
    }
    let exp: i64 = match exp_part {
        None => 0,
        Some(e) => {
            let digits = e.trim_start_matches(['+', '-']);
            if digits.is_empty() || !digits_ok(digits) || e.len() - digits.len() > 1 {
                return Err(malformed());
            }
            if digits.len() > 4 {
                // 1e99999: far beyond any amount either way; which error is decided below,
                // once zero and the sign are ruled out.
                if e.starts_with('-') { -100_000 } else { 100_000 }
            } else {
                e.parse().map_err(|_| malformed())?
            }
        }
    };
    // The significant digits: all digits with leading zeros stripped, then trailing zeros
    // dropped while they are fraction digits ("0.0010000" and "1000e-6" are as exact as they
    // read). Scale counts fraction digits minus the exponent.
    let all = || int_part.bytes().chain(frac_part.bytes());
    let lead = all().take_while(|&c| c == b'0').count();
    let mut len = (int_part.len() + frac_part.len() - lead) as i64;
    let mut scale = frac_part.len() as i64 - exp;
    if len == 0 {
        return Ok(Decimal::ZERO);
    }
    // §3's order: a negative amount is that, however large or precise.
    if negative {
        return Err(Error::AmountNegative);
    }
    let trailing = all().rev().take_while(|&c| c == b'0').count() as i64;
    let dropped = trailing.min(scale.max(0));
    len -= dropped;
    scale -= dropped;
    let digits = all().skip(lead).take(len as usize);
    // Large integer: digits then -scale zeros. Anything over 7 integer digits is too large.
    let zeros = if scale < 0 { -scale } else { 0 };
    if zeros > 0 && len + zeros > 7 {
        return Err(Error::AmountTooLarge { max: MAX_AMOUNT.to_string() });
    }
    let (len, scale) = (len + zeros, scale + zeros);
    // §3's order: too large before too precise.
    if len - scale > 7 {
        return Err(Error::AmountTooLarge { max: MAX_AMOUNT.to_string() });
    }
    if scale > 28 || len > 28 {
        return Err(Error::AmountPrecision { max_decimals: 0 });
    }
    // At most 28 digits: fits an i128.
    let mut mantissa = digits.fold(0i128, |m, c| m * 10 + i128::from(c - b'0'));
    mantissa *= 10i128.pow(zeros as u32);
    Ok(Decimal::from_i128_with_scale(mantissa, scale as u32))
}

/// `digits` or `digits.digits` of at most 19 characters, worth less than 10^7: what prices and
/// paid amounts look like, read in one pass. Exactly what [`parse_decimal`]'s general path makes
/// of such text (the same value and scale: fraction zeros at the end dropped, zero as
/// `Decimal::ZERO`; tested against its reference); `None` for any other text, which that path
/// reads.
fn plain_decimal(s: &str) -> Option<Decimal> {
    let b = s.as_bytes();
    if b.len() > 19 || !b.first()?.is_ascii_digit() || !b.last()?.is_ascii_digit() {
        return None;
    }
    // At most 19 digits: the mantissa fits a u64.
    let (mut m, mut scale, mut dot, mut int_digits) = (0u64, 0u32, false, 0u32);
    for &c in b {
        if c.is_ascii_digit() {
            m = m * 10 + u64::from(c - b'0');
            if dot {
                scale += 1;
            } else if m != 0 {
                // Integer digits from the first significant one.
                int_digits += 1;
            }
        } else if c == b'.' && !dot {
            dot = true;
        } else {
            return None;
        }
    }
    // Eight integer digits or more is too large: the general path says so.
    if int_digits > 7 {
        return None;
    }
    if m == 0 {
        return Some(Decimal::ZERO);
    }
    while scale > 0 && m % 10 == 0 {
        m /= 10;
        scale -= 1;
    }
    Some(Decimal::from_i128_with_scale(i128::from(m), scale))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Result<Money> {
        Money::parse(s, Currency::Usd)
    }

    #[test]
    fn parses_and_formats() {
        assert_eq!(usd("0.001").unwrap().to_string(), "0.001");
        assert_eq!(usd("0.0001").unwrap().to_atomic(), 100);
        assert_eq!(usd("10.00").unwrap().to_string(), "10");
        assert_eq!(usd("1e-3").unwrap().to_string(), "0.001");
        assert_eq!(usd(".5").unwrap().to_atomic(), 500_000);
        assert_eq!(usd("0.0010000").unwrap().to_string(), "0.001");
        assert_eq!(usd("1000000").unwrap().to_atomic(), 1_000_000_000_000);
        assert_eq!(usd("0").unwrap().to_string(), "0");
    }

    #[test]
    fn rejects_each_kind_of_bad_input() {
        let code = |s: &str| usd(s).unwrap_err().code();
        assert_eq!(code("-0.001"), "amount_negative");
        assert_eq!(code("NaN"), "amount_not_finite");
        assert_eq!(code("-Infinity"), "amount_not_finite");
        assert_eq!(code("0.0000001"), "amount_precision");
        assert_eq!(code("1e-7"), "amount_precision");
        assert_eq!(code("1000000.01"), "amount_too_large");
        assert_eq!(code("1e9"), "amount_too_large");
        assert_eq!(code("1e99999"), "amount_too_large");
        assert_eq!(code("abc"), "amount_malformed");
        assert_eq!(code(""), "amount_malformed");
        assert_eq!(code("1.2.3"), "amount_malformed");
        assert_eq!(code(" 1"), "amount_malformed");
        assert_eq!(code("0x10"), "amount_malformed");
        assert_eq!(code("1e"), "amount_malformed");
        assert_eq!(code("."), "amount_malformed");
        assert_eq!(code(&"9".repeat(100)), "amount_malformed");
        assert_eq!(Currency::parse("eur").unwrap_err().code(), "currency_unsupported");
    }

    #[test]
    fn floats_are_read_exactly() {
        assert_eq!(Money::from_f64(0.001, Currency::Usd).unwrap().to_string(), "0.001");
        assert_eq!(Money::from_f64(0.0001, Currency::Usd).unwrap().to_atomic(), 100);
        assert_eq!(Money::from_f64(0.1 + 0.2, Currency::Usd).unwrap_err().code(), "amount_precision");
        assert_eq!(Money::from_f64(f64::NAN, Currency::Usd).unwrap_err().code(), "amount_not_finite");
        assert_eq!(Money::from_f64(-1.0, Currency::Usd).unwrap_err().code(), "amount_negative");
        assert_eq!(Money::from_f64(1e-7, Currency::Usd).unwrap_err().code(), "amount_precision");
    }

    #[test]
    fn arithmetic() {
        let a = usd("0.001").unwrap();
        let b = usd("0.0005").unwrap();
        assert_eq!(a.checked_add(&b).unwrap().to_string(), "0.0015");
        assert_eq!(b.checked_sub(&a).unwrap_err().code(), "amount_negative");
        assert_eq!(a.checked_mul(Decimal::new(10, 0)).unwrap().to_string(), "0.01");
        assert_eq!(a.checked_mul(Decimal::new(1, 4)).unwrap_err().code(), "amount_precision");
        assert_eq!(a.mul_rounded(Decimal::new(15, 4)).unwrap().to_string(), "0.000002");
    }

    /// `s` as rust_decimal reads it (mantissa with `from_str_exact`, the exponent applied
    /// exactly), or `None` beyond its 28-digit range (such inputs are left to the other tests).
    fn rust_decimal_oracle(s: &str) -> Option<Decimal> {
        let (mantissa, exp) = match s.find(['e', 'E']) {
            Some(p) => (&s[..p], s[p + 1..].parse::<i64>().ok()?),
            None => (s, 0),
        };
        let mantissa = mantissa.strip_prefix('+').unwrap_or(mantissa);
        let mantissa = if let Some(rest) = mantissa.strip_prefix("-.") {
            format!("-0.{rest}")
        } else if let Some(rest) = mantissa.strip_prefix('.') {
            format!("0.{rest}")
        } else {
            mantissa.to_string()
        };
        let mut d = Decimal::from_str_exact(&mantissa).ok()?;
        if exp < 0 {
            let scale = i64::from(d.scale()) - exp;
            if scale > 28 {
                return None;
            }
            d.set_scale(scale as u32).ok()?;
        } else {
            for _ in 0..exp {
                d = d.checked_mul(Decimal::TEN)?;
            }
        }
        Some(d)
    }

    #[test]
    fn the_rust_decimal_oracle_reads_what_it_should() {
        let d = |s: &str| rust_decimal_oracle(s).map(|d| d.normalize().to_string());
        assert_eq!(d("1.5e-3").as_deref(), Some("0.0015"));
        assert_eq!(d("-.25E+2").as_deref(), Some("-25"));
        assert_eq!(d("+007.10").as_deref(), Some("7.1"));
        assert_eq!(d("1e-40"), None);
    }

    // The first, allocating version of `parse_decimal`: the oracle the current one must match.
    /// Parse the decimal grammar `[+-]?(digits[.digits]|.digits)([eE][+-]?digits)?` exactly.
    /// NaN/Infinity spellings are `amount_not_finite`; anything else off-grammar is malformed.
    fn parse_decimal_reference(s: &str) -> Result<Decimal> {
        if s.len() > MAX_AMOUNT_CHARS {
            return Err(Error::AmountMalformed(format!("{}…", truncate(s, 16))));
        }
        let lower = s.to_ascii_lowercase();
        let unsigned = lower.trim_start_matches(['+', '-']);
        if matches!(unsigned, "nan" | "inf" | "infinity") {
            return Err(Error::AmountNotFinite);
        }
        let malformed = || Error::AmountMalformed(truncate(s, 16));
        let bytes = s.as_bytes();
        let mut i = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                i = 1;
                true
            }
            Some(b'+') => {
                i = 1;
                false
            }
            _ => false,
        };
        let (mantissa_part, exp_part) = match s[i..].find(['e', 'E']) {
            Some(p) => (&s[i..i + p], Some(&s[i + p + 1..])),
            None => (&s[i..], None),
        };
        let (int_part, frac_part) = match mantissa_part.split_once('.') {
            Some((a, b)) => (a, b),
            None => (mantissa_part, ""),
        };
        let digits_ok = |d: &str| d.bytes().all(|c| c.is_ascii_digit());
        if (int_part.is_empty() && frac_part.is_empty())
            || !digits_ok(int_part)
            || !digits_ok(frac_part)
            // §3: a point has digits after it ("5." and "." are not amounts).
        || (mantissa_part.contains('.') && frac_part.is_empty())
        {
            return Err(malformed());
        }
        let exp: i64 = match exp_part {
            None => 0,
            Some(e) => {
                let digits = e.trim_start_matches(['+', '-']);
                if digits.is_empty() || !digits_ok(digits) || e.len() - digits.len() > 1 {
                    return Err(malformed());
                }
                if digits.len() > 4 {
                    // 1e99999: decided once zero and the sign are ruled out.
                    if e.starts_with('-') { -100_000 } else { 100_000 }
                } else {
                    e.parse().map_err(|_| malformed())?
                }
            }
        };
        // Significant digits with leading zeros stripped; scale counts fraction digits minus exp.
        let all_digits = format!("{int_part}{frac_part}");
        let significant = all_digits.trim_start_matches('0');
        let mut scale = frac_part.len() as i64 - exp;
        let mut significant = significant.to_string();
        // Drop trailing zeros so "0.0010000" and "1000e-6" are as exact as they read.
        while scale > 0 && significant.ends_with('0') {
            significant.pop();
            scale -= 1;
        }
        if significant.is_empty() {
            return Ok(Decimal::ZERO);
        }
        if negative {
            return Err(Error::AmountNegative);
        }
        if scale < 0 {
            // Large integer: digits + zeros. Anything with more than 7 integer digits is too large.
            if significant.len() as i64 - scale > 7 {
                return Err(Error::AmountTooLarge { max: MAX_AMOUNT.to_string() });
            }
            significant.push_str(&"0".repeat((-scale) as usize));
            scale = 0;
        }
        if significant.len() as i64 - scale > 7 {
            return Err(Error::AmountTooLarge { max: MAX_AMOUNT.to_string() });
        }
        if scale > 28 || significant.len() > 28 {
            return Err(Error::AmountPrecision { max_decimals: 0 });
        }
        let mantissa: i128 = significant.parse().map_err(|_| malformed())?;
        Ok(Decimal::from_i128_with_scale(mantissa, scale as u32))
    }

    fn same_outcome(s: &str) -> std::result::Result<(), String> {
        let (a, b) = (parse_decimal(s), parse_decimal_reference(s));
        let same = match (&a, &b) {
            // Same value and the same representation (scale), so formatting agrees too.
            (Ok(x), Ok(y)) => x == y && x.scale() == y.scale() && x.to_string() == y.to_string(),
            (Err(x), Err(y)) => x.code() == y.code() && x.to_string() == y.to_string(),
            _ => false,
        };
        if same { Ok(()) } else { Err(format!("{s:?}: {a:?} vs reference {b:?}")) }
    }

    #[test]
    fn parse_decimal_matches_its_reference_on_edge_cases() {
        for s in [
            "0",
            "-0",
            "+0",
            "00",
            "0.000",
            "-0.0",
            ".5",
            "5.",
            "0.001",
            "0.0010000",
            "1000e-6",
            "1e-3",
            "1E+3",
            "1e3",
            "1e6",
            "1e7",
            "1000000",
            "1000000.0",
            "1000000.000001",
            "1000001",
            "9999999e-1",
            "0.1234567890123456789012345678",
            "0.12345678901234567890123456789",
            "1e-28",
            "1e-29",
            "100e-30",
            "-1",
            "-0.001",
            "+-1",
            "--1",
            "+nan",
            "-Infinity",
            "INF",
            "nan1",
            "1e",
            "1e+",
            "1e+-2",
            "1e99999",
            "1e-99999",
            ".",
            "..",
            "1..2",
            "1.2.3",
            "e5",
            ".e5",
            "0e0",
            "0e99999",
            "12345678",
            "1234567",
            "0000001234567",
            "1234567.0000",
            "0.00000000000000000000000000001",
            "١",
            "1_000",
            " 1",
            "1 ",
            "",
        ] {
            same_outcome(s).unwrap();
        }
        // The one-pass reader's shapes and their edges (it takes the first group).
        for s in
            ["0.001", "1", "0", "000", "0.000", "01.10", "10.00", "100", "1234567.000000", "9999999.999999"]
        {
            assert!(plain_decimal(s).is_some(), "{s}");
            same_outcome(s).unwrap();
        }
        for s in [
            "10000000",
            "00000000012345678",
            "1234567890123456789",
            "0.",
            ".5",
            "1.2.3",
            "+1",
            "1e3",
            "12345678901234567890",
        ] {
            assert!(plain_decimal(s).is_none(), "{s}");
            same_outcome(s).unwrap();
        }
        same_outcome(&"9".repeat(40)).unwrap();
        same_outcome(&"0".repeat(40)).unwrap();
        same_outcome(&format!("0.{}1", "0".repeat(37))).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn parse_decimal_matches_its_reference(s in "[-+]?[0-9]{0,12}(\\.[0-9]{0,30})?([eE][-+]?[0-9]{1,6})?") {
            proptest::prop_assert!(same_outcome(&s).is_ok(), "{}", same_outcome(&s).unwrap_err());
        }

        #[test]
        fn parse_decimal_matches_its_reference_on_any_text(s in "\\PC{0,44}") {
            proptest::prop_assert!(same_outcome(&s).is_ok(), "{}", same_outcome(&s).unwrap_err());
        }

        #[test]
        fn atomic_round_trip(units in 0u64..=1_000_000_000_000) {
            let m = Money::from_atomic(units, Currency::Usd).unwrap();
            proptest::prop_assert_eq!(m.to_atomic(), units);
            let again = Money::parse(&m.to_string(), Currency::Usd).unwrap();
            proptest::prop_assert_eq!(again, m);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,48}") {
            let _ = Money::parse(&s, Currency::Usd);
        }

        /// rust_decimal's own parser as an independent oracle of `Money::parse`, on every form of
        /// the grammar: the same amount (canonical text and atomic units) or the same error,
        /// with §3's rules (negative, then the maximum, then precision) applied to its value.
        #[test]
        fn parse_agrees_with_rust_decimal(
            s in "[-+]?([0-9]{1,14}(\\.[0-9]{1,14})?|\\.[0-9]{1,14})([eE][-+]?[0-9]{1,2})?"
        ) {
            let Some(d) = rust_decimal_oracle(&s) else { return Ok(()) };
            let expected: std::result::Result<(String, u64), &str> = if d.is_sign_negative() && !d.is_zero() {
                Err("amount_negative")
            } else {
                let n = d.normalize();
                if n > Decimal::from(1_000_000u32) {
                    Err("amount_too_large")
                } else if n.scale() > 6 {
                    Err("amount_precision")
                } else {
                    let n = if n.is_zero() { Decimal::ZERO } else { n };
                    let units = (n * Decimal::from(1_000_000u32)).normalize();
                    Ok((n.to_string(), units.to_string().parse::<u64>().expect("integral")))
                }
            };
            let got = Money::parse(&s, Currency::Usd).map(|m| (m.to_string(), m.to_atomic())).map_err(|e| e.code());
            proptest::prop_assert_eq!(got, expected, "{}", s);
        }

        #[test]
        fn exponent_forms_agree(units in 1u64..=1_000_000_000, exp in 0i32..=6) {
            let m = Money::from_atomic(units, Currency::Usd).unwrap();
            let s = format!("{}e-{}", m.amount() * Decimal::from(10u64.pow(exp as u32)), exp);
            let parsed = Money::parse(&s, Currency::Usd).unwrap();
            proptest::prop_assert_eq!(parsed, m);
        }
    }
}
