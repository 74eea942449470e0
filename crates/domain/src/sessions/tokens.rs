//! Access tokens: HS256 JWTs with `iss aud sub exp iat nbf jti` and a `kid` header.
//!
//! The algorithm is pinned per key (HS256): a token whose header names any other algorithm
//! (`none`, RS256, ES256, HS512, ...) is refused before its signature is looked at. Each key's
//! `kid` is derived from its secret, so the previous secrets of a rotation keep verifying the
//! tokens they signed. Validation requires `exp`, `iss`, `aud` and `sub`, allows 30 s of clock
//! skew at most, and checks that the token is an access token.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use platform::config::Config;

pub const ALGORITHM: Algorithm = Algorithm::HS256;
/// How long a revoked token's deny entry outlives the token's `exp`: no longer needed for
/// the check itself (a token is refused from its `exp` on), but Postgres's clock and a function's
/// may differ a little, and a deny entry gone a second early would let a revoked token back in.
pub const DENY_MARGIN_SECS: u64 = 5;
/// How far in the future a token's `nbf` may be: a token is used at once, often on another
/// instance than the one that issued it, whose clock may be a little behind. Refusing it there
/// for a second would only send the client to refresh. `exp` gets no such tolerance.
const NBF_TOLERANCE_SECS: i64 = 5;
const ACCESS: &str = "access";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: Uuid,
    /// The user's token generation when the token was issued; a newer one revokes it.
    #[serde(rename = "gen")]
    pub generation: i32,
    /// Always "access": no other kind of token may stand in for one.
    pub token_use: String,
    /// The refresh token family (the session) this token was issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

/// A freshly signed access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: String,
    pub claims: Claims,
}

/// Why a token was refused. Every variant answers the same 401: the reason is for the log.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("unknown key id")]
    UnknownKey,
    #[error("algorithm not allowed")]
    WrongAlgorithm,
    #[error("not an access token")]
    WrongType,
    #[error("not valid yet")]
    NotYetValid,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// The signing key and the keys that verify, built by the first token signed or verified: a
/// cold start that answers `/ready` alone never builds them. The secret's presence is
/// checked at once, so that a missing `JWT_SECRET` still stops the start.
pub struct TokenKeys {
    config: Arc<Config>,
    secret: SecretString,
    keys: OnceLock<Keys>,
}

struct Keys {
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").finish_non_exhaustive()
    }
}

/// A key id that names the secret without revealing it.
pub fn key_id(secret: &SecretString) -> String {
    hex::encode(&Sha256::digest(secret.expose_secret().as_bytes())[..8])
}

impl TokenKeys {
    pub fn from_config(config: Arc<Config>) -> Result<Self, platform::config::ConfigError> {
        let secret = config.require_jwt_secret()?.clone();
        Ok(Self {
            config,
            secret,
            keys: OnceLock::new(),
        })
    }

    fn keys(&self) -> &Keys {
        self.keys.get_or_init(|| {
            super::hs256::install();
            let config = &self.config;
            let secret = &self.secret;
            let kid = key_id(secret);
            let mut decoding = HashMap::new();
            for secret in &config.jwt_previous_secrets {
                decoding.insert(
                    key_id(secret),
                    DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                );
            }
            decoding.insert(
                kid.clone(),
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            );

            let mut validation = Validation::new(ALGORITHM);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
            validation.set_issuer(&[&config.jwt_issuer]);
            validation.set_audience(&[&config.jwt_audience]);
            // `nbf` is checked in `verify`, with a tolerance that `exp` must not have.
            validation.validate_nbf = false;
            validation.validate_exp = true;
            // No grace period: a token is dead from its `exp` second on ("on or after", RFC 7519
            // 4.1.4), as `JWT_EXPIRES_IN` promises; a leeway would only keep a stolen token
            // alive past its lifetime. jsonwebtoken accepts a token during its `exp` second
            // itself unless told to refuse it 1 s early.
            validation.leeway = 0;
            validation.reject_tokens_expiring_in_less_than = 1;

            Keys {
                kid,
                encoding: EncodingKey::from_secret(secret.expose_secret().as_bytes()),
                decoding,
                validation,
            }
        })
    }

    pub fn lifetime(&self) -> Duration {
        self.config.jwt_expires_in
    }

    pub fn issue(
        &self,
        user_id: Uuid,
        generation: i32,
        session: Option<Uuid>,
    ) -> anyhow::Result<AccessToken> {
        let now = chrono::Utc::now().timestamp();
        let lifetime = i64::try_from(self.lifetime().as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            iss: self.config.jwt_issuer.clone(),
            aud: self.config.jwt_audience.clone(),
            sub: user_id,
            exp: now + lifetime,
            iat: now,
            nbf: now,
            jti: Uuid::now_v7(),
            generation,
            token_use: ACCESS.into(),
            sid: session,
        };
        let keys = self.keys();
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(keys.kid.clone());
        let token = encode(&header, &claims, &keys.encoding)?;
        Ok(AccessToken { token, claims })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = decode_header(token)?;
        if header.alg != ALGORITHM {
            return Err(TokenError::WrongAlgorithm);
        }
        let keys = self.keys();
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| keys.decoding.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let data = decode::<Claims>(token, key, &keys.validation)?;
        if data.claims.token_use != ACCESS {
            return Err(TokenError::WrongType);
        }
        let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX);
        if data.claims.nbf > now.saturating_add(NBF_TOLERANCE_SECS) {
            return Err(TokenError::NotYetValid);
        }
        Ok(data.claims)
    }
}

/// The `sub`, `jti` and `sid` a token claims, read without verifying it: only to choose which
/// cache keys to read ahead (`revocation::read_ahead_keys`). Nothing read for an unverified
/// token is used until the token verifies and names the same keys.
pub fn peek_subject(token: &str) -> Option<(Uuid, Uuid, Option<Uuid>)> {
    #[derive(Deserialize)]
    struct Subject {
        sub: Uuid,
        jti: Uuid,
        sid: Option<Uuid>,
    }
    let subject: Subject = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    Some((subject.sub, subject.jti, subject.sid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        let config = Config::from_lookup(|_| None).expect("the development defaults");
        TokenKeys::from_config(Arc::new(config)).expect("a development secret")
    }

    #[test]
    fn the_keys_are_built_by_the_first_token_and_not_before() {
        let tokens = keys();
        assert!(tokens.keys.get().is_none(), "built before any token");
        assert!(tokens.lifetime() > Duration::ZERO);
        assert!(tokens.keys.get().is_none(), "built for the lifetime alone");

        let user = Uuid::now_v7();
        let issued = tokens.issue(user, 3, None).expect("issue");
        assert!(tokens.keys.get().is_some());
        let claims = tokens.verify(&issued.token).expect("verify");
        assert_eq!((claims.sub, claims.generation), (user, 3));
    }

    #[test]
    fn a_token_verifies_with_keys_built_by_verifying() {
        let issued = keys().issue(Uuid::now_v7(), 0, None).expect("issue");
        let fresh = keys();
        let claims = fresh.verify(&issued.token).expect("verify");
        assert_eq!(claims.jti, issued.claims.jti);
    }
}
