//! The certificate and key inventory: what each PEM a deployment is
//! configured with holds, and when each certificate stops being valid.
//!
//! A partner's client certificate or CA expiring is an outage on a date
//! known months ahead; this is what `switchyard certs` prints and what
//! `switchyard_certificate_expiry_seconds` exports, so nobody has to find
//! the files by hand. Private keys are never read here.

use std::fmt;
use x509_parser::pem::Pem;

/// One certificate or public key found in a configured PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryItem {
    /// The provider (catalog name) it is configured for.
    pub provider: String,
    /// `client_cert`, `ca_bundle` or `webhook_key`.
    pub kind: String,
    /// RFC 4514-style subject; `public key` for a bare key.
    pub subject: String,
    pub issuer: String,
    /// Unix seconds of the certificate's not-after; none for a bare public
    /// key, which does not expire.
    pub not_after: Option<i64>,
}

impl InventoryItem {
    /// Seconds from `now` (Unix seconds) until not-after, negative once past.
    pub fn seconds_left(&self, now: i64) -> Option<i64> {
        self.not_after.map(|t| t - now)
    }
}

/// A PEM that is not what its field says; names the field, never the content.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CertError(pub String);

/// Every certificate and public key in `pem` (other blocks, such as a
/// private key pasted into the same file, are skipped unread).
pub fn inventory(provider: &str, kind: &str, field: &str, pem: &str) -> Result<Vec<InventoryItem>, CertError> {
    let mut items = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        // x509-parser's PEM error can quote the line it stopped at: keep it out.
        let block = block.map_err(|_| CertError(format!("{field}: not a readable PEM file")))?;
        let item = |subject: String, issuer: String, not_after| InventoryItem {
            provider: provider.to_owned(),
            kind: kind.to_owned(),
            subject,
            issuer,
            not_after,
        };
        match block.label.as_str() {
            "CERTIFICATE" => {
                let cert = block.parse_x509().map_err(|e| CertError(format!("{field}: a certificate cannot be parsed: {e}")))?;
                items.push(item(cert.subject().to_string(), cert.issuer().to_string(), Some(cert.validity().not_after.timestamp())));
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => items.push(item("public key".into(), "-".into(), None)),
            _ => {}
        }
    }
    Ok(items)
}

/// The earliest not-after among the certificates of `pem`, with its subject.
pub fn first_expiry(field: &str, pem: &str) -> Result<Option<(i64, String)>, CertError> {
    Ok(inventory("", "", field, pem)?.into_iter().filter_map(|i| Some((i.not_after?, i.subject))).min())
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A table for people: provider, kind, subject, issuer, not-after, days left.
pub struct Table<'a> {
    pub items: &'a [InventoryItem],
    pub now: i64,
}

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<16} {:<12} {:<40} {:<40} {:<21} {:>9}", "PROVIDER", "KIND", "SUBJECT", "ISSUER", "NOT AFTER (UTC)", "DAYS LEFT")?;
        for i in self.items {
            let (not_after, days) = match i.not_after {
                Some(t) => (format_utc(t), format!("{}", (t - self.now).div_euclid(86_400))),
                None => ("never".to_owned(), "-".to_owned()),
            };
            writeln!(f, "{:<16} {:<12} {:<40} {:<40} {:<21} {:>9}", i.provider, i.kind, i.subject, i.issuer, not_after, days)?;
        }
        Ok(())
    }
}

fn format_utc(t: i64) -> String {
    let rfc3339 = time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(t).ok().and_then(|d| d.format(&rfc3339).ok()).unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A self-signed certificate made once with openssl, not-after 2031-12-08T21:21:14Z.
    const CERT: &str = include_str!("../tests/data/inventory-cert.pem");

    #[test]
    fn certificates_and_public_keys_are_listed_private_keys_skipped() {
        let pem = format!("{CERT}\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
        let items = inventory("wise", "webhook_key", "providers.wise.keys[0]", &pem).expect("parses");
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0].subject, "CN=inventory test");
        assert_eq!(items[0].issuer, "CN=inventory test");
        assert_eq!(items[0].not_after, Some(1_954_531_274), "2031-12-08T21:21:14Z");
        assert_eq!(items[1].subject, "public key");
        assert_eq!(items[1].not_after, None);
        let table = Table { items: &items, now: 1_954_531_274 - 10 * 86_400 - 5 }.to_string();
        assert!(table.contains("2031-12-08T21:21:14Z") && table.contains(" 10\n"), "{table}");
    }

    #[test]
    fn a_broken_certificate_names_the_field() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = inventory("x", "ca_bundle", "providers[x].tls.ca_bundle", pem).expect_err("broken").to_string();
        assert!(err.starts_with("providers[x].tls.ca_bundle: a certificate cannot be parsed"), "{err}");
    }
}
