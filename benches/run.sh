#!/usr/bin/env bash
# Whole-CLI benchmark: preheat analyze against the tools people would otherwise use, on the
# same files in the same run. Prints a Markdown table (quoted in the README).
#
#   bash benches/run.sh            # 2M-line log, plus a 10M-line log for peak memory
#   LINES=500000 BIG=0 bash benches/run.sh   # quicker
set -euo pipefail

LINES=${LINES:-2000000}
BIG=${BIG:-10000000}
RUNS=${RUNS:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
preheat="$root/target/release/preheat"
config="$root/data/preheat.toml"
# shellcheck source=benches/timing.sh
. "$root/benches/timing.sh"

gen() { "$preheat" -q generate-log --config "$config" --lines "$1" --keys 100000 --seed 7 -o "$2"; }

# Peak resident memory in MiB.
rss() { /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1 | awk '{ printf "%.0f", $1 / 1024 }'; }

log="$work/access.log"
gen "$LINES" "$log"
gzip -c "$log" > "$log.gz"
cat "$log" "$log.gz" > /dev/null # warm the page cache
mb=$(du -m "$log" | cut -f1)

analyze() { "$preheat" -q analyze --config "$config" --profiles "$work/profiles" --top 0 "$@"; }
awk_count() { LC_ALL=C awk '{c[$7]++} END {for (k in c) print c[k], k}' "$1"; }

# The commands take turns, round after round, and each keeps its best time: this shared
# machine's speed drifts within minutes, and the drift then falls on all of them alike.
t_wc="" t_awk="" t_pre="" t_pre1="" t_zcat="" t_pregz=""
for _ in $(seq "$RUNS"); do
  t_wc=$(least "$t_wc" "$(timed wc -l "$log")")
  t_awk=$(least "$t_awk" "$(timed awk_count "$log")")
  t_pre=$(least "$t_pre" "$(timed analyze "$log")")
  t_pre1=$(least "$t_pre1" "$(timed analyze --threads 1 "$log")")
  t_zcat=$(least "$t_zcat" "$(timed sh -c "zcat '$log.gz' > /dev/null")")
  t_pregz=$(least "$t_pregz" "$(timed analyze "$log.gz")")
done
m_pre=$(rss "$preheat" -q analyze --config "$config" --profiles "$work/profiles" --top 0 "$log")

row() { awk -v n="$1" -v t="$2" -v mb="$mb" -v base="$3" 'BEGIN { printf "| %s | %.2f s | %.0f MB/s | %.1fx |\n", n, t, mb / t, base / t }'; }
echo
# The ratio to awk differs between machines of one kind: the CPU and whether its cores are
# threads of one physical core (which halves what the second worker adds) tell them apart.
cpu=$(lscpu 2>/dev/null | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); m = $2 } /^Thread\(s\) per core/ { gsub(/ /, "", $2); t = $2 } END { printf "%s, %s thread(s) per core", m, t }')
echo "$LINES lines, $mb MB, combined format, $(nproc) cores ($(date -u +%Y-%m-%d); $cpu)"
echo
echo "| command | wall time (best of $RUNS alternated rounds) | throughput | vs awk |"
echo "| --- | --- | --- | --- |"
row 'wc -l (read-speed limit)' "$t_wc" "$t_awk"
row "awk '{c[\$7]++} ...'" "$t_awk" "$t_awk"
row 'preheat analyze' "$t_pre" "$t_awk"
row 'preheat analyze --threads 1' "$t_pre1" "$t_awk"
echo
echo "| gzip copy | wall time | vs zcat |"
echo "| --- | --- | --- |"
awk -v t="$t_zcat" 'BEGIN { printf "| zcat > /dev/null | %.2f s | 1.0x |\n", t }'
awk -v t="$t_pregz" -v z="$t_zcat" 'BEGIN { printf "| preheat analyze | %.2f s | %.2fx the time |\n", t, t / z }'
echo
# The same requests as JSON lines (nginx's `escape=json` shape): about twice the bytes.
json="$work/access.json"
"$preheat" -q generate-log --config "$config" --lines "$LINES" --keys 100000 --seed 7 --format json -o "$json"
cat "$json" > /dev/null
json_mb=$(du -m "$json" | cut -f1)
t_json=""
for _ in $(seq "$RUNS"); do
  t_json=$(least "$t_json" "$(timed analyze "$json")")
