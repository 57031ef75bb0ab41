#!/usr/bin/env bash
# Reads public sample logs written by others with the format each one is in, and prints a
# Markdown table of what preheat made of them (lines, parsed, rejected and why). The samples
# are not part of this repository: point the script at a folder that holds them, laid out as
#
#   apache-combined-sample.log            goaccess-ci-vcombined/vcombined_access.log
#   wordpress-nginx-*/*.log               nginx-json-*/*                    nasa-http-*/*
#   apache2-small-*/access.log            formats/<product>/*               (lines by product)
#
#   bash scripts/real-logs.sh DIR
# A sample that is missing is left out of the table.
set -euo pipefail

dir=${1:?usage: real-logs.sh DIR (a folder of sample logs)}
root=$(cd "$(dirname "$0")/.." && pwd)
preheat=${PREHEAT:-$root/target/release/preheat}
[ -x "$preheat" ] || cargo build --release --quiet --manifest-path "$root/Cargo.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "| log | format | lines | parsed | rejected, by reason |"
echo "| --- | --- | --- | --- | --- |"
row() { # label format files...
  local label=$1 format=$2
  shift 2
  local files=()
  for f in "$@"; do [ -f "$f" ] && files+=("$f"); done
  [ ${#files[@]} -gt 0 ] || return 0
  "$preheat" -q analyze --config "$root/data/preheat.toml" --profiles "$work/p" --allow-empty --json --top 0 \
    --format "$format" "${files[@]}" 2>/dev/null |
    python3 -c '
import json, sys
label, format = sys.argv[1], sys.argv[2]
s = json.load(sys.stdin)["summary"]
read, parsed = s["lines"]["read"], s["lines"]["parsed"]
why = ", ".join(f"{k} {v}" for k, v in sorted(s["rejected_by_reason"].items())) or "-"
print(f"| {label} | `{format}` | {read:,} | {parsed:,} | {why} |")' "$label" "$format"
}

row "Apache combined, a real site (2015)" '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"' "$dir"/apache-combined-sample.log
row "nginx combined, WordPress site (2025)" combined "$dir"/wordpress-nginx-*/*.log
row "nginx JSON lines (2013)" json "$dir"/nginx-json-*/*
row "NASA Kennedy Space Center, common (1995)" common "$dir"/nasa-http-*/*
row "Apache combined, small server" combined "$dir"/apache2-small-*/access.log
row "virtual-host combined" vhost_combined "$dir"/goaccess-ci-vcombined/vcombined_access.log
row "AWS ALB (documentation examples)" aws-alb "$dir"/formats/aws-alb/*
row "AWS Classic ELB (documentation examples)" aws-elb "$dir"/formats/aws-elb/*
row "HAProxy (documentation examples, syslog tag)" haproxy "$dir"/formats/haproxy/*
row "Envoy (documentation example)" envoy "$dir"/formats/envoy/*
row "HAProxy, no request logged" haproxy "$dir"/formats/norequest/haproxy-*
row "Envoy TCP proxy, no HTTP request" envoy "$dir"/formats/norequest/envoy-*
row "IIS 7.5 and 8 on Azure (W3C)" w3c "$dir"/formats/w3c/iis-*
row "CloudFront (W3C, tab-separated)" w3c "$dir"/formats/w3c/cloudfront-*
row "W3C logs of several servers (lnav's tests)" w3c "$dir"/lnav-test-logs/logfile_w3c*
row "Caddy (documentation example)" caddy "$dir"/formats/caddy/*
row "Traefik" traefik "$dir"/formats/traefik/*
row "Google Cloud load balancer (Cloud Logging)" gcp-lb "$dir"/formats/gcp-lb/*
