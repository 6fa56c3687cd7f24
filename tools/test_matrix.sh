#!/usr/bin/env bash
# Runs the whole test suite (the README's `tools/cargo test --release`) under each CPU kernel
# choice libtorch can make, and with 1 and 2 intra-op threads, so a test that passes only with the
# kernels of this machine's CPU shows up here rather than on someone else's:
#   ATEN_CPU_CAPABILITY=default | avx2 | avx512   (ATen's vectorised kernels; a level the CPU lacks
#                                                  is SKIPped: ATen does not fall back, it dies of
#                                                  SIGILL)
#   MKL_ENABLE_INSTRUCTIONS=AVX2                   (MKL's code path, as on a CPU without AVX-512)
#   LT_TEST_THREADS=2 / OMP_NUM_THREADS=2          (2 intra-op threads in the test binary and in
#                                                  every lt process a test starts)
# Usage: tools/test_matrix.sh [extra args for cargo test, e.g. a test-name filter]
# Prints one line per leg and a summary; exits non-zero if any leg failed. Logs go to
# ${TMPDIR:-/tmp}/lt-test-matrix/<leg>.log.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lt/ci-target}"
export CARGO_TERM_COLOR=never
logs="${TMPDIR:-/tmp}/lt-test-matrix"
mkdir -p "$logs"

# Build once, outside the timed legs.
tools/cargo test --release --no-run >"$logs/build.log" 2>&1 || { echo "build failed: $logs/build.log"; tail -20 "$logs/build.log"; exit 1; }

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
flags="$(grep -m1 '^flags' /proc/cpuinfo)"
has() { [[ " $flags " == *" $1 "* ]] && echo yes || echo no; }
echo "cpu: $cpu (avx2: $(has avx2), avx512f: $(has avx512f)), $(nproc) cores, libtorch $(tools/libtorch.sh | sed 's|.*/torch-\([^/]*\)/torch|\1|')"

legs=(
  "capability-default|ATEN_CPU_CAPABILITY=default"
  "capability-avx2|ATEN_CPU_CAPABILITY=avx2"
  "capability-avx512|ATEN_CPU_CAPABILITY=avx512"
  "mkl-avx2|MKL_ENABLE_INSTRUCTIONS=AVX2"
  "threads-1|LT_TEST_THREADS=1 OMP_NUM_THREADS=1"
  "threads-2|LT_TEST_THREADS=2 OMP_NUM_THREADS=2"
)
failed=0 skipped=0
for leg in "${legs[@]}"; do
  name="${leg%%|*}"
  vars="${leg#*|}"
  if [[ "$vars" == *avx512* && "$(has avx512f)" == no ]] || [[ "$vars" == *=avx2* && "$(has avx2)" == no ]]; then
    printf '%-4s %-20s %-44s %s\n' SKIP "$name" "$vars" "this CPU lacks the instructions (run it on one that has them)"
    skipped=$((skipped + 1))
    continue
  fi
  start=$(date +%s)
  # shellcheck disable=SC2086
  env $vars tools/cargo test --release "$@" >"$logs/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  summary="$(grep -E '^test result:' "$logs/$name.log" | tail -1)"
  [ -n "$summary" ] || summary="(no test summary; see $logs/$name.log)"
  if [ $rc -eq 0 ]; then status=PASS; else status=FAIL; failed=$((failed + 1)); fi
  printf '%-4s %-20s %-44s %4ss  %s\n' "$status" "$name" "$vars" "$secs" "$summary"
  if [ $rc -ne 0 ]; then
    grep -E '^    [a-z_]+::[a-z0-9_]+$' "$logs/$name.log" | sed 's/^/       failed: /'
  fi
done
echo "test matrix: $(( ${#legs[@]} - failed - skipped )) passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
