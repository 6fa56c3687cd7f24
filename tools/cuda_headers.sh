#!/usr/bin/env bash
# Optional: the CUDA headers that the torch wheel's nvidia-* packages lack (CCCL's nv/target and the
# crt/ folder), needed only to compile lt's NCCL backend (csrc/dist_nccl.cpp). Installs PyPI's
# nvidia-cuda-cccl and nvidia-cuda-crt of the wheel's CUDA version (headers only, ~20 MB) once into
# the lt cache and prints their include folder; prints nothing (and succeeds) when libtorch has no
# CUDA or they cannot be had: the CPU build never needs them. LT_NCCL=0 skips this.
#   usage: tools/cuda_headers.sh LIBTORCH_DIR
set -uo pipefail
torch="${1:-}"
[ "${LT_NCCL:-1}" = 0 ] && exit 0
site="$(dirname "$torch")"
[ -f "$torch/lib/libtorch_cuda.so" ] && [ -f "$site/nvidia/nccl/include/nccl.h" ] || exit 0
rt="$(ls -d "$site"/nvidia_cuda_runtime-*.dist-info 2>/dev/null | head -1)"
[ -n "$rt" ] || exit 0
ver="$(basename "$rt" | sed -E 's/^nvidia_cuda_runtime-([0-9]+)\.([0-9]+).*/\1.\2/')"
major="${ver%%.*}"
cache="${LT_LIBTORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lt}"
dest="$cache/cuda-headers-$ver"
inc="$dest/nvidia/cu$major/include"
if [ -f "$dest/.complete" ]; then echo "$inc"; exit 0; fi
mkdir -p "$cache"
exec 9>"$cache/.cuda-headers-$ver.lock"
flock 9
if [ -f "$dest/.complete" ]; then echo "$inc"; exit 0; fi
tmp="$cache/.cuda-headers-$ver.partial.$$"
rm -rf "$tmp"
echo "lt: first build: fetching CUDA $ver headers for the NCCL backend (nvidia-cuda-cccl, nvidia-cuda-crt; ~20 MB)" >&2
if python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$tmp" \
     "nvidia-cuda-cccl==$ver.*" "nvidia-cuda-crt==$ver.*" >&2 \
   && [ -d "$tmp/nvidia/cu$major/include/nv" ] && [ -f "$tmp/nvidia/cu$major/include/crt/host_config.h" ]; then
  touch "$tmp/.complete"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  echo "$inc"
else
  rm -rf "$tmp"
  echo "lt: could not fetch CUDA $ver headers; the NCCL backend is left out of this build (gloo still works)" >&2
fi
exit 0
