#!/usr/bin/env bash
# Warm benchmarks, against servers of their own (throwaway Redis and PostgreSQL, random ports,
# temp dirs). Prints Markdown (quoted in the README).
#
#   1. Redis: `preheat warm` of KEYS keys with VALUE-byte values (SQLite source, default
#      batch size and concurrency) against `redis-benchmark -t set -P 64 -d VALUE` on the same
#      server in the same run, and against redis-benchmark sending the warm's own command
#      (`SET key value NX PX ttl`) on keys Redis does not hold yet; with the default
#      `invalidations = "verify"` (a second read of every written key) and with
#      `invalidations = "off"`, to show what the check costs; with the CPU time per key of
#      redis-server and of the client, which bounds the rate.
#   2. PostgreSQL: warming PG_ROWS rows into the same Redis batched (batch_size = 500) against
#      one query and one write per key (batch_size = 1), alternated for PG_ROUNDS rounds, with
#      peak memory.
#   3. MariaDB (MySQL's protocol): the same, PG_ROWS rows, batched against one query per key.
#   4. memcached: `preheat warm` of the KEYS keys of part 1 into a memcached of its own,
#      against memcslap (libmemcached-tools: one request at a time per thread) and a pipelined
#      client of this script's own sending the warm's command (`ms key S T ME`, add) in
#      batches of 500, alternated for three rounds.
#
#   bash benches/warm.sh
#   KEYS=200000 PG_ROWS=50000 PG_ROUNDS=1 bash benches/warm.sh   # quicker
set -euo pipefail

KEYS=${KEYS:-1000000}
VALUE=${VALUE:-1024}
PG_ROWS=${PG_ROWS:-200000}
PG_ROUNDS=${PG_ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
chmod 755 "$work"
redis_pid=""
pg_data=""
my_pid=""
mc_pid=""
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
  [ -n "$my_pid" ] && kill "$my_pid" 2>/dev/null || true
  [ -n "$mc_pid" ] && kill "$mc_pid" 2>/dev/null || true
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

echo "Warm benchmarks, $(nproc) cores ($(date -u +%Y-%m-%d))"

# --- 1. Redis -------------------------------------------------------------------------------
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
redis_pid=$!
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
tck=$(getconf CLK_TCK)
# CPU seconds redis-server has used so far.
redis_cpu() { awk -v t="$tck" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$redis_pid/stat"; }

products_db "$work/values.db" "$KEYS" "$VALUE"
sync # the database's pages reach the disk now, not during the measurement
products_config "sqlite://$work/values.db" "$KEYS" 500 > "$work/verify.toml"
products_config "sqlite://$work/values.db" "$KEYS" 500 off > "$work/off.toml"
products_log "$KEYS" > "$work/redis.log"
"$preheat" -q analyze --config "$work/verify.toml" --profiles "$work/p1" --top 0 "$work/redis.log" >/dev/null
cat "$work/values.db" > /dev/null # warm the page cache
value=$(head -c "$VALUE" /dev/zero | tr '\0' v)

# One measured run on an emptied Redis (our own instance). Prints "keys/s wall_s
# server_cpu_s client_cpu_s", where the client is the command itself (GNU time, user + sys).
measure() { # label command...
  local label=$1; shift
  redis-cli -p "$port" flushall >/dev/null
  local before t0 t1
  before=$(redis_cpu)
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$work/time" "$@" > "$work/out"
  t1=$(date +%s.%N)
  local rate
  case $label in
    bench) rate=$(awk -F'"' 'NR == 2 { print $4 }' "$work/out") ;;
    *) rate=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["keys_per_sec"]))' "$work/out") ;;
  esac
  awk -v r="$rate" -v a="$t0" -v b="$t1" -v s0="$before" -v s1="$(redis_cpu)" \
    '{ printf "%s %.2f %.2f %.2f %d\n", r, b - a, s1 - s0, $1 + $2, $3 / 1024 }' "$work/time"
}
# The four loads, alternated for three rounds so that drift in this shared machine's speed
# falls on all of them alike; each keeps its best round.
declare -A best
keep() { # name line
  local old=${best[$1]:-0 0 0 0 0}
  if awk -v n="${2%% *}" -v o="${old%% *}" 'BEGIN { exit !(n > o) }'; then best[$1]=$2; fi
}
warm=("$preheat" -q warm --profiles "$work/p1" --backend "redis://127.0.0.1:$port" --json --config)
for _ in 1 2 3; do
  keep set "$(measure bench redis-benchmark -p "$port" -t set -P 64 -d "$VALUE" -n "$KEYS" -r "$KEYS" --csv -q)"
  # The command preheat sends (only-if-absent, with a TTL) on what it writes: keys Redis does
  # not hold yet. With `-r $KEYS` over a third of the random keys would be repeats, which a
  # `SET NX` answers without storing anything; a range of 10^9 makes nearly all of them new.
  keep nx "$(measure bench redis-benchmark -p "$port" -P 64 -n "$KEYS" -r 1000000000 --csv -q \
    set "product:__rand_int__" "$value" nx px 3600000)"
  keep verify "$(measure warm "${warm[@]}" "$work/verify.toml")"
  keep off "$(measure warm "${warm[@]}" "$work/off.toml")"
