#!/usr/bin/python3
"""Golden outputs for the Frugendorff's block techniques: a float64 PyTorch port of its forward
(parameter-golf PR #498, TECHNIQUES.md 7.2), written independently of pgolf's C++.

  e = E[u] + beta * (Eb[hash(u)] Pb^T)             BigramHash (XOR hash, bucket Vb - 1 at t = 0)
  x = SmearGate(RMSNorm(e))                        (1 - g) x_t + g x_{t-1}, g = 0 at BOS tokens
  x0 = x;  ve = sigma * (Eve[u] Pve^T)
  for each loop l:  x = x + p[l];  U-Net inside the loop (encoder pushes, decoder pops, shared w_j)
  block b:  x = m0 x + m1 x0;  n = RMSNorm(x) / sqrt(b + 1)
            q, k, v = n Wq^T, n Wk^T, n Wv^T (+ lambda_b ve on the VE blocks)
            q, k = RoPE(RMSNorm_head(q, k)) with the NTK-scaled base when T > train_seq_len
            y = attention(q * q_gain, k, v);  on the XSA blocks y_h -= (y_h . v^) v^ (own token)
            x = x + attn_scale * y Wo^T;  x = x + mlp_scale * relu(RMSNorm(x)/sqrt(b+1) W1^T)^2 W2^T
  loss = CE(30 tanh(RMSNorm(x) E^T / 30))

The tiny configuration turns every technique on and makes them overlap (block 2 has both the value
embedding and XSA, so XSA reads v after the value embedding, as the Frugendorff's code does), and the
batch holds BOS tokens inside rows. Files as make_golden.py writes them, parameters in pgolf's table
order. Usage: /usr/bin/python3 make_frugendorff_golden.py [output_dir]
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import FLT_EPSILON, CastedLinear, apply_rotary_emb, perturb, rms_norm, write_case  # noqa: E402

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)


def rotary(seq_len, rope_dims, base, train_seq_len):
    if train_seq_len > 0 and seq_len > train_seq_len:
        base = base * (seq_len / train_seq_len) ** (rope_dims / (rope_dims - 2))
    inv_freq = 1.0 / (base ** (torch.arange(0, rope_dims, 2, dtype=torch.float64) / rope_dims))
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return freqs.cos()[None, None, :, :], freqs.sin()[None, None, :, :]


def bigram_hash(u, buckets):
    h = torch.empty_like(u)
    h[:, 0] = buckets - 1
    h[:, 1:] = torch.bitwise_xor(36313 * u[:, 1:], 27191 * u[:, :-1]) % (buckets - 1)
    return h


class Block(nn.Module):
    def __init__(self, s):
        super().__init__()
        dim, hd = s["dim"], s["dim"] // s["heads"]
        kv_dim = s["kv_heads"] * hd
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        self.q_gain = nn.Parameter(torch.full((s["heads"],), s["qk_gain_init"]))
        self.fc = CastedLinear(dim, s["mult"] * dim, bias=False)
        self.mlp_proj = CastedLinear(s["mult"] * dim, dim, bias=False)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))


class Frugendorff(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        dim, hd = s["dim"], s["dim"] // s["heads"]
        kv_dim = s["kv_heads"] * hd
        self.tok_emb = nn.Embedding(s["vocab"], dim)
        self.bigram_embed = nn.Parameter(torch.zeros(s["bigram_buckets"], s["bigram_dim"]))
        self.bigram_proj = CastedLinear(s["bigram_dim"], dim, bias=False)
        self.bigram_scale = nn.Parameter(torch.tensor([0.05]))
        self.smear_gate = nn.Parameter(torch.zeros(dim))
        self.blocks = nn.ModuleList([Block(s) for _ in range(s["blocks"])])
        self.loop_pos = nn.Parameter(0.01 * torch.randn(s["loops"], dim))
        self.ve_embed = nn.Parameter(0.01 * torch.randn(s["vocab"], s["ve_dim"]))
        self.ve_proj = CastedLinear(s["ve_dim"], kv_dim, bias=False)
        self.ve_scale = nn.Parameter(torch.tensor([0.1]))
        self.ve_layer_scales = nn.Parameter(torch.ones(len(s["ve_blocks"])))
        self.enc = s["blocks"] // 2
        self.dec = s["blocks"] - self.enc
        self.skip_weights = nn.Parameter(torch.ones(min(self.enc, self.dec), dim))

    def block(self, b, x, x0, ve, u):
        s, m = self.s, self.blocks[b]
        eps, heads, kv_heads = s["eps"], s["heads"], s["kv_heads"]
        ln = 1.0 / math.sqrt(b + 1)
        x = m.resid_mix[0][None, None, :] * x + m.resid_mix[1][None, None, :] * x0
        n = rms_norm(x, eps) * ln
        bsz, seqlen, dim = n.shape
        hd = dim // heads
        q = m.c_q(n).reshape(bsz, seqlen, heads, hd).transpose(1, 2)
        k = m.c_k(n).reshape(bsz, seqlen, kv_heads, hd).transpose(1, 2)
        v = m.c_v(n)
        if b in s["ve_blocks"]:
            v = v + self.ve_layer_scales[s["ve_blocks"].index(b)] * ve
        v = v.reshape(bsz, seqlen, kv_heads, hd)
        q, k = rms_norm(q, eps), rms_norm(k, eps)
        cos, sin = rotary(seqlen, s["rope_dims"], s["rope_base"], s["train_seq_len"])
        q = apply_rotary_emb(q, cos, sin, s["rope_dims"]) * m.q_gain[None, :, None, None]
        k = apply_rotary_emb(k, cos, sin, s["rope_dims"])
        rep = heads // kv_heads
        kk = k.repeat_interleave(rep, dim=1)
        vv = v.transpose(1, 2).repeat_interleave(rep, dim=1)
        scores = (q @ kk.transpose(-2, -1)) / math.sqrt(hd)
        scores = scores.masked_fill(~torch.ones(seqlen, seqlen, dtype=torch.bool).tril(), float("-inf"))
        y = (scores.softmax(dim=-1) @ vv).transpose(1, 2)  # [B, T, H, D]
        if b in s["xsa_blocks"]:
            nv = F.normalize(v, dim=-1)  # [B, T, Hkv, D], the token's own value
            yg = y.reshape(bsz, seqlen, kv_heads, rep, hd)
            dot = (yg * nv[:, :, :, None, :]).sum(-1, keepdim=True)
            y = (yg - dot * nv[:, :, :, None, :]).reshape(bsz, seqlen, heads, hd)
        y = y.contiguous().reshape(bsz, seqlen, dim)
        x = x + m.attn_scale[None, None, :] * m.proj(y)
        h = torch.relu(m.fc(rms_norm(x, eps) * ln)).square()
        return x + m.mlp_scale[None, None, :] * m.mlp_proj(h)

    def forward(self, u, targets):
        s = self.s
        e = self.tok_emb(u) + self.bigram_scale * self.bigram_proj(self.bigram_embed[bigram_hash(u, s["bigram_buckets"])])
        x = rms_norm(e, s["eps"])
        g = torch.sigmoid(self.smear_gate)[None, None, :] * (u != s["bos_id"]).to(x.dtype)[:, :, None]
        prev = torch.cat((torch.zeros_like(x[:, :1]), x[:, :-1]), dim=1)
        x = (1 - g) * x + g * prev
        x0 = x
        ve = self.ve_scale * self.ve_proj(self.ve_embed[u])
        for loop in range(s["loops"]):
            x = x + self.loop_pos[loop][None, None, :]
            skips = []
            for i in range(self.enc):
                x = self.block(i, x, x0, ve, u)
                skips.append(x)
            for j in range(self.dec):
                if skips:
                    x = x + self.skip_weights[j][None, None, :] * skips.pop()
                x = self.block(self.enc + j, x, x0, ve, u)
        x = rms_norm(x, s["eps"]).reshape(-1, x.size(-1))
        z = F.linear(x, self.tok_emb.weight)
        cap = s["softcap"]
        return F.cross_entropy(cap * torch.tanh(z / cap), targets.reshape(-1), reduction="mean")

    def pgolf_order(self):
        p = dict(self.named_parameters())
        out = [("tok_emb.weight", p["tok_emb.weight"]), ("bigram.embed.weight", p["bigram_embed"]),
               ("bigram.proj.weight", p["bigram_proj.weight"]), ("bigram.scale", p["bigram_scale"]),
               ("smear.gate", p["smear_gate"])]
        leaves = [("attn.c_q.weight", "c_q.weight"), ("attn.c_k.weight", "c_k.weight"),
                  ("attn.c_v.weight", "c_v.weight"), ("attn.proj.weight", "proj.weight"),
                  ("attn.q_gain", "q_gain"), ("mlp.fc.weight", "fc.weight"), ("mlp.proj.weight", "mlp_proj.weight"),
                  ("attn_scale", "attn_scale"), ("mlp_scale", "mlp_scale"), ("resid_mix", "resid_mix")]
        for b in range(self.s["blocks"]):
            out += [(f"blocks.{b}.{ours}", p[f"blocks.{b}.{theirs}"]) for ours, theirs in leaves]
        out += [("loop_pos", p["loop_pos"]), ("ve_shared.embed.weight", p["ve_embed"]),
                ("ve_shared.proj.weight", p["ve_proj.weight"]), ("ve_shared.scale", p["ve_scale"]),
                ("ve_layer_scales", p["ve_layer_scales"]), ("skip_weights", p["skip_weights"])]
        assert len(out) == len(p), sorted(set(p) - {n for n, _ in out})
        return out


CASES = {
    "tiny_frugendorff": dict(vocab=32, dim=16, heads=2, kv_heads=1, rope_dims=4, rope_base=10000.0, train_seq_len=4,
                             qk_gain_init=1.5, mult=4, softcap=30.0, eps=FLT_EPSILON, blocks=4, loops=2,
                             xsa_blocks=[2, 3], ve_blocks=[1, 2], ve_dim=8, bigram_buckets=16, bigram_dim=8,
                             bos_id=1, batch=2, seq=8, seed=5),
}


def make_case(name, s, out_dir):
    torch.manual_seed(s["seed"])
    model = Frugendorff(s)
    ordered = model.pgolf_order()
    perturb(ordered)
    tokens = torch.randint(0, s["vocab"], (s["batch"] * s["seq"] + 1,))
    tokens[0] = s["bos_id"]  # a BOS at a row start and two inside rows
    tokens[5] = s["bos_id"]
    tokens[s["seq"] + 3] = s["bos_id"]
    x, y = tokens[:-1].reshape(s["batch"], s["seq"]), tokens[1:].reshape(s["batch"], s["seq"])
    loss = model(x, y)
    loss.backward()
    header = ["spec frugendorff " + " ".join(f"{k}={v}" for k, v in s.items() if k not in ("batch", "seq", "seed"))
              .replace("[", "").replace("]", "").replace(", ", ","),
              f"batch {s['batch']}", f"seq {s['seq']}", f"loss {loss.item()!r}"]
    write_case(out_dir, name, "make_frugendorff_golden.py", header, x, y, ordered)
    print(f"{name}: loss {loss.item():.12f}, {sum(p.numel() for _, p in ordered)} parameters")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for name, s in CASES.items():
        make_case(name, s, out_dir)


if __name__ == "__main__":
    main()
