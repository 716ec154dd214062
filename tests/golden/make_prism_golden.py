#!/usr/bin/python3
"""Golden outputs for pgolf's PRISM (reference behaviour) from a PyTorch port of AFKmoney/prism.

The modules below follow ../shared/PRISM.md sections 2.1-2.8 as the reference computes them: the
MRB's closed-form scan gamma^t cumsum(gamma^-s (1-gamma) z) in float64, the sequence-mean tape write
applied to every slot, the batch-global blend fraction, the forward-visible epsilon-soft mix, the
straight-through selections, the unused third argument head, the read entropy accumulated along the
tape, the last-block rule. Everything runs in float64 so the C++ double model can match to rounding.

Run with Debian's interpreter (python3-torch 1.13): /usr/bin/python3 tests/golden/make_prism_golden.py
For each case it writes <case>.manifest (spec, shapes, losses) and <case>.bin (little-endian: int32
inputs, int32 targets (-1 = not scored), float64 weights, float64 gradients, in pgolf's table order).
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import write_case  # noqa: E402  (also fixes the thread count and float64)

torch.set_default_dtype(torch.float64)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class MRB(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, K = c["d"], c["k"]
        self.K = K
        self.in_proj = nn.Linear(D, D)
        self.gate_proj = nn.Linear(D, K)
        self.out_proj = nn.Linear(D, D)
        lo, hi = math.log(c["delta0"]), math.log(c["delta_max"])
        deltas = [math.exp(lo + (hi - lo) * i / (K - 1)) if K > 1 else c["delta0"] for i in range(K)]
        self.gammas = [math.exp(-d) for d in deltas]

    def forward(self, x):
        B, T, D = x.shape
        z = self.in_proj(x).view(B, T, self.K, D // self.K)
        g = torch.sigmoid(self.gate_proj(x))
        t = torch.arange(T, dtype=torch.float64).view(1, T, 1)
        outs = []
        for k, gamma in enumerate(self.gammas):
            zk = z[:, :, k, :].double()
            # the reference's parallel form: h(t) = gamma^t cumsum_s gamma^-s (1 - gamma) z(s)
            h = (gamma ** t * torch.cumsum(gamma ** (-t) * (1 - gamma) * zk, dim=1)).to(x.dtype)
            outs.append(g[:, :, k:k + 1] * h)
        return self.out_proj(torch.cat(outs, dim=-1)), g


class MemoryHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, M = c["d"], c["m"]
        self.M = M
        self.q_proj = nn.Linear(D, M, bias=False)
        self.v_proj_in = nn.Linear(D, M, bias=False)
        self.write_gate = nn.Linear(D, 1)
        self.erase_gate = nn.Linear(D, M)
        self.read_out = nn.Linear(M, D, bias=False)

    def forward(self, x, tape, read_entropy):
        q = self.q_proj(x)
        w = torch.softmax(torch.einsum("btm,bsm->bts", q, tape) / math.sqrt(self.M), dim=-1)
        out = self.read_out(torch.einsum("bts,bsm->btm", w, tape))
        h = (-(w * torch.log(w + 1e-8)).sum(-1)).mean()
        v = self.v_proj_in(x)
        om = torch.sigmoid(self.write_gate(x))
        e = torch.sigmoid(self.erase_gate(x))
        erase = (om * e).mean(1).unsqueeze(1)
        add = (om * v).mean(1).unsqueeze(1)
        return out, tape * (1 - erase) + add, read_entropy + h


class NeuralExpert(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, H = c["d"], c["d"] * c["mult"]
        self.w_gate = nn.Linear(D, H, bias=False)
        self.w_up = nn.Linear(D, H, bias=False)
        self.w_down = nn.Linear(H, D, bias=False)

    def forward(self, x, tape, ent):
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x)), tape, ent, 0.0


class MemoryExpert(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.head = MemoryHead(c)

    def forward(self, x, tape, ent):
        out, tape2, ent2 = self.head(x, tape, ent)
        return out, tape2, ent2, ent2


def prim_compare(x):
    D = x.shape[-1]
    if D % 2:
        x = F.pad(x, (0, 1))
    h = x.shape[-1] // 2
    c = F.cosine_similarity(x[..., :h], x[..., h:], dim=-1, eps=1e-8)
    return c.unsqueeze(-1).expand(*x.shape[:-1], D)


class SymbolicLibrary(nn.Module):
    def __init__(self, c):
        super().__init__()
        D = c["d"]
        self.select_proj = nn.Linear(D, 6)
        self.arg_proj = nn.Linear(D, 3 * D)
        self.out_proj = nn.Linear(D, D, bias=False)

    def forward(self, x):
        D = x.shape[-1]
        p_soft = torch.softmax(self.select_proj(x), dim=-1)
        p_hard = F.one_hot(p_soft.argmax(-1), 6).to(x.dtype)
        p = p_hard + p_soft - p_soft.detach()
        a1, a2, a3 = self.arg_proj(x).split(D, dim=-1)  # a3: computed, never used
        prims = [
            prim_compare(x),
            torch.sigmoid(a1) * x + (1 - torch.sigmoid(a1)) * a2,
            (torch.softmax(a1, dim=-1) * x).sum(-1, keepdim=True).expand_as(x),
            torch.roll(x, 1, dims=-1),
            x * torch.sigmoid(5.0 * (x - a1)),
            torch.sigmoid(x).mean(-1, keepdim=True).expand_as(x),
        ]
        stacked = torch.stack(prims, dim=-2)
        return self.out_proj((p.unsqueeze(-1) * stacked).sum(-2)), p_soft


class SymbolicExpert(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lib = SymbolicLibrary(c)

    def forward(self, x, tape, ent):
        out, _ = self.lib(x)
        return out, tape, ent, 0.0


KINDS = {"neural": NeuralExpert, "memory": MemoryExpert, "symbolic": SymbolicExpert}


class Router(nn.Module):
    def __init__(self, c, kinds, eps=0.05):
        super().__init__()
        self.kinds = kinds
        self.topk = min(c["topk"], len(kinds))
        self.eps = eps
        self.gate = nn.Linear(c["d"] + c["m"], len(kinds))
        self.experts = nn.ModuleList([KINDS[k](c) for k in kinds])

    def forward(self, x, tape, ent):
        B, T, _ = x.shape
        E = len(self.kinds)
        mbar = tape.mean(1).unsqueeze(1).expand(B, T, tape.shape[-1])
        p_soft = torch.softmax(self.gate(torch.cat([x, mbar], dim=-1)), dim=-1)
        idx = p_soft.topk(self.topk, dim=-1).indices
        hard = torch.zeros_like(p_soft).scatter(-1, idx, 1.0)
        p_sel = p_soft * hard / (p_soft * hard).sum(-1, keepdim=True).clamp_min(1e-9)
        p_st = p_sel + p_soft - p_soft.detach()
        p = (1 - self.eps) * p_st + self.eps * p_soft
        out = 0
        new_tape, new_ent, mem_stat = tape, ent, 0.0
        for i, expert in enumerate(self.experts):
            o, t2, e2, stat = expert(x, tape, ent)
            out = out + p[..., i:i + 1] * o
            if self.kinds[i] == "memory":
                frac = hard[..., i].mean()  # batch-global, hard
                new_tape = (1 - frac) * tape + frac * t2
                new_ent = e2
                mem_stat = stat
        f = hard.mean((0, 1))
        P = p_soft.mean((0, 1))
        aux = E * (f * P).sum()
        return out, new_tape, new_ent, mem_stat, aux


class Block(nn.Module):
    def __init__(self, c, kinds):
        super().__init__()
        self.norm_mrb = RMSNorm(c["d"], 1e-6)
        self.mrb = MRB(c)
        self.norm_exp = RMSNorm(c["d"], 1e-6)
        self.router = Router(c, kinds)

    def forward(self, x, tape, ent):
        y, _ = self.mrb(self.norm_mrb(x))
        x = x + y
        o, tape, ent, stat, aux = self.router(self.norm_exp(x), tape, ent)
        return x + o, tape, ent, stat, aux


class Prism(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        kinds = c["experts"]
        self.embed = nn.Embedding(c["vocab"], c["d"])
        blocks = []
        for b in range(c["layers"]):
            k = kinds
            if b == c["layers"] - 1 and c["layers"] > 1 and len(kinds) > 1 and "memory" in kinds:
                k = [x for x in kinds if x != "memory"]
            blocks.append(Block(c, k))
        self.blocks = nn.ModuleList(blocks)
        self.norm_f = RMSNorm(c["d"], 1e-6)
        self.head = None if c["tied"] else nn.Linear(c["d"], c["vocab"], bias=False)

    def forward(self, ids, targets):
        x = self.embed(ids)
        B = ids.shape[0]
        tape = torch.zeros(B, self.c["slots"], self.c["m"])
        ent = torch.zeros(())
        lb, mem = 0.0, 0.0
        for blk in self.blocks:
            x, tape, ent, stat, aux = blk(x, tape, ent)
            lb = lb + aux
            mem = mem + stat
        h = self.norm_f(x)
        logits = h @ self.embed.weight.t() if self.head is None else self.head(h)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        aux = 0.01 * lb - 0.01 * mem
        return ce + aux, ce, aux


def pgolf_order(model):
    params = dict(model.named_parameters())
    names = ["embed.weight"]
    rename = {"w_gate": "w_gate.weight", "w_up": "w_up.weight", "w_down": "w_down.weight"}
    for b, blk in enumerate(model.blocks):
        p = f"blocks.{b}."
        names += [p + "norm_mrb.weight"] + [p + f"mrb.{n}.{w}" for n in ("in_proj", "gate_proj", "out_proj")
                                             for w in ("weight", "bias")]
        names += [p + "norm_exp.weight", p + "router.gate.weight", p + "router.gate.bias"]
        for i, kind in enumerate(blk.router.kinds):
            e = p + f"router.experts.{i}."
            if kind == "neural":
                names += [e + "w_gate.weight", e + "w_up.weight", e + "w_down.weight"]
            elif kind == "memory":
                names += [e + "head." + n for n in ("q_proj.weight", "v_proj_in.weight", "write_gate.weight",
                                                     "write_gate.bias", "erase_gate.weight", "erase_gate.bias",
                                                     "read_out.weight")]
            else:
                names += [e + "lib." + n for n in ("select_proj.weight", "select_proj.bias", "arg_proj.weight",
                                                    "arg_proj.bias", "out_proj.weight")]
    names.append("norm_f.weight")
    if model.head is not None:
        names.append("head.weight")
    assert set(names) == set(params), sorted(set(names) ^ set(params))
    return [(n, params[n]) for n in names]


BASE = dict(vocab=32, d=16, layers=3, k=4, m=8, slots=4, mult=2, topk=1, tied=True,
            delta0=math.log(2), delta_max=8 * math.log(2), experts=["neural", "memory", "symbolic"])
CASES = {
    # The reference tests' model config (D 16, L 3, M 8, S 4, V 32), batch 2 x 10.
    "prism_reference_top1": dict(BASE, batch=2, seq=10, seed=1),
    # Top-2 routing, an untied head, 2 layers, batch 3 x 7.
    "prism_reference_top2": dict(BASE, layers=2, topk=2, tied=False, mult=3, batch=3, seq=7, seed=2),
}


def spec_line(c):
    keys = ["vocab", "d", "layers", "k", "m", "slots", "mult", "topk", "tied"]
    return " ".join(f"{k}={int(c[k])}" for k in keys)


def make_case(name, c, out_dir):
    torch.manual_seed(c["seed"])
    model = Prism(c)
    ordered = pgolf_order(model)
    with torch.no_grad():  # move every tensor off its init so no path hides behind a zero or a one
        for n, p in ordered:
            scale = 1.0 if n in ("embed.weight", "head.weight") else (
                1.0 / math.sqrt(p.shape[1]) if p.dim() == 2 else 0.3)
            p.add_(scale * torch.randn(p.shape))
    B, T = c["batch"], c["seq"]
    x = torch.randint(0, c["vocab"], (B, T))
    y = torch.randint(0, c["vocab"], (B, T))
    y[:, ::3] = -1
    loss, ce, aux = model(x, y)
    loss.backward()
    write_case(out_dir, name, "make_prism_golden.py",
               [f"spec {spec_line(c)}", f"batch {B}", f"seq {T}", f"loss {loss.item()!r}", f"ce {ce.item()!r}",
                f"aux {aux.item()!r}"], x, y, ordered)
    print(f"{name}: loss {loss.item():.12f} (ce {ce.item():.6f}, aux {aux.item():.6f}), "
          f"{sum(p.numel() for _, p in ordered)} parameters")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for name, c in CASES.items():
        make_case(name, c, out_dir)


if __name__ == "__main__":
    main()
