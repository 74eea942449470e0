//! The data a backup covers, read from the system catalogs inside the snapshot: every ordinary
//! table of the `public` schema that no extension owns (temporary tables are left out, and views
//! and materialized views are rebuilt from their definitions) and its sequences. The schema
//! around the data is described by [`crate::schema`].

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

    /// The statement that loads this table in a dump.
    pub fn copy_in_statement(&self) -> String {
        format!(
            "COPY {} ({}) FROM stdin;",
            self.qualified(),
            self.column_list()
        )
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
                AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                                   AND e.objid = c.oid AND e.deptype = 'e')
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

/// Sequences that have handed out a value, with their `last_value`.
pub async fn sequences(db: &impl GenericClient) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = db
        .query_typed(
            "SELECT s.sequencename::text, s.last_value FROM pg_sequences s
              WHERE s.schemaname = 'public' AND s.last_value IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                                   AND e.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
                                   AND e.deptype = 'e')
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
                AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                                   AND e.objid = c.oid AND e.deptype = 'e')
              ORDER BY 1",
            &[],
        )
        .await
        .context("listing the target's relations")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The newest migration recorded in `schema_migrations`, if the database has that table.
pub async fn migration_version(db: &impl GenericClient) -> anyhow::Result<Option<i64>> {
    let exists = db
        .query_typed_one(
            "SELECT to_regclass('public.schema_migrations') IS NOT NULL",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    if !exists {
        return Ok(None);
    }
    Ok(db
        .query_typed_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .context("reading schema_migrations")?
        .get(0))
}

/// A string as an SQL literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
