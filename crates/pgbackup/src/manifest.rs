//! What a backup holds, written next to its dump once the dump is complete: a dump without a
//! manifest is known to be incomplete, and is never restored.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The manifest of one backup, stored as JSON at [`manifest_key`] of the dump's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Bumped when the dump's layout changes in a way an older restore would misread.
    pub format: u32,
    /// Where the dump is: an S3 key (`backups/...sql.gz`) or a local path.
    pub dump: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// The newest migration applied to the database that was backed up.
    pub migration_version: Option<i64>,
    /// Size of the gzip file.
    pub bytes: u64,
    /// Size of the SQL inside it.
    pub sql_bytes: u64,
    /// SHA-256 of the gzip file, hex.
    pub sha256: String,
    /// How each table's checksum is computed; see [`crate::digest`].
    pub checksum_algorithm: String,
    pub tables: BTreeMap<String, TableSummary>,
    /// Each sequence's `last_value` when the backup ran (never-used sequences are left out).
    pub sequences: BTreeMap<String, i64>,
    /// Schemas other than `public` that held objects of their own: not in the backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncovered_schemas: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSummary {
    /// The columns the dump holds, in its order (generated columns are recomputed on restore).
    pub columns: Vec<String>,
    pub rows: u64,
    pub checksum: String,
}

pub const FORMAT: u32 = 1;

/// `backups/YYYY/MM/DD/backup_YYYYMMDD_HHMMSS.sql.gz`, from the backup's start time (UTC).
pub fn dump_key(started_at: DateTime<Utc>) -> String {
    started_at
        .format("backups/%Y/%m/%d/backup_%Y%m%d_%H%M%S.sql.gz")
        .to_string()
}

/// The manifest sits next to its dump: `<dump>.manifest.json`.
pub fn manifest_key(dump: &str) -> String {
    format!("{dump}.manifest.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn keys_are_dated_and_sort_by_time() {
        let at = Utc
            .with_ymd_and_hms(2026, 3, 9, 4, 5, 6)
            .single()
            .expect("date");
        assert_eq!(
            dump_key(at),
            "backups/2026/03/09/backup_20260309_040506.sql.gz"
        );
        assert_eq!(
            manifest_key(&dump_key(at)),
            "backups/2026/03/09/backup_20260309_040506.sql.gz.manifest.json"
        );
        let later = Utc
            .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .single()
            .expect("date");
        assert!(dump_key(later) > dump_key(at));
    }
}
