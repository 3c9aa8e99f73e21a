//! IBAN checks shared by the payout simulators. Both vendors validate the
//! IBAN they are asked to pay, so the simulators must too: an adapter that
//! sends a malformed one should see the vendor refuse it here, not in
//! production.

/// Countries whose bank accounts Stripe identifies by IBAN, with the currency
/// Stripe picks when `external_account[currency]` is omitted.
/// UNCONFIRMED: the default-currency rule (Stripe documents the field as
/// optional, not the value it then uses); the list covers SEPA plus GB/CH.
const IBAN_COUNTRIES: [(&str, &str); 34] = [
    ("AT", "eur"), ("BE", "eur"), ("BG", "bgn"), ("CH", "chf"), ("CY", "eur"), ("CZ", "czk"),
    ("DE", "eur"), ("DK", "dkk"), ("EE", "eur"), ("ES", "eur"), ("FI", "eur"), ("FR", "eur"),
    ("GB", "gbp"), ("GI", "gbp"), ("GR", "eur"), ("HR", "eur"), ("HU", "huf"), ("IE", "eur"),
    ("IS", "isk"), ("IT", "eur"), ("LI", "chf"), ("LT", "eur"), ("LU", "eur"), ("LV", "eur"),
    ("MT", "eur"), ("NL", "eur"), ("NO", "nok"), ("PL", "pln"), ("PT", "eur"), ("RO", "ron"),
    ("SE", "sek"), ("SI", "eur"), ("SK", "eur"), ("MC", "eur"),
];

/// The currency a bank account in `country` defaults to, for IBAN countries.
pub(crate) fn default_currency(country: &str) -> Option<&'static str> {
    IBAN_COUNTRIES.iter().find(|(c, _)| *c == country).map(|(_, cur)| *cur)
}

/// Whether `country` (ISO 3166-1 alpha-2, uppercase) uses IBANs.
pub(crate) fn uses_iban(country: &str) -> bool {
    default_currency(country).is_some()
}

/// Shape only: two country letters, two check digits, 11-30 alphanumerics.
pub(crate) fn iban_shape(s: &str) -> bool {
    let b = s.as_bytes();
    (15..=34).contains(&b.len())
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_alphanumeric)
}

/// Shape plus the ISO 13616 mod-97 check digits.
pub(crate) fn iban_valid(s: &str) -> bool {
    if !iban_shape(s) {
        return false;
    }
    let rearranged = s.bytes().skip(4).chain(s.bytes().take(4));
    let mut rem: u32 = 0;
    for b in rearranged {
        let value = if b.is_ascii_digit() { u32::from(b - b'0') } else { u32::from(b.to_ascii_uppercase() - b'A') + 10 };
        rem = if value >= 10 { (rem * 100 + value) % 97 } else { (rem * 10 + value) % 97 };
    }
    rem == 1
}

/// The country prefix of something IBAN-shaped.
pub(crate) fn iban_country(s: &str) -> Option<&str> {
    iban_shape(s).then(|| &s[..2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mod_97_accepts_real_ibans_and_refuses_typos() {
        assert!(iban_valid("GB33BUKB20201555555555"));
        assert!(iban_valid("NL20ADYB2017000035"));
        assert!(iban_valid("DE89370400440532013000"));
        assert!(!iban_valid("DE89370400440532013001"));
        assert!(!iban_valid("nope"));
        assert_eq!(iban_country("DE89370400440532013000"), Some("DE"));
        assert_eq!(default_currency("NL"), Some("eur"));
        assert!(!uses_iban("US"));
    }
}
