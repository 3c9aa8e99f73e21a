//! `certificate_expiry_seconds{provider,kind,subject}`: seconds until each
//! configured certificate's not-after, for the `SwitchyardCertificateExpiresSoon`
//! alert. Computed at scrape time from the not-after, so the value counts
//! down (and goes negative once expired) without a refresh task.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::{Arc, RwLock};

type Labels = Vec<(String, String)>;

/// Cheap to clone: every clone reports the same certificates.
#[derive(Debug, Clone, Default)]
pub struct CertificateExpiry {
    certificates: Arc<RwLock<Vec<(Labels, i64)>>>,
}

impl CertificateExpiry {
    /// Replaces the reported certificates: `(provider, kind, subject, not_after)`
    /// with not-after in Unix seconds.
    pub fn set(&self, certificates: impl IntoIterator<Item = (String, String, String, i64)>) {
        let rows = certificates
            .into_iter()
            .map(|(provider, kind, subject, not_after)| {
                (vec![("provider".to_owned(), provider), ("kind".to_owned(), kind), ("subject".to_owned(), subject)], not_after)
            })
            .collect();
        *self.certificates.write().unwrap_or_else(|e| e.into_inner()) = rows;
    }
}

impl Collector for CertificateExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let rows = self.certificates.read().unwrap_or_else(|e| e.into_inner());
        if rows.is_empty() {
            return Ok(());
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let mut family = encoder.encode_descriptor(
            "certificate_expiry_seconds",
            "Seconds until the certificate's not-after (negative once expired), per provider, kind and subject",
            None,
            MetricType::Gauge,
        )?;
        for (labels, not_after) in rows.iter() {
            ConstGauge::new(not_after - now).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_to_the_not_after() {
        let expiry = CertificateExpiry::default();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
        expiry.set([("adyen".to_owned(), "client_cert".to_owned(), "CN=switchyard".to_owned(), now + 86_400)]);
        let mut registry = prometheus_client::registry::Registry::with_prefix("switchyard");
        registry.register_collector(Box::new(expiry.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        let line = out.lines().find(|l| l.starts_with("switchyard_certificate_expiry_seconds{")).expect(&out);
        assert!(line.starts_with(r#"switchyard_certificate_expiry_seconds{provider="adyen",kind="client_cert",subject="CN=switchyard"} "#), "{line}");
        let value: i64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect(line);
        assert!((86_390..=86_400).contains(&value), "{line}");
    }
}
