//! The schema of the backed-up database, as DDL generated from its live catalog inside the
//! snapshot, by the server's own `pg_get_*def`, `format_type` and `pg_get_expr`: whatever the
//! database holds (a hotfix table, a reporting view), not what the migrations say it should.
//! No `pg_dump` is needed, and the text follows the server's version.
//!
//! Covered, in the `public` schema: tables and columns (types, collations, defaults, NOT NULL,
//! identity, generated columns, serial sequences), check, primary key, unique, exclusion and
//! foreign-key constraints, indexes (partial and expression ones too), sequences, views and
//! materialized views, enum, domain and composite types, functions and procedures, triggers,
//! comments, and the extensions they use. Like `pg_restore`, the DDL is split in two: what the
//! data needs comes before it, and what only checks or speeds up the data (keys, indexes, foreign
//! keys, triggers) is built once, after it. Owners and grants are not carried: a restore creates
//! everything as the role that runs it.
//!
//! An object the backup cannot reproduce fails the backup before anything is written, naming
//! the object: a backup that will not restore is never written. Objects in other schemas are not
//! covered; they are named in the manifest and in a warning.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use tokio_postgres::GenericClient;

/// The DDL around the data.
#[derive(Debug, Default)]
pub struct Schema {
    /// Extensions, types, sequences, functions, tables and views: run before the data.
    pub before_data: String,
    /// Keys, indexes, foreign keys, deferred checks, materialized view contents, triggers and
    /// comments: run after the data.
    pub after_data: String,
    /// Schemas other than `public` that hold objects of their own: not in the backup.
    pub uncovered_schemas: Vec<String>,
}

/// `NOT (object is a member of an extension)`: those come back with `CREATE EXTENSION`.
fn own(catalog: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass \
         AND e.objid = {oid} AND e.deptype = 'e')"
    )
}

pub async fn describe(db: &impl GenericClient) -> anyhow::Result<Schema> {
    refuse_what_cannot_be_reproduced(db).await?;
    let mut before = String::new();
    let mut after = String::new();

    section(&mut before, "Extensions", &extensions(db).await?);
    let types = texts(db, &types_sql()).await.context("reading the types")?;
    section(&mut before, "Types", &types);
    let (early, late) = functions(db).await?;
    section(&mut before, "Functions", &early);
    let domain_checks = texts(db, &domain_checks_sql())
        .await
        .context("reading the domains' checks")?;
    section(&mut before, "Domain checks", &domain_checks);
    let sequences = texts(db, &sequences_sql())
        .await
        .context("reading the sequences")?;
    section(&mut before, "Sequences", &sequences);
    let tables = texts(db, &tables_sql())
        .await
        .context("reading the tables")?;
    section(&mut before, "Tables", &tables);
    let owned = texts(db, OWNED_SEQUENCES_SQL)
        .await
        .context("reading the sequences' owners")?;
    section(&mut before, "Sequence owners", &owned);
    let (views, refreshes) = views_and(db, late).await?;
    section(
        &mut before,
        "Views, and functions that read tables or views or use their row types",
        &views,
    );

    let constraints = texts(db, &constraints_sql())
        .await
        .context("reading the constraints")?;
    let (keys, rest): (Vec<_>, Vec<_>) = constraints
        .into_iter()
        .partition(|(kind, _)| kind != "f" && kind != "c");
    let (foreign, checks): (Vec<_>, Vec<_>) = rest.into_iter().partition(|(kind, _)| kind == "f");
    let second = |v: Vec<(String, String)>| v.into_iter().map(|(_, s)| s).collect::<Vec<_>>();
    section(
        &mut after,
        "Primary keys, unique and exclusion constraints",
        &second(keys),
    );
    let indexes = texts(db, &indexes_sql())
        .await
        .context("reading the indexes")?;
    section(&mut after, "Indexes", &indexes);
    section(&mut after, "Foreign keys", &second(foreign));
    section(&mut after, "Checks not validated", &second(checks));
    section(&mut after, "Materialized views' contents", &refreshes);
    let triggers = texts(db, &triggers_sql())
        .await
        .context("reading the triggers")?;
    section(&mut after, "Triggers", &triggers);
    let comments = texts(db, &comments_sql())
        .await
        .context("reading the comments")?;
    section(&mut after, "Comments", &comments);

    for (part, text) in [("before", &before), ("after", &after)] {
        loader_safe(text).with_context(|| format!("the schema {part} the data"))?;
    }
    Ok(Schema {
        before_data: before,
        after_data: after,
        uncovered_schemas: uncovered_schemas(db).await?,
    })
}

