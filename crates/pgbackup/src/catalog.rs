//! What a backup covers, read from the system catalogs inside the snapshot: every ordinary table
//! of the `public` schema (temporary tables, views and materialized views are not data the
//! migrations cannot rebuild), its foreign keys and its sequences.

use anyhow::Context;
use tokio_postgres::GenericClient;

use platform::db::quote_ident;

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// Stored columns in table order; generated columns are left out (they are recomputed).
    pub columns: Vec<String>,
}

impl Table {
    pub fn column_list(&self) -> String {
        columns_sql(&self.columns)
    }

    /// `public."name"`.
    pub fn qualified(&self) -> String {
        format!("public.{}", quote_ident(&self.name))
    }
}

pub fn columns_sql(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub table: String,
    pub name: String,
    /// `FOREIGN KEY (...) REFERENCES ...`, as Postgres prints it.
    pub definition: String,
}

pub async fn tables(db: &impl GenericClient) -> anyhow::Result<Vec<Table>> {
    let rows = db
        .query_typed(
            "SELECT c.relname::text,
                    array_agg(a.attname::text ORDER BY a.attnum)
                        FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '')
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_attribute a ON a.attrelid = c.oid
              WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relpersistence <> 't'
              GROUP BY c.relname
              ORDER BY c.relname",
            &[],
        )
        .await
        .context("listing the tables")?;
    Ok(rows
        .iter()
        .map(|r| Table {
            name: r.get(0),
            columns: r.get::<_, Option<Vec<String>>>(1).unwrap_or_default(),
        })
        .collect())
}

pub async fn foreign_keys(db: &impl GenericClient) -> anyhow::Result<Vec<ForeignKey>> {
    let rows = db
        .query_typed(
            "SELECT c.relname::text, con.conname::text, pg_get_constraintdef(con.oid)
               FROM pg_constraint con
               JOIN pg_class c ON c.oid = con.conrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND con.contype = 'f'
              ORDER BY 1, 2",
            &[],
        )
        .await
        .context("listing the foreign keys")?;
    Ok(rows
        .iter()
        .map(|r| ForeignKey {
            table: r.get(0),
            name: r.get(1),
            definition: r.get(2),
        })
        .collect())
}

/// Sequences that have handed out a value, with their `last_value`.
pub async fn sequences(db: &impl GenericClient) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = db
        .query_typed(
            "SELECT sequencename::text, last_value FROM pg_sequences
              WHERE schemaname = 'public' AND last_value IS NOT NULL
              ORDER BY 1",
            &[],
        )
        .await
        .context("reading the sequences")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Relations in `public` of any kind, by name: a database with none is empty.
pub async fn relations(db: &impl GenericClient) -> anyhow::Result<Vec<String>> {
    let rows = db
        .query_typed(
            "SELECT c.relname::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
              ORDER BY 1",
            &[],
        )
        .await
        .context("listing the target's relations")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The migrations recorded in `schema_migrations`: `(version, name, checksum)`.
pub async fn applied_migrations(
    db: &impl GenericClient,
) -> anyhow::Result<Vec<(i64, String, String)>> {
    let exists = db
        .query_typed_one(
            "SELECT to_regclass('public.schema_migrations') IS NOT NULL",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    anyhow::ensure!(
        exists,
        "the database has no schema_migrations table: it was not set up by `db up`"
    );
    let rows = db
        .query_typed(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .context("reading schema_migrations")?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// A string as an SQL literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
