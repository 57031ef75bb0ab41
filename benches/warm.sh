#!/usr/bin/env bash
# Warm benchmarks, against servers of their own (throwaway Redis and PostgreSQL, random ports,
# temp dirs). Prints Markdown (quoted in the README).
#
#   1. Redis: `preheat warm` of KEYS keys with VALUE-byte values (SQLite source, default
#      batch size and concurrency) against `redis-benchmark -t set -P 64 -d VALUE` on the same
#      server in the same run; with the default `invalidations = "verify"` (a second read of
#      every written key) and with `invalidations = "off"`, to show what the check costs.
#   2. PostgreSQL: warming PG_ROWS rows into the same Redis batched (batch_size = 500) against
#      one query and one write per key (batch_size = 1), with peak memory.
#
#   bash benches/warm.sh
#   KEYS=200000 PG_ROWS=50000 bash benches/warm.sh   # quicker
set -euo pipefail

KEYS=${KEYS:-1000000}
VALUE=${VALUE:-1024}
PG_ROWS=${PG_ROWS:-200000}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
chmod 755 "$work"
redis_pid=""
pg_data=""
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
  [ -n "$pg_data" ] && runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

for tool in redis-server redis-benchmark sqlite3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
# shellcheck source=benches/products.sh
. "$root/benches/products.sh"
preheat="$root/target/release/preheat"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Runs a command under GNU time; prints its peak RSS in MiB on fd 3.
peak() { /usr/bin/time -f "%M" -o "$work/time" "$@"; awk '{ printf "%.0f", $1 / 1024 }' "$work/time" >&3; }

echo "Warm benchmarks, $(nproc) cores ($(date -u +%Y-%m-%d))"

# --- 1. Redis -------------------------------------------------------------------------------
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
redis_pid=$!
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done

rps=$(redis-benchmark -p "$port" -t set -P 64 -d "$VALUE" -n "$KEYS" -r "$KEYS" --csv -q \
  | awk -F'"' '/^"SET"/ { print $4 }')
redis-cli -p "$port" flushall >/dev/null # our own instance
# The command preheat sends: only-if-absent, with a TTL.
value=$(head -c "$VALUE" /dev/zero | tr '\0' v)
rps_nx=$(redis-benchmark -p "$port" -P 64 -n "$KEYS" -r "$KEYS" --csv -q \
  set "product:__rand_int__" "$value" nx px 3600000 | awk -F'"' 'NR == 2 { print $4 }')
redis-cli -p "$port" flushall >/dev/null

products_db "$work/values.db" "$KEYS" "$VALUE"
sync # the database's pages reach the disk now, not during the measurement
products_config "sqlite://$work/values.db" "$KEYS" 500 > "$work/sqlite.toml"
products_config "sqlite://$work/values.db" "$KEYS" 500 off > "$work/sqlite-off.toml"
products_log "$KEYS" > "$work/redis.log"
"$preheat" -q analyze --config "$work/sqlite.toml" --profiles "$work/p1" --top 0 "$work/redis.log" >/dev/null
cat "$work/values.db" > /dev/null # warm the page cache

t0=$(date +%s.%N)
peak "$preheat" -q warm --config "$work/sqlite.toml" --profiles "$work/p1" \
  --backend "redis://127.0.0.1:$port" --json > "$work/redis.json" 3> "$work/redis.rss"