fn section(out: &mut String, title: &str, statements: &[String]) {
    if statements.is_empty() {
        return;
    }
    out.push_str(&format!("-- {title}\n"));
    for s in statements {
        out.push_str(s.trim_end());
        out.push('\n');
    }
    out.push('\n');
}

/// Rows of one text column, or of `(text, text)` pairs for [`texts`] of two columns.
trait FromRows: Sized {
    fn from_row(row: &tokio_postgres::Row) -> Self;
}
impl FromRows for String {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        row.get(0)
    }
}
impl FromRows for (String, String) {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        (row.get(0), row.get(1))
    }
}

async fn texts<T: FromRows>(db: &impl GenericClient, sql: &str) -> anyhow::Result<Vec<T>> {
    Ok(db
        .query_typed(sql, &[])
        .await?
        .iter()
        .map(T::from_row)
        .collect())
}

/// The restore reads the dump line by line, as `psql` does, and takes `BEGIN;`, `COMMIT;` and
/// `COPY ... FROM stdin;` lines for its own. A function body could hold such a line; a dump
/// with one would not restore, so the backup refuses it.
fn loader_safe(ddl: &str) -> anyhow::Result<()> {
    for line in ddl.lines() {
        if line == "BEGIN;"
            || line == "COMMIT;"
            || (line.starts_with("COPY ") && line.ends_with(" FROM stdin;"))
        {
            bail!("a definition holds the line {line:?}, which a restore would misread; indent it");
        }
    }
    Ok(())
}

async fn refuse_what_cannot_be_reproduced(db: &impl GenericClient) -> anyhow::Result<()> {
    let rel = own("pg_class", "c.oid");
    let sql = format!(
        "SELECT what FROM (
           SELECT format('%s %I.%I', CASE c.relkind WHEN 'p' THEN 'partitioned table'
                                                    ELSE 'foreign table' END, n.nspname, c.relname) AS what
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('p', 'f') AND {rel}
           UNION ALL
           SELECT format('table %I.%I, which inherits from another', n.nspname, c.relname)
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND {rel}
           UNION ALL
           SELECT format('typed table %I.%I', n.nspname, c.relname)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.reloftype <> 0 AND {rel}
           UNION ALL
           SELECT format('row-level security on %I.%I', n.nspname, c.relname)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND {rel}
              AND (c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))
           UNION ALL
           SELECT format('rule %I on %I.%I', r.rulename, n.nspname, c.relname)
             FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND r.rulename <> '_RETURN' AND {rel}
           UNION ALL
           SELECT format('%s %I.%I(%s)', CASE p.prokind WHEN 'a' THEN 'aggregate' ELSE 'window function' END,
                         n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'public' AND p.prokind IN ('a', 'w') AND {proc}
           UNION ALL
           SELECT format('%s %I.%I', CASE t.typtype WHEN 'b' THEN 'base type' WHEN 'r' THEN 'range type'
                                                    WHEN 'm' THEN 'multirange type' ELSE 'pseudo-type' END,
                         n.nspname, t.typname)
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = 'public' AND t.typtype IN ('b', 'r', 'm', 'p') AND {typ}
              AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
              AND NOT EXISTS (SELECT 1 FROM pg_range r WHERE r.rngmultitypid = t.oid)
           UNION ALL
           SELECT format('operator %s', o.oid::regoperator) FROM pg_operator o
             JOIN pg_namespace n ON n.oid = o.oprnamespace
            WHERE n.nspname = 'public' AND {op}
           UNION ALL
           SELECT format('collation %I.%I', n.nspname, c.collname) FROM pg_collation c
             JOIN pg_namespace n ON n.oid = c.collnamespace
            WHERE n.nspname = 'public' AND {coll}
           UNION ALL
           SELECT format('extended statistics %I.%I', n.nspname, s.stxname) FROM pg_statistic_ext s
             JOIN pg_namespace n ON n.oid = s.stxnamespace
            WHERE n.nspname = 'public'
           UNION ALL
           SELECT format('text search configuration %I.%I', n.nspname, c.cfgname) FROM pg_ts_config c
             JOIN pg_namespace n ON n.oid = c.cfgnamespace
            WHERE n.nspname = 'public' AND {cfg}
         ) unsupported ORDER BY 1",
        proc = own("pg_proc", "p.oid"),
        typ = own("pg_type", "t.oid"),
        op = own("pg_operator", "o.oid"),
        coll = own("pg_collation", "c.oid"),
        cfg = own("pg_ts_config", "c.oid"),
    );
    let found: Vec<String> = texts(db, &sql)
        .await
        .context("looking for objects a backup cannot reproduce")?;
    if !found.is_empty() {
        bail!(
            "the backup cannot reproduce {}; nothing was written",
            found.join(", ")
        );
    }
    Ok(())
}

