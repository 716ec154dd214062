"""A port of the parameter-golf reference trainer (train_gpt.py of openai/parameter-golf) that runs on
the CPU with PyTorch 1.13 (Debian's python3-torch), in float32 or float64.

What it reproduces, class by class and line by line in behaviour: the model (GPT, Block,
CausalSelfAttention, MLP, Rotary, CastedLinear; F.rms_norm and GQA attention, which PyTorch 1.13
lacks, written out), its initialisation (same modules built in the same order after
torch.manual_seed, so the same draws), the data loader (TokenStream, DistributedTokenLoader on one
rank), load_validation_tokens and eval_val's val_loss, Muon (momentum, Nesterov, quintic
Newton-Schulz in bfloat16 with the update stored in bfloat16, shape scale: see NS_MODES), the three Adam groups
with their parameters and learning rates, lr_mul (warmdown by iterations), the Muon momentum
warm-up and the main loop (validation at step 0, every val_loss_every steps and at the end; one
optimizer step per iteration over grad_accum_steps micro-batches, each loss scaled by
1/grad_accum_steps).

What it leaves out, and why: CUDA, autocast and torch.compile (CPU only; the model runs in one
dtype); the 20 warm-up steps (they restore the initial weights, optimizer state and loader, so they
change nothing); distributed training (world size 1); the wall-clock cap (runs are compared by
steps); export.

Options that depart from the reference are named as such (ns, init_from, the accumulation count): they exist to isolate differences, and to replay pgolf's float64 Trainer for the
training-loop golden (make_trainloop_golden.py).
"""
import glob
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FLT_EPSILON = 1.1920928955078125e-07  # F.rms_norm(eps=None) on float32 inputs


# -----------------------------------------------------------------------------------------------
# Data: the reference's shard reader, stream and loader
# -----------------------------------------------------------------------------------------------

def load_data_shard(path):
    header = np.fromfile(path, dtype="<i4", count=256)
    if header.size != 256 or int(header[0]) != 20240520 or int(header[1]) != 1:
        raise ValueError(f"Unexpected shard header for {path}")
    num_tokens = int(header[2])
    if os.path.getsize(path) != 256 * 4 + num_tokens * 2:
        raise ValueError(f"Shard size mismatch for {path}")
    tokens = np.fromfile(path, dtype="<u2", count=num_tokens, offset=256 * 4)
    return torch.from_numpy(tokens.astype(np.int64))


def write_data_shard(path, tokens):
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype="<u2").tobytes())


class TokenStream:
    def __init__(self, pattern):
        self.files = sorted(glob.glob(pattern))
        if not self.files:
            raise FileNotFoundError(f"No files found for pattern: {pattern}")
        self.file_idx = 0
        self.tokens = load_data_shard(self.files[0])
        self.pos = 0

    def _advance_file(self):
        self.file_idx = (self.file_idx + 1) % len(self.files)
        self.tokens = load_data_shard(self.files[self.file_idx])
        self.pos = 0

    def take(self, n):
        chunks, remaining = [], n
        while remaining > 0:
            avail = self.tokens.numel() - self.pos
            if avail <= 0:
                self._advance_file()
                continue
            k = min(remaining, avail)
            chunks.append(self.tokens[self.pos:self.pos + k])
            self.pos += k
            remaining -= k
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


class TokenLoader:
    """DistributedTokenLoader with rank 0 of world size 1."""

    def __init__(self, pattern):
        self.stream = TokenStream(pattern)

    def next_batch(self, global_tokens, seq_len, grad_accum_steps):
        local_tokens = global_tokens // grad_accum_steps
        local = self.stream.take(local_tokens + 1)
        return local[:-1].reshape(-1, seq_len), local[1:].reshape(-1, seq_len)


