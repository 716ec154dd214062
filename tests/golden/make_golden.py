#!/usr/bin/python3
"""Golden outputs of the parameter-golf reference GPT for pgolf's C++ tests.

A faithful PyTorch port of the reference model (train_gpt.py of the challenge: GPT, Block,
CausalSelfAttention, MLP, Rotary, CastedLinear), run in float64 on the CPU. PyTorch 1.13 (Debian's
python3-torch) lacks F.rms_norm and GQA in scaled_dot_product_attention, so both are written out by
hand. Extensions beyond the reference, each as the records define it: partial RoPE (rope_dims < head
dim), LeakyReLU(0.5)^2, and depth recurrence (virtual layer v runs block v % blocks).

For each case it writes <case>.manifest (spec, shapes, loss) and <case>.bin (little-endian: int32
inputs, int32 targets, float64 parameters, float64 gradients, both in manifest order). Running it
again regenerates byte-identical files. Usage: /usr/bin/python3 make_golden.py [output_dir]
"""
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)  # a fixed reduction order: byte-identical reruns
torch.set_default_dtype(torch.float64)
FLT_EPSILON = 1.1920928955078125e-07  # what F.rms_norm(eps=None) uses for float32 inputs


def rms_norm(x, eps):
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


class RMSNorm(nn.Module):
    def __init__(self, eps):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.eps)


class CastedLinear(nn.Linear):
    # The reference keeps an fp32 master weight and casts at matmul time; in float64 the cast is a no-op.
    def forward(self, x):
        return F.linear(x, self.weight.to(x.dtype))


class Rotary(nn.Module):
    def __init__(self, rope_dims, base):
        super().__init__()
        self.rope_dims = rope_dims
        self.inv_freq = 1.0 / (base ** (torch.arange(0, rope_dims, 2, dtype=torch.float64) / rope_dims))

    def forward(self, seq_len):
        t = torch.arange(seq_len, dtype=torch.float64)
        freqs = torch.outer(t, self.inv_freq)
        return freqs.cos()[None, None, :, :], freqs.sin()[None, None, :, :]


def apply_rotary_emb(x, cos, sin, rope_dims):
    # Half-split pairs (i, i + rd/2) on the first rope_dims; the rest pass through (partial RoPE).
    rot, rest = x[..., :rope_dims], x[..., rope_dims:]
    half = rope_dims // 2
    x1, x2 = rot[..., :half], rot[..., half:]
    rot = torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)
    return torch.cat((rot, rest), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, num_heads, num_kv_heads, rope_dims, rope_base, qk_gain_init, eps):
        super().__init__()
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = dim // num_heads
        self.rope_dims, self.eps = rope_dims, eps
        kv_dim = num_kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        self.proj._zero_init = True
        self.q_gain = nn.Parameter(torch.full((num_heads,), qk_gain_init))
        self.rotary = Rotary(rope_dims, rope_base)

    def forward(self, x):
        bsz, seqlen, dim = x.shape
        q = self.c_q(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = rms_norm(q, self.eps)
        k = rms_norm(k, self.eps)
        cos, sin = self.rotary(seqlen)
        q = apply_rotary_emb(q, cos, sin, self.rope_dims)
        k = apply_rotary_emb(k, cos, sin, self.rope_dims)
        q = q * self.q_gain[None, :, None, None]
        # GQA by repeating KV heads (what enable_gqa does), then causal softmax attention.
        rep = self.num_heads // self.num_kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        mask = torch.ones(seqlen, seqlen, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
        y = scores.softmax(dim=-1) @ v
        y = y.transpose(1, 2).contiguous().reshape(bsz, seqlen, dim)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, dim, mlp_mult, activation):
        super().__init__()
        hidden = mlp_mult * dim
        self.fc = CastedLinear(dim, hidden, bias=False)
        self.proj = CastedLinear(hidden, dim, bias=False)
        self.proj._zero_init = True
        self.activation = activation

    def forward(self, x):
        u = self.fc(x)
        if self.activation == "relu2":
            x = torch.relu(u)
        else:
            x = F.leaky_relu(u, negative_slope=0.5)
        return self.proj(x.square())


