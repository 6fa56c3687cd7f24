"""PyTorch's side of `lt bench optim`: one torch.optim.Adam step (foreach, and fused) over 100
parameter tensors of 100,000 float32 values, 1 thread, best of 20 after 3 warm-up steps.
Run: PYTHONPATH=$HOME/.cache/lt/torch-2.11.0 python3 benches/optim_adam.py
"""
import time
import torch

torch.set_num_threads(1)


def bench(**kw):
    ps = [torch.randn(100_000, requires_grad=True) for _ in range(100)]
    sum(p.sin().sum() for p in ps).backward()
    opt = torch.optim.Adam(ps, lr=1e-3, **kw)
    for _ in range(3):
        opt.step()
    best = float("inf")
    for _ in range(20):
        t = time.perf_counter()
        opt.step()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


print(f"torch.optim.Adam foreach  {bench(foreach=True):8.2f} ms/step")
print(f"torch.optim.Adam default  {bench():8.2f} ms/step  (single-tensor on CPU)")
print(f"torch.optim.Adam fused    {bench(fused=True):8.2f} ms/step")