def load_validation_tokens(pattern, seq_len, max_tokens=0):
    """The reference's load_validation_tokens; max_tokens > 0 first keeps only the first max_tokens
    tokens (pgolf's --val-tokens: the reference itself always scores the whole split)."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"No files found for pattern: {pattern}")
    tokens = torch.cat([load_data_shard(f) for f in files])
    if max_tokens > 0:
        tokens = tokens[:max_tokens]
    usable = ((tokens.numel() - 1) // seq_len) * seq_len
    if usable <= 0:
        raise ValueError(f"Validation split is too short for TRAIN_SEQ_LEN={seq_len}")
    return tokens[:usable + 1]


# -----------------------------------------------------------------------------------------------
# Model
# -----------------------------------------------------------------------------------------------

def rms_norm(x, eps=FLT_EPSILON):
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


class RMSNorm(nn.Module):
    def forward(self, x):
        return rms_norm(x)


class CastedLinear(nn.Linear):
    def forward(self, x):
        return F.linear(x, self.weight.to(x.dtype))


class Rotary(nn.Module):
    def __init__(self, dim, base=10000.0):
        super().__init__()
        self.dim, self.base = dim, base
        self._cache = {}

    def forward(self, seq_len, dtype):
        key = (seq_len, dtype)
        if key not in self._cache:
            # The reference builds its tables in float32; a float64 model builds them in float64.
            table_dtype = torch.float64 if dtype == torch.float64 else torch.float32
            inv_freq = 1.0 / (self.base ** (torch.arange(0, self.dim, 2, dtype=table_dtype) / self.dim))
            t = torch.arange(seq_len, dtype=table_dtype)
            freqs = torch.outer(t, inv_freq)
            self._cache[key] = (freqs.cos()[None, None], freqs.sin()[None, None])
        return self._cache[key]


def apply_rotary_emb(x, cos, sin):
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, num_heads, num_kv_heads, rope_base, qk_gain_init):
        super().__init__()
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = dim // num_heads
        kv_dim = num_kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        self.proj._zero_init = True
        self.q_gain = nn.Parameter(torch.full((num_heads,), qk_gain_init, dtype=torch.float32))
        self.rotary = Rotary(self.head_dim, base=rope_base)
        self._mask = {}

    def forward(self, x):
        bsz, seqlen, dim = x.shape
        q = self.c_q(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = rms_norm(q)
        k = rms_norm(k)
        cos, sin = self.rotary(seqlen, q.dtype)
        q = apply_rotary_emb(q, cos, sin)
        k = apply_rotary_emb(k, cos, sin)
        q = q * self.q_gain.to(dtype=q.dtype)[None, :, None, None]
        # scaled_dot_product_attention(is_causal=True, enable_gqa=True), written out.
        rep = self.num_heads // self.num_kv_heads
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if seqlen not in self._mask:
            self._mask[seqlen] = torch.ones(seqlen, seqlen, dtype=torch.bool).tril()
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        scores = scores.masked_fill(~self._mask[seqlen], float("-inf"))
        y = scores.softmax(dim=-1) @ v
        y = y.transpose(1, 2).contiguous().reshape(bsz, seqlen, dim)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, dim, mlp_mult):
        super().__init__()
        self.fc = CastedLinear(dim, mlp_mult * dim, bias=False)
        self.proj = CastedLinear(mlp_mult * dim, dim, bias=False)
        self.proj._zero_init = True

    def forward(self, x):
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, dim, num_heads, num_kv_heads, mlp_mult, rope_base, qk_gain_init):
        super().__init__()
        self.attn_norm = RMSNorm()
        self.mlp_norm = RMSNorm()
        self.attn = CausalSelfAttention(dim, num_heads, num_kv_heads, rope_base, qk_gain_init)
        self.mlp = MLP(dim, mlp_mult)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())

    def forward(self, x, x0):
        mix = self.resid_mix.to(dtype=x.dtype)
        x = mix[0][None, None, :] * x + mix[1][None, None, :] * x0
        x = x + self.attn_scale.to(dtype=x.dtype)[None, None, :] * self.attn(self.attn_norm(x))
        x = x + self.mlp_scale.to(dtype=x.dtype)[None, None, :] * self.mlp(self.mlp_norm(x))
        return x


class GPT(nn.Module):
    def __init__(self, vocab_size, num_layers, model_dim, num_heads, num_kv_heads, mlp_mult,
                 tied_embed_init_std=0.005, logit_softcap=30.0, rope_base=10000.0, qk_gain_init=1.5):
        super().__init__()
        self.tied_embed_init_std = tied_embed_init_std
        self.logit_softcap = logit_softcap
        self.tok_emb = nn.Embedding(vocab_size, model_dim)
        self.num_encoder_layers = num_layers // 2
        self.num_decoder_layers = num_layers - self.num_encoder_layers
        self.num_skip_weights = min(self.num_encoder_layers, self.num_decoder_layers)
        self.skip_weights = nn.Parameter(torch.ones(self.num_skip_weights, model_dim, dtype=torch.float32))
        self.blocks = nn.ModuleList([Block(model_dim, num_heads, num_kv_heads, mlp_mult, rope_base, qk_gain_init)
                                     for _ in range(num_layers)])
        self.final_norm = RMSNorm()
        self._init_weights()

    def _init_weights(self):
        nn.init.normal_(self.tok_emb.weight, mean=0.0, std=self.tied_embed_init_std)
        for module in self.modules():
            if isinstance(module, nn.Linear) and getattr(module, "_zero_init", False):
                nn.init.zeros_(module.weight)

    def hidden(self, input_ids):
        x = rms_norm(self.tok_emb(input_ids))
        x0 = x
        skips = []
        for i in range(self.num_encoder_layers):
            x = self.blocks[i](x, x0)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:
                x = x + self.skip_weights[i].to(dtype=x.dtype)[None, None, :] * skips.pop()
            x = self.blocks[self.num_encoder_layers + i](x, x0)
        return self.final_norm(x).reshape(-1, x.size(-1))

    def forward(self, input_ids, target_ids):
        logits = F.linear(self.hidden(input_ids), self.tok_emb.weight)
        logits = self.logit_softcap * torch.tanh(logits / self.logit_softcap)
        return F.cross_entropy(logits.float() if logits.dtype != torch.float64 else logits,
                               target_ids.reshape(-1), reduction="mean")


def pgolf_order(model):
    """(name, parameter) in pgolf's parameter-table order (tok_emb, per block c_q c_k c_v attn.proj
    q_gain fc mlp.proj attn_scale mlp_scale resid_mix, skip_weights)."""
    names = ["tok_emb.weight"]
    for b in range(len(model.blocks)):
        names += [f"blocks.{b}.{s}" for s in ("attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight",
                                              "attn.proj.weight", "attn.q_gain", "mlp.fc.weight",
                                              "mlp.proj.weight", "attn_scale", "mlp_scale", "resid_mix")]
    if model.num_skip_weights > 0:
        names.append("skip_weights")
    params = dict(model.named_parameters())
    assert set(names) == set(params), sorted(set(names) ^ set(params))
    return [(n, params[n]) for n in names]


# -----------------------------------------------------------------------------------------------
# Optimizers
# -----------------------------------------------------------------------------------------------

def round_bf16(t):
    """Values rounded to bfloat16 (round to nearest even), kept in float32."""
    return t.to(torch.bfloat16).to(torch.float32)


# Newton-Schulz precision (Config.ns):
#   "bf16"           the reference as it runs on the GPU: bf16 tensors between kernels (the input,
#                    X X^T, c A, (c A) A, B, B X, each new X), products accumulated and element-wise
#                    math done in float32 with float32 coefficients (cuBLAS and the compiled function);
#   "bf16_cpu_eager" the reference's function run as written by PyTorch's CPU kernels: the same
#                    tensors, but every Python scalar (a, b, c, the shape scale) is rounded to bf16
#                    first (3.4445 -> 3.4375, -4.775 -> -4.78125, 2.0315 -> 2.03125), which shrinks
#                    the update: an artefact of the CPU, not the reference's behaviour;
#   "param"          the parameters' dtype throughout (pgolf's CPU path; float64 for the golden).
NS_MODES = ("bf16", "bf16_cpu_eager", "param")


def zeropower_via_newtonschulz5(G, steps, eps=1e-7, ns="bf16"):
    a, b, c = (3.4445, -4.7750, 2.0315)
    transposed = G.size(0) > G.size(1)
    if ns == "bf16_cpu_eager":
        X = G.bfloat16()
        X /= X.norm() + eps
        if transposed:
            X = X.T
        for _ in range(steps):
            A = X @ X.T
            B = b * A + c * A @ A
            X = a * X + B @ X
        return X.T if transposed else X
    if ns not in NS_MODES:
        raise ValueError(f"ns must be one of {NS_MODES}, got {ns!r}")
    r = round_bf16 if ns == "bf16" else (lambda t: t)
    X = r(G.float()) if ns == "bf16" else G.clone()
    X = r(X / (X.norm() + eps))
    if transposed:
        X = X.T
    for _ in range(steps):
        A = r(X @ X.T)
        B = r(b * A + r(r(c * A) @ A))  # c * A @ A is (c * A) @ A
        X = r(a * X + r(B @ X))
    return X.T if transposed else X


class Muon(torch.optim.Optimizer):
    """The reference's Muon on one rank; ns: the Newton-Schulz precision (see NS_MODES). The
    reference stores the update in a bf16 buffer; in "bf16" mode it is rounded to bf16 (after the
    shape scale) as that buffer would."""

    def __init__(self, params, lr, momentum, backend_steps, nesterov=True, ns="bf16"):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov))
        self.ns = ns

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            lr, momentum = group["lr"], group["momentum"]
            total = sum(int(p.numel()) for p in params)
            updates_flat = torch.zeros(total, dtype=torch.bfloat16 if self.ns == "bf16_cpu_eager" else
                                       torch.float32 if self.ns == "bf16" else params[0].dtype)
            curr = 0
            for p in params:
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.mul_(momentum).add_(g)
                if group["nesterov"]:
                    g = g.add(buf, alpha=momentum)
                g = zeropower_via_newtonschulz5(g, steps=group["backend_steps"], ns=self.ns)
                g *= max(1, g.size(0) / g.size(1)) ** 0.5
                if self.ns == "bf16":
                    g = round_bf16(g)
                updates_flat[curr:curr + p.numel()] = g.reshape(-1)
                curr += p.numel()
            curr = 0
            for p in params:
                p.add_(updates_flat[curr:curr + p.numel()].view_as(p).to(dtype=p.dtype), alpha=-lr)
                curr += p.numel()


CONTROL_TENSOR_NAME_PATTERNS = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
                                "q_gain", "skip_weight", "skip_weights")


# -----------------------------------------------------------------------------------------------
# The training loop
# -----------------------------------------------------------------------------------------------

@dataclass
class Config:
    data_path: str
    train_pattern: str = "fineweb_train_*.bin"
    val_pattern: str = "fineweb_val_*.bin"
    val_tokens: int = 0            # first N validation tokens (0: all, as the reference)
    val_batch_size: int = 524_288
    seed: int = 1337
    iterations: int = 20000
    warmdown_iters: int = 1200
    val_loss_every: int = 1000
    train_batch_tokens: int = 524_288
    train_seq_len: int = 1024
    grad_accum_steps: int = 8      # the reference: 8 // world_size
    vocab_size: int = 1024
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: int = 2
    tied_embed_lr: float = 0.05
    tied_embed_init_std: float = 0.005
    matrix_lr: float = 0.04
    scalar_lr: float = 0.04
    muon_momentum: float = 0.95
    muon_backend_steps: int = 5
    muon_momentum_warmup_start: float = 0.85
    muon_momentum_warmup_steps: int = 500
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    logit_softcap: float = 30.0
    rope_base: float = 10000.0
    qk_gain_init: float = 1.5
    # Departures from the reference, for experiments and the golden.
    dtype: torch.dtype = torch.float32
    ns: str = "bf16"                         # Newton-Schulz precision, see NS_MODES
    init_from: list = field(default=None)    # flat weights in pgolf's table order, instead of torch's init


def build_model(cfg):
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.vocab_size, cfg.num_layers, cfg.model_dim, cfg.num_heads, cfg.num_kv_heads, cfg.mlp_mult,
                cfg.tied_embed_init_std, cfg.logit_softcap, cfg.rope_base, cfg.qk_gain_init).to(cfg.dtype)
    if cfg.init_from is not None:
        flat = torch.as_tensor(np.asarray(cfg.init_from), dtype=cfg.dtype)
        ordered = pgolf_order(model)
        total = sum(p.numel() for _, p in ordered)
        if flat.numel() != total:
            raise ValueError(f"init_from holds {flat.numel()} values; the model has {total}")
        at = 0
        with torch.no_grad():
            for _, p in ordered:
                p.copy_(flat[at:at + p.numel()].view_as(p))
                at += p.numel()
    return model


def eval_val(cfg, model, val_tokens):
    local_batch_seqs = (cfg.val_batch_size // cfg.grad_accum_steps) // cfg.train_seq_len
    total_seqs = (val_tokens.numel() - 1) // cfg.train_seq_len
    loss_sum, count = torch.zeros((), dtype=torch.float64), 0.0
    model.eval()
    with torch.no_grad():
        for s in range(0, total_seqs, local_batch_seqs):
            e = min(s + local_batch_seqs, total_seqs)
            local = val_tokens[s * cfg.train_seq_len:e * cfg.train_seq_len + 1]
            x = local[:-1].reshape(-1, cfg.train_seq_len)
            y = local[1:].reshape(-1, cfg.train_seq_len)
            n = float(y.numel())
            loss_sum += model(x, y).detach().to(torch.float64) * n
            count += n
    model.train()
    return float(loss_sum / count)


def lr_mul(cfg, step):
    if cfg.warmdown_iters <= 0:
        return 1.0
    start = max(cfg.iterations - cfg.warmdown_iters, 0)
    return max((cfg.iterations - step) / max(cfg.warmdown_iters, 1), 0.0) if start <= step < cfg.iterations else 1.0


def train(cfg, on_val=None, on_step=None):
    """Runs the reference's main loop. on_val(step, val_loss) after each validation; on_step(step,
    train_loss, model) after each optimizer step (step counts steps taken). Returns the list of
    (step, val_loss)."""
    model = build_model(cfg)
    model.train()
    block_named = list(model.blocks.named_parameters())
    matrix_params = [p for n, p in block_named
                     if p.ndim == 2 and not any(pat in n for pat in CONTROL_TENSOR_NAME_PATTERNS)]
    scalar_params = [p for n, p in block_named
                     if p.ndim < 2 or any(pat in n for pat in CONTROL_TENSOR_NAME_PATTERNS)]
    if model.skip_weights.numel() > 0:
        scalar_params.append(model.skip_weights)
    opt_tok = torch.optim.Adam([{"params": [model.tok_emb.weight], "lr": cfg.tied_embed_lr,
                                 "base_lr": cfg.tied_embed_lr}], betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)
    opt_muon = Muon(matrix_params, lr=cfg.matrix_lr, momentum=cfg.muon_momentum,
                    backend_steps=cfg.muon_backend_steps, ns=cfg.ns)
    for group in opt_muon.param_groups:
        group["base_lr"] = cfg.matrix_lr
    opt_scalar = torch.optim.Adam([{"params": scalar_params, "lr": cfg.scalar_lr, "base_lr": cfg.scalar_lr}],
                                  betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)
    optimizers = [opt_tok, opt_muon, opt_scalar]

    loader = TokenLoader(os.path.join(cfg.data_path, cfg.train_pattern))
    val_tokens = load_validation_tokens(os.path.join(cfg.data_path, cfg.val_pattern), cfg.train_seq_len,
                                        cfg.val_tokens)
    grad_scale = 1.0 / cfg.grad_accum_steps
    vals = []
    step = 0
    while True:
        last_step = step == cfg.iterations
        if last_step or (cfg.val_loss_every > 0 and step % cfg.val_loss_every == 0):
            v = eval_val(cfg, model, val_tokens)
            vals.append((step, v))
            if on_val:
                on_val(step, v)
        if last_step:
            break
        scale = lr_mul(cfg, step)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        train_loss = torch.zeros((), dtype=cfg.dtype)
        for _ in range(cfg.grad_accum_steps):
            x, y = loader.next_batch(cfg.train_batch_tokens, cfg.train_seq_len, cfg.grad_accum_steps)
            loss = model(x, y)
            train_loss += loss.detach()
            (loss * grad_scale).backward()
        train_loss /= cfg.grad_accum_steps
        frac = min(step / cfg.muon_momentum_warmup_steps, 1.0) if cfg.muon_momentum_warmup_steps > 0 else 1.0
        for group in opt_muon.param_groups:
            group["momentum"] = (1 - frac) * cfg.muon_momentum_warmup_start + frac * cfg.muon_momentum
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
        for opt in optimizers:
            opt.step()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        step += 1
        if on_step:
            on_step(step, float(train_loss), model)
    return vals
