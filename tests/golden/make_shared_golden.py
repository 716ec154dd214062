#!/usr/bin/python3
"""Golden outputs for pgolf's depth schedules with matrix-only sharing (the strongest records'
looping): a float64 PyTorch port, written independently of pgolf's C++.

The model is the reference GPT (see make_golden.py for its pieces, imported from there) with two
changes, as the records loop a span of layers:
  * depth is an explicit schedule of virtual layers over physical blocks, here blocks 0..5 with the
    span 3..5 run three times: [0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5] (12 virtual layers, 6 blocks);
    the U-Net encoder/decoder split is computed on the virtual sequence (6 encoder layers, 6 decoder
    layers, 6 skip weights);
  * a physical block holds only the matrices (c_q, c_k, c_v, attn.proj, mlp.fc, mlp.proj); every
    virtual layer holds its own scalars: resid_mix, attn_scale, mlp_scale and q_gain.
The second case adds the layerwise LN scale indexed by virtual layer (1/sqrt(v + 1) on the normed
inputs of attention and MLP), LeakyReLU(0.5)^2, GQA and an untied head.

Files as make_golden.py writes them; parameters in pgolf's table order (the embedding, each block's
matrices, each virtual layer's scalars, skip weights, head). Usage:
/usr/bin/python3 make_shared_golden.py [output_dir]
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import (FLT_EPSILON, MLP, CastedLinear, Rotary, apply_rotary_emb, perturb,  # noqa: E402
                         random_batch, rms_norm, write_case)

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)


class SharedMatrices(nn.Module):
    """What a physical block owns: its matrices."""

    def __init__(self, s):
        super().__init__()
        dim, hd = s["dim"], s["dim"] // s["heads"]
        kv_dim = s["kv_heads"] * hd
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        self.mlp = MLP(dim, s["mult"], s["activation"])


class LayerScalars(nn.Module):
    """What each virtual layer owns."""

    def __init__(self, s):
        super().__init__()
        dim = s["dim"]
        self.q_gain = nn.Parameter(torch.full((s["heads"],), s["qk_gain_init"]))
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))


def layer_forward(s, rotary, m, c, v, x, x0):
    eps, heads, kv_heads = s["eps"], s["heads"], s["kv_heads"]
    ln = 1.0 / math.sqrt(v + 1) if s["ln_scale"] else 1.0
    x = c.resid_mix[0][None, None, :] * x + c.resid_mix[1][None, None, :] * x0
    # attention on the scaled norm
    h = rms_norm(x, eps) * ln
    bsz, seqlen, dim = h.shape
    hd = dim // heads
    q = m.c_q(h).reshape(bsz, seqlen, heads, hd).transpose(1, 2)
    k = m.c_k(h).reshape(bsz, seqlen, kv_heads, hd).transpose(1, 2)
    val = m.c_v(h).reshape(bsz, seqlen, kv_heads, hd).transpose(1, 2)
    q, k = rms_norm(q, eps), rms_norm(k, eps)
    cos, sin = rotary(seqlen)
    q = apply_rotary_emb(q, cos, sin, s["rope_dims"]) * c.q_gain[None, :, None, None]
    k = apply_rotary_emb(k, cos, sin, s["rope_dims"])
    rep = heads // kv_heads
    k, val = k.repeat_interleave(rep, dim=1), val.repeat_interleave(rep, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
    scores = scores.masked_fill(~torch.ones(seqlen, seqlen, dtype=torch.bool).tril(), float("-inf"))
    y = (scores.softmax(dim=-1) @ val).transpose(1, 2).contiguous().reshape(bsz, seqlen, dim)
    x = x + c.attn_scale[None, None, :] * m.proj(y)
    x = x + c.mlp_scale[None, None, :] * m.mlp(rms_norm(x, eps) * ln)
    return x


class LoopedGPT(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        self.schedule = s["schedule"]
        self.num_blocks = max(self.schedule) + 1
        layers = len(self.schedule)
        self.tok_emb = nn.Embedding(s["vocab"], s["dim"])
        nn.init.normal_(self.tok_emb.weight, std=s["init_std"])
        self.blocks = nn.ModuleList([SharedMatrices(s) for _ in range(self.num_blocks)])
        self.layers = nn.ModuleList([LayerScalars(s) for _ in range(layers)])
        self.num_encoder_layers = layers // 2
        self.num_decoder_layers = layers - self.num_encoder_layers
        self.skip_weights = nn.Parameter(torch.ones(min(self.num_encoder_layers, self.num_decoder_layers), s["dim"]))
        self.lm_head = None if s["tied"] else CastedLinear(s["dim"], s["vocab"], bias=False)
        self.rotary = Rotary(s["rope_dims"], s["rope_base"])

    def run(self, v, x, x0):
        return layer_forward(self.s, self.rotary, self.blocks[self.schedule[v]], self.layers[v], v, x, x0)

    def forward(self, input_ids, target_ids):
        x = rms_norm(self.tok_emb(input_ids), self.s["eps"])
        x0 = x
        skips = []
        for v in range(self.num_encoder_layers):
            x = self.run(v, x, x0)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:
                x = x + self.skip_weights[i][None, None, :] * skips.pop()
            x = self.run(self.num_encoder_layers + i, x, x0)
        x = rms_norm(x, self.s["eps"]).reshape(-1, x.size(-1))
        z = F.linear(x, self.tok_emb.weight) if self.lm_head is None else self.lm_head(x)
        cap = self.s["softcap"]
        return F.cross_entropy(cap * torch.tanh(z / cap), target_ids.reshape(-1), reduction="mean")

    def pgolf_order(self):
        names = ["tok_emb.weight"]
        for b in range(self.num_blocks):
            names += [f"blocks.{b}.{n}" for n in ("c_q.weight", "c_k.weight", "c_v.weight", "proj.weight",
                                                  "mlp.fc.weight", "mlp.proj.weight")]
        for v in range(len(self.schedule)):
            names += [f"layers.{v}.{n}" for n in ("q_gain", "attn_scale", "mlp_scale", "resid_mix")]
        names.append("skip_weights")
        if self.lm_head is not None:
            names.append("lm_head.weight")
        params = dict(self.named_parameters())
        assert set(names) == set(params), sorted(set(names) ^ set(params))
        # pgolf's names for the attention matrices and the gain
        rename = {"c_q.weight": "attn.c_q.weight", "c_k.weight": "attn.c_k.weight", "c_v.weight": "attn.c_v.weight",
                  "proj.weight": "attn.proj.weight", "q_gain": "attn.q_gain"}
        out = []
        for n in names:
            scope, _, rest = n.partition(".")
            if scope in ("blocks", "layers"):
                idx, _, leaf = rest.partition(".")
                out.append((f"{scope}.{idx}.{rename.get(leaf, leaf)}", params[n]))
            else:
                out.append((n, params[n]))
        return out


SPAN = [0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5]
CASES = {
    "tiny_span_matrices": dict(vocab=32, dim=16, heads=2, kv_heads=2, rope_dims=8, rope_base=10000.0,
                               qk_gain_init=1.5, mult=2, activation="relu2", tied=True, init_std=0.005,
                               softcap=30.0, eps=FLT_EPSILON, ln_scale=False, schedule=SPAN, batch=2, seq=8,
                               seed=3),
    "tiny_span_matrices_ln": dict(vocab=32, dim=16, heads=2, kv_heads=1, rope_dims=4, rope_base=10000.0,
                                  qk_gain_init=2.0, mult=3, activation="leaky_relu2", tied=False, init_std=0.005,
                                  softcap=15.0, eps=FLT_EPSILON, ln_scale=True, schedule=SPAN, batch=2, seq=8,
                                  seed=4),
}


def make_case(name, s, out_dir):
    torch.manual_seed(s["seed"])
    model = LoopedGPT(s)
    ordered = model.pgolf_order()
    perturb(ordered)
    x, y = random_batch(s)
    loss = model(x, y)
    loss.backward()
    sched = ",".join(str(b) for b in s["schedule"])
    header = [f"spec schedule={sched} sharing=matrices ln_scale={'layer' if s['ln_scale'] else 'off'} "
              f"tied={int(s['tied'])}", f"batch {s['batch']}", f"seq {s['seq']}", f"loss {loss.item()!r}"]
    write_case(out_dir, name, "make_shared_golden.py", header, x, y, ordered)
    print(f"{name}: loss {loss.item():.12f}, {sum(p.numel() for _, p in ordered)} parameters")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for name, s in CASES.items():
        make_case(name, s, out_dir)


if __name__ == "__main__":
    main()
