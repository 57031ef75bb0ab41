# Shared by the benchmark scripts (sourced, not run): wall time of one run, and the best of
# several.

# timed COMMAND...: the wall time of one run, in seconds (its output discarded).
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

# least A B: the smaller of two times ("" counts as none yet).
least() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b < a) print b; else print a }'; }
