"""Per-step time of ResNet-18 (10 classes) training, batch 16 of 64x64 images, SGD with momentum,
1 thread: lt's `models::resnet18` (tools/bench_resnet18.rhai, run with the lt binary) against
torchvision's `resnet18` in a plain PyTorch loop, in the same run, each the best of 3 rounds of 20
steps after 3 warm-up steps. Also checks the parameter counts agree.

    PYTHONPATH=/root/.cache/lt/pl:/root/.cache/lt/torch-2.11.0:/root/.cache/lt/pyextra-zoo-vision \
        python3 tools/bench_resnet18_torch.py [path/to/lt]
"""
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402
import torchvision  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def torch_ms(steps=20, warm=3):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(16, 3, 64, 64)
    y = torch.randint(0, 10, (16,))
    best = 1e9
    for _ in range(3):
        for _ in range(warm):
            loss = torch.nn.functional.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        t = time.perf_counter()
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        best = min(best, (time.perf_counter() - t) * 1000 / steps)
    return best, sum(p.numel() for p in m.parameters())


def lt_ms(lt):
    out = subprocess.run([lt, "run", os.path.join(HERE, "bench_resnet18.rhai")], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"), check=True).stdout
    return float(out.split("ms/step")[1].split()[0])


if __name__ == "__main__":
    lt = sys.argv[1] if len(sys.argv) > 1 else "lt"
    a = lt_ms(lt)
    b, n = torch_ms()
    c = lt_ms(lt)
    print(f"resnet18 batch 16x3x64x64, SGD step, 1 thread: lt {min(a, c):.1f} ms/step, PyTorch {b:.1f} ms/step "
          f"(torchvision parameters: {n:,})")
