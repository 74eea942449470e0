//! Where a restore reads a dump from: an S3 object or a local file, read in chunks.

use std::path::PathBuf;

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::{Manifest, manifest_key};
use platform::storage::S3;

const READ_SIZE: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub enum Source {
    S3 { s3: S3, bucket: String, key: String },
    File(PathBuf),
}

impl Source {
    pub fn name(&self) -> String {
        match self {
            Self::S3 { bucket, key, .. } => format!("s3://{bucket}/{key}"),
            Self::File(path) => path.display().to_string(),
        }
    }

    /// The dump's manifest. A dump without one was never finished, and is refused.
    pub async fn manifest(&self) -> anyhow::Result<Manifest> {
        let json = match self {
            Self::S3 { s3, bucket, key } => {
                let manifest = manifest_key(key);
                let object = match s3.get_object().bucket(bucket).key(&manifest).send().await {
                    Ok(object) => object,
                    Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                        bail!("{} has no manifest: the backup is incomplete", self.name())
                    }
                    Err(err) => {
                        return Err(err)
                            .with_context(|| format!("reading s3://{bucket}/{manifest}"));
                    }
                };
                object
                    .body
                    .collect()
                    .await
                    .with_context(|| format!("reading s3://{bucket}/{manifest}"))?
                    .to_vec()
            }
            Self::File(path) => {
                let manifest = PathBuf::from(manifest_key(&path.display().to_string()));
                match tokio::fs::read(&manifest).await {
                    Ok(json) => json,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        bail!("{} has no manifest: the backup is incomplete", self.name())
                    }
                    Err(err) => {
                        return Err(err).with_context(|| format!("reading {}", manifest.display()));
                    }
                }
            }
        };
        serde_json::from_slice(&json)
            .with_context(|| format!("the manifest of {} is not valid", self.name()))
    }

    /// Opens the dump; returns its reader and its size.
    pub(crate) async fn open(&self) -> anyhow::Result<(Body, Option<u64>)> {
        match self {
            Self::S3 { s3, bucket, key } => {
                let object = s3
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .with_context(|| format!("opening {}", self.name()))?;
                let size = object.content_length().and_then(|n| u64::try_from(n).ok());
                Ok((Body::S3(object.body), size))
            }
            Self::File(path) => {
                let file = tokio::fs::File::open(path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?;
                let size = file.metadata().await.ok().map(|m| m.len());
                Ok((Body::File(file), size))
            }
        }
    }
}

pub(crate) enum Body {
    S3(ByteStream),
    File(tokio::fs::File),
}

impl Body {
    /// The next chunk, or `None` at the end.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        match self {
            Self::S3(stream) => stream.try_next().await.context("reading the dump from S3"),
            Self::File(file) => {
                let mut buf = vec![0; READ_SIZE];
                let n = file.read(&mut buf).await.context("reading the dump")?;
                buf.truncate(n);
                Ok((n > 0).then(|| Bytes::from(buf)))
            }
        }
    }
}
