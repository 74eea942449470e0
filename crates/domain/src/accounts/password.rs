//! Passwords: the policy (length, strength) and argon2id hashing with OWASP's parameters.
//!
//! Hashing costs ~20 ms of CPU and 19 MiB of memory, so it runs on the hashing slots' own
//! threads ([`Slots`]), never on the async executor. Each of those threads keeps one argon2
//! memory block for good and hashes in it (see [`with_blocks`]).

use std::cell::RefCell;

use platform::work::Slots;

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::phc::{Output, ParamsString, Salt},
};
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
fn params() -> Params {
    Params::new(19_456, 2, 1, None).unwrap_or_default()
}

thread_local! {
    /// This thread's argon2 memory, allocated by its first hash and reused by every later one.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on at least `count` argon2 blocks of this thread's own memory.
///
/// `Argon2::hash_password` allocates and frees a fresh 19 MiB block per hash, and glibc keeps
/// freed blocks in per-thread arenas and fresh ones cost page faults (docs/BENCHMARKS.md,
/// "Memory"). Hashing into memory that the thread keeps (`hash_password_into_with_memory`, the
/// crate's API for caller-provided memory) makes the cost one block per hashing thread, paid
/// once. The block's old contents do not matter: argon2 writes every block before it reads it.
fn with_blocks<T>(count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < count {
            *blocks = vec![Block::default(); count];
        }
        f(&mut blocks[..count])
    })
}

/// The raw argon2 output of `password` with `salt`, `out.len()` bytes long.
fn derive(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    with_blocks(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password, salt, out, blocks)
    })
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of `password` with a random salt:
/// the same string `argon2::PasswordHasher::hash_password` writes, built here because that
/// method allocates its own memory.
fn hash_now(password: &[u8]) -> anyhow::Result<String> {
    let params = params();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = Salt::generate();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    derive(&argon2, &params, password, &salt, &mut out)
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)
            .map_err(|e| anyhow::anyhow!("encoding argon2 parameters: {e}"))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("encoding a hash: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc`, with the algorithm, version and parameters
/// the string names (as `argon2::PasswordVerifier` does). The comparison is `Output`'s, in
/// constant time. A malformed string is a mismatch.
fn matches(password: &[u8], phc: &str) -> bool {
    let Ok(stored) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm.as_str()) else {
        return false;
    };
    let version = match stored.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&stored) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let Some(out) = buffer.get_mut(..expected.len()) else {
        return false;
    };
    if derive(&argon2, &params, password, salt, out).is_err() {
        return false;
    }
    Output::new(out).is_ok_and(|computed| computed == *expected)
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
            // zxcvbn's warnings are sentences with their own full stop; the message adds its own.
            let hint = entropy
                .feedback()
                .and_then(|f| f.warning().map(|w| w.to_string()))
                .map(|w| w.trim_end_matches('.').to_owned())
                .unwrap_or_else(|| "it is too easy to guess".into());
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
        .run_blocking(move || hash_now(password.expose_secret().as_bytes()))
        .await
        .context("hashing a password")?
}

/// Verifies in one of `slots`, on its thread. A malformed stored hash counts as a
/// mismatch.
pub async fn verify(slots: &Slots, password: &str, phc: &str) -> anyhow::Result<bool> {
    let password = SecretString::from(password.to_owned());
    let phc = phc.to_owned();
    slots
        .run_blocking(move || matches(password.expose_secret().as_bytes(), &phc))
        .await
        .context("checking a password")
}

/// A real argon2id hash of a random password, computed once, in a hashing slot like any other.
/// Login verifies against it when the email is unknown, so that both failures take the same
/// time.
pub async fn dummy_hash(slots: &Slots) -> anyhow::Result<&'static str> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let random = uuid::Uuid::new_v4().to_string();
    DUMMY
        .get_or_try_init(|| hash(slots, &random))
        .await
        .map(String::as_str)
}

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
        // One full stop between zxcvbn's warning and the advice, whatever the warning.
        for weak in [
            "password1234",
            "Password123!",
            "qwertyuiopas",
            "aaaaaaaaaaaa",
            "abcdefghijkl",
        ] {
            let message = Password::parse(weak, &[]).expect_err(weak).to_string();
            assert!(message.starts_with("is too weak: "), "{message}");
            assert!(!message.contains(".."), "{message}");
            assert!(
                message.ends_with(". Try a longer phrase of unrelated words"),
                "{message}"
            );
        }
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

    /// Our hashes are the crate's own PHC strings both ways, so stored hashes from either stay
    /// valid, whatever parameters they were made with.
    #[test]
    fn hashes_agree_with_the_argon2_crate_both_ways() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let ours = hash_now(b"correct horse battery staple").expect("hash");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        assert!(
            theirs
                .verify_password(b"correct horse battery staple", &parsed)
                .is_ok()
        );
        assert!(
            theirs
                .verify_password(b"correct horse battery stapl", &parsed)
                .is_err()
        );

        for (m, t, p) in [(19_456, 2, 1), (8_192, 3, 1), (47_104, 1, 2)] {
            let other = Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(m, t, p, None).expect("params"),
            );
            let stored = other
                .hash_password(b"an older parameter set")
                .expect("hash")
                .to_string();
            assert!(matches(b"an older parameter set", &stored), "{stored}");
            assert!(!matches(b"an older parameter sex", &stored), "{stored}");
        }
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x10, params())
            .hash_password(b"another algorithm")
            .expect("hash")
            .to_string();
        assert!(matches(b"another algorithm", &argon2i), "{argon2i}");
        assert!(!matches(
            b"another algorithm",
            &argon2i.replace("argon2i$", "argon2id$")
        ));
    }
}