async fn extensions(db: &impl GenericClient) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String, String)> = texts(
        db,
        "SELECT e.extname::text, n.nspname::text FROM pg_extension e
           JOIN pg_namespace n ON n.oid = e.extnamespace
          WHERE e.extname <> 'plpgsql' ORDER BY e.oid",
    )
    .await
    .context("reading the extensions")?;
    let quote = platform::db::quote_ident;
    let mut out = Vec::new();
    let mut schemas = BTreeSet::new();
    for (name, schema) in rows {
        if schema != "public" && schemas.insert(schema.clone()) {
            out.push(format!("CREATE SCHEMA IF NOT EXISTS {};", quote(&schema)));
        }
        out.push(format!(
            "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {};",
            quote(&name),
            quote(&schema)
        ));
    }
    Ok(out)
}

/// ` COLLATE "schema"."name"` when `coll` differs from the type's default collation `typcoll`.
fn collate_sql(coll: &str, typcoll: &str) -> String {
    format!(
        "CASE WHEN {coll} <> 0 AND {coll} <> {typcoll} THEN
           (SELECT format(' COLLATE %I.%I', cn.nspname, co.collname) FROM pg_collation co
              JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = {coll})
         ELSE '' END"
    )
}

/// Enum, composite and domain types (the domains' checks come later, after the functions they
/// may call), in the order they were created.
fn types_sql() -> String {
    format!(
        "SELECT CASE t.typtype
           WHEN 'e' THEN format('CREATE TYPE %I.%I AS ENUM (%s);', n.nspname, t.typname,
             (SELECT coalesce(string_agg(quote_literal(l.enumlabel), ', ' ORDER BY l.enumsortorder), '')
                FROM pg_enum l WHERE l.enumtypid = t.oid))
           WHEN 'c' THEN format('CREATE TYPE %I.%I AS (%s);', n.nspname, t.typname,
             (SELECT coalesce(string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                                || {attcoll}, ', ' ORDER BY a.attnum), '')
                FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
               WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
           ELSE format('CREATE DOMAIN %I.%I AS %s%s%s%s;', n.nspname, t.typname,
             format_type(t.typbasetype, t.typtypmod), {domcoll},
             CASE WHEN t.typdefaultbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(t.typdefaultbin, 0) ELSE '' END,
             CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END)
         END
           FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
          WHERE n.nspname = 'public' AND {typ}
            AND (t.typtype IN ('e', 'd')
                 OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
          ORDER BY t.oid",
        attcoll = collate_sql("a.attcollation", "at.typcollation"),
        domcoll = collate_sql("t.typcollation", "bt.typcollation"),
        typ = own("pg_type", "t.oid"),
    )
}

fn domain_checks_sql() -> String {
    format!(
        "SELECT format('ALTER DOMAIN %I.%I ADD CONSTRAINT %I %s;', n.nspname, t.typname, c.conname,
                       pg_get_constraintdef(c.oid))
           FROM pg_constraint c JOIN pg_type t ON t.oid = c.contypid
           JOIN pg_namespace n ON n.oid = t.typnamespace
          WHERE n.nspname = 'public' AND c.contype = 'c' AND {typ}
          ORDER BY t.oid, c.conname",
        typ = own("pg_type", "t.oid"),
    )
}

/// Functions and procedures: `(early, late)`. Late ones are created after the tables and views:
/// a body in SQL-standard form is parsed at once, and argument or result types may be row types.
/// Other bodies are not checked at creation (`check_function_bodies` is off in the dump).
async fn functions(db: &impl GenericClient) -> anyhow::Result<(Vec<String>, Vec<Late>)> {
    let sql = format!(
        "SELECT p.oid, (p.prosqlbody IS NOT NULL OR EXISTS (
                   SELECT 1 FROM unnest(p.proargtypes::oid[] || coalesce(p.proallargtypes, '{{}}') || p.prorettype) u(t)
                     JOIN pg_type ty ON ty.oid = u.t
                     LEFT JOIN pg_type el ON el.oid = ty.typelem
                     JOIN pg_class rc ON rc.oid = coalesce(nullif(ty.typrelid, 0), el.typrelid)
                    WHERE rc.relkind IN ('r', 'v', 'm')))::text,
                pg_get_functiondef(p.oid) || ';'
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p') AND {proc}
          ORDER BY p.oid",
        proc = own("pg_proc", "p.oid"),
    );
    let rows = db
        .query_typed(&sql, &[])
        .await
        .context("reading the functions")?;
    let (mut early, mut late) = (Vec::new(), Vec::new());
    for row in rows {
        let definition: String = row.get(2);
        if row.get::<_, String>(1) == "true" {
            late.push(Late {
                oid: row.get(0),
                ddl: definition,
                refresh: None,
            });
        } else {
            early.push(definition);
        }
    }
    Ok((early, late))
}

