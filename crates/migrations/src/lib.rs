//! The project's migrations, embedded at build time: the migrate function applies them, and the
//! backup function and the `db` tool compare a database against them. One copy for all three.

use migrator::Migrator;

/// (file name, contents) of every file in `migrations/`.
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// The migrations compiled into this binary.
pub fn migrator() -> anyhow::Result<Migrator> {
    Migrator::from_embedded(embedded::FILES)
}
