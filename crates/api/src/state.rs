//! What a route group's handlers reach: the platform, the token keys, and the group's S3 client
//! where it stores files (users deletes an account's files, uploads hands out their URLs).

use std::{ops::Deref, sync::Arc};

use domain::sessions::TokenKeys;
use platform::Platform;

use crate::extract::CallerState;

/// Handed to every request: one reference count to clone. `S3` is the group's lazy S3 client,
/// or `()` for a group that stores no files (auth), which then links no S3 code.
pub struct RouteState<S3 = ()>(Arc<Shared<S3>>);

pub struct Shared<S3> {
    pub platform: Platform,
    pub tokens: TokenKeys,
    /// Built by the first request that needs it.
    pub s3: S3,
}

impl<S3> RouteState<S3> {
    /// Reads the token keys from the configuration and lets the rate limiter read ahead what an
    /// authenticated request reads next (`extract::read_ahead`).
    pub fn new(platform: Platform, s3: S3) -> anyhow::Result<Self> {
        crate::extract::read_ahead(&platform);
        Ok(Self(Arc::new(Shared {
            tokens: TokenKeys::from_config(platform.config.clone())?,
            s3,
            platform,
        })))
    }
}

// Not derived: a derive would ask `S3: Clone`, and only the `Arc` is cloned.
impl<S3> Clone for RouteState<S3> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<S3> Deref for RouteState<S3> {
    type Target = Shared<S3>;

    fn deref(&self) -> &Shared<S3> {
        &self.0
    }
}

/// Handlers read the platform's pools and settings straight off the group's state.
impl<S3> Deref for Shared<S3> {
    type Target = Platform;

    fn deref(&self) -> &Platform {
        &self.platform
    }
}

impl<S3: Send + Sync> CallerState for RouteState<S3> {
    fn platform(&self) -> &Platform {
        &self.platform
    }

    fn tokens(&self) -> &TokenKeys {
        &self.tokens
    }
}
