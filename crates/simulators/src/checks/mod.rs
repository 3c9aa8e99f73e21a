//! Helpers shared by the KYC, AML and fraud simulators: a canonical JSON
//! hash for idempotency fingerprints, a small `multipart/form-data` reader,
//! and the magic inputs that steer a check to each outcome. `vendor_tests`
//! holds the vendor-contract tests of the six check simulators.

pub(crate) mod aml_magic;
pub(crate) mod fraud_magic;
pub(crate) mod kyc_magic;
pub(crate) mod multipart;
#[cfg(test)]
mod vendor_tests;

use std::hash::{Hash, Hasher};

use serde_json::Value;

/// Hash of a JSON value with object keys sorted, so key order never turns a
/// retry into an idempotency mismatch (and independent of serde_json's
/// `preserve_order` feature being unified in by another crate). Shared by
/// every JSON-bodied simulator (Adyen and the check vendors).
pub(crate) fn canonical_hash(v: &Value) -> u64 {
    fn walk(v: &Value, h: &mut std::hash::DefaultHasher) {
        match v {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, b).hash(h),
            Value::Number(n) => (2u8, n.to_string()).hash(h),
            Value::String(s) => (3u8, s).hash(h),
            Value::Array(a) => {
                (4u8, a.len()).hash(h);
                a.iter().for_each(|x| walk(x, h));
            }
            Value::Object(o) => {
                (5u8, o.len()).hash(h);
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort_unstable();
                for k in keys {
                    k.hash(h);
                    walk(&o[k.as_str()], h);
                }
            }
        }
    }
    let mut h = std::hash::DefaultHasher::new();
    walk(v, &mut h);
    h.finish()
}

/// A lowercase UUID, the id form the KYC vendors use.
pub(crate) fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_order_does_not_change_the_hash() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":{"c":2,"d":[1,2]}}"#).expect("json");
        let b: serde_json::Value = serde_json::from_str(r#"{"b":{"d":[1,2],"c":2},"a":1}"#).expect("json");
        assert_eq!(super::canonical_hash(&a), super::canonical_hash(&b));
    }
}
