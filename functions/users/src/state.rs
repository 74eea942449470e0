//! What the users routes reach: the platform, the token keys, and S3 (deleting an account
//! deletes its files).

use std::{ops::Deref, sync::Arc};

use axum::extract::FromRef;
use domain::sessions::TokenKeys;
use platform::Platform;
use platform::storage::LazyS3;

#[derive(Clone, FromRef)]
pub struct UsersState {
    pub platform: Platform,
    pub tokens: Arc<TokenKeys>,
    /// Built by the first request that needs it.
    pub s3: LazyS3,
}

impl UsersState {
    pub async fn new(platform: Platform) -> anyhow::Result<Self> {
        api::extract::read_ahead(&platform);
        Ok(Self {
            tokens: Arc::new(TokenKeys::from_config(platform.config.clone())?),
            s3: LazyS3::new(platform.config.clone()),
            platform,
        })
    }
}

/// Handlers read the platform's pools and settings straight off the group's state.
impl Deref for UsersState {
    type Target = Platform;

    fn deref(&self) -> &Platform {
        &self.platform
    }
}
