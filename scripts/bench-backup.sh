#!/usr/bin/env bash
# Backup and restore benchmark: our `db backup` / `db restore` (release build) side by side with
# `pg_dump -Fc` / `pg_restore` on the same database of at least 1 GB, with wall time and peak
# memory (maximum resident set size, from /usr/bin/time -v). Writes the figures into the
# "Backup and restore" section of docs/BENCHMARKS.md.
#
# The dump goes to a local file (`db backup --to`): moto keeps objects in memory, so S3 through
# moto would measure moto. Needs Postgres on 127.0.0.1:5432 and about 4 GB of free disk.
#
#   scripts/bench-backup.sh            # about 1.1 GB (ROWS=3000000)
#   ROWS=6000000 scripts/bench-backup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
SERVER=${SERVER:-postgres://postgres@127.0.0.1:5432}
ROWS=${ROWS:-3000000}
WORK=${WORK:-$(mktemp -d)}
SRC=bench_backup_src
DST_OURS=bench_backup_ours
DST_PG=bench_backup_pg
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

psql_admin() { psql -q -v ON_ERROR_STOP=1 "$SERVER/postgres" "$@"; }
cleanup() {
  for db in $SRC $DST_OURS $DST_PG; do psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "bench: building db (release)"
cargo build --release --quiet --bin db
DB="$CARGO_TARGET_DIR/release/db"

for db in $SRC $DST_OURS $DST_PG; do
  psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
done

echo "bench: generating $ROWS rows"
DATABASE_URL="$SERVER/$SRC" "$DB" up >/dev/null
# A wide table made outside the migrations, as a hotfix or a reporting table would be: the
# backup describes the live schema.
psql -q -v ON_ERROR_STOP=1 "$SERVER/$SRC" <<'SQL'
CREATE TABLE bench_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    uuid NOT NULL,
    kind       text NOT NULL,
    payload    jsonb NOT NULL,
    note       text,
    amount     numeric(12, 2) NOT NULL,
    ratio      double precision NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX bench_events_user_created_idx ON bench_events (user_id, created_at);
SQL
psql -q -v ON_ERROR_STOP=1 "$SERVER/$SRC" <<SQL
INSERT INTO bench_events (user_id, kind, payload, note, amount, ratio, created_at)
SELECT md5(g::text)::uuid,
       (ARRAY['login', 'upload', 'refresh', 'logout'])[1 + g % 4],
       jsonb_build_object('ip', '10.0.' || (g % 250) || '.' || (g % 7), 'agent', 'Mozilla/5.0 (X11; Linux x86_64) bench ' || g % 1000, 'seq', g),
       repeat(md5((g * 31)::text), 5),
       (g % 100000) / 100.0,
       g / 7.0,
       '2026-01-01'::timestamptz + g * interval '1 second'
  FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE bench_events;
SQL
SIZE=$(psql -Atq "$SERVER/$SRC" -c "SELECT pg_database_size(current_database())")
PRETTY=$(psql -Atq "$SERVER/$SRC" -c "SELECT pg_size_pretty(pg_database_size(current_database()))")
echo "bench: source database is $PRETTY"

# Runs a command under /usr/bin/time -v; prints "seconds max_rss_kb".
measure() {
  local log="$WORK/time.log"
  /usr/bin/time -v "$@" >/dev/null 2>"$log" || { cat "$log" >&2; return 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log" | awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  echo "$wall $rss"
}

echo "bench: db backup"
read -r OURS_DUMP_S OURS_DUMP_KB < <(measure env DATABASE_URL="$SERVER/$SRC" "$DB" backup --to "$WORK/ours.sql.gz")
echo "bench: pg_dump -Fc"
read -r PG_DUMP_S PG_DUMP_KB < <(measure "$PG_BIN/pg_dump" -Fc -f "$WORK/pg.dump" "$SERVER/$SRC")
echo "bench: db restore"
read -r OURS_RESTORE_S OURS_RESTORE_KB < <(measure env DATABASE_URL="$SERVER/$DST_OURS" "$DB" restore --from "$WORK/ours.sql.gz")
echo "bench: pg_restore"
read -r PG_RESTORE_S PG_RESTORE_KB < <(measure "$PG_BIN/pg_restore" --exit-on-error -d "$SERVER/$DST_PG" "$WORK/pg.dump")

OURS_BYTES=$(stat -c %s "$WORK/ours.sql.gz")
PG_BYTES=$(stat -c %s "$WORK/pg.dump")
ROWS_BACK=$(psql -Atq "$SERVER/$DST_OURS" -c "SELECT count(*) FROM bench_events")
[ "$ROWS_BACK" = "$ROWS" ] || { echo "bench: restored $ROWS_BACK rows, expected $ROWS" >&2; exit 1; }

mb() { awk -v b="$1" 'BEGIN { printf "%.0f MB", b / 1000000 }'; }
mib_kb() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
PGV=$("$PG_BIN/pg_dump" --version | awk '{print $3}')

SECTION=$(cat <<MD
## Backup and restore

Measured by \`scripts/bench-backup.sh\` on $(date -u +%Y-%m-%d): $(nproc) CPUs ($CPU), $MEM of
memory, Postgres $PGV on the same machine. The database: our migrations plus one wide table
(\`bench_events\`, made outside the migrations, $ROWS rows of uuid, text, jsonb, numeric, float and
timestamptz columns, with a primary key and one secondary index),
$PRETTY ($(mb "$SIZE")) in all. Our dump is written to a local file (\`db backup --to\`), not S3:
the local S3 emulator (moto) keeps objects in memory and would measure itself. Release build;
one run each, on a noisy 2-core machine.

| | wall time | peak memory (max RSS) | output |
|---|---|---|---|
| \`db backup --to\` (gzip SQL + manifest) | ${OURS_DUMP_S} s | $(mib_kb "$OURS_DUMP_KB") | $(mb "$OURS_BYTES") |
| \`pg_dump -Fc\` | ${PG_DUMP_S} s | $(mib_kb "$PG_DUMP_KB") | $(mb "$PG_BYTES") |
| \`db restore --from\` (load, build keys and indexes, verify, commit) | ${OURS_RESTORE_S} s | $(mib_kb "$OURS_RESTORE_KB") | |
| \`pg_restore\` | ${PG_RESTORE_S} s | $(mib_kb "$PG_RESTORE_KB") | |

\`db restore\` includes its verification before its commit: every table's rows checksummed as
they are loaded and counted by the server, against the manifest, and the sequences and migration
version read back (\`pg_restore\` verifies nothing). Both build the primary key and the secondary
index after the data. \`db backup\` checksums every row as it goes. The weekly drill also reads
every table back after loading it (not measured here).
MD
)

FILE=docs/BENCHMARKS.md
[ -f "$FILE" ] || printf '# Benchmarks\n\n' >"$FILE"
python3 - "$FILE" "$SECTION" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2].rstrip() + "\n"
text = open(path).read()
pattern = re.compile(r"^## Backup and restore\n.*?(?=^## |\Z)", re.S | re.M)
if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text, count=1)
else:
    text = text.rstrip() + "\n\n" + section
open(path, "w").write(text.rstrip() + "\n")
PY
echo "bench: written to $FILE"
echo "$SECTION"
