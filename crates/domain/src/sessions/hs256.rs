//! HS256, the one algorithm our tokens use, as jsonwebtoken's crypto provider, over ring's HMAC.
//!
//! jsonwebtoken's own providers (`rust_crypto`, `aws_lc_rs`) choose the algorithm at run time
//! from the token's header, so each links every algorithm it knows: RSA, ECDSA on two curves and
//! EdDSA, about a megabyte of code no token of ours may use. This provider knows HS256 alone and
//! refuses any other algorithm or key kind. ring is already in every function (rustls uses it),
//! and its `hmac::verify` compares in constant time. It is installed once per process, before the
//! first token is signed or verified ([`install`]).

use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey, EncodingKey,
    crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils},
    errors::{ErrorKind, Result},
    signature,
};
use ring::hmac;

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    // JWK thumbprints and public-key components: never asked for, since no key is a JWK.
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes HS256 over ring the process's JWT crypto. Idempotent: a second call keeps the first
/// provider, which can only be this one.
pub fn install() {
    let _ = PROVIDER.install_default();
}

struct Hs256(hmac::Key);

impl Hs256 {
    fn new(algorithm: &Algorithm, family: AlgorithmFamily, secret: &[u8]) -> Result<Self> {
        if *algorithm != Algorithm::HS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        if family != AlgorithmFamily::Hmac {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Ok(Box::new(Hs256::new(
        algorithm,
        key.family(),
        key.as_bytes(),
    )?))
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    Ok(Box::new(Hs256::new(
        algorithm,
        key.family(),
        key.try_get_as_bytes()?,
    )?))
}

impl signature::Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.0, message).as_ref().to_vec())
    }
}

impl signature::Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        hmac::verify(&self.0, message, tag).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Header, Validation, decode, encode};
    use serde_json::{Value, json};

    use super::*;

    const SECRET: &[u8] = b"a-secret-long-enough-for-hs256-0123456789";

    fn claims() -> Value {
        json!({"sub": "someone", "exp": jsonwebtoken::get_current_timestamp() + 60})
    }

    /// RFC 7515, appendix A.1: the HS256 example's key, signing input and signature.
    #[test]
    fn the_rfc_example_signature_is_reproduced_and_verified() {
        install();
        let secret = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        )
        .expect("key");
        let input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let expected = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let signed = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(&secret),
            Algorithm::HS256,
        )
        .expect("sign");
        assert_eq!(signed, expected);
        let verified = jsonwebtoken::crypto::verify(
            expected,
            input.as_bytes(),
            &DecodingKey::from_secret(&secret),
            Algorithm::HS256,
        )
        .expect("verify");
        assert!(verified);
    }

    #[test]
    fn a_token_signed_here_verifies_and_a_changed_one_does_not() {
        install();
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .expect("sign");
        let key = DecodingKey::from_secret(SECRET);
        let validation = Validation::new(Algorithm::HS256);
        let decoded = decode::<Value>(&token, &key, &validation).expect("verifies");
        assert_eq!(decoded.claims["sub"], "someone");

        let wrong_key = DecodingKey::from_secret(b"another-secret-long-enough-0123456789abcdef");
        let refused = decode::<Value>(&token, &wrong_key, &validation).expect_err("wrong key");
        assert_eq!(*refused.kind(), ErrorKind::InvalidSignature);

        let (head, _) = token.rsplit_once('.').expect("three parts");
        let forged = format!("{head}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        let refused = decode::<Value>(&forged, &key, &validation).expect_err("forged signature");
        assert_eq!(*refused.kind(), ErrorKind::InvalidSignature);
    }

    #[test]
    fn other_algorithms_are_refused_without_panicking() {
        install();
        for algorithm in [
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ] {
            let signed = encode(
                &Header::new(algorithm),
                &claims(),
                &EncodingKey::from_secret(SECRET),
            );
            assert!(signed.is_err(), "{algorithm:?} must not sign");
            let verified = jsonwebtoken::crypto::verify(
                "AAAA",
                b"a.b",
                &DecodingKey::from_secret(SECRET),
                algorithm,
            );
            assert!(verified.is_err(), "{algorithm:?} must not verify");
        }
    }
}
