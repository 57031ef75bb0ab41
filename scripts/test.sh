#!/usr/bin/env bash
# The README's test command: installs what the tests need and a fresh machine may lack, then
# runs `cargo test --locked` (extra arguments go to cargo test).
#
# The tests start their own throwaway servers from installed binaries and read profiles with
# other programs, so they need:
#   Debian packages  redis-server, redis-tools (redis-cli), postgresql (initdb, pg_ctl),
#                    mariadb-server (mariadbd, mariadb-install-db, the mariadb client),
#                    memcached,
#                    openssl (TLS certificates), prometheus (promtool), chromium (the HTML
#                    report), systemd (systemd-analyze, for the unit files)
#   Python modules   pyarrow, duckdb, pyyaml, uhashring (a ketama client) (with python3's pip)
# Only what is missing is installed: as root directly, otherwise through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v memcached >/dev/null || need+=(memcached)
command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null && command -v mariadb >/dev/null \
  || need+=(mariadb-server mariadb-client)
command -v openssl >/dev/null || need+=(openssl)
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v groff >/dev/null || need+=(groff-base)
command -v python3 >/dev/null || need+=(python3 python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing Debian packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { as_root apt-get update >/dev/null && as_root apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
fi

modules=()
for m in pyarrow:pyarrow duckdb:duckdb yaml:pyyaml uhashring:uhashring; do
  python3 -c "import ${m%%:*}" >/dev/null 2>&1 || modules+=("${m#*:}")
done
if [ ${#modules[@]} -gt 0 ]; then
  echo "test.sh: installing Python modules: ${modules[*]}" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${modules[@]}"
fi

exec cargo test --locked "$@"
