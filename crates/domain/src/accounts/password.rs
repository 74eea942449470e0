//! Passwords: the policy (length, strength) and argon2id hashing with OWASP's parameters.
//!
//! Hashing costs ~20 ms of CPU and 19 MiB of memory, so it runs on the hashing slots' own
//! threads ([`Slots`]), never on the async executor.

use std::sync::LazyLock;

use platform::work::Slots;

use anyhow::Context;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use secrecy::{ExposeSecret, SecretString};

/// Why a password was refused; its text is what the 422 says about the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("must be at least {MIN_CHARS} characters")]
    TooShort,
    #[error("must be at most {MAX_CHARS} characters")]
    TooLong,
    #[error("is too weak: {0}. Try a longer phrase of unrelated words")]
    TooWeak(String),
}

pub const MIN_CHARS: usize = 12;
pub const MAX_CHARS: usize = 128;
/// zxcvbn's score 3: "safely unguessable", about 10^10 guesses.
pub const MIN_SCORE: u8 = 3;

/// OWASP's argon2id parameters: m = 19456 KiB, t = 2, p = 1.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A password that passed the policy. It can only be built by [`Password::parse`].
#[derive(Debug)]
pub struct Password(SecretString);

impl Password {
    /// Checks length (12 to 128 characters, no composition rules) and strength (zxcvbn score
    /// of at least 3, with the user's email and name as hints).
    pub fn parse(raw: &str, hints: &[&str]) -> Result<Self, PasswordError> {
        let chars = raw.chars().count();
        if chars < MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        if chars > MAX_CHARS {
            return Err(PasswordError::TooLong);
        }
        let mut inputs: Vec<&str> = hints.iter().copied().filter(|h| !h.is_empty()).collect();
        // The email's local part is a likely ingredient too.
        let locals: Vec<&str> = hints
            .iter()
            .filter_map(|h| h.split_once('@').map(|(l, _)| l))
            .collect();
        inputs.extend(locals);
        let entropy = zxcvbn::zxcvbn(raw, &inputs);
        if u8::from(entropy.score()) < MIN_SCORE {
            let hint = entropy
                .feedback()
                .and_then(|f| f.warning().map(|w| w.to_string()))
                .unwrap_or_else(|| "is too easy to guess".into());
            return Err(PasswordError::TooWeak(hint));
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Hashes in one of `slots`, on its thread (a busy error when none frees up in time);
/// returns the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub async fn hash(slots: &Slots, password: &str) -> anyhow::Result<String> {
    let password = SecretString::from(password.to_owned());
    slots
        .run_blocking(move || {
            hasher()
                .hash_password(password.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
        })
        .await
        .context("hashing a password")?
}

/// Verifies in one of `slots`, on its thread. A malformed stored hash counts as a
/// mismatch.
pub async fn verify(slots: &Slots, password: &str, phc: &str) -> anyhow::Result<bool> {
    let password = SecretString::from(password.to_owned());
    let phc = phc.to_owned();
    slots
        .run_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return false;
            };
            hasher()
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok()
        })
        .await
        .context("checking a password")
}

/// A real argon2id hash of a random password, computed once. Login verifies against it when the
/// email is unknown, so that both failures take the same time.
pub static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let random = uuid::Uuid::new_v4().to_string();
    hasher()
        .hash_password(random.as_bytes())
        .map(|h| h.to_string())
        .unwrap_or_default()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_long_and_weak_passwords_are_refused() {
        assert_eq!(
            Password::parse("short", &[]).err(),
            Some(PasswordError::TooShort)
        );
        assert_eq!(
            Password::parse(&"x".repeat(129), &[]).err(),
            Some(PasswordError::TooLong)
        );
        assert!(matches!(
            Password::parse("password1234", &[]),
            Err(PasswordError::TooWeak(_))
        ));
        assert!(matches!(
            Password::parse("ana.lopez2024", &["ana.lopez@example.com"]),
            Err(PasswordError::TooWeak(_))
        ));
        assert!(Password::parse("correct horse battery staple", &[]).is_ok());
    }

    #[tokio::test]
    async fn a_hash_verifies_only_its_password() {
        let slots = Slots::new(1, std::time::Duration::from_secs(60));
        let h = hash(&slots, "correct horse battery staple")
            .await
            .expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(
            verify(&slots, "correct horse battery staple", &h)
                .await
                .expect("verify")
        );
        assert!(
            !verify(&slots, "correct horse battery stapler", &h)
                .await
                .expect("verify")
        );
        assert!(
            !verify(&slots, "anything", "not-a-hash")
                .await
                .expect("verify")
        );
    }
}
