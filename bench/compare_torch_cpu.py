#!/usr/bin/python3
"""pgolf vs PyTorch on the CPU: the same tiny model and optimizer, the same data, the same machine.

PyTorch side: the reference GPT port of tests/golden/make_golden.py in float32 (PyTorch 1.13 has no
fused attention on the CPU, so attention is the explicit masked softmax), Muon as the reference
trainer writes it (momentum 0.95, Nesterov, 5 quintic Newton-Schulz steps, in float32 here as pgolf's
CPU path) for block matrices, Adam (0.9, 0.95, eps 1e-8) for the tied embedding and the scalars.
Both sides time full training steps (forward, backward, optimizer) on the bundled FineWeb shard,
8192 tokens per step at seq 256, after warm-up steps, with every core.

    /usr/bin/python3 bench/compare_torch_cpu.py --pgolf build/bench/pgolf-bench-cpu-step
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "golden"))
import make_golden  # noqa: E402  (the reference port; it sets float64 and 1 thread, undone below)

TINY = dict(vocab=1024, dim=128, layers=4, loops=1, unet=True, heads=4, kv_heads=2, rope_dims=32,
            rope_base=10000.0, qk_gain_init=1.5, mult=2, activation="relu2", tied=True, init_std=0.005,
            softcap=30.0, eps=make_golden.FLT_EPSILON)


def rotary_float32(self, seq_len):
    # The golden port builds its tables in float64; the benchmark runs in float32 throughout.
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), self.inv_freq.float())
    return freqs.cos()[None, None, :, :], freqs.sin()[None, None, :, :]


make_golden.Rotary.forward = rotary_float32


def newton_schulz5(G, steps):
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G / (G.norm() + 1e-7)
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if transposed else X


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr, momentum=0.95, backend_steps=5):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(g)
                g = g.add(buf, alpha=group["momentum"])
                g = newton_schulz5(g, group["backend_steps"])
                g *= max(1, g.size(0) / g.size(1)) ** 0.5
                p.add_(g, alpha=-group["lr"])


def torch_tokens_per_s(shard, batch_tokens, seq, steps, warmup, threads):
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(threads)
    torch.manual_seed(1337)
    model = make_golden.GPT(TINY)
    matrices = [p for n, p in model.blocks.named_parameters() if p.ndim == 2 and "resid_mix" not in n]
    scalars = [p for n, p in model.blocks.named_parameters() if p.ndim < 2 or "resid_mix" in n]
    scalars.append(model.skip_weights)
    muon = Muon(matrices, lr=0.04)
    adam = torch.optim.Adam([dict(params=[model.tok_emb.weight], lr=0.05), dict(params=scalars, lr=0.04)],
                            betas=(0.9, 0.95), eps=1e-8)
    pos, times = 0, []
    for step in range(warmup + steps):
        span = shard[pos:pos + batch_tokens + 1]
        pos += batch_tokens + 1
        x = torch.from_numpy(span[:-1].astype(np.int64)).view(-1, seq)
        y = torch.from_numpy(span[1:].astype(np.int64)).view(-1, seq)
        t0 = time.perf_counter()
        loss = model(x, y)
        model.zero_grad(set_to_none=True)
        loss.backward()
        muon.step()
        adam.step()
        t1 = time.perf_counter()
        if step >= warmup:
            times.append((t1 - t0) * 1e3)
    ms = statistics.mean(times)
    return ms, statistics.stdev(times) if len(times) > 1 else 0.0, batch_tokens / (ms / 1e3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pgolf", required=True, help="path of the pgolf-bench-cpu-step binary")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    batch_tokens, seq = 8192, 256
    shard_path = os.path.join(HERE, "..", "data", "fineweb_sp1024_mini", "fineweb_train_000000.bin")
    shard = np.fromfile(shard_path, dtype="<u2", offset=1024)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run([args.pgolf, "--spec", "tiny", "--batch-tokens", str(batch_tokens), "--seq", str(seq),
                          "--steps", str(args.steps), "--warmup", str(args.warmup)],
                         check=True, capture_output=True, text=True, env=env).stdout
    print(out.strip())
    pg = float(re.search(r"([0-9.]+) tokens/s", out).group(1))

    ms, sd, tt = torch_tokens_per_s(shard, batch_tokens, seq, args.steps, args.warmup, args.threads)
    print(f"torch {torch.__version__} train step: {ms:.1f} ms +- {sd:.1f} over {args.steps} steps, {tt:.0f} tokens/s "
          f"({args.threads} threads)")
    print(f"ratio pgolf/torch tokens/s: {pg / tt:.2f}x")


if __name__ == "__main__":
    main()