class Block(nn.Module):
    def __init__(self, s):
        super().__init__()
        dim = s["dim"]
        self.attn_norm = RMSNorm(s["eps"])
        self.mlp_norm = RMSNorm(s["eps"])
        self.attn = CausalSelfAttention(dim, s["heads"], s["kv_heads"], s["rope_dims"], s["rope_base"],
                                        s["qk_gain_init"], s["eps"])
        self.mlp = MLP(dim, s["mult"], s["activation"])
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))

    def forward(self, x, x0):
        mix = self.resid_mix
        x = mix[0][None, None, :] * x + mix[1][None, None, :] * x0
        attn_out = self.attn(self.attn_norm(x))
        x = x + self.attn_scale[None, None, :] * attn_out
        x = x + self.mlp_scale[None, None, :] * self.mlp(self.mlp_norm(x))
        return x


class GPT(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        layers = s["layers"]
        self.num_blocks = layers // s["loops"]
        self.tok_emb = nn.Embedding(s["vocab"], s["dim"])
        self.num_encoder_layers = layers // 2 if s["unet"] else 0
        self.num_decoder_layers = layers - self.num_encoder_layers
        self.num_skip_weights = min(self.num_encoder_layers, self.num_decoder_layers)
        self.blocks = nn.ModuleList([Block(s) for _ in range(self.num_blocks)])
        if self.num_skip_weights > 0:
            self.skip_weights = nn.Parameter(torch.ones(self.num_skip_weights, s["dim"]))
        self.final_norm = RMSNorm(s["eps"])
        self.lm_head = None if s["tied"] else CastedLinear(s["dim"], s["vocab"], bias=False)
        if self.lm_head is not None:
            self.lm_head._zero_init = True
        self._init_weights()

    def _init_weights(self):
        if self.s["tied"]:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=self.s["init_std"])
        for module in self.modules():
            if isinstance(module, nn.Linear) and getattr(module, "_zero_init", False):
                nn.init.zeros_(module.weight)

    def block_at(self, v):
        return self.blocks[v % self.num_blocks]

    def forward(self, input_ids, target_ids):
        x = self.tok_emb(input_ids)
        x = rms_norm(x, self.s["eps"])
        x0 = x
        skips = []
        for i in range(self.num_encoder_layers):
            x = self.block_at(i)(x, x0)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:
                x = x + self.skip_weights[i][None, None, :] * skips.pop()
            x = self.block_at(self.num_encoder_layers + i)(x, x0)
        x = self.final_norm(x).reshape(-1, x.size(-1))
        targets = target_ids.reshape(-1)
        logits_proj = F.linear(x, self.tok_emb.weight) if self.lm_head is None else self.lm_head(x)
        cap = self.s["softcap"]
        logits = cap * torch.tanh(logits_proj / cap)
        return F.cross_entropy(logits, targets, reduction="mean")


def pgolf_order(model):
    """Parameters in pgolf's parameter-table order (the C++ test checks names and sizes)."""
    names = ["tok_emb.weight"]
    for b in range(model.num_blocks):
        for suffix in ["attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "attn.proj.weight",
                       "attn.q_gain", "mlp.fc.weight", "mlp.proj.weight", "attn_scale", "mlp_scale",
                       "resid_mix"]:
            names.append(f"blocks.{b}.{suffix}")
    if model.num_skip_weights > 0:
        names.append("skip_weights")
    if model.lm_head is not None:
        names.append("lm_head.weight")
    params = dict(model.named_parameters())
    assert set(names) == set(params), (sorted(set(names) ^ set(params)))
    return [(n, params[n]) for n in names]


