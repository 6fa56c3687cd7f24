#!/usr/bin/env bash
# NCCL smoke test, for a machine with a CUDA GPU (it cannot pass without one).
#   tools/nccl_smoke.sh            # builds lt (release) through tools/cargo, then runs the checks
#   LT_BIN=path/to/lt tools/nccl_smoke.sh
# 1. one process (WORLD_SIZE=1) joins an NCCL group on cuda:0 and runs every collective check of
#    `lt dist-selftest` (all_reduce sum/avg/max/min, broadcast, all_gather, barrier, coalesced,
#    gradient sync) on CUDA tensors;
# 2. with 2+ GPUs, the same with 2 processes (cuda:0 and cuda:1) and the all-reduce timing of 10M
#    float32.
# The NCCL backend is liblt_dist_nccl.so, built when libtorch has CUDA and the CUDA/NCCL headers
# were found (tools/cuda_headers.sh); it is loaded only for --backend nccl.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
if [ -z "${LT_BIN:-}" ]; then
  (cd "$root" && "$here/cargo" build --release >&2)
  LT_BIN="$root/target/release/lt"
fi
"$LT_BIN" --version
gpus="$("$LT_BIN" --version | sed -n 's/^cuda available (\([0-9]*\) device(s))$/\1/p')"
if [ -z "$gpus" ] || [ "$gpus" -lt 1 ]; then
  echo "nccl_smoke: no CUDA device visible; this test needs a GPU" >&2
  exit 1
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 29511)"
echo "== 1 process, nccl, cuda:0"
RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT="$port" \
  "$LT_BIN" dist-selftest --backend nccl --dist-timeout 120
if [ "$gpus" -ge 2 ]; then
  echo "== 2 processes, nccl, cuda:0 and cuda:1"
  env -u RANK -u WORLD_SIZE "$LT_BIN" dist-selftest --backend nccl --devices 2 --dist-timeout 120
  env -u RANK -u WORLD_SIZE "$LT_BIN" dist-selftest --backend nccl --devices 2 --dist-timeout 120 --bench 10000000 --iters 50
fi
echo "nccl_smoke: passed"
