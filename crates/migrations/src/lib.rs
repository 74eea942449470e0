//! The project's migrations, embedded at build time for the migrate function, which applies
//! them on Lambda (the `db` tool reads the same files from `migrations/`).

use migrator::Migrator;

/// (file name, contents) of every file in `migrations/`.
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// The migrations compiled into this binary.
pub fn migrator() -> anyhow::Result<Migrator> {
    Migrator::from_embedded(embedded::FILES)
}
