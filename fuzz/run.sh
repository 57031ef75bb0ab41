#!/usr/bin/env bash
# Coverage-guided fuzzing of every line parser, a bounded run per target (not part of CI):
#
#   bash fuzz/run.sh            # 180 s per target
#   SECONDS_PER_TARGET=600 bash fuzz/run.sh
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The one toolchain here is stable, so the
# build runs with RUSTC_BOOTSTRAP=1 and without a sanitizer (`-s none`): Rust's own checks
# (bounds, overflow in debug assertions) stand in for AddressSanitizer, and a panic is a
# crash. Each target is seeded with lines preheat's generator writes in each of its formats.
# A target fails on a panic, on a line taking longer than 10 s, or on a line whose second
# reading differs from its first (see `preheat::logformat::second_reading`). Prints one
# Markdown row per target: executions, coverage (edges) and features, as libFuzzer reports.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
per_target=${SECONDS_PER_TARGET:-180}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || { echo "needs cargo-fuzz: cargo install cargo-fuzz" >&2; exit 1; }
cargo build --release --quiet
preheat="$root/target/release/preheat"
config="$root/data/preheat.toml"

# Seeds: 200 generated lines of each format, one file per line, the format's pick byte first
# for the text target.
seed() { # target pick format
  local dir="$root/fuzz/corpus/$1"
  mkdir -p "$dir"
  "$preheat" -q generate-log --config "$config" --lines 200 --keys 50 --seed 3 --format "$3" -o - |
    awk -v dir="$dir" -v pick="$2" -v name="$(echo "$3" | md5sum | cut -c1-8)" \
      '{ f = sprintf("%s/%s-%03d", dir, name, NR); if (pick != "") printf "%c", pick + 0 > f; print > f; close(f) }'
}
texts=(combined common
  '$remote_addr - [$time_iso8601] $host "$request" $status $body_bytes_sent rt=$request_time cache=$upstream_cache_status "$http_x_forwarded_for"'
  '%h %l %u %t "%r" %>s %b %D %{X-Cache}o "%{Referer}i" "%{User-Agent}i"'
  '%{X-Forwarded-For}i %h [%{%Y-%m-%dT%H:%M:%S%z}t] "%m %U%q %H" %>s %O %{ms}T'
  vhost_combined aws-alb aws-elb haproxy envoy)
for i in "${!texts[@]}"; do seed text_formats "$((i + 65))" "${texts[$i]}"; done
for f in json caddy traefik gcp-lb; do seed json_lines "" "$f"; done
mkdir -p fuzz/corpus/w3c
"$preheat" -q generate-log --config "$config" --lines 400 --keys 50 --seed 3 --format w3c -o fuzz/corpus/w3c/generated

cargo fuzz build -s none --release
echo "| target | seconds | executions | coverage (edges) | features | result |"
echo "| --- | --- | --- | --- | --- | --- |"
status=0
for target in text_formats json_lines w3c; do
  log="$root/fuzz/$target.log"
  if cargo fuzz run -s none --release "$target" -- -max_total_time="$per_target" -timeout=10 -max_len=4096 >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (fuzz/$target.log, fuzz/artifacts/$target)"
    status=1
  fi
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  [ -n "$done_line" ] || done_line=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  execs=$(echo "$done_line" | sed -E 's/^#([0-9]+).*/\1/')
  cov=$(echo "$done_line" | sed -nE 's/.*cov: ([0-9]+).*/\1/p')
  ft=$(echo "$done_line" | sed -nE 's/.*ft: ([0-9]+).*/\1/p')
  echo "| $target | $per_target | ${execs:-?} | ${cov:-?} | ${ft:-?} | $result |"
done
exit $status