done
written=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["written"])' "$work/out")
keys=$(redis-cli -p "$port" dbsize)

echo
echo "### Redis: $KEYS keys of $VALUE bytes, from SQLite"
echo
echo "Best of 3 alternated rounds. CPU per key: redis-server's, and the client's own (user + sys)."
echo "preheat's keys/s is its run's rate (keys_per_sec in its report), without reading the profile and planning."
echo
echo "| | keys/s | time | redis-server CPU per key | client CPU per key | client peak RSS |"
echo "| --- | --- | --- | --- | --- | --- |"
row() { # label "keys/s wall server client rss"
  echo "$2" | awk -v l="$1" -v n="$KEYS" \
    '{ printf "| %s | %.0f | %.2f s | %.2f µs | %.2f µs | %s MiB |\n", l, $1, $2, 1e6 * $3 / n, 1e6 * $4 / n, $5 }'
}
row "redis-benchmark -t set -P 64 -d $VALUE" "${best[set]}"
row "redis-benchmark -P 64, \`SET key value NX PX ttl\` on new keys (the warm's command and keys)" "${best[nx]}"
row "preheat warm (the run: fetch, write, read again to verify; time, CPU: the whole command)" "${best[verify]}"
row "the same with \`invalidations = \"off\"\` (no second read)" "${best[off]}"
echo
set -- ${best[set]}; rps=$1 set_server=$3
set -- ${best[nx]}; rps_nx=$1 nx_server=$3
set -- ${best[verify]}; kps=$1 v_server=$3 v_client=$4
set -- ${best[off]}; off=$1
awk -v k="$kps" -v r="$rps" -v r2="$rps_nx" -v off="$off" -v keys="$keys" -v w="$written" \
  -v s="$v_server" -v c="$v_client" -v n="$KEYS" -v cores="$(nproc)" \
  -v s_set="$set_server" -v s_nx="$nx_server" 'BEGIN {
    printf "The warm reaches **%.0f%%** of redis-benchmark (%.0f%% of its `SET NX PX` run on new keys), %.0f%% without the verifying read; %d keys written, %d in Redis. ", 100 * k / r, 100 * k / r2, 100 * off / r, w, keys
    printf "redis-benchmark itself, sending the warm'"'"'s command on new keys, reaches %.0f%% of its plain `SET` run: the server spends %.2f µs on each such key against %.2f µs. ", 100 * r2 / r, 1e6 * s_nx / n, 1e6 * s_set / n
    printf "Its CPU per key (server and client) allows at most %.0f keys/s on %d cores, %.0f%% of redis-benchmark.\n", cores * n / (s + c), cores, 100 * cores * n / (s + c) / r }'

# --- 2. PostgreSQL ----------------------------------------------------------------------------
if [ -z "$pg_bin" ] || ! id postgres >/dev/null 2>&1; then
  echo; echo "(PostgreSQL part skipped: no server binaries or no postgres user)"
else
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

