#!/bin/sh
# Runs every libFuzzer target in BUILD/tests/fuzz for SECONDS each, starting
# from a scratch copy of its seed corpus (the repo's corpus stays untouched).
# Exits non-zero on the first crash, leak, timeout or sanitizer finding.
set -eu
build=${1:?usage: run_fuzzers.sh BUILD_DIR SECONDS}
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
found=0
for bin in "$build"/tests/fuzz/fuzz_*; do
  [ -f "$bin" ] && [ -x "$bin" ] || continue
  name=$(basename "$bin")
  found=$((found + 1))
  mkdir -p "$work/$name"
  if [ -d "$here/corpus/$name" ]; then cp -r "$here/corpus/$name/." "$work/$name/"; fi
  echo "FUZZ_START target=$name seconds=$seconds"
  if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$work/" -print_final_stats=1 "$work/$name" > "$work/$name.log" 2>&1; then
    tail -n 60 "$work/$name.log"
    echo "FUZZ_FAILED target=$name"
    for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
      [ -f "$a" ] && { echo "artifact $a:"; od -c "$a" | head -20; }
    done
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$work/$name.log" || true
  echo "FUZZ_OK target=$name"
done
if [ "$found" -eq 0 ]; then
  echo "no fuzz targets found in $build/tests/fuzz" >&2
  exit 1
fi