fn sequence_options(s: &str) -> String {
    format!(
        "format('INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s%s',
                {s}.seqincrement, {s}.seqmin, {s}.seqmax, {s}.seqstart, {s}.seqcache,
                CASE WHEN {s}.seqcycle THEN ' CYCLE' ELSE '' END)"
    )
}

/// Sequences of their own and of serial columns; identity sequences come with their column.
fn sequences_sql() -> String {
    format!(
        "SELECT format('CREATE SEQUENCE %I.%I AS %s %s;', n.nspname, c.relname,
                       format_type(s.seqtypid, NULL), {options})
           FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND NOT EXISTS (
                SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype IN ('i', 'e'))
          ORDER BY c.oid",
        options = sequence_options("s"),
    )
}

const OWNED_SEQUENCES_SQL: &str = "
    SELECT format('ALTER SEQUENCE %I.%I OWNED BY %I.%I.%I;', n.nspname, c.relname,
                  tn.nspname, t.relname, a.attname)
      FROM pg_depend d
      JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S'
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_class t ON t.oid = d.refobjid
      JOIN pg_namespace tn ON tn.oid = t.relnamespace
      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.deptype = 'a' AND n.nspname = 'public'
     ORDER BY 1";

/// Each table with its columns and its validated checks (checked row by row as the data goes
/// in, like NOT NULL); keys and indexes are built after the data.
fn tables_sql() -> String {
    format!(
        "SELECT format('CREATE %sTABLE %I.%I (%s)%s;',
                       CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END,
                       n.nspname, c.relname,
                       concat_ws(', ', cols.list, checks.list),
                       CASE WHEN c.reloptions IS NOT NULL
                            THEN ' WITH (' || array_to_string(c.reloptions, ', ') || ')' ELSE '' END)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           CROSS JOIN LATERAL (
             SELECT string_agg(
                      format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                      || {attcoll}
                      || CASE WHEN a.attgenerated = 's'
                                THEN ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
                              WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid)
                              ELSE '' END
                      || CASE WHEN a.attidentity IN ('a', 'd') THEN
                           format(' GENERATED %s AS IDENTITY (SEQUENCE NAME %I.%I %s)',
                                  CASE a.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END,
                                  idn.nspname, idc.relname, {identity})
                         ELSE '' END
                      || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                      ', ' ORDER BY a.attnum) AS list
               FROM pg_attribute a
               JOIN pg_type at ON at.oid = a.atttypid
               LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
               LEFT JOIN pg_depend idd ON idd.refclassid = 'pg_class'::regclass AND idd.refobjid = c.oid
                    AND idd.refobjsubid = a.attnum AND idd.classid = 'pg_class'::regclass AND idd.deptype = 'i'
               LEFT JOIN pg_class idc ON idc.oid = idd.objid
               LEFT JOIN pg_namespace idn ON idn.oid = idc.relnamespace
               LEFT JOIN pg_sequence ids ON ids.seqrelid = idc.oid
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) cols
           CROSS JOIN LATERAL (
             SELECT string_agg(format('CONSTRAINT %I %s', k.conname, pg_get_constraintdef(k.oid)),
                               ', ' ORDER BY k.conname) AS list
               FROM pg_constraint k
              WHERE k.conrelid = c.oid AND k.contype = 'c' AND k.convalidated) checks
          WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relpersistence <> 't' AND {rel}
          ORDER BY c.oid",
        attcoll = collate_sql("a.attcollation", "at.typcollation"),
        identity = sequence_options("ids"),
        rel = own("pg_class", "c.oid"),
    )
}

