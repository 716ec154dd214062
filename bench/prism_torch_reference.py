#!/usr/bin/python3
"""Wall time of the PRISM reference harness's training loop in PyTorch, for the speed comparison
with pgolf-prism-compare on the same CPU.

The models are the float32 PyTorch port of AFKmoney/prism used for the golden test
(tests/golden/make_prism_golden.py, reference behaviour) and the reference's two baselines as
PRISM.md 2.9 describes them (Transformer without positional encoding, 4 heads, causal attention
written out since torch 1.13 has no scaled_dot_product_attention; SSM with d_state 16, a Python loop
over T). The loop is the reference harness's: AdamW(3e-3, wd 0.01), warm-up max(1, steps/10) then
cosine, clip 1.0, batch 32, induction (3 pairs, V 12) generated per step with a per-example loop.

Run with Debian's interpreter:  /usr/bin/python3 bench/prism_torch_reference.py --steps 400 --threads 2
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
import make_prism_golden as port  # noqa: E402

torch.set_default_dtype(torch.float32)


class SwiGLU(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.w_gate = nn.Linear(d, h, bias=False)
        self.w_up = nn.Linear(d, h, bias=False)
        self.w_down = nn.Linear(h, d, bias=False)
        for w in (self.w_gate, self.w_up, self.w_down):
            nn.init.normal_(w.weight, std=0.02)

    def forward(self, x):
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class AttnBlock(nn.Module):
    def __init__(self, d, h, heads=4):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = port.RMSNorm(d, 1e-6), port.RMSNorm(d, 1e-6)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.ffn = SwiGLU(d, h)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.n1(x)).split(D, dim=-1)
        q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-1, -2) / math.sqrt(D // self.heads)
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.o(y)
        return x + self.ffn(self.n2(x))


class SsmBlock(nn.Module):
    def __init__(self, d, h, n=16):
        super().__init__()
        self.n1, self.n2 = port.RMSNorm(d, 1e-6), port.RMSNorm(d, 1e-6)
        self.B = nn.Linear(d, n, bias=False)
        self.dt = nn.Linear(d, 1)
        self.A_log = nn.Parameter(0.1 * torch.randn(n))
        self.out = nn.Linear(n, d, bias=False)
        self.ffn = SwiGLU(d, h)

    def forward(self, x):
        u = self.n1(x)
        dt = F.softplus(self.dt(u))
        A = -F.softplus(self.A_log)
        Bu = self.B(u)
        h = torch.zeros(x.shape[0], A.shape[0])
        ys = []
        for t in range(x.shape[1]):
            h = torch.exp(dt[:, t] * A) * h + dt[:, t] * Bu[:, t]
            ys.append(self.out(h))
        x = x + torch.stack(ys, dim=1)
        return x + self.ffn(self.n2(x))


class Baseline(nn.Module):
    def __init__(self, block, vocab, d=64, layers=3, h=128):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleList([block(d, h) for _ in range(layers)])
        self.norm_f = port.RMSNorm(d, 1e-6)

    def forward(self, ids, targets):
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x)
        logits = self.norm_f(x) @ self.embed.weight.t()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return ce, ce, torch.zeros(())


def reference_init(model):
    """The reference's init (PRISM.md 2): N(0, 0.02) for the embedding and every linear except the
    memory head's (PyTorch default), zero biases. The golden port leaves init to its caller."""
    heads = {id(m) for mod in model.modules() if isinstance(mod, port.MemoryHead) for m in mod.modules()}
    nn.init.normal_(model.embed.weight, std=0.02)
    for m in model.modules():
        if isinstance(m, nn.Linear) and id(m) not in heads:
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def induction_batch(gen, batch, n=3, data_tokens=10):
    x = torch.zeros(batch, 2 * n + 3, dtype=torch.long)
    y = torch.full((batch, 2 * n + 3), -1, dtype=torch.long)
    for i in range(batch):  # the reference builds keys per example
        keys = torch.randperm(data_tokens, generator=gen)[:n] + 2
        vals = torch.randint(2, 2 + data_tokens, (n,), generator=gen)
        q = int(torch.randint(0, n, (1,), generator=gen))
        x[i, 0:2 * n:2], x[i, 1:2 * n:2] = keys, vals
        x[i, 2 * n], x[i, 2 * n + 1] = 1, keys[q]
        y[i, 2 * n + 2] = vals[q]
    return x, y


def train(model, steps, batch, seed):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = induction_batch(gen, batch)
        loss, _, _ = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return time.perf_counter() - t0, loss.item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = dict(port.BASE, vocab=12, d=64, layers=3, k=4, m=64, slots=16, mult=2, topk=1, tied=True)
    makers = {
        "prism_reference": lambda: reference_init(port.Prism(cfg)),
        "transformer": lambda: Baseline(AttnBlock, 12),
        "ssm": lambda: Baseline(SsmBlock, 12),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, induction, {a.steps} steps, batch {a.batch}")
    for name, make in makers.items():
        torch.manual_seed(a.seed)
        model = make()
        params = sum(p.numel() for p in model.parameters())
        secs, last = train(model, a.steps, a.batch, a.seed)
        print(f"{name:18s} params {params:7d}  train {secs:7.2f} s  ({1000 * secs / a.steps:.2f} ms/step)  "
              f"last train loss {last:.4f}")


if __name__ == "__main__":
    main()
