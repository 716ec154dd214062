#!/usr/bin/env python3
"""pgolf vs PyTorch on one GPU: the baseline GPT (9x512, 524,288 tokens per step) at seq 1024 and 2048, same run.

PyTorch side: a faithful port of the reference trainer's model (CastedLinear weights in fp32, bf16
autocast, RMSNorm, half-split RoPE, QK-norm, q_gain, GQA through scaled_dot_product_attention with
is_causal, relu^2 MLP, resid_mix, attn/mlp scales, U-Net skips, tied head, softcap 30) compiled
with torch.compile, Muon (Nesterov 0.95, 5 Newton-Schulz steps in bf16) for block matrices and
fused Adam (0.9, 0.95) for the embedding and scalars; 8 micro-batches of 64 x 1024 tokens per step
(config baseline) or of 32 x 2048 (config seq2048: the records' sequence length, where attention is a
larger share of the step).
Both sides draw skewed random tokens and time whole steps with the device synchronised, after
warm-up steps (which include torch.compile's compilation).

    python3 bench/compare_torch_cuda.py --pgolf build/bench/pgolf-bench-cuda-step [--configs baseline,seq2048]
"""
import argparse
import re
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, DIM, LAYERS, HEADS, KV_HEADS, MLP_MULT, SOFTCAP, ROPE_BASE, QK_GAIN = 1024, 512, 9, 8, 4, 2, 30.0, 10000.0, 1.5


class CastedLinear(nn.Linear):
    def forward(self, x):
        return F.linear(x, self.weight.to(x.dtype))


def rms_norm(x):
    return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    def __init__(self, dim, seq):
        super().__init__()
        inv = 1.0 / (ROPE_BASE ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        f = torch.outer(torch.arange(seq, dtype=torch.float32), inv)
        self.register_buffer("cos", f.cos()[None, None], persistent=False)
        self.register_buffer("sin", f.sin()[None, None], persistent=False)

    def forward(self, x):
        h = x.size(-1) // 2
        a, b = x[..., :h], x[..., h:]
        c, s = self.cos.to(x.dtype), self.sin.to(x.dtype)
        return torch.cat((a * c + b * s, -a * s + b * c), dim=-1)


class Attention(nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.hd = DIM // HEADS
        self.c_q = CastedLinear(DIM, DIM, bias=False)
        self.c_k = CastedLinear(DIM, KV_HEADS * self.hd, bias=False)
        self.c_v = CastedLinear(DIM, KV_HEADS * self.hd, bias=False)
        self.proj = CastedLinear(DIM, DIM, bias=False)
        nn.init.zeros_(self.proj.weight)
        self.q_gain = nn.Parameter(torch.full((HEADS,), QK_GAIN))
        self.rotary = Rotary(self.hd, seq)

    def forward(self, x):
        B, T, _ = x.shape
        q = self.c_q(x).reshape(B, T, HEADS, self.hd).transpose(1, 2)
        k = self.c_k(x).reshape(B, T, KV_HEADS, self.hd).transpose(1, 2)
        v = self.c_v(x).reshape(B, T, KV_HEADS, self.hd).transpose(1, 2)
        q, k = self.rotary(rms_norm(q)), self.rotary(rms_norm(k))
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, DIM))


class Block(nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.attn = Attention(seq)
        self.fc = CastedLinear(DIM, MLP_MULT * DIM, bias=False)
        self.mlp_proj = CastedLinear(MLP_MULT * DIM, DIM, bias=False)
        nn.init.zeros_(self.mlp_proj.weight)
        self.attn_scale = nn.Parameter(torch.ones(DIM))
        self.mlp_scale = nn.Parameter(torch.ones(DIM))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(DIM), torch.zeros(DIM))))

    def forward(self, x, x0):
        m = self.resid_mix.to(x.dtype)
        x = m[0] * x + m[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x))
        return x + self.mlp_scale.to(x.dtype) * self.mlp_proj(torch.relu(self.fc(rms_norm(x))).square())


