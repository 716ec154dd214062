#!/usr/bin/python3
"""Golden trajectories of the reference trainer's loop for pgolf's Trainer (test_trainloop_golden.cpp).

reference_trainer.py (a port of the reference's train_gpt.py: model, loader, Muon, the Adam groups,
lr_mul, the momentum warm-up, the main loop) runs in float64 on the CPU, with Newton-Schulz in
float64 too (the reference runs it in bfloat16: that is a precision, not a rule of the loop), from
the reference's own initialisation. The run is short and crosses every schedule boundary: 24
iterations, warmdown over the last 8, momentum warm-up over the first 8, validation at steps 0, 10,
20 and 24, two training shards that the loader wraps around twice; once with one micro-step per
step and once with four.

The data are the bundled FineWeb shards' first tokens in a 32-token vocabulary (the 31 most frequent
training tokens, and one id for every other token), written as shards next to the goldens
(trainloop_data/), so the C++ test reads them with pgolf's own loader.

For each case, <case>.manifest: spec, config, "train_loss STEP VALUE" per step, "val_loss STEP VALUE"
per validation, "param NAME COUNT" per tensor in pgolf's table order; <case>.bin: float64 weights
after steps 0 (the initialisation), 1, ..., iterations, each snapshot in manifest order. Running it
again regenerates byte-identical files.

Usage: /usr/bin/python3 tests/golden/make_trainloop_golden.py
"""
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference_trainer as rt  # noqa: E402

torch.set_num_threads(1)  # a fixed reduction order: byte-identical reruns

VOCAB = 32
DATA_DIR = os.path.join(HERE, "trainloop_data")
BUNDLED = os.path.join(HERE, "..", "..", "data", "fineweb_sp1024_mini")
# Two training shards of unequal length (the loader crosses from one to the other and wraps), one
# validation shard.
TRAIN_SHARDS = [("fineweb_train_000000.bin", 0, 1000), ("fineweb_train_000001.bin", 1000, 1700)]
VAL_SHARD = ("fineweb_val_000000.bin", 0, 200)

BASE = dict(vocab_size=VOCAB, num_layers=2, model_dim=8, num_heads=2, num_kv_heads=1, mlp_mult=2,
            iterations=24, warmdown_iters=8, muon_momentum_warmup_steps=8, val_loss_every=10,
            train_batch_tokens=128, train_seq_len=16, val_tokens=0, val_batch_size=64,
            seed=7, dtype=torch.float64, ns="param")
CASES = {
    "trainloop_accum1": dict(BASE, grad_accum_steps=1),
    "trainloop_accum4": dict(BASE, grad_accum_steps=4),
}


def write_data():
    os.makedirs(DATA_DIR, exist_ok=True)
    train = rt.load_data_shard(os.path.join(BUNDLED, "fineweb_train_000000.bin")).numpy()
    val = rt.load_data_shard(os.path.join(BUNDLED, "fineweb_val_000000.bin")).numpy()
    # The VOCAB - 1 most frequent training tokens keep their identity (ids by frequency, ties by
    # id), every other token becomes VOCAB - 1: text statistics a tiny model can learn.
    used = train[:TRAIN_SHARDS[-1][2]]
    ids, counts = np.unique(used, return_counts=True)
    top = ids[np.lexsort((ids, -counts))][:VOCAB - 1]
    table = np.full(int(max(train.max(), val.max())) + 1, VOCAB - 1, dtype=np.int64)
    table[top] = np.arange(VOCAB - 1)
    for name, a, b in TRAIN_SHARDS:
        rt.write_data_shard(os.path.join(DATA_DIR, name), table[train[a:b]])
    name, a, b = VAL_SHARD
    rt.write_data_shard(os.path.join(DATA_DIR, name), table[val[a:b]])


def make_case(name, s):
    cfg = rt.Config(data_path=DATA_DIR, **s)
    snapshots, train_losses = [], []

    def snapshot(model):
        snapshots.append(np.concatenate([p.detach().reshape(-1).numpy() for _, p in rt.pgolf_order(model)]))

    model0 = rt.build_model(cfg)
    snapshot(model0)
    names = [(n, p.numel()) for n, p in rt.pgolf_order(model0)]
    vals = rt.train(cfg, on_step=lambda step, loss, model: (train_losses.append(loss), snapshot(model)))
    assert len(snapshots) == cfg.iterations + 1

    with open(os.path.join(HERE, name + ".manifest"), "w") as f:
        f.write("# written by tests/golden/make_trainloop_golden.py; do not edit\n")
        f.write(f"spec vocab={cfg.vocab_size} dim={cfg.model_dim} layers={cfg.num_layers} heads={cfg.num_heads} "
                f"kv_heads={cfg.num_kv_heads} mlp_mult={cfg.mlp_mult}\n")
        for key in ("iterations", "warmdown_iters", "val_loss_every", "train_batch_tokens", "train_seq_len",
                    "grad_accum_steps", "matrix_lr", "scalar_lr", "tied_embed_lr", "muon_momentum",
                    "muon_momentum_warmup_start", "muon_momentum_warmup_steps", "muon_backend_steps", "beta1",
                    "beta2", "adam_eps"):
            f.write(f"{key} {getattr(cfg, key)!r}\n")
        for step, loss in enumerate(train_losses, start=1):
            f.write(f"train_loss {step} {loss!r}\n")
        for step, v in vals:
            f.write(f"val_loss {step} {v!r}\n")
        for n, k in names:
            f.write(f"param {n} {k}\n")
    with open(os.path.join(HERE, name + ".bin"), "wb") as f:
        for snap in snapshots:
            f.write(struct.pack(f"<{snap.size}d", *snap.tolist()))
    print(f"{name}: {len(snapshots[0])} parameters, train_loss {train_losses[0]:.6f} -> {train_losses[-1]:.6f}, "
          f"val_loss {vals[0][1]:.6f} -> {vals[-1][1]:.6f}")


def main():
    write_data()
    for name, s in CASES.items():
        make_case(name, s)


if __name__ == "__main__":
    main()
