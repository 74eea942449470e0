//! What the auth routes reach: the platform and the token keys; no S3.

use std::{ops::Deref, sync::Arc};

use axum::extract::FromRef;
use domain::sessions::TokenKeys;
use platform::Platform;

#[derive(Clone, FromRef)]
pub struct AuthState {
    pub platform: Platform,
    pub tokens: Arc<TokenKeys>,
}

impl AuthState {
    pub async fn new(platform: Platform) -> anyhow::Result<Self> {
        api::extract::read_ahead(&platform);
        Ok(Self {
            tokens: Arc::new(TokenKeys::from_config(platform.config.clone())?),
            platform,
        })
    }
}

/// Handlers read the platform's pools and settings straight off the group's state.
impl Deref for AuthState {
    type Target = Platform;

    fn deref(&self) -> &Platform {
        &self.platform
    }
}