t1=$(date +%s.%N)
keys=$(redis-cli -p "$port" dbsize)
read -r written run_ms kps < <(python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(r["written"], r["duration_ms"], round(r["keys_per_sec"]))' "$work/redis.json")
# The verifying read's cost: both settings, alternated twice on an emptied Redis, best of each
# (single runs on a shared 2-core machine differed by more than the cost itself).
warm_run() { # config; prints "duration_ms keys_per_sec"
  redis-cli -p "$port" flushall >/dev/null # our own instance
  "$preheat" -q warm --config "$1" --profiles "$work/p1" --backend "redis://127.0.0.1:$port" --json > "$work/run.json"
  python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(r["duration_ms"], round(r["keys_per_sec"]))' "$work/run.json"
}
best_on=$kps best_off=0
for _ in 1 2; do
  read -r _ k < <(warm_run "$work/sqlite-off.toml"); [ "$k" -gt "$best_off" ] && best_off=$k
  read -r _ k < <(warm_run "$work/sqlite.toml"); [ "$k" -gt "$best_on" ] && best_on=$k
done

echo
echo "### Redis: $KEYS keys of $VALUE bytes, from SQLite"
echo
echo "| | keys/s | time | peak RSS |"
echo "| --- | --- | --- | --- |"
awk -v r="$rps" -v n="$KEYS" 'BEGIN { printf "| redis-benchmark -t set -P 64 -d '"$VALUE"' | %.0f | %.2f s | |\n", r, n / r }'
awk -v r="$rps_nx" -v n="$KEYS" 'BEGIN { printf "| redis-benchmark -P 64, SET key value NX PX ttl | %.0f | %.2f s | |\n", r, n / r }'
awk -v k="$kps" -v ms="$run_ms" -v rss="$(cat "$work/redis.rss")" \
  'BEGIN { printf "| preheat warm (the run: load, validate, fetch, write, read again to verify) | %.0f | %.2f s | %s MiB |\n", k, ms / 1000, rss }'
awk -v on="$best_on" -v off="$best_off" \
  'BEGIN { printf "| the same, best of 3 runs / `invalidations = \"off\"` (no second read), best of 2 | %.0f / %.0f | | |\n", on, off }'
awk -v n="$written" -v a="$t0" -v b="$t1" \
  'BEGIN { printf "| preheat warm (whole command, with reading the profile and planning) | %.0f | %.2f s | |\n", n / (b - a), b - a }'
echo
awk -v k="$best_on" -v r="$rps" -v r2="$rps_nx" -v keys="$keys" -v w="$written" -v off="$best_off" \
  'BEGIN { printf "The warm run reaches **%.0f%%** of redis-benchmark (%.0f%% of its `SET NX PX` run; best runs); %d keys written, %d in Redis. Without the verifying second read it reaches %.0f%%: the check costs %.0f%% of the rate.\n", 100 * k / r, 100 * k / r2, w, keys, 100 * off / r, 100 * (1 - k / off) }'

# --- 2. PostgreSQL ----------------------------------------------------------------------------
if [ -z "$pg_bin" ] || ! id postgres >/dev/null 2>&1; then
  echo; echo "(PostgreSQL part skipped: no server binaries or no postgres user)"; exit 0
fi
pg_data="$work/pg"
mkdir "$pg_data" && chown postgres "$pg_data"
pg_port=$(free_port)
runuser -u postgres -- "$pg_bin/initdb" -A trust -U postgres --no-sync -D "$pg_data" >/dev/null
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w \
  -o "-p $pg_port -k $pg_data -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
pg_url="postgres://postgres@127.0.0.1:$pg_port/postgres"
psql -q "$pg_url" -c "CREATE TABLE products (id bigint PRIMARY KEY, body text NOT NULL);
  INSERT INTO products SELECT i, repeat(md5(i::text), $VALUE / 32) FROM generate_series(1, $PG_ROWS) i;"
psql -q "$pg_url" -c "VACUUM ANALYZE products;"
products_log "$PG_ROWS" > "$work/pg.log.txt"
products_config "$pg_url" "$PG_ROWS" 500 > "$work/pg-batched.toml"
products_config "$pg_url" "$PG_ROWS" 1 > "$work/pg-single.toml"
"$preheat" -q analyze --config "$work/pg-batched.toml" --profiles "$work/p2" --top 0 "$work/pg.log.txt" >/dev/null

pg_run() { # config; prints "written ms budget"
  redis-cli -p "$port" flushall >/dev/null
  peak "$preheat" -q warm --config "$1" --profiles "$work/p2" --backend "redis://127.0.0.1:$port" --json > "$work/pg.json" 3> "$work/pg.rss"
  python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(r["written"], r["duration_ms"], round(r["memory_budget"] / 2**20))' "$work/pg.json"
}
read -r b_written b_ms budget < <(pg_run "$work/pg-batched.toml")
b_rss=$(cat "$work/pg.rss")
read -r s_written s_ms _ < <(pg_run "$work/pg-single.toml")
s_rss=$(cat "$work/pg.rss")

echo
echo "### PostgreSQL: $PG_ROWS rows of $VALUE bytes into Redis"
echo
echo "| | keys written | time | keys/s | peak RSS |"
echo "| --- | --- | --- | --- | --- |"
awk -v n="$b_written" -v ms="$b_ms" -v rss="$b_rss" 'BEGIN { printf "| batched (500 keys per query) | %d | %.2f s | %.0f | %s MiB |\n", n, ms / 1000, n * 1000 / ms, rss }'
awk -v n="$s_written" -v ms="$s_ms" -v rss="$s_rss" 'BEGIN { printf "| one query and one write per key | %d | %.2f s | %.0f | %s MiB |\n", n, ms / 1000, n * 1000 / ms, rss }'
echo
awk -v bn="$b_written" -v b="$b_ms" -v sn="$s_written" -v s="$s_ms" -v budget="$budget" \
  'BEGIN { printf "Batching is **%.0fx** faster (keys/s); the memory budget was %d MiB (50%% of available memory).\n", (bn / b) / (sn / s), budget }'
