#!/usr/bin/env bash
# Two builds of preheat against each other, in one run: `preheat analyze` on generated logs
# of each text format (combined, common, JSON lines, an nginx `log_format` string) and
# `preheat warm` from SQLite into a Redis of its own. The two builds take turns, round after
# round, and each keeps its best time, so the drift of a shared machine's speed falls on both
# alike. Prints Markdown. For a change's before-and-after figures:
#
#   git worktree add /tmp/before <commit> && (cd /tmp/before && cargo build --release)
#   bash benches/ab.sh /tmp/before/target/release/preheat target/release/preheat
#   LINES=500000 KEYS=200000 ROUNDS=3 bash benches/ab.sh A B   # quicker
set -euo pipefail

A=${1:?usage: ab.sh PREHEAT_A PREHEAT_B}
B=${2:?usage: ab.sh PREHEAT_A PREHEAT_B}
LINES=${LINES:-2000000}
KEYS=${KEYS:-500000}
ROUNDS=${ROUNDS:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
redis_pid=""
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for tool in redis-server redis-cli sqlite3; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
# shellcheck source=benches/products.sh
. "$root/benches/products.sh"
# shellcheck source=benches/timing.sh
. "$root/benches/timing.sh"
config="$root/data/preheat.toml"
nginx='$remote_addr - [$time_iso8601] $host "$request" $status $body_bytes_sent rt=$request_time cache=$upstream_cache_status "$http_user_agent"'

gen() { "$B" -q generate-log --config "$config" --lines "$LINES" --keys 100000 --seed 7 "$@"; }
gen --format combined -o "$work/combined.log"
gen --format common -o "$work/common.log"
gen --format json -o "$work/json.log"
gen --format "$nginx" -o "$work/nginx.log"
cat "$work"/*.log > /dev/null

echo "A: $A"
echo "B: $B"
echo
echo "$LINES lines per log, $(nproc) cores ($(date -u +%Y-%m-%d)), best of $ROUNDS alternated rounds"
echo
echo "| preheat analyze | A | B | B against A |"
echo "| --- | --- | --- | --- |"
for f in combined common json nginx; do
  format=$f
  [ "$f" = nginx ] && format=$nginx
  ta="" tb=""
  for _ in $(seq "$ROUNDS"); do
    ta=$(least "$ta" "$(timed "$A" -q analyze --config "$config" --format "$format" --profiles "$work/pa" --top 0 "$work/$f.log")")
    tb=$(least "$tb" "$(timed "$B" -q analyze --config "$config" --format "$format" --profiles "$work/pb" --top 0 "$work/$f.log")")
  done
  awk -v f="$f" -v a="$ta" -v b="$tb" 'BEGIN { printf "| %s | %.2f s | %.2f s | %+.1f%% |\n", f, a, b, 100 * (a / b - 1) }'
done

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
redis_pid=$!
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
products_db "$work/values.db" "$KEYS" 1024
products_config "sqlite://$work/values.db" "$KEYS" 500 > "$work/warm.toml"
products_log "$KEYS" > "$work/products.log"
"$B" -q analyze --config "$work/warm.toml" --profiles "$work/profiles" --top 0 "$work/products.log" >/dev/null
cat "$work/values.db" > /dev/null
rate() { # binary: keys/s of one warm into the emptied Redis
  redis-cli -p "$port" flushall >/dev/null
  "$1" -q warm --config "$work/warm.toml" --profiles "$work/profiles" --backend "redis://127.0.0.1:$port/0" --json \
    | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["keys_per_sec"]))'
}
ra=0 rb=0
for _ in $(seq "$ROUNDS"); do
  r=$(rate "$A"); [ "$r" -gt "$ra" ] && ra=$r
  r=$(rate "$B"); [ "$r" -gt "$rb" ] && rb=$r
done
echo
echo "| preheat warm, $KEYS keys of 1 KiB from SQLite into Redis | A | B | B against A |"
echo "| --- | --- | --- | --- |"
awk -v a="$ra" -v b="$rb" 'BEGIN { printf "| keys/s | %d | %d | %+.1f%% |\n", a, b, 100 * (b / a - 1) }'