class GPT(nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.tok_emb = nn.Embedding(VOCAB, DIM)
        nn.init.normal_(self.tok_emb.weight, std=0.005)
        self.blocks = nn.ModuleList(Block(seq) for _ in range(LAYERS))
        self.enc = LAYERS // 2
        self.skip_weights = nn.Parameter(torch.ones(min(self.enc, LAYERS - self.enc), DIM))

    def forward(self, idx, target):
        x = x0 = rms_norm(self.tok_emb(idx))
        skips = []
        for i in range(self.enc):
            x = self.blocks[i](x, x0)
            skips.append(x)
        for i in range(LAYERS - self.enc):
            if skips:
                x = x + self.skip_weights[i].to(x.dtype) * skips.pop()
            x = self.blocks[self.enc + i](x, x0)
        logits = F.linear(rms_norm(x), self.tok_emb.weight.to(x.dtype)).float()
        logits = SOFTCAP * torch.tanh(logits / SOFTCAP)
        return F.cross_entropy(logits.view(-1, VOCAB), target.view(-1))


def newton_schulz5(G, steps=5):
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16()
    X = X / (X.norm() + 1e-7)
    t = G.size(0) > G.size(1)
    if t:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if t else X


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr, momentum=0.95):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                st = self.state[p]
                if "buf" not in st:
                    st["buf"] = torch.zeros_like(p.grad)
                buf = st["buf"]
                buf.mul_(g["momentum"]).add_(p.grad)
                u = newton_schulz5(p.grad.add(buf, alpha=g["momentum"]))
                u *= max(1, p.size(0) / p.size(1)) ** 0.5
                p.add_(u.to(p.dtype), alpha=-g["lr"])


def skewed_tokens(n, gen):
    u = torch.rand(n, generator=gen, device="cuda")
    return (u * u * u * VOCAB).long().clamp_(max=VOCAB - 1)


def torch_tokens_per_s(batch_tokens, seq, micro, steps, warmup):
    torch.manual_seed(1337)
    model = GPT(seq).cuda()
    compiled = torch.compile(model)
    matrices = [p for n, p in model.blocks.named_parameters() if p.ndim == 2 and "resid_mix" not in n]
    scalars = [p for n, p in model.blocks.named_parameters() if p.ndim < 2 or "resid_mix" in n] + [model.skip_weights]
    muon = Muon(matrices, lr=0.04)
    adam = torch.optim.Adam([dict(params=[model.tok_emb.weight], lr=0.05), dict(params=scalars, lr=0.04)],
                            betas=(0.9, 0.95), eps=1e-8, fused=True)
    accum = batch_tokens // (micro * seq)
    gen = torch.Generator(device="cuda").manual_seed(0)
    data = [skewed_tokens(micro * seq + 1, gen) for _ in range(accum)]
    times = []
    for step in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for d in data:
            x, y = d[:-1].view(micro, seq), d[1:].view(micro, seq)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = compiled(x, y)
            (loss / accum).backward()
        muon.step()
        adam.step()
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    return ms, min(times), max(times), batch_tokens / (ms / 1e3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pgolf", required=True, help="path of the pgolf-bench-cuda-step binary")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--configs", default="baseline,seq2048", help="comma-separated: baseline (seq 1024), seq2048")
    args = ap.parse_args()
    configs = {"baseline": (524288, 1024, 64), "seq2048": (524288, 2048, 32)}
    names = [c for c in args.configs.split(",") if c]
    for name in names:
        if name not in configs:
            ap.error(f"unknown config '{name}' (baseline, seq2048)")
    for name in names:
        batch_tokens, seq, micro = configs[name]
        print(f"== {name}: {batch_tokens} tokens/step, seq {seq}, micro-batches of {micro} sequences", flush=True)
        out = subprocess.run([args.pgolf, "--batch-tokens", str(batch_tokens), "--seq", str(seq), "--micro-seqs",
                              str(micro), "--steps", str(args.steps), "--warmup", str(args.warmup)],
                             check=True, capture_output=True, text=True).stdout
        print(out.strip())
        pg = float(re.search(r"tokens/s: ([0-9.]+)", out).group(1))
        ms, lo, hi, tt = torch_tokens_per_s(batch_tokens, seq, micro, args.steps, args.warmup)
        print(f"\ntorch {torch.__version__} ({torch.cuda.get_device_name()}) train step: median {ms:.1f} ms "
              f"(min {lo:.1f}, max {hi:.1f}) over {args.steps} steps, {tt:.0f} tokens/s")
        print(f"ratio pgolf/torch tokens/s ({name}): {pg / tt:.2f}x\n", flush=True)


if __name__ == "__main__":
    main()
