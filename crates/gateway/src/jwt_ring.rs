//! Signature verification for `jsonwebtoken`, done by ring.
//!
//! `jsonwebtoken` 10 leaves its cryptography to a pluggable
//! [`CryptoProvider`]; its two built-in ones bring either the `rsa` crate
//! (RUSTSEC-2023-0071, which this workspace keeps out of the build) or
//! aws-lc's C build. ring is already here (the Wise and Plaid webhook
//! signatures are verified with it), and verifying needs only public keys,
//! so this provider verifies and never signs: a gateway has no business
//! minting tokens. Parsing, JWK handling and claim checks stay
//! `jsonwebtoken`'s.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use ring::signature as ring_sig;

/// A verifier bound to one algorithm and one public key.
struct RingVerifier {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// ring's parameters for an algorithm: RSA apart, since a JWK's modulus and
/// exponent are verified through `RsaPublicKeyComponents`.
enum Scheme {
    Rsa(&'static ring_sig::RsaParameters),
    Other(&'static dyn ring_sig::VerificationAlgorithm),
}

fn scheme(algorithm: Algorithm) -> Result<Scheme, Error> {
    Ok(match algorithm {
        Algorithm::RS256 => Scheme::Rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Scheme::Rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Scheme::Rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Scheme::Rsa(&ring_sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Scheme::Rsa(&ring_sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Scheme::Rsa(&ring_sig::RSA_PSS_2048_8192_SHA512),
        // JWS carries ECDSA signatures as r || s (RFC 7518 section 3.4).
        Algorithm::ES256 => Scheme::Other(&ring_sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Scheme::Other(&ring_sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Scheme::Other(&ring_sig::ED25519),
        // Shared secrets: an issuer's key set is public, so an HMAC "key"
        // from it would let anyone mint tokens.
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return Err(ErrorKind::InvalidAlgorithm.into()),
    })
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let verified = match (scheme(self.algorithm).map_err(|_| signature::Error::new())?, self.key.kind()) {
            (Scheme::Rsa(params), DecodingKeyKind::RsaModulusExponent { n, e }) => {
                ring_sig::RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }.verify(params, message, signature)
            }
            // RSA as PKCS#1 DER.
            (Scheme::Rsa(params), DecodingKeyKind::SecretOrDer(der)) => ring_sig::UnparsedPublicKey::new(params, der).verify(message, signature),
            // EC: the uncompressed point (0x04 || x || y); Ed25519: the raw key.
            (Scheme::Other(params), DecodingKeyKind::SecretOrDer(bytes)) => ring_sig::UnparsedPublicKey::new(params, bytes).verify(message, signature),
            (Scheme::Other(_), DecodingKeyKind::RsaModulusExponent { .. }) => return Err(signature::Error::new()),
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    // `Algorithm::family` is crate-private in jsonwebtoken.
    let family = match algorithm {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => AlgorithmFamily::Rsa,
        Algorithm::ES256 | Algorithm::ES384 => AlgorithmFamily::Ec,
        Algorithm::EdDSA => AlgorithmFamily::Ed,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => AlgorithmFamily::Hmac,
    };
    let family_ok = matches!(
        (family, key.family()),
        (AlgorithmFamily::Rsa, AlgorithmFamily::Rsa) | (AlgorithmFamily::Ec, AlgorithmFamily::Ec) | (AlgorithmFamily::Ed, AlgorithmFamily::Ed)
    );
    if !family_ok {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    scheme(*algorithm)?;
    Ok(Box::new(RingVerifier { algorithm: *algorithm, key: key.clone() }))
}

/// Verification only: the gateway never signs a token.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |_, _| Err(ErrorKind::InvalidAlgorithm.into()),
    verifier_factory: verifier,
    // Only used to build JWKs from private keys and thumbprints, which the
    // gateway never does.
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes ring `jsonwebtoken`'s process-wide provider, once, before any token
/// is decoded. Another provider installed first (a process that enables a
/// `jsonwebtoken` backend feature, such as a test minting tokens) is kept:
/// it verifies as well.
pub(crate) fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if PROVIDER.install_default().is_err() {
            tracing::debug!("a jsonwebtoken crypto provider was installed before the gateway's");
        }
    });
}
