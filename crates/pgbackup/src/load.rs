//! Executes a dump as `psql` would, but streamed: plain statements go through `batch_execute`,
//! each `COPY ... FROM stdin;` block through `copy_in`. The dump's own `BEGIN;` and `COMMIT;`
//! are left to the caller, which holds the transaction open until the result is verified.

use std::{io::Write, pin::Pin};

use anyhow::{Context, bail, ensure};
use bytes::{Bytes, BytesMut};
use flate2::write::GzDecoder;
use futures_util::SinkExt;
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, CopyInSink};

use crate::{digest::RowDigest, source::Body};

/// COPY data is sent to the server in blocks of about this size.
const COPY_BLOCK: usize = 256 * 1024;

/// What was read: the gzip file's size and SHA-256, and each COPY block as it was loaded.
pub struct Loaded {
    pub bytes: u64,
    pub sha256: String,
    pub copies: Vec<Copied>,
}

/// One `COPY ... FROM stdin;` block: the rows the server says it stored, and the rows sent
/// (their count and checksum, as [`crate::digest`] computes them over the backup's snapshot).
pub struct Copied {
    pub statement: String,
    pub stored: u64,
    pub sent: (u64, String),
}

/// Decompresses `body` and runs its statements on `client`. `progress` is told how many
/// compressed bytes have been read so far.
pub async fn load(
    client: &Client,
    mut body: Body,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<Loaded> {
    let mut gunzip = GzDecoder::new(Vec::new());
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut runner = Runner::new(client);
    while let Some(chunk) = body.next().await? {
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        gunzip
            .write_all(&chunk)
            .context("the dump is not a valid gzip file")?;
        let text = std::mem::take(gunzip.get_mut());
        runner.feed(&text).await?;
        progress(bytes);
    }
    gunzip
        .try_finish()
        .context("the dump is not a valid gzip file")?;
    let text = std::mem::take(gunzip.get_mut());
    runner.feed(&text).await?;
    let copies = runner.end().await?;
    Ok(Loaded {
        bytes,
        sha256: hex::encode(hasher.finalize()),
        copies,
    })
}

struct Runner<'a> {
    client: &'a Client,
    /// The line being read, when a chunk ended inside it.
    line: Vec<u8>,
    /// Statements waiting for the next COPY (or the end).
    sql: String,
    copy: Option<Copy>,
    copied: Vec<Copied>,
    committed: bool,
}

struct Copy {
    statement: String,
    sink: Pin<Box<CopyInSink<Bytes>>>,
    block: BytesMut,
    digest: RowDigest,
}

impl<'a> Runner<'a> {
    fn new(client: &'a Client) -> Self {
        Self {
            client,
            line: Vec::new(),
            sql: String::new(),
            copy: None,
            copied: Vec::new(),
            committed: false,
        }
    }

    async fn feed(&mut self, mut data: &[u8]) -> anyhow::Result<()> {
        loop {
            // Inside a COPY block, at the start of a line: take every whole line up to the
            // block's end marker at once instead of line by line (COPY's text format escapes
            // every backslash, so a data line is never `\.`).
            if self.copy.is_some() && self.line.is_empty() {
                let end = if data.starts_with(b"\\.\n") {
                    Some(0)
                } else {
                    memchr::memmem::find(data, b"\n\\.\n").map(|i| i + 1)
                };
                let whole = match end {
                    Some(end) => end,
                    None => memchr::memrchr(b'\n', data).map_or(0, |i| i + 1),
                };
                self.copy_lines(&data[..whole]).await?;
                data = &data[whole..];
                if end.is_none() {
                    self.line.extend_from_slice(data);
                    return Ok(());
                }
            }
            let Some(end) = memchr::memchr(b'\n', data) else {
                break;
            };
            if self.line.is_empty() {
                self.run_line(&data[..end]).await?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&data[..end]);
                self.run_line(&line).await?;
            }
            data = &data[end + 1..];
        }
        self.line.extend_from_slice(data);
        Ok(())
    }

    /// Whole lines of COPY data (each ending in a newline), for the open COPY.
    async fn copy_lines(&mut self, lines: &[u8]) -> anyhow::Result<()> {
        let Some(copy) = &mut self.copy else {
            return Ok(());
        };
        copy.block.extend_from_slice(lines);
        copy.digest.update(lines);
        if copy.block.len() >= COPY_BLOCK {
            let statement = copy.statement.clone();
            copy.send()
                .await
                .with_context(|| format!("loading {statement}"))?;
        }
        Ok(())
    }

    async fn run_line(&mut self, line: &[u8]) -> anyhow::Result<()> {
        if let Some(copy) = &mut self.copy {
            if line == b"\\." {
                let mut copy = self.copy.take().context("a COPY is open")?;
                let statement = copy.statement.clone();
                let stored = copy
                    .end()
                    .await
                    .with_context(|| format!("loading {statement}"))?;
                self.copied.push(Copied {
                    statement,
                    stored,
                    sent: std::mem::take(&mut copy.digest).finish(),
                });
            } else {
                copy.block.extend_from_slice(line);
                copy.block.extend_from_slice(b"\n");
                copy.digest.update(line);
                copy.digest.update(b"\n");
                if copy.block.len() >= COPY_BLOCK {
                    let statement = copy.statement.clone();
                    copy.send()
                        .await
                        .with_context(|| format!("loading {statement}"))?;
                }
            }
            return Ok(());
        }
        let line = std::str::from_utf8(line).context("the dump is not valid UTF-8")?;
        if self.committed {
            ensure!(line.trim().is_empty(), "the dump goes on after its COMMIT");
            return Ok(());
        }
        match line {
            "BEGIN;" => {}
            "COMMIT;" => {
                self.flush_sql().await?;
                self.committed = true;
            }
            _ if line.starts_with("COPY ") && line.ends_with(" FROM stdin;") => {
                self.flush_sql().await?;
                let sink = self
                    .client
                    .copy_in(line)
                    .await
                    .with_context(|| format!("starting {line}"))?;
                self.copy = Some(Copy {
                    statement: line.to_owned(),
                    sink: Box::pin(sink),
                    block: BytesMut::with_capacity(COPY_BLOCK + 4096),
                    digest: RowDigest::default(),
                });
            }
            _ => {
                self.sql.push_str(line);
                self.sql.push('\n');
            }
        }
        Ok(())
    }

    async fn flush_sql(&mut self) -> anyhow::Result<()> {
        if !self.sql.trim().is_empty() {
            self.client
                .batch_execute(&self.sql)
                .await
                .context("running the dump's statements")?;
        }
        self.sql.clear();
        Ok(())
    }

    async fn end(mut self) -> anyhow::Result<Vec<Copied>> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.run_line(&line).await?;
        }
        if self.copy.is_some() {
            bail!("the dump ends inside a COPY block: it is truncated");
        }
        if !self.committed {
            bail!("the dump ends before its COMMIT: it is truncated");
        }
        Ok(self.copied)
    }
}

impl Copy {
    async fn send(&mut self) -> anyhow::Result<()> {
        let block = self.block.split().freeze();
        self.sink.send(block).await?;
        Ok(())
    }

    /// Sends what is left and ends the COPY: the rows the server stored.
    async fn end(&mut self) -> anyhow::Result<u64> {
        if !self.block.is_empty() {
            self.send().await?;
        }
        Ok(self.sink.as_mut().finish().await?)
    }
}
