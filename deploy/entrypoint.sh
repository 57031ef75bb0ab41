#!/bin/sh
# Container entrypoint: warm the cache, then start the application.
#
#   ENTRYPOINT ["/usr/local/bin/preheat-entrypoint", "--"]
#   CMD ["/app/server", "--port", "8080"]
#
# preheat exits 0 on a degraded warm (database down, deadline reached, no profile), so the
# application starts whatever happens, unless PREHEAT_STRICT=1 (or true, yes) asks to fail the
# start. A hard timeout (PREHEAT_HARD_TIMEOUT seconds, default: the 5-minute deadline plus its
# grace) guards against anything else. Settings come from PREHEAT_* variables (README, "Precedence").
set -u

preheat=${PREHEAT_BIN:-preheat}
limit=${PREHEAT_HARD_TIMEOUT:-330}
[ "${1:-}" = "--" ] && shift
if [ "$#" -eq 0 ]; then
  echo "preheat-entrypoint: no application command given" >&2
  exit 2
fi

if command -v timeout >/dev/null 2>&1; then
  timeout -k 5 "$limit" "$preheat" warm
else
  "$preheat" warm
fi
status=$?
if [ "$status" -ne 0 ]; then
  case "${PREHEAT_STRICT:-}" in
    1 | [Tt][Rr][Uu][Ee] | [Yy][Ee][Ss])
      echo "preheat-entrypoint: the warm exited $status and PREHEAT_STRICT is set: not starting" >&2
      exit "$status"
      ;;
  esac
  echo "preheat-entrypoint: the warm exited $status; starting the application anyway" >&2
fi
exec "$@"
