//! Known answers for shared helpers, and the no-panic property over every
//! scheme and vendor parser (the fuzz target's, in deterministic form).

mod rfc3339 {
    use super::super::rfc3339_ms;

    #[test]
    fn parses_rfc3339_with_fraction_and_offset() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("2024-05-01T12:00:00.250Z"), Some(1_714_564_800_250));
        assert_eq!(rfc3339_ms("2024-05-01T14:00:00+02:00"), Some(1_714_564_800_000));
        assert_eq!(rfc3339_ms("2024-05-01"), None);
        assert_eq!(rfc3339_ms("2024-13-01T00:00:00Z"), None);
        assert_eq!(rfc3339_ms("2024-05-01T00:00:00.Z"), None);
    }
}

/// The fuzz target's property in a deterministic, always-run form: random and
/// mutated inputs never panic a scheme or a parser, and never verify.
mod no_panic {
    use super::super::*;
    use reqwest::header::HeaderValue;

    fn inputs() -> Vec<Vec<u8>> {
        let seeds: Vec<&[u8]> = vec![
            include_bytes!("../../tests/fixtures/webhooks/stripe-payout-paid.json"),
            include_bytes!("../../tests/fixtures/webhooks/adyen-transfer-booked.json"),
            include_bytes!("../../tests/fixtures/webhooks/wise-state-change.json"),
            include_bytes!("../../tests/fixtures/webhooks/onfido-check-completed.json"),
            include_bytes!("../../tests/fixtures/webhooks/sumsub-applicant-reviewed-red.json"),
            include_bytes!("../../tests/fixtures/webhooks/complyadvantage-match-status-updated.json"),
            include_bytes!("../../tests/fixtures/webhooks/complyadvantage-monitored-search-updated.json"),
            include_bytes!("../../tests/fixtures/webhooks/sardine-risk-level-changed.json"),
            include_bytes!("../../tests/fixtures/webhooks/seon-status-update.json"),
            b"SHA-256=NMLrXamyUUHaAxPyMkITe9IUhxDJmu1PKx+lftdoHE8=",
            b"t=1,v1=00,v1=,=,,,v1",
            b"v1,AAAA v1a,xyz v1,",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::new();
        for seed in seeds {
            out.push(seed.to_vec());
            for cut in (0..seed.len()).step_by(7) {
                out.push(seed[..cut].to_vec());
            }
            for _ in 0..200 {
                let mut m = seed.to_vec();
                for _ in 0..1 + next() % 4 {
                    if m.is_empty() {
                        break;
                    }
                    let i = (next() as usize) % m.len();
                    m[i] = next() as u8;
                }
                out.push(m);
            }
        }
        out
    }

    #[test]
    fn no_input_panics_or_verifies() {
        let schemes = [
            Scheme::StripeSignature { secrets: vec![Timed { key: Secret::new("whsec_x"), not_after_ms: None }], tolerance_s: 300 },
            Scheme::StandardWebhooks { keys: vec![Timed { key: b"k".to_vec(), not_after_ms: None }], tolerance_s: 300 },
            Scheme::AdyenHmac { keys: vec![Timed { key: vec![1; 32], not_after_ms: None }] },
            Scheme::OnfidoSha2 { keys: vec![Timed { key: b"token".to_vec(), not_after_ms: None }] },
            Scheme::SumsubDigest { keys: vec![Timed { key: b"secret".to_vec(), not_after_ms: None }] },
            Scheme::SeonDigest { keys: vec![Timed { key: b"license".to_vec(), not_after_ms: None }] },
        ];
        for input in inputs() {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&input) {
                for name in [
                    "stripe-signature",
                    "webhook-id",
                    "webhook-timestamp",
                    "webhook-signature",
                    "hmacsignature",
                    "x-sha2-signature",
                    "x-payload-digest",
                    "x-payload-digest-alg",
                    "digest",
                ] {
                    headers.insert(name, v.clone());
                }
            }
            for scheme in &schemes {
                assert!(scheme.verify(&headers, &input, 1_700_000_000_000).is_err());
            }
            let _ = RsaPublicKey::from_pem(&String::from_utf8_lossy(&input));
            let signed = Verified { message_id: Some("msg".into()), signed_at_ms: Some(1), verified_at_ms: 2 };
            for vendor in WebhookVendor::ALL {
                let _ = vendor.map(&input, &Verified::default());
                let _ = vendor.map(&input, &signed);
            }
        }
    }
}
