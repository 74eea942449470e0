//! What the uploads routes reach: the platform, the token keys and S3.

use std::{ops::Deref, sync::Arc};

use api::extract::CallerState;
use domain::sessions::TokenKeys;
use platform::Platform;
use platform::storage::LazyS3;

/// Handed to every request: one reference count to clone.
#[derive(Clone)]
pub struct UploadsState(Arc<Shared>);

pub struct Shared {
    pub platform: Platform,
    pub tokens: TokenKeys,
    /// Built by the first request that needs it.
    pub s3: LazyS3,
}

impl UploadsState {
    pub async fn new(platform: Platform) -> anyhow::Result<Self> {
        api::extract::read_ahead(&platform);
        Ok(Self(Arc::new(Shared {
            tokens: TokenKeys::from_config(platform.config.clone())?,
            s3: LazyS3::new(platform.config.clone()),
            platform,
        })))
    }
}

impl Deref for UploadsState {
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

impl CallerState for UploadsState {
    fn platform(&self) -> &Platform {
        &self.platform
    }

    fn tokens(&self) -> &TokenKeys {
        &self.tokens
    }
}
