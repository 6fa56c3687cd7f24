"""PyTorch's side of `lt bench data`: DataLoader over an MNIST-shaped TensorDataset
(60000x784 float32 + int64 labels), batch 64, shuffled, one epoch, 1 thread, best of 5.

    PYTHONPATH=$HOME/.cache/lt/torch-2.11.0 python3 tools/bench_data_torch.py

Recorded on the 2-core dev machine (shared, load ~2): PyTorch 2.13.0 3635 batches/s;
`lt bench data` in the same minute: 20648 batches/s from Rust, 20944 from a script's
`for b in loader` (5.7x).
"""
import time
import torch
from torch.utils.data import DataLoader, TensorDataset

torch.set_num_threads(1)
torch.manual_seed(0)
ds = TensorDataset(torch.randn(60000, 784), torch.randint(0, 10, (60000,)))
for workers in [0]:
    dl = DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        n = 0
        for x, y in dl:
            n += 1
        best = min(best, time.perf_counter() - t)
    print(f"pytorch DataLoader(TensorDataset), num_workers={workers}: {n / best:.0f} batches/s ({n} batches)")
