//! Money as integer minor units plus an ISO 4217 code: floating point never
//! touches an amount.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("currency must be three upper-case ISO 4217 letters, got {0:?}")]
    BadCurrency(String),
    #[error("amount must be positive, got {0}")]
    NonPositive(i64),
    /// Not a plain non-negative decimal (`12`, `12.5`), or finer than the
    /// currency's minor unit (`0.001` USD), or too large for an `i64`.
    #[error("{amount:?} is not an amount of {currency} in minor units")]
    BadDecimal { amount: String, currency: String },
}

/// ISO 4217 minor-unit exponent: how many decimals a currency's major unit
/// has. The table lists the currencies that are not two-decimal (ISO 4217
/// list one, 2024); every other code has two.
pub fn minor_exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// A decimal amount in major units, as a vendor wrote it (`"12.34"`), to
/// minor units of `currency`, exactly: digits are shifted by the currency's
/// exponent, never multiplied as a float (`0.29 * 100.0` is `28.999...`).
/// Trailing zeros beyond the exponent are fine (`"5.100"` USD is 510); any
/// other digit there is refused rather than rounded.
pub fn decimal_to_minor(amount: &str, currency: &str) -> Result<i64, MoneyError> {
    let bad = || MoneyError::BadDecimal { amount: amount.to_owned(), currency: currency.to_owned() };
    let exponent = minor_exponent(currency) as usize;
    let (whole, fraction) = match amount.split_once('.') {
        Some((w, f)) if !f.is_empty() => (w, f),
        Some(_) => return Err(bad()),
        None => (amount, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (kept, dropped) = fraction.split_at(fraction.len().min(exponent));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(bad());
    }
    let digits = format!("{whole}{kept}{}", "0".repeat(exponent - kept.len()));
    digits.parse::<i64>().map_err(|_| bad())
}

/// An ISO 4217 alphabetic code, always upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(code.to_owned()))
        } else {
            Err(MoneyError::BadCurrency(code.to_owned()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A positive amount of money.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Money {
    pub minor_units: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor_units: i64, currency: &str) -> Result<Self, MoneyError> {
        if minor_units <= 0 {
            return Err(MoneyError::NonPositive(minor_units));
        }
        Ok(Self { minor_units, currency: Currency::parse(currency)? })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor_units, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_lower_case_and_non_positive() {
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
        assert_eq!(Money::new(0, "EUR"), Err(MoneyError::NonPositive(0)));
        assert!(Money::new(100, "EUR").is_ok());
    }

    #[test]
    fn decimals_shift_by_the_currency_exponent_without_rounding() {
        assert_eq!(decimal_to_minor("12.34", "USD"), Ok(1234));
        assert_eq!(decimal_to_minor("0.29", "EUR"), Ok(29), "0.29 * 100.0 is 28.999... as a float");
        assert_eq!(decimal_to_minor("5", "USD"), Ok(500));
        assert_eq!(decimal_to_minor("5.1", "USD"), Ok(510));
        assert_eq!(decimal_to_minor("5.100", "USD"), Ok(510), "zeros past the minor unit");
        assert_eq!(decimal_to_minor("1500", "JPY"), Ok(1500), "zero-decimal");
        assert_eq!(decimal_to_minor("1500.0", "JPY"), Ok(1500));
        assert_eq!(decimal_to_minor("12.345", "BHD"), Ok(12345), "three-decimal");
        assert_eq!(decimal_to_minor("0.1", "BHD"), Ok(100));
        for (bad, currency) in [("12.345", "USD"), ("1500.5", "JPY"), ("-1", "USD"), ("1e3", "USD"), ("", "USD"), (".5", "USD"), ("5.", "USD"), ("99999999999999999999", "USD")] {
            assert!(decimal_to_minor(bad, currency).is_err(), "{bad} {currency}");
        }
        assert_eq!((minor_exponent("JPY"), minor_exponent("BHD"), minor_exponent("GBP")), (0, 3, 2));
    }
}