/// An object created after the tables, in an order of what it reads: a view, a materialized
/// view (with the `REFRESH` that fills it after the data) or a function of [`functions`].
struct Late {
    oid: u32,
    ddl: String,
    refresh: Option<String>,
}

/// Views and materialized views together with the `late` functions, each after the views and
/// functions it reads, and the `REFRESH` of each populated materialized view, in that order.
async fn views_and(
    db: &impl GenericClient,
    late: Vec<Late>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let sql = format!(
        "SELECT c.oid, c.relkind::text, format('%I.%I', n.nspname, c.relname),
                CASE WHEN c.reloptions IS NOT NULL
                     THEN ' WITH (' || array_to_string(c.reloptions, ', ') || ')' ELSE '' END,
                pg_get_viewdef(c.oid), c.relispopulated
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm') AND {rel}
          ORDER BY c.oid",
        rel = own("pg_class", "c.oid"),
    );
    let rows = db
        .query_typed(&sql, &[])
        .await
        .context("reading the views")?;
    // What each view (through its rewrite rule) and each function reads. Object ids are unique
    // across the catalogs, so views and functions share one graph.
    let uses = db
        .query_typed(
            "SELECT CASE WHEN d.classid = 'pg_rewrite'::regclass
                         THEN (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = d.objid)
                         ELSE d.objid END,
                    d.refobjid
               FROM pg_depend d
              WHERE d.classid IN ('pg_rewrite'::regclass, 'pg_proc'::regclass)
                AND d.refclassid IN ('pg_class'::regclass, 'pg_proc'::regclass)",
            &[],
        )
        .await
        .context("reading what the views and functions read")?;
    let mut reads: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for row in &uses {
        let (object, uses): (u32, u32) = (row.get(0), row.get(1));
        if object != uses {
            reads.entry(object).or_default().insert(uses);
        }
    }
    let mut pending: Vec<Late> = rows
        .iter()
        .map(|r| {
            let (kind, name, with): (String, String, String) = (r.get(1), r.get(2), r.get(3));
            let body: String = r.get(4);
            let body = body.trim().trim_end_matches(';');
            let materialized = kind == "m";
            Late {
                oid: r.get(0),
                ddl: if materialized {
                    format!("CREATE MATERIALIZED VIEW {name}{with} AS\n{body}\nWITH NO DATA;")
                } else {
                    format!("CREATE VIEW {name}{with} AS\n{body};")
                },
                refresh: (materialized && r.get::<_, bool>(5))
                    .then(|| format!("REFRESH MATERIALIZED VIEW {name};")),
            }
        })
        .chain(late)
        .collect();
    // A topological sort (Kahn's algorithm; a few dozen objects at most, so quadratic is fine).
    let (mut ddl, mut refreshes) = (Vec::new(), Vec::new());
    while !pending.is_empty() {
        let waiting: BTreeSet<u32> = pending.iter().map(|v| v.oid).collect();
        let ready = pending.iter().position(|v| {
            reads
                .get(&v.oid)
                .is_none_or(|r| r.iter().all(|o| !waiting.contains(o)))
        });
        let Some(i) = ready else {
            bail!("views or functions read each other in a cycle");
        };
        let object = pending.remove(i);
        ddl.push(object.ddl);
        refreshes.extend(object.refresh);
    }
    Ok((ddl, refreshes))
}

/// Table constraints built after the data, as `(contype, statement)`: keys and exclusions,
/// foreign keys, and checks not validated (the rows they were added over may break them).
fn constraints_sql() -> String {
    format!(
        "SELECT k.contype::text,
                format('ALTER TABLE ONLY %I.%I ADD CONSTRAINT %I %s;', n.nspname, c.relname, k.conname,
                       pg_get_constraintdef(k.oid))
           FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND {rel}
            AND (k.contype IN ('p', 'u', 'x', 'f') OR (k.contype = 'c' AND NOT k.convalidated))
          ORDER BY c.oid, k.conname",
        rel = own("pg_class", "c.oid"),
    )
}

/// Indexes other than those of keys and exclusions.
fn indexes_sql() -> String {
    format!(
        "SELECT pg_get_indexdef(i.indexrelid) || ';'
           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
           JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm') AND {rel}
            AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                             WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
          ORDER BY ic.relname",
        rel = own("pg_class", "c.oid"),
    )
}

