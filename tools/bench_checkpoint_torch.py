"""PyTorch's side of `lt bench checkpoint`: torch.save / torch.load of 10 float32 tensors of 10M
values (100M parameters, 400 MB), best of 3, MB/s.
    PYTHONPATH=$HOME/.cache/lt/torch-2.11.0 python3 tools/bench_checkpoint_torch.py
"""
import os
import tempfile
import time

import torch

sd = {f"layer{i}.weight": torch.randn(10_000_000) for i in range(10)}
mb = 10 * 10_000_000 * 4 / 1e6
path = os.path.join(tempfile.mkdtemp(), "bench.pt")
save = load = float("inf")
for _ in range(3):
    t = time.perf_counter()
    torch.save(sd, path)
    os.sync()
    save = min(save, time.perf_counter() - t)
    t = time.perf_counter()
    back = torch.load(path, weights_only=True)
    load = min(load, time.perf_counter() - t)
os.remove(path)
print(f"torch.save {mb / save:.0f} MB/s, torch.load {mb / load:.0f} MB/s ({mb:.0f} MB)")