# CPU seconds the server's backends have used (they are the postmaster's children, counted
# once they exit, which they do when the warm closes its pool).
pg_cpu() { awk -v t="$tck" '{ printf "%.2f", ($14 + $15 + $16 + $17) / t }' "/proc/$(head -1 "$pg_data/postmaster.pid")/stat"; }
pg_run() { # config; prints "written ms budget rss pg_cpu redis_cpu client_cpu"
  redis-cli -p "$port" flushall >/dev/null
  local p0 r0
  p0=$(pg_cpu) r0=$(redis_cpu)
  /usr/bin/time -f "%U %S %M" -o "$work/time" "$preheat" -q warm --config "$1" --profiles "$work/p2" \
    --backend "redis://127.0.0.1:$port" --json > "$work/pg.json"
  sleep 0.5 # the backends exit and are counted
  local rest
  rest=$(awk -v p0="$p0" -v p1="$(pg_cpu)" -v r0="$r0" -v r1="$(redis_cpu)" \
    '{ printf "%d %.2f %.2f %.2f", $3 / 1024, p1 - p0, r1 - r0, $1 + $2 }' "$work/time")
  python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(r["written"], r["duration_ms"], round(r["memory_budget"] / 2**20), sys.argv[2])' "$work/pg.json" "$rest"
}
# Batched and one at a time, alternated for PG_ROUNDS rounds. Each round's ratio compares two
# runs made next to each other, so that drift in the machine's speed between minutes falls on
# both; the table shows the round with the median ratio.
rounds=()
for _ in $(seq "$PG_ROUNDS"); do
  read -r b_written b_ms budget b_rss b_pg b_redis b_client < <(pg_run "$work/pg-batched.toml")
  read -r s_written s_ms _ s_rss s_pg s_redis s_client < <(pg_run "$work/pg-single.toml")
  ratio=$(awk -v bn="$b_written" -v b="$b_ms" -v sn="$s_written" -v s="$s_ms" 'BEGIN { printf "%.1f", (bn / b) / (sn / s) }')
  rounds+=("$ratio $b_written $b_ms $budget $b_rss $b_pg $b_redis $b_client $s_written $s_ms $s_rss $s_pg $s_redis $s_client")
done
ratios=$(printf '%s\n' "${rounds[@]}" | awk '{ printf "%s%sx", (NR > 1 ? ", " : ""), $1 }')
median=$(printf '%s\n' "${rounds[@]}" | sort -n | awk -v n="$PG_ROUNDS" 'NR == int((n + 1) / 2)')
read -r ratio b_written b_ms budget b_rss b_pg b_redis b_client s_written s_ms s_rss s_pg s_redis s_client <<< "$median"

echo
echo "### PostgreSQL: $PG_ROWS rows of $VALUE bytes into Redis"
echo
echo "$PG_ROUNDS alternated rounds of both; the round with the median ratio. CPU per key: the PostgreSQL backends', redis-server's, and preheat's own (user + sys)."
echo
echo "| | keys written | time | keys/s | PostgreSQL CPU per key | redis-server CPU per key | preheat CPU per key | peak RSS |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
pg_row() { # label written ms rss pg redis client
  awk -v l="$1" -v n="$2" -v ms="$3" -v rss="$4" -v p="$5" -v r="$6" -v c="$7" \
    'BEGIN { printf "| %s | %d | %.2f s | %.0f | %.1f µs | %.1f µs | %.1f µs | %s MiB |\n", l, n, ms / 1000, n * 1000 / ms, 1e6 * p / n, 1e6 * r / n, 1e6 * c / n, rss }'
}
pg_row "batched (500 keys per query)" "$b_written" "$b_ms" "$b_rss" "$b_pg" "$b_redis" "$b_client"
pg_row "one query and one write per key" "$s_written" "$s_ms" "$s_rss" "$s_pg" "$s_redis" "$s_client"
echo
awk -v bn="$b_written" -v b="$b_ms" -v sn="$s_written" -v s="$s_ms" -v budget="$budget" -v ratios="$ratios" \
  -v p="$b_pg" -v r="$b_redis" -v c="$b_client" -v cores="$(nproc)" 'BEGIN {
    printf "Batching is **%.1fx** faster (keys/s; the rounds gave %s); the memory budget was %d MiB (50%% of available memory). ", (bn / b) / (sn / s), ratios, budget
    printf "The batched run'"'"'s CPU per key allows at most %.0f keys/s on %d cores, %.1fx the one-at-a-time rate.\n", cores * bn / (p + r + c), cores, (cores * bn / (p + r + c)) / (sn * 1000 / s) }'