fn triggers_sql() -> String {
    format!(
        "SELECT pg_get_triggerdef(t.oid) || ';' || CASE t.tgenabled
                  WHEN 'D' THEN format(E'\\nALTER TABLE %I.%I DISABLE TRIGGER %I;', n.nspname, c.relname, t.tgname)
                  WHEN 'R' THEN format(E'\\nALTER TABLE %I.%I ENABLE REPLICA TRIGGER %I;', n.nspname, c.relname, t.tgname)
                  WHEN 'A' THEN format(E'\\nALTER TABLE %I.%I ENABLE ALWAYS TRIGGER %I;', n.nspname, c.relname, t.tgname)
                  ELSE '' END
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND NOT t.tgisinternal AND {rel}
          ORDER BY c.oid, t.tgname",
        rel = own("pg_class", "c.oid"),
    )
}

/// Comments on every covered kind of object. A comment on anything else fails the backup
/// (see [`refuse_what_cannot_be_reproduced`]) only if the object itself is not covered.
fn comments_sql() -> String {
    format!(
        "SELECT format('COMMENT ON %s IS %L;', target, description) FROM (
           SELECT CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                 WHEN 'S' THEN 'SEQUENCE' WHEN 'i' THEN 'INDEX' ELSE 'TYPE' END
                  || format(' %I.%I', n.nspname, c.relname) AS target, d.description
             FROM pg_description d JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND d.objoid = c.oid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE d.objsubid = 0 AND n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S', 'i', 'c') AND {rel}
           UNION ALL
           SELECT format('COLUMN %I.%I.%I', n.nspname, c.relname, a.attname), d.description
             FROM pg_description d JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND d.objoid = c.oid
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE d.objsubid > 0 AND n.nspname = 'public' AND {rel}
           UNION ALL
           SELECT format('%s %I.%I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, n.nspname, t.typname),
                  d.description
             FROM pg_description d JOIN pg_type t ON d.classoid = 'pg_type'::regclass AND d.objoid = t.oid
             JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c') AND {typ}
           UNION ALL
           SELECT format('%s %I.%I(%s)', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                         n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)), d.description
             FROM pg_description d JOIN pg_proc p ON d.classoid = 'pg_proc'::regclass AND d.objoid = p.oid
             JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'public' AND {proc}
           UNION ALL
           SELECT CASE WHEN k.contypid <> 0
                       THEN format('CONSTRAINT %I ON DOMAIN %I.%I', k.conname, tn.nspname, t.typname)
                       ELSE format('CONSTRAINT %I ON %I.%I', k.conname, cn.nspname, c.relname) END,
                  d.description
             FROM pg_description d JOIN pg_constraint k ON d.classoid = 'pg_constraint'::regclass AND d.objoid = k.oid
             LEFT JOIN pg_class c ON c.oid = k.conrelid LEFT JOIN pg_namespace cn ON cn.oid = c.relnamespace
             LEFT JOIN pg_type t ON t.oid = k.contypid LEFT JOIN pg_namespace tn ON tn.oid = t.typnamespace
            WHERE coalesce(cn.nspname, tn.nspname) = 'public'
           UNION ALL
           SELECT format('TRIGGER %I ON %I.%I', g.tgname, n.nspname, c.relname), d.description
             FROM pg_description d JOIN pg_trigger g ON d.classoid = 'pg_trigger'::regclass AND d.objoid = g.oid
             JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND {rel}
         ) comments ORDER BY 1",
        rel = own("pg_class", "c.oid"),
        typ = own("pg_type", "t.oid"),
        proc = own("pg_proc", "p.oid"),
    )
}

/// Schemas besides `public` (and the system's) that hold a relation, function or type that no
/// extension owns.
async fn uncovered_schemas(db: &impl GenericClient) -> anyhow::Result<Vec<String>> {
    let sql = format!(
        "SELECT n.nspname::text FROM pg_namespace n
          WHERE n.nspname NOT IN ('public', 'pg_catalog', 'information_schema', 'pg_toast')
            AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
            AND (EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND {rel})
                 OR EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = n.oid AND {proc})
                 OR EXISTS (SELECT 1 FROM pg_type t WHERE t.typnamespace = n.oid AND t.typrelid = 0
                              AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid) AND {typ}))
          ORDER BY 1",
        rel = own("pg_class", "c.oid"),
        proc = own("pg_proc", "p.oid"),
        typ = own("pg_type", "t.oid"),
    );
    texts(db, &sql)
        .await
        .context("looking for schemas the backup does not cover")
}
