//! Where a dump goes: an S3 multipart upload, or a local file. Parts arrive in order; a sink
//! that is not finished is aborted, so a failed backup leaves neither a dump that looks whole
//! nor (on S3) a multipart upload that keeps costing storage.

use std::path::PathBuf;

use anyhow::{Context, bail};
use aws_sdk_s3::{
    primitives::ByteStream,
    types::{CompletedMultipartUpload, CompletedPart},
};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use platform::storage::S3;

/// S3 allows at most 10,000 parts per upload.
const MAX_PARTS: i32 = 10_000;

/// Where a backup is written.
#[derive(Debug, Clone)]
pub enum Destination {
    S3 { s3: S3, bucket: String, key: String },
    File(PathBuf),
}

impl Destination {
    /// The dump's name as the manifest records it.
    pub fn name(&self) -> String {
        match self {
            Self::S3 { key, .. } => key.clone(),
            Self::File(path) => path.display().to_string(),
        }
    }

    pub(crate) async fn open(&self) -> anyhow::Result<Sink> {
        match self {
            Self::S3 { s3, bucket, key } => {
                let created = s3
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .content_type("application/gzip")
                    .send()
                    .await
                    .with_context(|| format!("starting the upload of s3://{bucket}/{key}"))?;
                let upload_id = created
                    .upload_id()
                    .context("S3 returned no upload id")?
                    .to_owned();
                Ok(Sink::S3 {
                    s3: s3.clone(),
                    bucket: bucket.clone(),
                    key: key.clone(),
                    upload_id,
                    parts: Vec::new(),
                })
            }
            Self::File(path) => {
                let partial = partial_path(path);
                let file = tokio::fs::File::create(&partial)
                    .await
                    .with_context(|| format!("creating {}", partial.display()))?;
                Ok(Sink::File {
                    file,
                    partial,
                    path: path.clone(),
                })
            }
        }
    }

    /// Stores the manifest next to the dump. Called only once the dump is complete.
    pub(crate) async fn put_manifest(&self, json: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Self::S3 { s3, bucket, key } => {
                let manifest = crate::manifest_key(key);
                s3.put_object()
                    .bucket(bucket)
                    .key(&manifest)
                    .content_type("application/json")
                    .body(ByteStream::from(json))
                    .send()
                    .await
                    .with_context(|| format!("writing s3://{bucket}/{manifest}"))?;
            }
            Self::File(path) => {
                let manifest = PathBuf::from(crate::manifest_key(&path.display().to_string()));
                tokio::fs::write(&manifest, json)
                    .await
                    .with_context(|| format!("writing {}", manifest.display()))?;
            }
        }
        Ok(())
    }
}

/// A local dump is written under `<path>.partial` and renamed when complete.
fn partial_path(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// An open dump.
pub(crate) enum Sink {
    S3 {
        s3: S3,
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<CompletedPart>,
    },
    File {
        file: tokio::fs::File,
        partial: PathBuf,
        path: PathBuf,
    },
}

impl Sink {
    pub(crate) async fn write(&mut self, part: Bytes) -> anyhow::Result<()> {
        match self {
            Self::S3 {
                s3,
                bucket,
                key,
                upload_id,
                parts,
            } => {
                let number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
                if number > MAX_PARTS {
                    bail!("the dump needs more than {MAX_PARTS} parts");
                }
                let uploaded = s3
                    .upload_part()
                    .bucket(bucket.as_str())
                    .key(key.as_str())
                    .upload_id(upload_id.as_str())
                    .part_number(number)
                    .body(ByteStream::from(part))
                    .send()
                    .await
                    .with_context(|| format!("uploading part {number} of s3://{bucket}/{key}"))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(uploaded.e_tag().map(str::to_owned))
                        .build(),
                );
            }
            Self::File { file, partial, .. } => file
                .write_all(&part)
                .await
                .with_context(|| format!("writing {}", partial.display()))?,
        }
        Ok(())
    }

    pub(crate) async fn finish(&mut self) -> anyhow::Result<()> {
        match self {
            Self::S3 {
                s3,
                bucket,
                key,
                upload_id,
                parts,
            } => {
                s3.complete_multipart_upload()
                    .bucket(bucket.as_str())
                    .key(key.as_str())
                    .upload_id(upload_id.as_str())
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(std::mem::take(parts)))
                            .build(),
                    )
                    .send()
                    .await
                    .with_context(|| format!("completing the upload of s3://{bucket}/{key}"))?;
            }
            Self::File {
                file,
                partial,
                path,
            } => {
                file.flush().await?;
                file.sync_all()
                    .await
                    .with_context(|| format!("syncing {}", partial.display()))?;
                tokio::fs::rename(&*partial, &*path)
                    .await
                    .with_context(|| format!("renaming {} into place", partial.display()))?;
            }
        }
        Ok(())
    }

    /// Throws away what was written. Best effort: the caller already has the error that matters.
    pub(crate) async fn abort(self) {
        match self {
            Self::S3 {
                s3,
                bucket,
                key,
                upload_id,
                ..
            } => {
                if let Err(err) = s3
                    .abort_multipart_upload()
                    .bucket(&bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await
                {
                    tracing::warn!(
                        error = %aws_sdk_s3::error::DisplayErrorContext(&err),
                        bucket, key,
                        "could not abort the multipart upload; the bucket's lifecycle rule removes it"
                    );
                }
            }
            Self::File { file, partial, .. } => {
                drop(file);
                let _ = tokio::fs::remove_file(&partial).await;
            }
        }
    }
}
