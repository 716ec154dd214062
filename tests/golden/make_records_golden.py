#!/usr/bin/python3
"""Golden outputs for the strongest records' block techniques (parameter-golf PR #2135, TECHNIQUES.md
13.2, as its train_gpt.py computes them): a float64 PyTorch port written independently of pgolf's C++.

  e = E[u];  e_t += lambda sigmoid(w . e_t[:c]) e_{t-1} (t >= 1, not at BOS);  x = x0 = RMSNorm(e)
  virtual layers over a looped schedule, U-Net on the virtual sequence with sigmoid skip gates:
      x = g x + (1 - g) w_j skip,  g = sigmoid(gamma_j)
  serial block b:  x = m0 x + m1 x0;  n = RMSNorm(x)/sqrt(b+1);  x += attn_scale * Attn(n);
                   x += mlp_scale * MLP(RMSNorm(x)/sqrt(b+1))
  Attn: q, k RMS-normed per head, partial RoPE, q_gain, causal GQA (doc_mask: and never across a BOS:
        the records' varlen attention, a document = a BOS and the tokens up to the next one);
        XSA (y_h -= (y_h . v^) v^);
        y_h *= sigmoid(scale * W_h . n[:c]); output projection
  from the first layer of block P on, two lanes (split before that layer's skip, which lane 0 gets):
      A = attn_scale * Attn(RMSNorm(m0 l0 + m1 x0)/sqrt(b+1));  M = mlp_scale * MLP(RMSNorm(l1)/sqrt(b+1))
      l0 = r0 l0 + P00 A + P10 M;  l1 = r1 l1 + P01 A + P11 M;  at the end x = (l0 + l1) / 2
  logits z = RMSNorm(x) E^T;  AsymLogit: where(z >= 0, sp tanh(z/sp), sn tanh(z/sn));  mean CE

The cases run the loop-on schedule with the lanes starting inside the decoder and BOS tokens inside
rows; tiny_records_stack_docs adds document masking, on longer rows with more BOS tokens (adjacent ones
make documents of one token). Files as make_golden.py writes them, parameters in pgolf's table order.
Usage: /usr/bin/python3 make_records_golden.py [output_dir [case ...]]
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import FLT_EPSILON, CastedLinear, Rotary, apply_rotary_emb, perturb, rms_norm, write_case  # noqa: E402

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)


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
        self.attn_gate_w = nn.Parameter(torch.zeros(s["heads"], s["gate_channels"]))


class RecordsStack(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        dim, nb = s["dim"], s["blocks"]
        self.tok_emb = nn.Embedding(s["vocab"], dim)
        self.smear_w = nn.Parameter(torch.zeros(1, s["smear_channels"]))
        self.smear_lambda = nn.Parameter(torch.zeros(1))
        self.blocks = nn.ModuleList([Block(s) for _ in range(nb)])
        self.post = nn.Parameter(torch.ones(nb, 2, 2))
        self.resid = nn.Parameter(torch.full((nb, 2), 1.1))
        layers = len(s["schedule"])
        self.enc = layers // 2
        self.dec = layers - self.enc
        skips = min(self.enc, self.dec)
        self.skip_weights = nn.Parameter(torch.ones(skips, dim))
        self.skip_gates = nn.Parameter(torch.zeros(skips, dim))
        self.softcap_pos = nn.Parameter(torch.tensor([s["softcap"]]))
        self.softcap_neg = nn.Parameter(torch.tensor([s["softcap"]]))
        self.rotary = Rotary(s["rope_dims"], s["rope_base"])

    def attn(self, m, n):
        s = self.s
        eps, heads, kv_heads = s["eps"], s["heads"], s["kv_heads"]
        bsz, seqlen, dim = n.shape
        hd = dim // heads
        q = m.c_q(n).reshape(bsz, seqlen, heads, hd).transpose(1, 2)
        k = m.c_k(n).reshape(bsz, seqlen, kv_heads, hd).transpose(1, 2)
        v = m.c_v(n).reshape(bsz, seqlen, kv_heads, hd)
        q, k = rms_norm(q, eps), rms_norm(k, eps)
        cos, sin = self.rotary(seqlen)
        q = apply_rotary_emb(q, cos, sin, s["rope_dims"]) * m.q_gain[None, :, None, None]
        k = apply_rotary_emb(k, cos, sin, s["rope_dims"])
        rep = heads // kv_heads
        kk = k.repeat_interleave(rep, dim=1)
        vv = v.transpose(1, 2).repeat_interleave(rep, dim=1)
        scores = (q @ kk.transpose(-2, -1)) / math.sqrt(hd)
        allowed = torch.ones(seqlen, seqlen, dtype=torch.bool).tril()
        if s.get("doc_mask"):  # [B, 1, T, T]: same document (count of BOS tokens so far) and causal
            allowed = allowed & (self.doc[:, None, :, None] == self.doc[:, None, None, :])
        scores = scores.masked_fill(~allowed, float("-inf"))
        y = (scores.softmax(dim=-1) @ vv).transpose(1, 2)  # [B, T, H, D]
        nv = F.normalize(v, dim=-1)
        yg = y.reshape(bsz, seqlen, kv_heads, rep, hd)
        y = (yg - (yg * nv[:, :, :, None, :]).sum(-1, keepdim=True) * nv[:, :, :, None, :]).reshape(bsz, seqlen, heads, hd)
        gate = torch.sigmoid(s["gate_scale"] * (n[..., :s["gate_channels"]] @ m.attn_gate_w.t()))  # [B, T, H]
        y = (y * gate[..., None]).reshape(bsz, seqlen, dim)
        return m.proj(y)

    def mlp(self, m, n):
        return m.mlp_proj(F.leaky_relu(m.fc(n), 0.5).square())

    def serial(self, b, x, x0):
        m, eps, ln = self.blocks[b], self.s["eps"], 1.0 / math.sqrt(b + 1)
        x = m.resid_mix[0] * x + m.resid_mix[1] * x0
        x = x + m.attn_scale * self.attn(m, rms_norm(x, eps) * ln)
        return x + m.mlp_scale * self.mlp(m, rms_norm(x, eps) * ln)

    def parallel(self, b, l0, l1, x0):
        m, eps, ln = self.blocks[b], self.s["eps"], 1.0 / math.sqrt(b + 1)
        a = m.attn_scale * self.attn(m, rms_norm(m.resid_mix[0] * l0 + m.resid_mix[1] * x0, eps) * ln)
        mm = m.mlp_scale * self.mlp(m, rms_norm(l1, eps) * ln)
        P, r = self.post[b], self.resid[b]
        return r[0] * l0 + P[0, 0] * a + P[1, 0] * mm, r[1] * l1 + P[0, 1] * a + P[1, 1] * mm

    def forward(self, u, targets):
        s = self.s
        self.doc = torch.cumsum((u == s["bos_id"]).long(), dim=1)
        e = self.tok_emb(u)
        c = s["smear_channels"]
        g = self.smear_lambda * torch.sigmoid(e[:, 1:, :c] @ self.smear_w.t())  # [B, T-1, 1]
        g = g * (u[:, 1:] != s["bos_id"]).to(e.dtype)[..., None]
        e = torch.cat((e[:, :1], e[:, 1:] + g * e[:, :-1]), dim=1)
        x = rms_norm(e, s["eps"])
        x0 = x
        sched, start = s["schedule"], s["schedule"].index(s["parallel_from"])
        skips, l1 = [], None
        for v, b in enumerate(sched):
            if v == start:
                l1 = x
            j = v - self.enc
            if 0 <= j < len(self.skip_weights) and skips:
                gg = torch.sigmoid(self.skip_gates[j])
                x = gg * x + (1 - gg) * self.skip_weights[j] * skips.pop()
            if v >= start:
                x, l1 = self.parallel(b, x, l1, x0)
            else:
                x = self.serial(b, x, x0)
            if v < self.enc:
                skips.append(x)
        x = 0.5 * (x + l1)
        z = F.linear(rms_norm(x, s["eps"]).reshape(-1, x.size(-1)), self.tok_emb.weight)
        sp, sn = self.softcap_pos, self.softcap_neg
        z = torch.where(z >= 0, sp * torch.tanh(z / sp), sn * torch.tanh(z / sn))
        return F.cross_entropy(z, targets.reshape(-1), reduction="mean")

    def pgolf_order(self):
        p = dict(self.named_parameters())
        out = [("tok_emb.weight", p["tok_emb.weight"]), ("smear_gate.weight", p["smear_w"]),
               ("smear_lambda", p["smear_lambda"])]
        leaves = [("attn.c_q.weight", "c_q.weight"), ("attn.c_k.weight", "c_k.weight"),
                  ("attn.c_v.weight", "c_v.weight"), ("attn.proj.weight", "proj.weight"),
                  ("attn.q_gain", "q_gain"), ("attn.attn_gate_w", "attn_gate_w"), ("mlp.fc.weight", "fc.weight"),
                  ("mlp.proj.weight", "mlp_proj.weight"), ("attn_scale", "attn_scale"), ("mlp_scale", "mlp_scale"),
                  ("resid_mix", "resid_mix")]
        for b in range(self.s["blocks"]):
            out += [(f"blocks.{b}.{ours}", p[f"blocks.{b}.{theirs}"]) for ours, theirs in leaves]
        out += [("parallel_post_lambdas", p["post"]), ("parallel_resid_lambdas", p["resid"]),
                ("skip_weights", p["skip_weights"]), ("skip_gates", p["skip_gates"]),
                ("softcap_pos", p["softcap_pos"]), ("softcap_neg", p["softcap_neg"])]
        assert len(out) == len(p), sorted(set(p) - {n for n, _ in out})
        return out


CASES = {
    "tiny_records_stack": dict(vocab=32, dim=16, heads=2, kv_heads=1, rope_dims=4, rope_base=10000.0,
                               qk_gain_init=5.0, mult=4, softcap=30.0, eps=FLT_EPSILON, blocks=5,
                               schedule=[0, 1, 2, 1, 2, 1, 2, 3, 4], parallel_from=3, gate_channels=12,
                               gate_scale=0.5, smear_channels=12, bos_id=1, batch=2, seq=8, seed=6),
    "tiny_records_stack_docs": dict(vocab=32, dim=16, heads=2, kv_heads=1, rope_dims=4, rope_base=10000.0,
                                    qk_gain_init=5.0, mult=4, softcap=30.0, eps=FLT_EPSILON, blocks=5,
                                    schedule=[0, 1, 2, 1, 2, 1, 2, 3, 4], parallel_from=3, gate_channels=12,
                                    gate_scale=0.5, smear_channels=12, bos_id=1, doc_mask=True, batch=2, seq=16,
                                    seed=7, bos_at=[0, 5, 6, 7, 11, 16 + 9, 16 + 15]),
}


def make_case(name, s, out_dir):
    torch.manual_seed(s["seed"])
    model = RecordsStack(s)
    ordered = model.pgolf_order()
    perturb(ordered)
    with torch.no_grad():  # caps near the logits' scale, so both signs' caps carry gradient
        model.softcap_pos.fill_(2.5)
        model.softcap_neg.fill_(3.5)
    tokens = torch.randint(0, s["vocab"], (s["batch"] * s["seq"] + 1,))
    bos_at = s.get("bos_at", [0, 4, s["seq"] + 2])
    others = torch.tensor([i for i in range(tokens.numel()) if i not in bos_at])
    if "bos_at" in s:  # only the listed BOS tokens, so the documents are the ones the case names
        tokens[others] = torch.where(tokens[others] == s["bos_id"], tokens[others] + 1, tokens[others])
    tokens[bos_at] = s["bos_id"]
    x, y = tokens[:-1].reshape(s["batch"], s["seq"]), tokens[1:].reshape(s["batch"], s["seq"])
    loss = model(x, y)
    loss.backward()
    fields = " ".join(f"{k}={v}" for k, v in s.items() if k not in ("batch", "seq", "seed", "bos_at"))
    header = ["spec records_stack " + fields.replace("[", "").replace("]", "").replace(", ", ","),
              f"batch {s['batch']}", f"seq {s['seq']}", f"loss {loss.item()!r}"]
    write_case(out_dir, name, "make_records_golden.py", header, x, y, ordered)
    print(f"{name}: loss {loss.item():.12f}, {sum(p.numel() for _, p in ordered)} parameters")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    names = sys.argv[2:] or list(CASES)
    for name in names:
        make_case(name, CASES[name], out_dir)


if __name__ == "__main__":
    main()
