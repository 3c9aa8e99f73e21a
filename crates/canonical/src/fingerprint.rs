//! A digest of a command's business payload. Two deliveries of one command
//! share it; a second command reusing an idempotency key with other content
//! does not, which is how a collision is told from a duplicate.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    /// Hashes fields in a fixed order with a length prefix each, so that no
    /// two different field lists can produce the same byte stream.
    pub fn of_fields(fields: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for field in fields {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field);
        }
        Self(hex::encode(hasher.finalize()))
    }
}
