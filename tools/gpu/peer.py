"""The PyTorch and Lightning peers of tools/gpu_check.sh's timing checks: the same models as
tools/gpu/resnet.rhai, gpt.rhai and mlp.rhai, trained the same way, timed the same way.

    python3 tools/gpu/peer.py --model resnet18 --framework torch --device cuda --precision bf16-mixed \
        --warmup 5 --steps 20 --batch-size 128 --img 224
    python3 tools/gpu/peer.py --model gpt --framework lightning --device cuda --precision bf16-mixed
    python3 tools/gpu/peer.py --model mlp --framework torch --device cuda --warmup 50 --steps 500

resnet18 / gpt: one synthetic batch made once on the device and reused every step (no host-to-device
copy in the loop), AdamW(fused=True), autocast for "bf16-mixed" / "16-mixed" around forward + loss
(as lt and Lightning do), no logging. mlp: a CPU TensorDataset of batch×50 samples in a shuffling
DataLoader, batches moved to the device each step, Adam, `loss.item()` every step (what lt's
`this.log` costs). `warmup` untimed steps, then `steps` timed ones; the clock is read after
torch.cuda.synchronize(). Prints `GPUCHECK ms_per_step=<float>` (and the versions), or exits 3 with
`GPUCHECK unavailable=<reason>` when the framework cannot be imported.
"""
import argparse
import os
import sys
import time


def build(args, torch):
    nn = torch.nn

    class ConvBN(nn.Module):
        def __init__(self, cin, cout, k, stride):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x):
            return self.bn(self.conv(x))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.a = ConvBN(cin, cout, 3, stride)
            self.b = ConvBN(cout, cout, 3, 1)
            self.down = ConvBN(cin, cout, 1, stride) if stride != 1 or cin != cout else None

        def forward(self, x):
            out = self.b(self.a(x).relu())
            return (out + (self.down(x) if self.down is not None else x)).relu()

    class ResNet18(nn.Module):
        def __init__(self, w, classes):
            super().__init__()
            self.stem = ConvBN(3, w, 7, 2)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)
            layers, cin = [], w
            for s in range(4):
                cout = w * (1 << s)
                for i in range(2):
                    layers.append(Block(cin, cout, 2 if i == 0 and s > 0 else 1))
                    cin = cout
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, classes)

        def forward(self, x):
            h = self.layers(self.pool(self.stem(x).relu()))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))

    class GPT(nn.Module):
        def __init__(self, vocab, seq_len, d, heads, layers, dropout):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(seq_len, d)
            self.blocks = nn.ModuleList([
                nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=True) for _ in range(layers)])
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab)

        def forward(self, x):
            t = x.shape[1]
            positions = torch.arange(t, device=x.device)
            h = self.tok(x) + self.pos(positions)
            mask = positions.unsqueeze(0) > positions.unsqueeze(1)
            for b in self.blocks:
                h = b(h, src_mask=mask, is_causal=True)
            return self.head(self.norm(h))

    if args.model == "resnet18":
        return ResNet18(args.width, args.classes)
    if args.model == "gpt":
        return GPT(args.vocab, args.seq_len, args.d_model, args.heads, args.layers, args.dropout)
    return nn.Sequential(nn.Linear(784, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))


def synthetic_batch(args, torch, device):
    torch.manual_seed(0)
    if args.model == "resnet18":
        return (torch.randn(args.batch_size, 3, args.img, args.img, device=device),
                torch.randint(0, args.classes, (args.batch_size,), device=device))
    x = torch.randint(0, args.vocab, (args.batch_size, args.seq_len), device=device)
    return x, x


def loss_of(args, torch, model, x, y):
    out = model(x)
    if args.model == "gpt":
        return torch.nn.functional.cross_entropy(out.reshape(-1, args.vocab), y.reshape(-1))
    return torch.nn.functional.cross_entropy(out, y)


