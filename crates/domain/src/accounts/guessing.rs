//! The limit on guessing an account's password, wherever a password is checked: login, and the
//! `current_password` of an email change, a password change or an account deletion.
//!
//! - **Counted before the check, atomically.** Each attempt takes a slot first (the cache's
//!   fixed-window counter, [`Cache::hit`], as the per-IP limit uses); only the first [`MAX_FAILURES`] in a window
//!   reach argon2, however many arrive at once. A successful check frees the slots.
//! - **The owner's networks keep their own budget.** A network (an IPv4 address, an IPv6 /64)
//!   from which the account registered, signed in or checked its password successfully is
//!   *known*, until [`KNOWN_FOR`] passes without any success. Attempts from known networks are counted per network; attempts
//!   from every other network share one counter. An attacker elsewhere can exhaust the shared
//!   counter, which locks out guessing from new networks only: the owner, at home or at work,
//!   keeps signing in. Only someone on the owner's own network can use up that network's budget.
//! - **Keys hold no address.** The account is named by the SHA-256 of its normalized email,
//!   a network by the SHA-256 of its key.
//! - **An outage of Redis lets attempts through** (with a warning): the per-IP rate limit still
//!   bounds them once Redis is back, and an outage of the limiter must not lock everyone out.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::Email;
use platform::cache::Cache;

/// Failed checks allowed per window, per known network and for all other networks together.
pub const MAX_FAILURES: u64 = 10;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a network stays known after its last success.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// One password check of one account from one network, with its slot taken.
#[derive(Debug)]
pub struct Attempt {
    counter: String,
    known: String,
    network: String,
}

/// The account's guessing budget from this network is used up.
#[derive(Debug)]
pub struct Locked {
    pub retry_after: Duration,
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Takes a slot for checking the password of the account with `email` from `network` (the
/// client's rate-limit key). `Err` when the window's slots are used up.
pub async fn begin(cache: &Cache, email: &str, network: &str) -> Result<Attempt, Locked> {
    let account = Email::digest(&email.trim().to_lowercase());
    let network = digest(network);
    let known = cache.key(&format!("pw_known:{account}"));
    let is_known = {
        let (known, network) = (known.clone(), network.clone());
        cache
            .run(|mut conn| async move {
                redis::cmd("SISMEMBER")
                    .arg(known)
                    .arg(network)
                    .query_async::<bool>(&mut conn)
                    .await
            })
            .await
    };
    let counter = match is_known {
        Ok(true) => cache.key(&format!("pw_fail:{account}:{network}")),
        Ok(false) => cache.key(&format!("pw_fail:{account}")),
        Err(err) => {
            tracing::warn!(error = %err, "redis unavailable: password guessing not limited");
            return Ok(Attempt {
                counter: String::new(),
                known,
                network,
            });
        }
    };
    match cache.hit(&counter, WINDOW, Vec::new()).await {
        Ok((hit, _)) if hit.count <= MAX_FAILURES => Ok(Attempt {
            counter,
            known,
            network,
        }),
        Ok((hit, _)) => Err(Locked {
            retry_after: hit.reset,
        }),
        Err(err) => {
            tracing::warn!(error = %err, "redis unavailable: password guessing not limited");
            Ok(Attempt {
                counter: String::new(),
                known,
                network,
            })
        }
    }
}

/// Remembers `network` as one of the account's own (at registration).
pub async fn remember_network(cache: &Cache, email: &str, network: &str) {
    let account = Email::digest(&email.trim().to_lowercase());
    Attempt {
        counter: String::new(),
        known: cache.key(&format!("pw_known:{account}")),
        network: digest(network),
    }
    .succeeded(cache)
    .await;
}

impl Attempt {
    /// The password was right: the slots of this counter are freed, and the network is known.
    pub async fn succeeded(self, cache: &Cache) {
        let known_secs = KNOWN_FOR.as_secs();
        let Self {
            counter,
            known,
            network,
        } = self;
        let done = cache
            .run_always(|mut conn| async move {
                let mut pipe = redis::pipe();
                if !counter.is_empty() {
                    pipe.del(&counter).ignore();
                }
                pipe.sadd(&known, &network)
                    .ignore()
                    .expire(&known, i64::try_from(known_secs).unwrap_or(i64::MAX))
                    .ignore();
                pipe.query_async::<()>(&mut conn).await
            })
            .await;
        if let Err(err) = done {
            tracing::warn!(error = %err, "redis unavailable: successful check not recorded");
        }
    }
}