fi

# --- 3. MariaDB -------------------------------------------------------------------------------
if ! command -v mariadbd >/dev/null || ! id mysql >/dev/null 2>&1; then
  echo; echo "(MariaDB part skipped: no mariadbd or no mysql user)"
else
my_dir="$work/my"
mkdir "$my_dir" && chown mysql "$my_dir"
my_port=$(free_port)
mariadb-install-db --no-defaults --user=mysql --datadir="$my_dir/data" --auth-root-authentication-method=normal \
  --skip-test-db >/dev/null 2>&1
mariadbd --no-defaults --user=mysql --datadir="$my_dir/data" --port="$my_port" --bind-address=127.0.0.1 \
  --socket="$my_dir/sock" --skip-log-bin --innodb-flush-log-at-trx-commit=0 >/dev/null 2>&1 &
my_pid=$!
my() { mariadb --no-defaults -h 127.0.0.1 -P "$my_port" -u root "$@"; }
until my -e 'SELECT 1' >/dev/null 2>&1; do sleep 0.2; done
my -e "CREATE DATABASE shop; CREATE TABLE shop.products (id BIGINT PRIMARY KEY, body TEXT NOT NULL);
  USE shop; INSERT INTO products SELECT seq, REPEAT(MD5(seq), $VALUE DIV 32) FROM seq_1_to_$PG_ROWS;"
my_url="mysql://root@127.0.0.1:$my_port/shop"
products_config "$my_url" "$PG_ROWS" 500 > "$work/my-batched.toml"
products_config "$my_url" "$PG_ROWS" 1 > "$work/my-single.toml"
products_log "$PG_ROWS" > "$work/my.log.txt"
"$preheat" -q analyze --config "$work/my-batched.toml" --profiles "$work/p3" --top 0 "$work/my.log.txt" >/dev/null
my_run() { # config; prints "written ms"
  redis-cli -p "$port" flushall >/dev/null
  "$preheat" -q warm --config "$1" --profiles "$work/p3" --backend "redis://127.0.0.1:$port" --json > "$work/my.json"
  python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(r["written"], r["duration_ms"])' "$work/my.json"
}
rounds=()
for _ in $(seq "$PG_ROUNDS"); do
  read -r b_written b_ms < <(my_run "$work/my-batched.toml")
  read -r s_written s_ms < <(my_run "$work/my-single.toml")
  rounds+=("$(awk -v bn="$b_written" -v b="$b_ms" -v sn="$s_written" -v s="$s_ms" 'BEGIN { printf "%.1f", (bn / b) / (sn / s) }') $b_written $b_ms $s_written $s_ms")
done
ratios=$(printf '%s\n' "${rounds[@]}" | awk '{ printf "%s%sx", (NR > 1 ? ", " : ""), $1 }')
read -r ratio b_written b_ms s_written s_ms <<< "$(printf '%s\n' "${rounds[@]}" | sort -n | awk -v n="$PG_ROUNDS" 'NR == int((n + 1) / 2)')"
echo
echo "### MariaDB: $PG_ROWS rows of $VALUE bytes into Redis"
echo
echo "$PG_ROUNDS alternated rounds of both; the round with the median ratio."
echo
echo "| | keys written | time | keys/s |"
echo "| --- | --- | --- | --- |"
awk -v n="$b_written" -v ms="$b_ms" 'BEGIN { printf "| batched (500 keys per query) | %d | %.2f s | %.0f |\n", n, ms / 1000, n * 1000 / ms }'
awk -v n="$s_written" -v ms="$s_ms" 'BEGIN { printf "| one query and one write per key | %d | %.2f s | %.0f |\n", n, ms / 1000, n * 1000 / ms }'
echo
echo "Batching is **${ratio}x** faster (keys/s; the rounds gave $ratios)."
fi

