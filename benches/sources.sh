#!/usr/bin/env bash
# Benchmarks of the Redis Cluster backend and the HTTP source, against servers of their own
# (random ports, temp dirs). Prints Markdown (quoted in the README).
#
#   1. Redis Cluster: `preheat warm` of KEYS keys with VALUE-byte values (SQLite source) into a
#      cluster of one master and into one of three masters, same keys, same run.
#   2. HTTP replay: `preheat warm` replaying REQUESTS profiled URLs against a local nginx, and
#      `wrk` against the same server and URLs in the same run, with as many connections.
#
#   bash benches/sources.sh
#   KEYS=100000 REQUESTS=50000 bash benches/sources.sh   # quicker
#   PREHEAT=/tmp/before/target/release/preheat bash benches/sources.sh   # another build
set -euo pipefail

KEYS=${KEYS:-500000}
VALUE=${VALUE:-1024}
REQUESTS=${REQUESTS:-200000}
CONNECTIONS=${CONNECTIONS:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for tool in redis-server redis-cli sqlite3 nginx wrk python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install redis-server sqlite3 nginx-light wrk)" >&2; exit 1; }
done
# shellcheck source=benches/products.sh
. "$root/benches/products.sh"
# PREHEAT=path/to/preheat measures another build (a change's before and after).
preheat=${PREHEAT:-}
if [ -z "$preheat" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  preheat="$root/target/release/preheat"
fi
# A free port whose cluster bus port (+10000) is free too.
free_port() {
  python3 -c '
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    if p >= 55000: continue
    b = socket.socket()
    try: b.bind(("127.0.0.1", p + 10000))
    except OSError: continue
    print(p); break'
}
json_field() { python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(*(r[k] for k in sys.argv[2:]))' "$@"; }

start_node() { # port
  mkdir -p "$work/node-$1"
  redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/node-$1" \
    --cluster-enabled yes --cluster-config-file nodes.conf >/dev/null &
  pids+=($!)
  until redis-cli -p "$1" ping >/dev/null 2>&1; do sleep 0.05; done
}
wait_cluster() { # port
  until redis-cli -p "$1" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
}

echo "Source and cluster benchmarks, $(nproc) cores ($(date -u +%Y-%m-%d))"

# --- 1. Redis Cluster ------------------------------------------------------------------------
one=$(free_port)
start_node "$one"
redis-cli -p "$one" cluster addslotsrange 0 16383 >/dev/null
wait_cluster "$one"
three=()
for _ in 1 2 3; do
  p=$(free_port)
  start_node "$p"
  three+=("$p")
done
redis-cli --cluster create "${three[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
wait_cluster "${three[0]}"

products_db "$work/values.db" "$KEYS" "$VALUE"
products_config "sqlite://$work/values.db" "$KEYS" > "$work/sqlite.toml"
products_log "$KEYS" > "$work/keys.log"
"$preheat" -q analyze --config "$work/sqlite.toml" --profiles "$work/p1" --top 0 "$work/keys.log" >/dev/null
cat "$work/values.db" > /dev/null # the page cache holds the database for both runs

cluster_run() { # seed port; prints "written keys_per_sec duration_ms"
  "$preheat" -q warm --config "$work/sqlite.toml" --profiles "$work/p1" \
    --backend "redis+cluster://127.0.0.1:$1" --json > "$work/cluster.json"
  json_field "$work/cluster.json" written keys_per_sec duration_ms
}
read -r w1 k1 ms1 < <(cluster_run "$one")
read -r w3 k3 ms3 < <(cluster_run "${three[0]}")

echo
echo "### Redis Cluster: $KEYS keys of $VALUE bytes, from SQLite"
echo
echo "| cluster | keys written | time | keys/s |"
echo "| --- | --- | --- | --- |"
awk -v n="$w1" -v ms="$ms1" -v k="$k1" 'BEGIN { printf "| 1 master | %d | %.2f s | %.0f |\n", n, ms / 1000, k }'
awk -v n="$w3" -v ms="$ms3" -v k="$k3" 'BEGIN { printf "| 3 masters | %d | %.2f s | %.0f |\n", n, ms / 1000, k }'
echo
awk -v a="$k1" -v b="$k3" 'BEGIN { printf "Three masters warm at **%.2fx** the rate of one on this machine.\n", b / a }'

# --- 2. HTTP replay ---------------------------------------------------------------------------
http=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes $(nproc);
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$http;
    location /api/products/ { return 200 "product"; }
  }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $http))" 2>/dev/null; do sleep 0.05; done

cat > "$work/http.toml" <<EOF
[analyze]
max_keys_per_rule = 5000000
[warm]
max_keys = $REQUESTS
[backend]
url = "memory://"
[sources.app]
url = "http://127.0.0.1:$http"
mode = "replay"
concurrency = $CONNECTIONS
[[rule]]
name = "product"
match = "GET /api/products/{id:int}"
key = "product:{id}"
source = "app"
EOF
products_log "$REQUESTS" > "$work/http.log"
"$preheat" -q analyze --config "$work/http.toml" --profiles "$work/p2" --top 0 "$work/http.log" >/dev/null
cat > "$work/urls.lua" <<EOF
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/products/" .. ((counter % $REQUESTS) + 1))
end
EOF
# Alternated, three times each, best of each: single runs on a shared 2-core machine vary more
# than the difference being measured.
best_wrk=0 best_preheat=0 replayed=0
for _ in 1 2 3; do
  r=$(wrk -t "$(nproc)" -c "$CONNECTIONS" -d 5s -s "$work/urls.lua" "http://127.0.0.1:$http" \
    | awk '/^Requests\/sec/ { printf "%.0f", $2 }')
  [ "$r" -gt "$best_wrk" ] && best_wrk=$r
  "$preheat" -q warm --config "$work/http.toml" --profiles "$work/p2" --json > "$work/http.json"
  read -r replayed http_ms < <(json_field "$work/http.json" replayed duration_ms)
  r=$(awk -v n="$replayed" -v ms="$http_ms" 'BEGIN { printf "%.0f", n * 1000 / ms }')
  [ "$r" -gt "$best_preheat" ] && best_preheat=$r
done

echo
echo "### HTTP replay: $REQUESTS URLs against a local nginx, $CONNECTIONS connections"
echo
echo "| client | requests/s |"
echo "| --- | --- |"
echo "| wrk -t $(nproc) -c $CONNECTIONS (5 s over the same URLs), best of 3 | $best_wrk |"
echo "| preheat warm, replay mode ($replayed requests), best of 3 | $best_preheat |"
echo
awk -v p="$best_preheat" -v w="$best_wrk" 'BEGIN { printf "preheat replays at **%.0f%%** of wrk'"'"'s rate.\n", 100 * p / w }'
