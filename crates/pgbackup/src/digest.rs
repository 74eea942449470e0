//! Table checksums that do not depend on row order, so a restored table (whose rows may come
//! back in any order) can be compared with the snapshot it came from without sorting either.
//!
//! Each row is the line `COPY ... TO STDOUT` writes for it (text format, under the session
//! settings of [`crate::session`]); the checksum is the sum, modulo 2^128, of the first
//! 128 bits of each line's SHA-256.

use sha2::{Digest, Sha256};

pub const ALGORITHM: &str =
    "sum mod 2^128 of the first 128 bits of SHA-256 of each row's COPY text line";

/// Rows seen so far and their checksum. Rows may arrive split across chunks.
#[derive(Debug, Default, Clone)]
pub struct RowDigest {
    rows: u64,
    sum: u128,
    partial: Vec<u8>,
}

impl RowDigest {
    /// Feeds COPY output; a row ends at its newline.
    pub fn update(&mut self, mut data: &[u8]) {
        while let Some(end) = memchr::memchr(b'\n', data) {
            if self.partial.is_empty() {
                self.add_row(&data[..end]);
            } else {
                let mut row = std::mem::take(&mut self.partial);
                row.extend_from_slice(&data[..end]);
                self.add_row(&row);
            }
            data = &data[end + 1..];
        }
        self.partial.extend_from_slice(data);
    }

    fn add_row(&mut self, row: &[u8]) {
        let hash = Sha256::digest(row);
        let mut first = [0u8; 16];
        first.copy_from_slice(&hash[..16]);
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(first));
        self.rows += 1;
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The checksum, hex. An unterminated last row counts as a row.
    pub fn finish(mut self) -> (u64, String) {
        if !self.partial.is_empty() {
            let row = std::mem::take(&mut self.partial);
            self.add_row(&row);
        }
        (self.rows, format!("{:032x}", self.sum))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(chunks: &[&[u8]]) -> (u64, String) {
        let mut d = RowDigest::default();
        for c in chunks {
            d.update(c);
        }
        d.finish()
    }

    #[test]
    fn row_order_and_chunking_do_not_matter() {
        let a = digest(&[b"1\tana\n", b"2\tben\n"]);
        let b = digest(&[b"2\tb", b"en\n1\t", b"ana\n"]);
        assert_eq!(a, b);
        assert_eq!(a.0, 2);
    }

    #[test]
    fn a_changed_or_missing_row_changes_the_checksum() {
        let a = digest(&[b"1\tana\n2\tben\n"]);
        assert_ne!(a, digest(&[b"1\tana\n2\tbem\n"]));
        assert_ne!(a.1, digest(&[b"1\tana\n"]).1);
        assert_ne!(a.1, digest(&[b"1\tana\n2\tben\n2\tben\n"]).1);
    }
}
