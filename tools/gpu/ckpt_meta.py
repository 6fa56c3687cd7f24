"""Prints one value of an lt checkpoint's JSON metadata (tools/gpu_check.sh): an lt `.ckpt` is a
safetensors file whose header `__metadata__.lt` holds Lightning's keys as JSON. No torch needed.

    python3 tools/gpu/ckpt_meta.py FILE MixedPrecision.scale     # 65536.0
    python3 tools/gpu/ckpt_meta.py FILE global_step
Missing keys print nothing and exit 1; objects print as JSON.
"""
import json
import struct
import sys


def main():
    path, key = sys.argv[1], sys.argv[2]
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    value = json.loads(header.get("__metadata__", {}).get("lt", "{}"))
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            sys.exit(1)
        value = value[part]
    print(json.dumps(value) if isinstance(value, (dict, list)) else value)


if __name__ == "__main__":
    main()
