"""PyTorch's side of the all-reduce figure (lt's side: `lt dist-selftest --devices 2 --bench 10000000`).
Same method: 3 warm-up sum all-reduces of N float32, then ITERS timed ones, each after a barrier;
rank 0 prints median and min. Run with the libtorch lt uses:
  PYTHONPATH=$HOME/.cache/lt/torch-2.11.0 python3 -m torch.distributed.run --nproc-per-node 2 \
      tools/bench_allreduce_torch.py [N] [ITERS]
"""
import sys
import time

import torch
import torch.distributed as dist

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 20
dist.init_process_group("gloo")
t = torch.ones(n, dtype=torch.float32)
for _ in range(3):
    dist.all_reduce(t)
times = []
for _ in range(iters):
    dist.barrier()
    s = time.perf_counter()
    dist.all_reduce(t)
    times.append((time.perf_counter() - s) * 1e3)
times.sort()
if dist.get_rank() == 0:
    print(f"torch all_reduce {n} float32 ({n * 4 / 1e6:.0f} MB), {dist.get_world_size()} processes, gloo: "
          f"median {times[len(times) // 2]:.1f} ms, min {times[0]:.1f} ms over {iters} iterations")
dist.destroy_process_group()