done
rm -f "$json"
echo "| JSON lines copy | size | wall time (best of $RUNS) | throughput | lines/s |"
echo "| --- | --- | --- | --- | --- |"
awk -v t="$t_json" -v mb="$json_mb" -v n="$LINES" 'BEGIN { printf "| preheat analyze | %d MB | %.2f s | %.0f MB/s | %.1fM |\n", mb, t, mb / t, n / t / 1e6 }'
echo
# Each format preheat reads by name or string, on the same requests written in it, against
# combined in the same rounds: by bytes, and by lines (every log holds the same number), since
# a format with shorter lines reads fewer bytes in the time of one line.
apache='%h %l %u %t "%r" %>s %b %D %{X-Cache}o "%{Referer}i" "%{User-Agent}i"'
formats=("$apache" aws-alb aws-elb haproxy envoy w3c caddy traefik gcp-lb)
t_format=()
for i in "${!formats[@]}"; do
  "$preheat" -q generate-log --config "$config" --lines "$LINES" --keys 100000 --seed 7 --format "${formats[$i]}" -o "$work/f-$i.log"
done
t_comb=""
for _ in $(seq "$RUNS"); do
  t_comb=$(least "$t_comb" "$(timed analyze "$log")")
  for i in "${!formats[@]}"; do
    t_format[$i]=$(least "${t_format[$i]:-}" "$(timed analyze --format "${formats[$i]}" "$work/f-$i.log")")
  done
done
echo "| format | size | wall time (best of $RUNS) | throughput | vs combined, bytes/s | lines/s |"
echo "| --- | --- | --- | --- | --- | --- |"
awk -v t="$t_comb" -v mb="$mb" 'BEGIN { printf "| combined | %d MB | %.2f s | %.0f MB/s | 100%% | 100%% |\n", mb, t, mb / t }'
for i in "${!formats[@]}"; do
  name=${formats[$i]}; [ "$i" = 0 ] && name="Apache \`LogFormat\`"
  awk -v n="$name" -v t="${t_format[$i]}" -v mb="$(du -m "$work/f-$i.log" | cut -f1)" -v tc="$t_comb" -v mbc="$mb" \
    'BEGIN { printf "| %s | %d MB | %.2f s | %.0f MB/s | %.0f%% | %.0f%% |\n", n, mb, t, mb / t, 100 * (mb / t) / (mbc / tc), 100 * tc / t }'
done
rm -f "$work"/f-*.log
echo
# The whole capacity report: the profile's curves, and the log replayed for the LRU curve,
# the hourly working set and cold against warm.
t_report=""
for _ in $(seq "$RUNS"); do
  t_report=$(least "$t_report" "$(timed "$preheat" -q report --config "$config" --profiles "$work/profiles" "$log")")
done
m_report=$(rss "$preheat" -q report --config "$config" --profiles "$work/profiles" "$log")
echo "| capacity report | wall time | peak RSS |"
echo "| --- | --- | --- |"
awk -v t="$t_report" -v m="$m_report" 'BEGIN { printf "| preheat report (with the log replayed) | %.2f s | %s MiB |\n", t, m }'
echo
# Memory follows distinct keys (bounded by max_keys_per_rule), not lines: the same key space
# at 2M and 10M lines, each also with the key table capped, so that the capped rows compare
# like with like.
keys() { "$preheat" -q analyze --json --top 0 --config "$1" --dry-run "$log" | python3 -c 'import json,sys; print(sum(r["distinct_keys"] for r in json.load(sys.stdin)["summary"]["rules"]))'; }
capped="$work/capped.toml"
sed 's/^max_keys_per_rule = .*/max_keys_per_rule = 20000/' "$config" > "$capped"
m_pre_cap=$(rss "$preheat" -q analyze --config "$capped" --profiles "$work/profiles" --top 0 "$log")
echo "| log | distinct keys | peak RSS of preheat analyze |"
echo "| --- | --- | --- |"
echo "| $LINES lines | $(keys "$config") | $m_pre MiB |"
echo "| $LINES lines, \`max_keys_per_rule = 20000\` | $(keys "$capped") (estimated) | $m_pre_cap MiB |"
if [ "$BIG" != 0 ]; then
  rm -f "$log.gz"
  gen "$BIG" "$log"
  m_big=$(rss "$preheat" -q analyze --config "$config" --profiles "$work/profiles" --top 0 "$log")
  m_cap=$(rss "$preheat" -q analyze --config "$capped" --profiles "$work/profiles" --top 0 "$log")
  echo "| $BIG lines | $(keys "$config") | $m_big MiB |"
  echo "| $BIG lines, \`max_keys_per_rule = 20000\` | $(keys "$capped") (estimated) | $m_cap MiB |"
fi