def mlp_loader(args, torch):
    from torch.utils.data import DataLoader, TensorDataset
    torch.manual_seed(0)
    n = args.batch_size * 50
    return DataLoader(TensorDataset(torch.randn(n, 784), torch.randint(0, 10, (n,))), batch_size=args.batch_size,
                      shuffle=True)


def make_optimizer(args, torch, model):
    if args.model == "mlp":
        return torch.optim.Adam(model.parameters(), lr=1e-3)
    return torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, fused=True)


def sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(args, torch, device):
    if args.precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if args.precision == "16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    import contextlib
    return contextlib.nullcontext()


def run_torch(args, torch, device):
    torch.manual_seed(0)
    model = build(args, torch).to(device).train()
    print(f"GPUCHECK params={sum(p.numel() for p in model.parameters())}")
    opt = make_optimizer(args, torch, model)
    total = args.warmup + args.steps
    loader = mlp_loader(args, torch) if args.model == "mlp" else None
    if loader is None:
        x, y = synthetic_batch(args, torch, device)
    step, t0, logged = 0, None, 0.0
    while True:
        for b in (loader if loader is not None else range(total + 1)):
            if step == args.warmup:
                sync(torch, device)
                t0 = time.perf_counter()
            elif step == total:
                sync(torch, device)
                return (time.perf_counter() - t0) * 1e3 / args.steps
            if loader is not None:
                x, y = b[0].to(device), b[1].to(device)
            with autocast(args, torch, device):
                loss = loss_of(args, torch, model, x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if loader is not None:
                logged += loss.item()   # what lt's this.log("train_loss", loss) costs every step
            step += 1


def run_lightning(args, torch, device):
    try:
        import lightning.pytorch as pl
    except ImportError:
        try:
            import pytorch_lightning as pl
        except ImportError as e:
            print(f"GPUCHECK unavailable=neither lightning nor pytorch_lightning imports ({e})")
            sys.exit(3)
    import logging
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    from torch.utils.data import DataLoader, TensorDataset
    total = args.warmup + args.steps
    result = {}

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = build(args, torch)

        def training_step(self, batch, batch_idx):
            if args.model == "mlp":
                x, y = batch
                loss = loss_of(args, torch, self.net, x, y)
                self.log("train_loss", loss)
                return loss
            if not hasattr(self, "bx"):
                self.bx, self.by = synthetic_batch(args, torch, self.device)
            return loss_of(args, torch, self.net, self.bx, self.by)

        def configure_optimizers(self):
            return make_optimizer(args, torch, self.net)

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            s = trainer.global_step
            if s == args.warmup:
                sync(torch, device)
                result["t0"] = time.perf_counter()
            elif s == total:
                sync(torch, device)
                result["ms"] = (time.perf_counter() - result["t0"]) * 1e3 / args.steps

    torch.manual_seed(0)
    if args.model == "mlp":
        loader = mlp_loader(args, torch)
    else:
        loader = DataLoader(TensorDataset(torch.zeros(total + 4, 1)), batch_size=1)
    precision = {"32-true": "32-true", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed"}[args.precision]
    trainer = pl.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=precision,
                         max_steps=total + 1, max_epochs=-1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[Clock()])
    trainer.fit(Module(), loader)
    print(f"GPUCHECK lightning={pl.__version__}")
    return result["ms"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["resnet18", "gpt", "mlp"], required=True)
    p.add_argument("--framework", choices=["torch", "lightning"], default="torch")
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed"])
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    # resnet18
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--classes", type=int, default=10)
    # gpt
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--dropout", type=float, default=0.1)
    # mlp
    p.add_argument("--hidden", type=int, default=256)
    args = p.parse_args()
    import torch
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("GPUCHECK unavailable=torch.cuda.is_available() is False")
        sys.exit(3)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(f"GPUCHECK torch={torch.__version__} device_name={name.replace(' ', '_')}")
    ms = run_lightning(args, torch, device) if args.framework == "lightning" else run_torch(args, torch, device)
    print(f"GPUCHECK ms_per_step={ms} steps={args.steps} framework={args.framework} pid={os.getpid()}")


if __name__ == "__main__":
    main()
