"""PyTorch's side of `lt bench trainer`, DESIGN.md's peer task: an MLP 784-H-10 trained with Adam
(lr 1e-3) on synthetic data (50 batches, cycled, reshuffled each epoch), loss logged every step,
1 thread, at H=256 / batch 64 and H=32 / batch 32, as
  (a) a raw PyTorch loop over a DataLoader(TensorDataset), `loss.item()` every step, and
  (b) PyTorch Lightning 2.6.6, `self.log("train_loss", loss)` every step (no progress bar,
      checkpointing, logger or model summary, as in lt's bench script).
Per step = (time of 2000 + 200 steps - time of 200 steps) / 2000, which removes fixed costs, as
`lt bench trainer` does. Start-up: wall time of a fresh process that imports, builds the model and
data, trains 1 step and exits (best of 3), and its peak RSS.

    PYTHONPATH=$HOME/.cache/lt/torch-2.11.0 python3 tools/bench_trainer_torch.py

If `pytorch_lightning` is not importable, it is installed into ~/.cache/lt/pl with
`pip install --target` (never needed by the tests).

Recorded on the 2-core dev machine (shared, load ~4.7), with `lt bench trainer` in the same minute:
  per step            H=256/b64   H=32/b32     start-up (1 step, exit)  peak RSS
  raw tch (floor)     2.41 ms     0.37 ms
  lt Trainer          1.72 ms     0.45 ms      0.39 s                   155 MB
  raw PyTorch loop    3.67 ms     1.33 ms      4.7 s (import 2.6 s)     784 MB
  Lightning 2.6.6     7.70 ms     3.07 ms      5.1 s (import 5.2 s)     807 MB
"""
import os
import resource
import subprocess
import sys
import time

PL_DIR = os.path.expanduser("~/.cache/lt/pl")
STEPS, WARM = 2000, 200
CONFIGS = [(256, 64), (32, 32)]


def ensure_lightning():
    if PL_DIR not in sys.path:
        sys.path.append(PL_DIR)
    try:
        import pytorch_lightning  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--target", PL_DIR, "--no-deps",
                               "pytorch-lightning==2.6.6", "lightning-utilities", "torchmetrics", "fsspec",
                               "packaging", "typing_extensions", "PyYAML", "tqdm", "numpy"])


def data(hidden, batch):
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    torch.manual_seed(0)
    n = batch * 50
    ds = TensorDataset(torch.randn(n, 784), torch.randint(0, 10, (n,)))
    return DataLoader(ds, batch_size=batch, shuffle=True)


def mlp(hidden):
    import torch
    return torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


def raw_seconds(hidden, batch, steps):
    import torch
    import torch.nn.functional as F
    torch.manual_seed(0)
    model = mlp(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = data(hidden, batch)
    t = time.perf_counter()
    done, logged = 0, 0.0
    while done < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            logged += loss.item()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - t


def lightning_seconds(hidden, batch, steps):
    import torch
    import torch.nn.functional as F
    import pytorch_lightning as pl

    class MLP(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp(hidden)

        def training_step(self, b, i):
            loss = F.cross_entropy(self.net(b[0]), b[1])
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    torch.manual_seed(0)
    model = MLP()
    loader = data(hidden, batch)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    t = time.perf_counter()
    trainer.fit(model, loader)
    return time.perf_counter() - t


def per_step_ms(fn, hidden, batch):
    return (fn(hidden, batch, STEPS + WARM) - fn(hidden, batch, WARM)) / STEPS * 1e3


STARTUP = {
    "import torch": "import torch",
    "raw loop, 1 step": "import sys; sys.argv=['x']; exec(open(%r).read().split('# --- '+'main')[0]); raw_seconds(256, 64, 1)",
    "import pytorch_lightning": "import sys; sys.path.append(%r); import pytorch_lightning" % PL_DIR,
    "Lightning fit, 1 step": ("import sys, logging; sys.path.append(%r); exec(open(%r).read().split('# --- '+'main')[0]); "
                              "logging.disable(logging.WARNING); lightning_seconds(256, 64, 1)"),
}


def startup(code):
    best, rss = float("inf"), 0.0
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
        best = min(best, time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return best, rss


# --- main
if __name__ == "__main__":
    import logging
    ensure_lightning()
    import torch
    import pytorch_lightning as pl
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, pytorch_lightning {pl.__version__}, {torch.get_num_threads()} thread")
    print(f"{'per step (ms)':<28}" + "".join(f"H={h}, batch {b}".rjust(18) for h, b in CONFIGS))
    raw = [per_step_ms(raw_seconds, h, b) for h, b in CONFIGS]
    light = [per_step_ms(lightning_seconds, h, b) for h, b in CONFIGS]
    print(f"{'raw PyTorch + DataLoader':<28}" + "".join(f"{v:18.3f}" for v in raw))
    print(f"{'PyTorch Lightning':<28}" + "".join(f"{v:18.3f}" for v in light))
    me = os.path.abspath(__file__)
    print(f"{'start-up (best of 3)':<28}{'wall s':>18}{'peak RSS MB':>18}")
    codes = {
        "import torch": STARTUP["import torch"],
        "raw loop, 1 step": STARTUP["raw loop, 1 step"] % me,
        "import pytorch_lightning": STARTUP["import pytorch_lightning"],
        "Lightning fit, 1 step": STARTUP["Lightning fit, 1 step"] % (PL_DIR, me),
    }
    # peak RSS from RUSAGE_CHILDREN is a running max over all children: run in increasing size
    starts = {}
    for name, code in codes.items():
        s, rss = startup(code)
        starts[name] = (s, rss)
        print(f"{name:<28}{s:18.2f}{rss:18.0f}")
    # one machine-readable line for `lt bench trainer`'s combined table
    import json
    print("#PEERS " + json.dumps({"raw": raw, "lightning": light,
                                  "raw_start": starts["raw loop, 1 step"], "lightning_start": starts["Lightning fit, 1 step"]}))