# --- 4. memcached -----------------------------------------------------------------------------
if ! command -v memcached >/dev/null || ! command -v memcslap >/dev/null; then
  echo; echo "(memcached part skipped: needs memcached and libmemcached-tools)"; exit 0
fi
mc_port=$(free_port)
mc_user=(); [ "$(id -u)" = 0 ] && mc_user=(-u nobody)
memcached -l 127.0.0.1 -p "$mc_port" -U 0 -m 4096 "${mc_user[@]}" &
mc_pid=$!
mc() { # request: sends it and prints the first reply line
  python3 -c 'import socket,sys; s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(sys.argv[2].encode() + b"\r\n"); print(s.makefile("rb").readline().decode().strip())' "$mc_port" "$1"
}
until mc version >/dev/null 2>&1; do sleep 0.1; done
# The warm's command on new keys, pipelined 500 at a time over one connection: the rate the
# server allows a client like the warm. Prints keys/s.
pipelined() {
  python3 - "$mc_port" "$KEYS" "$VALUE" <<'PY'
import socket, sys, time
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
value = b"v" * size
batches = [b"".join(b"ms product:%d %d T3600 ME\r\n%s\r\n" % (i, size, value) for i in range(at, min(at + 500, n)))
           for at in range(0, n, 500)]
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
replies = s.makefile("rb")
start = time.perf_counter()
for batch in batches:
    s.sendall(batch)
    for _ in range(batch.count(b" ME\r\n")):
        assert replies.readline() == b"HD\r\n"
print(round(n / (time.perf_counter() - start)))
PY
}
memcslap_rate() { # keys/s of memcslap setting KEYS keys with 2 threads
  memcslap -s "127.0.0.1:$mc_port" -t set -c 2 -e $((KEYS / 2)) -N 2>&1 |
    awk '/Time to set/ { for (i = 1; i <= NF; i++) if ($i == "keys") n = $(i - 1); t = $(NF - 1) } END { printf "%.0f", n / t }'
}
mc_warm() { # config: keys/s of the warm's run
  "$preheat" -q warm --profiles "$work/p1" --backend "memcached://127.0.0.1:$mc_port" --json --config "$1" > "$work/mc.json"
  python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(round(r["keys_per_sec"]), r["written"])' "$work/mc.json"
}
declare -A mc_best
mc_keep() { # name rate
  if awk -v n="${2%% *}" -v o="${mc_best[$1]:-0}" 'BEGIN { exit !(n > o) }'; then mc_best[$1]=${2%% *}; fi
}
for _ in 1 2 3; do
  mc flush_all >/dev/null; mc_keep slap "$(memcslap_rate)"
  mc flush_all >/dev/null; mc_keep pipe "$(pipelined)"
  mc flush_all >/dev/null; read -r rate mc_written < <(mc_warm "$work/verify.toml"); mc_keep verify "$rate"
  mc flush_all >/dev/null; read -r rate _ < <(mc_warm "$work/off.toml"); mc_keep off "$rate"
done
echo
echo "### memcached: $KEYS keys of $VALUE bytes, from SQLite"
echo
echo "Best of 3 alternated rounds; one memcached 1.6 on the same two cores."
echo
echo "| | keys/s |"
echo "| --- | --- |"
echo "| memcslap -t set -c 2 (one request at a time per thread) | ${mc_best[slap]} |"
echo "| pipelined client, the warm's \`ms key S T ME\` (add) on new keys, 500 per batch | ${mc_best[pipe]} |"
echo "| preheat warm (fetch, write, read again to verify) | ${mc_best[verify]} |"
echo "| the same with \`invalidations = \"off\"\` | ${mc_best[off]} |"
echo
awk -v w="${mc_best[verify]}" -v p="${mc_best[pipe]}" -v o="${mc_best[off]}" -v n="$mc_written" 'BEGIN {
  printf "The warm reaches **%.0f%%** of the pipelined client (%.0f%% without the verifying read); %d keys written.\n", 100 * w / p, 100 * o / p, n }'
