#!/usr/bin/env bash
# The Fargate tasks' entrypoint: runs `db backup` or `db drill`, then reports the outcome as the
# backup function does, with one EMF line on stdout: BackupSucceeded or DrillSucceeded, 1 or 0,
# in the namespace Backend/Backup with the dimension Environment (APP_ENV). Before it, a `db` that
# finished writes its own line (`--metrics`): BackupBytes and BackupDuration, or DrillBytes and
# DrillDuration. The awslogs driver ships the lines to CloudWatch Logs, which turns them into the
# metrics the alarms and the dashboard show.
#
#   entrypoint backup   DATABASE_URL names the primary without a password; ECS injects the
#                       master password as DATABASE_PASSWORD, which is added here, percent-encoded.
#   entrypoint drill    DATABASE_URL names the task's own Postgres on the loopback, where the drill
#                       creates, checks and drops its scratch database. Any other host is refused:
#                       the drill must never restore into RDS.
#
# TASK_TIMEOUT (a duration for timeout(1), default 6h) bounds a run that hangs; it then counts as
# a failure. A stop of the task (SIGTERM) is passed on to `db` and counts as a failure too.
set -uo pipefail
export LC_ALL=C

task=${1:-}
case "$task" in
  backup) metric=BackupSucceeded ;;
  drill) metric=DrillSucceeded ;;
  *)
    echo "usage: entrypoint backup|drill" >&2
    exit 2
    ;;
esac

environment=${APP_ENV:-}
if [[ ! "$environment" =~ ^[a-z]+$ ]]; then
  echo "entrypoint: APP_ENV must be set (staging or production)" >&2
  exit 2
fi

now_ms() { date +%s%3N; }
started=$(now_ms)

# One EMF object: the metric, its dimension, and what an operator reading the log wants next to it.
report() {
  local value=$1 status=$2
  printf '{"_aws":{"Timestamp":%s,"CloudWatchMetrics":[{"Namespace":"Backend/Backup","Dimensions":[["Environment"]],"Metrics":[{"Name":"%s","Unit":"Count"}]}]},"Environment":"%s","%s":%d,"task":"%s","exit_status":%d,"duration_ms":%d}\n' \
    "$(now_ms)" "$metric" "$environment" "$metric" "$value" "$task" "$status" "$(($(now_ms) - started))"
}

fail() {
  echo "entrypoint: $1" >&2
  report 0 2
  exit 2
}

# RFC 3986 unreserved characters stay, every other byte becomes %XX.
percent_encode() {
  local raw=$1 out="" c hex i
  for ((i = 0; i < ${#raw}; i++)); do
    c=${raw:i:1}
    case "$c" in
      [A-Za-z0-9._~-]) out+=$c ;;
      *)
        printf -v hex '%%%02X' "'$c"
        out+=$hex
        ;;
    esac
  done
  printf '%s' "$out"
}

url=${DATABASE_URL:-}
[ -n "$url" ] || fail "DATABASE_URL is not set"
if [ -n "${DATABASE_PASSWORD:-}" ]; then
  user_part=${url%%@*}
  [[ "$user_part" =~ ^postgres(ql)?://[^:@/]+$ ]] ||
    fail "DATABASE_URL must name a user and no password when DATABASE_PASSWORD is set"
  url="$user_part:$(percent_encode "$DATABASE_PASSWORD")@${url#*@}"
fi
unset DATABASE_PASSWORD

if [ "$task" = drill ]; then
  host=${url#*://}
  case "$host" in *@*) host=${host#*@} ;; esac
  host=${host%%[:/?]*}
  case "$host" in
    127.0.0.1 | localhost) ;;
    *) fail "the drill restores only into the task's own Postgres (127.0.0.1), not into $host" ;;
  esac
fi

export DATABASE_URL=$url
timeout --kill-after=60s "${TASK_TIMEOUT:-6h}" db "$task" --metrics &
child=$!
# As PID 1 this shell would ignore SIGTERM; pass it on instead, then wait for db's own exit.
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"
status=$?
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  status=$?
done

if [ "$status" -eq 0 ]; then
  report 1 0
else
  [ "$status" -eq 124 ] && echo "entrypoint: db $task ran past TASK_TIMEOUT (${TASK_TIMEOUT:-6h})" >&2
  echo "entrypoint: db $task failed (exit status $status)" >&2
  report 0 "$status"
fi
exit "$status"
