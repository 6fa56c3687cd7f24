"""Decoding + augmentation throughput, lt beside torchvision, on the same files in one run.

    PYTHONPATH=<torchvision 0.26>:<pillow>:<torch 2.11> python3 tools/bench_augment.py [path/to/lt]

Writes 200 photo-like 500x375 JPEGs (Pillow, quality 90) to a temporary folder, then times
RandomResizedCrop(224) + RandomHorizontalFlip + ToDtype(float32, scale) + Normalize, batch 32,
shuffled, on 2 workers: torchvision.io.decode_image + transforms.v2 under a DataLoader
(num_workers=2), and lt's data::image_files + data::transforms under data::loader (num_workers: 2).
Best of 3 epochs each, in images per second.
"""
import os, shutil, subprocess, sys, tempfile, time
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.io import decode_image, ImageReadMode
from torchvision.transforms import v2

N, W, H, BATCH, EPOCHS = 200, 500, 375, 32, 3
lt = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "release", "lt")
tmp = tempfile.mkdtemp(prefix="lt-bench-augment-")
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:H, 0:W]
files = []
for i in range(N):
    img = np.stack([(xx + i) % 256, (yy * 0.6 + i * 3) % 256, ((xx + yy) * 0.3) % 256], -1)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    p = os.path.join(tmp, f"{i:04d}.jpg")
    Image.fromarray(img, "RGB").save(p, quality=90)
    files.append(p)

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
tf = v2.Compose([v2.RandomResizedCrop(224), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                 v2.Normalize(MEAN, STD)])


class Files(Dataset):
    def __len__(self):
        return len(files)

    def __getitem__(self, i):
        return tf(decode_image(files[i], ImageReadMode.RGB))


best = float("inf")
dl = DataLoader(Files(), batch_size=BATCH, shuffle=True, num_workers=2, persistent_workers=True)
for _ in range(EPOCHS):
    t = time.perf_counter()
    for x in dl:
        assert x.shape[1:] == (3, 224, 224)
    best = min(best, time.perf_counter() - t)
print(f"torchvision decode_image + v2, DataLoader(num_workers=2): {N / best:.0f} images/s")

script = os.path.join(tmp, "bench.rhai")
with open(script, "w") as f:
    names = ", ".join(f'"{p}"' for p in files)
    f.write(f"""
let t = data::transforms::compose([data::transforms::random_resized_crop(224), data::transforms::random_horizontal_flip(),
    data::transforms::to_dtype("float32", #{{scale: true}}), data::transforms::normalize({MEAN}, {STD})]);
let ds = data::transformed(data::image_files([{names}], #{{mode: "RGB"}}), #{{transform: t}});
let l = data::loader(ds, #{{batch_size: {BATCH}, shuffle: true, num_workers: 2, seed: 0}});
let best = 1e9;
for e in 0..{EPOCHS} {{
    let t0 = timestamp();
    for b in l {{ if b.shape[1] != 3 {{ throw "shape"; }} }}
    let s = t0.elapsed;
    if s < best {{ best = s; }}
}}
print(`lt data::image_files + data::transforms, loader(num_workers: 2): ${{({N} / best).to_int()}} images/s`);
""")
out = subprocess.run([lt, "run", script], capture_output=True, text=True)
print(out.stdout.strip() or out.stderr.strip())
shutil.rmtree(tmp)
