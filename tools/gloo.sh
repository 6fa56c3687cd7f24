#!/usr/bin/env bash
# Provision gloo's C++ headers, which lt's distributed backend (csrc/dist.cpp: c10d ProcessGroupGloo)
# compiles against. The torch wheel ships libtorch's gloo code but not gloo's headers; Debian's
# libgloo-dev has matching ones. Headers only: lt never links -lgloo (libtorch_cpu.so carries gloo).
# Idempotent. Prints the include folder that holds gloo/.
#   LT_GLOO_INCLUDE  overrides the folder (it must contain gloo/config.h).
set -euo pipefail

if [ -n "${LT_GLOO_INCLUDE:-}" ]; then
  if [ -f "$LT_GLOO_INCLUDE/gloo/config.h" ]; then echo "$LT_GLOO_INCLUDE"; exit 0; fi
  echo "lt: LT_GLOO_INCLUDE=$LT_GLOO_INCLUDE does not contain gloo/config.h" >&2
  exit 1
fi
if [ -f /usr/include/gloo/config.h ]; then echo /usr/include; exit 0; fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "lt: first build: installing gloo's headers (apt-get install libgloo-dev)" >&2
  exec 9>/tmp/.lt-gloo-apt.lock
  flock 9
  if [ ! -f /usr/include/gloo/config.h ]; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends libgloo-dev >&2; then
      apt-get update >&2
      apt-get install -y --no-install-recommends libgloo-dev >&2
    fi
  fi
  if [ -f /usr/include/gloo/config.h ]; then echo /usr/include; exit 0; fi
fi
echo "lt: gloo's C++ headers are needed to build lt's distributed backend and /usr/include/gloo is missing." >&2
echo "    Install them as root (Debian/Ubuntu: apt-get install libgloo-dev), or point LT_GLOO_INCLUDE" >&2
echo "    at a folder that holds gloo/ (headers of gloo matching libtorch 2.11)." >&2
exit 1
