#!/usr/bin/env bash
# Provision libtorch 2.11.0 (the version tch 0.24 needs, and the one the lent GPU machine runs) from PyPI's torch wheel into a per-user
# cache outside the work tree, once, and print the path of its `torch/` folder (which holds lib/ and
# include/). Idempotent and safe against two builds racing (flock + atomic rename).
#   LT_LIBTORCH_CACHE  overrides the cache folder (default: ~/.cache/lt)
#   LIBTORCH           if already set to a folder with lib/libtorch_cpu.so, it is used as is.
set -euo pipefail
TORCH_VERSION=2.11.0

if [ -n "${LIBTORCH:-}" ] && [ -f "$LIBTORCH/lib/libtorch_cpu.so" ]; then
  echo "$LIBTORCH"; exit 0
fi

cache="${LT_LIBTORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lt}"
dest="$cache/torch-$TORCH_VERSION"
if [ -f "$dest/.complete" ]; then echo "$dest/torch"; exit 0; fi

py=""
for c in python3 python; do
  if command -v "$c" >/dev/null 2>&1; then py="$c"; break; fi
done
if [ -z "$py" ]; then
  echo "lt: python3 is needed once to fetch libtorch $TORCH_VERSION from PyPI; install it (Debian: apt-get install python3 python3-pip)" >&2
  exit 1
fi
if ! "$py" -m pip --version >/dev/null 2>&1; then
  echo "lt: pip is needed once to fetch libtorch $TORCH_VERSION from PyPI; install it (Debian: apt-get install python3-pip)" >&2
  exit 1
fi

mkdir -p "$cache"
exec 9>"$cache/.torch-$TORCH_VERSION.lock"
flock 9
if [ -f "$dest/.complete" ]; then echo "$dest/torch"; exit 0; fi

echo "lt: first build: downloading torch==$TORCH_VERSION from PyPI as libtorch (~0.5 GB download, ~4.7 GB installed, 1-3 min) into $dest" >&2
tmp="$cache/.torch-$TORCH_VERSION.partial.$$"
rm -rf "$tmp" "$cache"/.torch-"$TORCH_VERSION".partial.*
"$py" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
  --target "$tmp" "torch==$TORCH_VERSION" >&2
[ -f "$tmp/torch/lib/libtorch_cpu.so" ] || { echo "lt: torch wheel installed but $tmp/torch/lib/libtorch_cpu.so is missing" >&2; exit 1; }
touch "$tmp/.complete"
rm -rf "$dest"
mv "$tmp" "$dest"
echo "$dest/torch"
