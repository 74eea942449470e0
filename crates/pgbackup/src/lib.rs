//! Logical backups: a consistent snapshot of the database, its schema described from the live
//! catalog and its rows, as one gzip-compressed plain SQL file
//! (restorable by stock `psql`), streamed to S3 by multipart upload with flat memory, plus a
//! manifest (written last) that lets a restore prove it got back exactly what was saved.
//!
//! - [`backup`] takes a backup into a [`Destination`] (S3, or a local file);
//! - [`restore`] loads one into an empty database (or, forced, replaces its `public` schema)
//!   and commits only if the result matches the manifest;
//! - [`drill`] restores the newest backup into a scratch database and drops it again.
//!
//! Keys: `backups/YYYY/MM/DD/backup_YYYYMMDD_HHMMSS.sql.gz`, and the manifest next to it at
//! `<key>.manifest.json`. This module never needs `pg_dump`, and never holds a whole dump in
//! memory.

mod catalog;
pub mod digest;
mod drill;
mod dump;
mod load;
mod manifest;
mod restore;
mod schema;
pub mod session;
mod sink;
mod source;
mod verify;
mod writer;

pub use drill::{drill, newest, scratch_name};
pub use dump::backup;
pub use manifest::{Manifest, TableSummary, dump_key, manifest_key};
pub use restore::{RestoreOptions, Restored, restore};
pub use sink::Destination;
pub use source::Source;
pub use verify::verify;
pub use writer::PART_SIZE;
