//! What the auth routes reach: the platform and the token keys; no S3.

use std::{ops::Deref, sync::Arc};

use api::extract::CallerState;
use domain::sessions::TokenKeys;
use platform::Platform;

/// Handed to every request: one reference count to clone.
#[derive(Clone)]
pub struct AuthState(Arc<Shared>);

pub struct Shared {
    pub platform: Platform,
    pub tokens: TokenKeys,
}

impl AuthState {
    pub async fn new(platform: Platform) -> anyhow::Result<Self> {
        api::extract::read_ahead(&platform);
        Ok(Self(Arc::new(Shared {
            tokens: TokenKeys::from_config(platform.config.clone())?,
            platform,
        })))
    }
}

impl Deref for AuthState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Handlers read the platform's pools and settings straight off the group's state.
impl Deref for Shared {
    type Target = Platform;

    fn deref(&self) -> &Platform {
        &self.platform
    }
}

impl CallerState for AuthState {
    fn platform(&self) -> &Platform {
        &self.platform
    }

    fn tokens(&self) -> &TokenKeys {
        &self.tokens
    }
}