BASE = dict(vocab=64, dim=32, layers=3, loops=1, heads=4, kv_heads=4, rope_dims=8, rope_base=10000.0,
            qk_gain_init=1.5, mult=2, activation="relu2", tied=True, init_std=0.005, softcap=30.0,
            eps=FLT_EPSILON, unet=True)
CASES = {
    # The reference architecture at a tiny size: MHA, full RoPE, relu^2, tied head, U-Net skips.
    "tiny_reference": dict(BASE, batch=2, seq=16, seed=1),
    # GQA 4:2, partial RoPE (4 of 8 dims), LeakyReLU^2, MLP x3, untied head, shared blocks (4 virtual
    # layers over 2 blocks), softcap 10.
    "tiny_gqa_partial_rope": dict(BASE, layers=4, loops=2, kv_heads=2, rope_dims=4, rope_base=500.0,
                                  qk_gain_init=2.0, mult=3, activation="leaky_relu2", tied=False,
                                  softcap=10.0, batch=3, seq=12, seed=2),
}


def spec_line(s):
    keys = ["vocab", "dim", "layers", "loops", "heads", "kv_heads", "rope_dims", "rope_base", "qk_gain_init",
            "mult", "activation", "tied", "init_std", "softcap", "eps", "unet"]
    def fmt(v):
        if isinstance(v, bool):
            return "1" if v else "0"
        if isinstance(v, float):
            return repr(v)
        return str(v)
    return " ".join(f"{k}={fmt(s[k])}" for k in keys)


def write_case(out_dir, name, script, header, x, y, ordered):
    """<name>.manifest: the header lines, then "param NAME COUNT" per tensor; <name>.bin: int32 x, y,
    then float64 weights and gradients in `ordered` order (a parameter without a gradient writes 0s)."""
    with open(os.path.join(out_dir, name + ".manifest"), "w") as f:
        f.write(f"# written by tests/golden/{script}; do not edit\n")
        for line in header:
            f.write(line + "\n")
        for n, p in ordered:
            f.write(f"param {n} {p.numel()}\n")
    with open(os.path.join(out_dir, name + ".bin"), "wb") as f:
        f.write(struct.pack(f"<{x.numel()}i", *x.reshape(-1).tolist()))
        f.write(struct.pack(f"<{y.numel()}i", *y.reshape(-1).tolist()))
        for _, p in ordered:
            f.write(struct.pack(f"<{p.numel()}d", *p.detach().reshape(-1).tolist()))
        for _, p in ordered:
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            f.write(struct.pack(f"<{p.numel()}d", *g.reshape(-1).tolist()))


def perturb(ordered):
    """Perturbs the reference init so zero projections and unit scales hide no gradient path."""
    with torch.no_grad():
        for n, p in ordered:
            if n in ("tok_emb.weight", "lm_head.weight"):
                scale = 1.0
            elif p.dim() == 2 and p.shape[0] != 2:
                scale = 1.0 / math.sqrt(p.shape[1])
            else:
                scale = 0.3
            p.add_(scale * torch.randn(p.shape))


def random_batch(s):
    tokens = torch.randint(0, s["vocab"], (s["batch"] * s["seq"] + 1,))
    return tokens[:-1].reshape(s["batch"], s["seq"]), tokens[1:].reshape(s["batch"], s["seq"])


def make_case(name, s, out_dir):
    torch.manual_seed(s["seed"])
    model = GPT(s)
    ordered = pgolf_order(model)
    perturb(ordered)
    x, y = random_batch(s)
    loss = model(x, y)
    loss.backward()

    write_case(out_dir, name, "make_golden.py",
               [f"spec {spec_line(s)}", f"batch {s['batch']}", f"seq {s['seq']}", f"loss {loss.item()!r}"], x, y, ordered)
    print(f"{name}: loss {loss.item():.12f}, {sum(p.numel() for _, p in ordered)} parameters")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for name, s in CASES.items():
        make_case(name, s, out_dir)


if __name__ == "__main__":
    main()
