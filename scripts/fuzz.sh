#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/, cargo fuzz with libFuzzer) and runs each for SECONDS (default
# 60), one after the other; prints for each how long it ran, how many inputs it executed and
# whether it crashed. Every crash input is copied into fuzz/regressions/<target>/, where
# tests/fuzz_regressions.rs runs it in `cargo test`; the script exits non-zero if a target
# crashed.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: event_path rules_folder template request_bodies
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain RUSTC_BOOTSTRAP=1 lets it
# use the nightly flags it needs. Extra libFuzzer options: FUZZ_ARGS="-jobs=2 ...". The corpus
# grows in fuzz/corpus/<target>/ (only its seed-* files are kept in git); the output of each
# run is in fuzz/artifacts/<target>.log, crash inputs also in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(event_path rules_folder template request_bodies)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is required: cargo install cargo-fuzz" >&2
  exit 2
fi
export RUSTC_BOOTSTRAP=1

# No sanitizer: the targets are safe Rust whose findings are panics, aborts and stack
# overflows, which libFuzzer catches as they are, and AddressSanitizer would slow every input.
# Debug assertions on, so that an integer overflow panics as it does in the tests.
build_flags=(--sanitizer none --debug-assertions)
# The targets write their scratch files (rule folders, templates, a SQLite store) under
# TMPDIR: in memory where there is /dev/shm, as thousands of inputs a second would otherwise
# wait on the disk.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi

# The longest input each target is given: room for a short history of events, a rule folder
# the size of the example one, a template, a request body.
max_len() {
  case "$1" in
    event_path) echo 16384 ;;
    rules_folder) echo 32768 ;;
    *) echo 8192 ;;
  esac
}

(cd fuzz && cargo fuzz build "${build_flags[@]}")
# Built once, run as built: `cargo fuzz run` would build again whenever a source changed.
bin_dir="$PWD/fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"

status=0
summary=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target" "fuzz/regressions/$target"
  log="fuzz/artifacts/$target.log"
  started=$(date +%s)
  set +e
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of options
  "$bin_dir/$target" -artifact_prefix="fuzz/artifacts/$target/" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len="$(max_len "$target")" \
    -print_final_stats=1 ${FUZZ_ARGS:-} "fuzz/corpus/$target" >"$log" 2>&1
  code=$?
  set -e
  elapsed=$(( $(date +%s) - started ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  # The time libFuzzer says it ran; after a crash it says nothing, and the wall time counts.
  fuzzed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  took="${fuzzed:-$elapsed} s"
  # libFuzzer names the file it wrote for a crash, a timeout or running out of memory.
  found=()
  while IFS= read -r file; do
    [ -f "$file" ] || continue
    cp "$file" "fuzz/regressions/$target/"
    found+=("fuzz/regressions/$target/$(basename "$file")")
  done < <(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | grep -E '/(crash|oom|timeout|leak)-[^/]*$' || true)
  if [ "$code" -ne 0 ] || [ "${#found[@]}" -gt 0 ]; then
    status=1
    line="$target: $took, ${runs:-?} executions, CRASHED (exit $code) ${found[*]:-} - see $log"
  else
    line="$target: $took, ${runs:-?} executions, no crash"
  fi
  echo "$line"
  summary+=("$line")
done

echo
echo "== fuzzing, ${seconds} s per target =="
printf '%s\n' "${summary[@]}"
if [ "$status" -ne 0 ]; then
  echo "Minimize a crash with: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin ${build_flags[*]} TARGET ../fuzz/regressions/TARGET/FILE)"
fi
exit "$status"
