//! Every signature scheme and every vendor payload parser on arbitrary
//! input: the first line is used as every signature header, the rest as the
//! body. Nothing may panic; nothing unsigned may verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderValue};
use switchyard_adapters::secret::Secret;
use switchyard_adapters::webhooks::{RsaPublicKey, Scheme, Timed, Verified, WebhookVendor};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (header, body) = data.split_at(split);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(header) {
        for name in [
            "stripe-signature",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "hmacsignature",
            "x-signature-sha256",
            "x-sha2-signature",
            "x-payload-digest",
            "x-payload-digest-alg",
            "digest",
        ] {
            headers.insert(name, v.clone());
        }
    }
    let schemes = [
        Scheme::StripeSignature { secrets: vec![Timed { key: Secret::new("whsec_fuzz"), not_after_ms: None }], tolerance_s: 300 },
        Scheme::StandardWebhooks { keys: vec![Timed { key: b"fuzz-key".to_vec(), not_after_ms: None }], tolerance_s: 300 },
        Scheme::AdyenHmac { keys: vec![Timed { key: vec![7; 32], not_after_ms: None }] },
        Scheme::OnfidoSha2 { keys: vec![Timed { key: b"fuzz-token".to_vec(), not_after_ms: None }] },
        Scheme::SumsubDigest { keys: vec![Timed { key: b"fuzz-secret".to_vec(), not_after_ms: None }] },
        Scheme::SeonDigest { keys: vec![Timed { key: b"fuzz-license".to_vec(), not_after_ms: None }] },
    ];
    for scheme in &schemes {
        assert!(scheme.verify(&headers, body, 1_700_000_000_000).is_err(), "fuzz input verified");
    }
    let _ = RsaPublicKey::from_pem(&String::from_utf8_lossy(data));
    let signed = Verified { message_id: Some("fuzz".into()), signed_at_ms: Some(1), verified_at_ms: 2 };
    for vendor in WebhookVendor::ALL {
        let _ = vendor.map(body, &Verified::default());
        let _ = vendor.map(body, &signed);
    }
});
