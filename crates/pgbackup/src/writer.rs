//! The dump's byte pipeline: SQL text in, gzip parts out to a [`Sink`] running on its own task,
//! so compression and uploading overlap. Memory stays bounded whatever the database's size:
//! at most one part being compressed, one queued and one being uploaded.

use std::io::Write;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use flate2::{Compression, write::GzEncoder};
use sha2::{Digest, Sha256};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::sink::{Destination, Sink};

/// Parts of 8 MiB: above S3's 5 MiB minimum, and 10,000 of them hold an 80 GB dump.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Text is handed to the compressor in blocks of this size rather than row by row.
const STAGE_SIZE: usize = 256 * 1024;
/// Fast compression: the dump should cost little more CPU than reading the rows.
const LEVEL: u32 = 1;

enum Message {
    Part(Bytes),
    Finish,
}

/// What was written, for the manifest.
#[derive(Debug)]
pub struct Written {
    pub bytes: u64,
    pub sql_bytes: u64,
    pub sha256: String,
}

pub struct Writer {
    gz: GzEncoder<Vec<u8>>,
    stage: Vec<u8>,
    hasher: Sha256,
    bytes: u64,
    sql_bytes: u64,
    parts: mpsc::Sender<Message>,
    uploader: JoinHandle<anyhow::Result<()>>,
}

impl Writer {
    pub async fn open(destination: &Destination) -> anyhow::Result<Self> {
        let sink = destination.open().await?;
        let (parts, queue) = mpsc::channel(1);
        Ok(Self {
            gz: GzEncoder::new(Vec::with_capacity(PART_SIZE), Compression::new(LEVEL)),
            stage: Vec::with_capacity(STAGE_SIZE),
            hasher: Sha256::new(),
            bytes: 0,
            sql_bytes: 0,
            parts,
            uploader: tokio::spawn(upload(sink, queue)),
        })
    }

    pub async fn write(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.sql_bytes += data.len() as u64;
        self.stage.extend_from_slice(data);
        if self.stage.len() >= STAGE_SIZE {
            self.compress_stage()?;
            if self.gz.get_ref().len() >= PART_SIZE {
                let part = std::mem::replace(self.gz.get_mut(), Vec::with_capacity(PART_SIZE));
                self.send(part).await?;
            }
        }
        Ok(())
    }

    fn compress_stage(&mut self) -> anyhow::Result<()> {
        self.gz
            .write_all(&self.stage)
            .context("compressing the dump")?;
        self.stage.clear();
        Ok(())
    }

    async fn send(&mut self, part: Vec<u8>) -> anyhow::Result<()> {
        self.hasher.update(&part);
        self.bytes += part.len() as u64;
        if self.parts.send(Message::Part(part.into())).await.is_err() {
            return Err(self.upload_error().await);
        }
        Ok(())
    }

    /// The uploader stopped: its error says why.
    async fn upload_error(&mut self) -> anyhow::Error {
        match (&mut self.uploader).await {
            Ok(Err(err)) => err,
            Ok(Ok(())) => anyhow!("the upload ended before the dump did"),
            Err(err) => anyhow!("the upload task failed: {err}"),
        }
    }

    /// Writes the last part, completes the upload and returns what was written. On error the
    /// upload is aborted.
    pub async fn finish(mut self) -> anyhow::Result<Written> {
        self.compress_stage()?;
        let gz = std::mem::replace(
            &mut self.gz,
            GzEncoder::new(Vec::new(), Compression::none()),
        );
        let last = gz.finish().context("compressing the dump")?;
        self.send(last).await?;
        if self.parts.send(Message::Finish).await.is_err() {
            return Err(self.upload_error().await);
        }
        match (&mut self.uploader).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(err) => return Err(anyhow!("the upload task failed: {err}")),
        }
        Ok(Written {
            bytes: self.bytes,
            sql_bytes: self.sql_bytes,
            sha256: hex::encode(self.hasher.finalize_reset()),
        })
    }

    /// Stops and throws away the upload; waits until it is gone.
    pub async fn abort(self) {
        let Self {
            parts, uploader, ..
        } = self;
        drop(parts);
        let _ = uploader.await;
    }
}

/// Uploads parts in order. A queue closed without [`Message::Finish`] means the dump failed.
async fn upload(mut sink: Sink, mut queue: mpsc::Receiver<Message>) -> anyhow::Result<()> {
    loop {
        let result = match queue.recv().await {
            Some(Message::Part(part)) => sink.write(part).await,
            Some(Message::Finish) => {
                return match sink.finish().await {
                    Ok(()) => Ok(()),
                    Err(err) => {
                        sink.abort().await;
                        Err(err)
                    }
                };
            }
            None => {
                sink.abort().await;
                return Ok(());
            }
        };
        if let Err(err) = result {
            sink.abort().await;
            return Err(err);
        }
    }
}
