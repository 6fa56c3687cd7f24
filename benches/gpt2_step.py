"""Peer of benches/gpt2_step.rhai: the same GPT-2 (transformers' GPT2LMHeadModel) and loop in plain
PyTorch, 1 thread.

Run: OMP_NUM_THREADS=1 PYTHONPATH=<transformers, torch 2.11> python3 benches/gpt2_step.py
"""
import time
import torch
from transformers import GPT2Config, GPT2LMHeadModel

torch.set_num_threads(1)
config = dict(vocab_size=1024, n_positions=128, n_embd=128, n_layer=4, n_head=4)
batch, seq, warmup, steps = 8, 128, 5, 30
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(**config, attn_implementation="sdpa")).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
ids = torch.randint(0, config["vocab_size"], (batch, seq))
for s in range(warmup + steps):
    if s == warmup:
        t, cpu = time.perf_counter(), time.process_time()
    out = model(input_ids=ids, labels=ids)
    opt.zero_grad()
    out.loss.backward()
    opt.step()
ms = (time.perf_counter() - t) * 1000 / steps
cpu_ms = (time.process_time() - cpu) * 1000 / steps
n = sum(p.numel() for p in model.parameters())
print(f"transformers GPT2LMHeadModel {config}: {n} parameters, {ms:.2f} ms/step, CPU {cpu_ms:.2f} ms/step (batch {batch}, seq {seq}, {steps} steps)")
