#!/usr/bin/python3
"""pgolf-tiny against the reference trainer, both configured as pgolf-tiny, on the bundled data.

The reference side is tests/golden/reference_trainer.py: a port of the challenge's train_gpt.py
(model, initialisation, loader, Muon, the Adam groups, schedules, main loop) that runs on the CPU with
Debian's PyTorch 1.13 in float32, world size 1 (so 8 micro-steps per step, as the reference on one
device), Newton-Schulz in bf16 as the reference runs it on the GPU (--reference-ns). The pgolf side
is the pgolf-tiny binary with the same run-time settings passed as flags. Every run uses one thread;
--jobs runs several at once. Prints (and with --markdown writes) val_loss per validation step for
every seed of both, the spread of each side and whether every pgolf value lies within the
reference's spread.

    /usr/bin/python3 bench/compare_reference_trainer.py --pgolf build/examples/pgolf-tiny \\
        --seeds 1337 1338 1339 --jobs 2 --markdown bench/results/out.md

Variants for isolating a difference: --reference-ns bf16_cpu_eager (the reference's Newton-Schulz
run by PyTorch's CPU kernels, which round its coefficients to bf16) or param (float32);
--reference-accum 1 (one micro-step per step, as pgolf-tiny); --pgolf-args "--muon-ns-bf16";
--same-init (pgolf starts from the reference's initial weights for each seed, written into a step-0
checkpoint, so the two differ only in what follows the initialisation); --reference-from-pgolf-init
(the other way round: the reference starts from pgolf-tiny's initial weights, read from its step-0
checkpoint); --only reference|pgolf.
--ns-probe prints only the Newton-Schulz output norm of each precision mode relative to float32;
--trajectory N only the first N steps' training losses of both, from pgolf's initial weights, side by
side (one micro-step and Newton-Schulz in float32 on both sides, so they differ only by rounding).
"""
import argparse
import concurrent.futures as cf
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))

# pgolf-tiny (examples/tiny.cpp): the compile-time shape and the run-time preset.
SHAPE = dict(vocab_size=1024, num_layers=4, model_dim=128, num_heads=4, num_kv_heads=2, mlp_mult=2)
PRESET = dict(iterations=300, warmdown_iters=100, val_loss_every=100, train_batch_tokens=8192, train_seq_len=256,
              muon_momentum_warmup_steps=100, val_tokens=131072)


def preset(steps, val_tokens=PRESET["val_tokens"]):
    p = dict(PRESET, val_tokens=val_tokens)
    if steps != p["iterations"]:  # a shorter run keeps the proportions
        p.update(iterations=steps, warmdown_iters=max(1, steps // 3), val_loss_every=max(1, steps // 3),
                 muon_momentum_warmup_steps=max(1, steps // 3))
    return p


def reference_config(args, seed, init_from=None):
    import reference_trainer as rt
    import torch
    p = preset(args.steps, args.val_tokens)
    return rt.Config(data_path=args.data_path, seed=seed, grad_accum_steps=args.reference_accum,
                     # Validation batches of 32 sequences (the reference's 524,288 tokens would hold
                     # 256 per batch on one device): the same sums, less memory.
                     val_batch_size=32 * p["train_seq_len"] * args.reference_accum, ns=args.reference_ns,
                     dtype=torch.float32, init_from=init_from, **SHAPE, **p)


class _Enough(Exception):
    pass


def run_reference(args, seed):
    """One reference run in this process (a worker): [(step, val_loss), ...], or with --trajectory N
    the training loss of each of the first N steps; progress on stderr."""
    import torch
    import reference_trainer as rt
    torch.set_num_threads(1)
    init = read_checkpoint_weights(args.worker_init) if args.worker_init else None
    cfg = reference_config(args, seed, init_from=init)
    if args.trajectory:
        losses = []

        def on_step(step, loss, model):
            losses.append((step, loss))
            if step >= args.trajectory:
                raise _Enough()
        try:
            rt.train(cfg, on_step=on_step)
        except _Enough:
            pass
        return losses
    return rt.train(cfg, on_val=lambda step, v: print(f"reference seed {seed} step:{step} val_loss:{v:.4f}",
                                                      file=sys.stderr, flush=True))


def pgolf_trajectory(args, seed, workdir):
    """pgolf-tiny's training loss at each of the first --trajectory steps (then the run is stopped)."""
    flags = pgolf_flags(args, seed)
    flags[flags.index("--val-loss-every") + 1] = "0"  # no validation on the way
    cmd = [args.pgolf, "train", *flags, "--train-log-every", "1", "--out-dir", os.path.join(workdir, f"trajectory-{seed}")]
    losses = []
    with subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as proc:
        for line in proc.stdout:
            m = re.match(r"step:(\d+)/\d+ train_loss:([0-9.]+)", line)
            if m:
                losses.append((int(m.group(1)), float(m.group(2))))
                if len(losses) >= args.trajectory:
                    proc.kill()
                    break
    if len(losses) < args.trajectory:
        raise RuntimeError(f"{' '.join(cmd)} stopped after {len(losses)} steps")
    return losses


def trajectory(args, seed, workdir):
    """Both trainers from pgolf's initial weights, on the same batches (one micro-step each side),
    Newton-Schulz in float32 on both: the per-step training losses side by side."""
    init = os.path.join(workdir, f"init-pgolf-{seed}")
    subprocess.run([args.pgolf, "train", *pgolf_flags(args, seed, iterations=0), "--out-dir", init], check=True,
                   capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    args.reference_ns, args.reference_accum = "param", 1
    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        ref_f = pool.submit(run_reference_subprocess, args, seed, os.path.join(init, "checkpoint.bin"))
        pg = pgolf_trajectory(args, seed, workdir)
        ref = ref_f.result()
    lines = [f"| step | pgolf-tiny train_loss | reference train_loss | equal to 4 decimals |", "|---|---|---|---|"]
    for (s, a), (_, b) in zip(pg, ref):
        lines.append(f"| {s} | {a:.4f} | {b:.6f} | {'yes' if f'{a:.4f}' == f'{b:.4f}' else 'no'} |")
    same = sum(f"{a:.4f}" == f"{b:.4f}" for (_, a), (_, b) in zip(pg, ref))
    return lines + ["", f"seed {seed}: {same} of {len(pg)} steps equal to 4 decimals (both from pgolf's initial "
                        "weights, one micro-step, Newton-Schulz in float32)."]


def reference_init(args, seed):
    """The reference's initial weights for a seed, flat in pgolf's table order (float32)."""
    import numpy as np
    import reference_trainer as rt
    model = rt.build_model(reference_config(args, seed))
    return np.concatenate([p.detach().reshape(-1).numpy() for _, p in rt.pgolf_order(model)]).astype(np.float32)


def checkpoint_params(b, path):
    """(offset, count) of the float32 parameters in a pgolf checkpoint of format 1 or 2."""
    import struct
    version, scalar = struct.unpack_from("<II", b, 8) if len(b) >= 16 else (0, 0)
    if b[:8] != b"PGOLFCKP" or version not in (1, 2) or scalar != 4:
        raise SystemExit(f"{path}: not a float32 pgolf checkpoint of format 1 or 2")
    # Format 2 has a 20-byte state block (flags, Adam groups, ema_decay, average) before the tensors.
    off = 16 + 48 + (20 if version == 2 else 0)
    (n,) = struct.unpack_from("<Q", b, off + 4)
    return off + 4 + 8, n


def read_checkpoint_weights(path):
    import numpy as np
    b = open(path, "rb").read()
    start, n = checkpoint_params(b, path)
    return np.frombuffer(b, dtype="<f4", count=n, offset=start).astype(np.float32)


def write_init_checkpoint(template, weights, path):
    """A pgolf checkpoint (the template's format) at step 0 whose parameters are `weights`; the template (written by
    pgolf-tiny at step 0) supplies the fingerprint and the empty optimizer state."""
    import struct
    import zlib
    b = open(template, "rb").read()
    start, n = checkpoint_params(b, template)
    if n != weights.size:
        raise SystemExit(f"{template} holds {n} parameters; the reference model has {weights.size}")
    out = bytearray(b[:start]) + weights.astype("<f4").tobytes() + b[start + 4 * n:-4]
    out += struct.pack("<I", zlib.crc32(bytes(out)))
    open(path, "wb").write(bytes(out))


def pgolf_flags(args, seed, iterations=None):
    p = preset(args.steps, args.val_tokens)
    return ["--seed", str(seed), "--iterations", str(p["iterations"] if iterations is None else iterations), "--warmdown-iters", str(p["warmdown_iters"]),
            "--val-loss-every", str(p["val_loss_every"]), "--train-batch-tokens", str(p["train_batch_tokens"]),
            "--train-seq-len", str(p["train_seq_len"]), "--muon-momentum-warmup-steps",
            str(p["muon_momentum_warmup_steps"]), "--val-tokens", str(p["val_tokens"]), "--max-wallclock-seconds", "0",
            "--data-path", args.data_path, "--tokenizer-path", args.tokenizer_path, "--no-progress",
            *shlex.split(args.pgolf_args)]


def run_pgolf(args, seed, workdir, resume=None):
    out = os.path.join(workdir, f"pgolf-{seed}")
    cmd = [args.pgolf, "train", *pgolf_flags(args, seed), "--out-dir", out]
    if resume:
        cmd += ["--resume", resume]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    vals = []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            m = re.match(r"step:(\d+)/\d+ val_loss:([0-9.]+)", line)
            if m:
                vals.append((int(m.group(1)), float(m.group(2))))
                print(f"pgolf-tiny seed {seed} step:{m.group(1)} val_loss:{m.group(2)}", file=sys.stderr, flush=True)
        err = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    if not vals:
        raise RuntimeError(f"no val_loss lines in the output of {' '.join(cmd)}")
    return vals


def reference_worker_cmd(args, seed, init=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker-seed", str(seed), "--steps", str(args.steps),
           "--val-tokens", str(args.val_tokens),
           "--reference-ns", args.reference_ns, "--reference-accum", str(args.reference_accum),
           "--data-path", args.data_path]
    return cmd + (["--worker-init", init] if init else []) + (["--trajectory", str(args.trajectory)]
                                                                if args.trajectory else [])


def run_reference_subprocess(args, seed, init=None):
    # The worker's progress goes straight to stderr; its result is the last line of stdout.
    res = subprocess.run(reference_worker_cmd(args, seed, init), stdout=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"reference seed {seed} failed (exit status {res.returncode})")
    return [tuple(v) for v in json.loads(res.stdout.strip().splitlines()[-1])]


def ns_probe():
    """Newton-Schulz output norms per precision mode, relative to float32, on gradient-like matrices
    (rank 8 plus noise) of pgolf-tiny's four matrix shapes."""
    import torch
    import reference_trainer as rt
    torch.manual_seed(0)
    lines = ["| shape | " + " | ".join(f"{m}: norm / float32" for m in rt.NS_MODES) + " |",
             "|---|" + "---|" * len(rt.NS_MODES)]
    for rows, cols in [(128, 128), (64, 128), (256, 128), (128, 256)]:
        G = torch.randn(rows, 8) @ torch.randn(8, cols) + 0.3 * torch.randn(rows, cols)
        base = rt.zeropower_via_newtonschulz5(G, 5, ns="param").norm().item()
        norms = [rt.zeropower_via_newtonschulz5(G, 5, ns=m).float().norm().item() / base for m in rt.NS_MODES]
        lines.append(f"| {rows}x{cols} | " + " | ".join(f"{v:.4f}" for v in norms) + " |")
    return lines


def table(results, steps_list, title):
    lines = [f"| {title} | " + " | ".join(f"val_loss at {s}" for s in steps_list) + " |",
             "|---|" + "---|" * len(steps_list)]
    for name, vals in results:
        d = dict(vals)
        lines.append(f"| {name} | " + " | ".join(f"{d[s]:.4f}" if s in d else "-" for s in steps_list) + " |")
    return lines


def spread(results, steps_list):
    out = {}
    for s in steps_list:
        v = [dict(vals)[s] for _, vals in results if s in dict(vals)]
        out[s] = (min(v), max(v)) if v else None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pgolf", help="the pgolf-tiny binary (build/examples/pgolf-tiny)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338, 1339])
    ap.add_argument("--steps", type=int, default=300, help="iterations (300: pgolf-tiny's preset)")
    ap.add_argument("--val-tokens", type=int, default=PRESET["val_tokens"], help="validation tokens scored")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    ap.add_argument("--reference-ns", default="bf16", choices=["bf16", "bf16_cpu_eager", "param"])
    ap.add_argument("--reference-accum", type=int, default=8, help="micro-steps per step (8: one device)")
    ap.add_argument("--pgolf-args", default="", help="extra flags for pgolf-tiny")
    ap.add_argument("--same-init", action="store_true", help="pgolf starts from the reference's initial weights")
    ap.add_argument("--reference-from-pgolf-init", action="store_true",
                    help="the reference starts from pgolf-tiny's initial weights for each seed")
    ap.add_argument("--only", choices=["reference", "pgolf"])
    ap.add_argument("--data-path", default=os.path.join(ROOT, "data", "fineweb_sp1024_mini"))
    ap.add_argument("--tokenizer-path", default=os.path.join(ROOT, "data", "tokenizers", "fineweb_1024_bpe.model"))
    ap.add_argument("--markdown", help="also write the tables and the command to this file")
    ap.add_argument("--ns-probe", action="store_true", help="only compare Newton-Schulz output norms per precision")
    ap.add_argument("--trajectory", type=int, metavar="N",
                    help="only the first N steps' training losses of both trainers from pgolf's initial weights")
    ap.add_argument("--worker-seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--worker-init", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.ns_probe:
        print("\n".join(ns_probe()))
        return

    if args.worker_seed is not None:
        print(json.dumps(run_reference(args, args.worker_seed)))
        return
    if args.trajectory is not None:
        if args.trajectory < 1 or args.trajectory > args.steps:
            raise SystemExit("--trajectory must lie in [1, --steps]")
        if not (args.pgolf and os.access(args.pgolf, os.X_OK)):
            raise SystemExit("--pgolf must name the pgolf-tiny binary (build/examples/pgolf-tiny)")
        workdir = tempfile.mkdtemp(prefix="pgolf-vs-reference-")
        for seed in args.seeds:
            print("\n".join(trajectory(args, seed, workdir)) + "\n")
        return
    if args.steps < 1 or args.jobs < 1 or args.reference_accum < 1 or args.val_tokens < 1:
        raise SystemExit("--steps, --val-tokens, --jobs and --reference-accum must be positive")
    if args.same_init and args.reference_from_pgolf_init:
        raise SystemExit("--same-init and --reference-from-pgolf-init exclude each other")
    needs_pgolf = args.only != "reference" or args.reference_from_pgolf_init
    if needs_pgolf and not (args.pgolf and os.access(args.pgolf, os.X_OK)):
        raise SystemExit("--pgolf must name the pgolf-tiny binary (build/examples/pgolf-tiny)")
    p = preset(args.steps, args.val_tokens)
    if p["train_batch_tokens"] % (args.reference_accum * p["train_seq_len"]) != 0:
        raise SystemExit(f"--reference-accum {args.reference_accum} does not divide the batch into whole sequences")

    if needs_pgolf:  # the binary must have the shape the reference is built with
        import reference_trainer as rt
        info = subprocess.run([args.pgolf, "info"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"total parameters: (\d+)", info)
        ours = sum(p.numel() for p in rt.build_model(reference_config(args, 0)).parameters())
        if not m or int(m.group(1)) != ours:
            raise SystemExit(f"{args.pgolf} is not pgolf-tiny's shape: {m.group(1) if m else '?'} parameters, the "
                             f"reference model here has {ours}")

    t0 = time.time()
    workdir = tempfile.mkdtemp(prefix="pgolf-vs-reference-")
    resume = {}
    if args.same_init and args.only != "reference":
        template = os.path.join(workdir, "step0")
        subprocess.run([args.pgolf, "train", *pgolf_flags(args, args.seeds[0], iterations=0), "--out-dir", template], check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        for seed in args.seeds:
            resume[seed] = os.path.join(workdir, f"init-{seed}.bin")
            write_init_checkpoint(os.path.join(template, "checkpoint.bin"), reference_init(args, seed), resume[seed])
    ref_init = {}
    if args.reference_from_pgolf_init and args.only != "pgolf":
        for seed in args.seeds:  # pgolf's step-0 checkpoint holds its initial weights for the seed
            d = os.path.join(workdir, f"init-pgolf-{seed}")
            subprocess.run([args.pgolf, "train", *pgolf_flags(args, seed, iterations=0), "--out-dir", d], check=True,
                           capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
            ref_init[seed] = os.path.join(d, "checkpoint.bin")

    with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        ref_f = {} if args.only == "pgolf" else {s: pool.submit(run_reference_subprocess, args, s, ref_init.get(s))
                                                     for s in args.seeds}
        pg_f = {} if args.only == "reference" else {s: pool.submit(run_pgolf, args, s, workdir, resume.get(s))
                                                    for s in args.seeds}
        ref = [(f"reference, seed {s}", f.result()) for s, f in ref_f.items()]
        pg = [(f"pgolf-tiny, seed {s}", f.result()) for s, f in pg_f.items()]

    steps_list = sorted({s for _, vals in ref + pg for s, _ in vals if s > 0})
    ref_note = f"reference: Newton-Schulz {args.reference_ns}, {args.reference_accum} micro-steps per step" + \
        (", from pgolf-tiny's initial weights" if args.reference_from_pgolf_init else "")
    pg_note = "pgolf-tiny" + (f" {args.pgolf_args}" if args.pgolf_args else "") + \
        (", from the reference's initial weights" if args.same_init else "")
    lines = table(ref + pg, steps_list, "run")
    if ref and pg:
        rs, ps = spread(ref, steps_list), spread(pg, steps_list)
        lines += ["", "| spread | " + " | ".join(f"at {s}" for s in steps_list) + " |", "|---|" + "---|" * len(steps_list)]
        lines.append("| reference min-max | " + " | ".join(f"{rs[s][0]:.4f}-{rs[s][1]:.4f}" for s in steps_list) + " |")
        lines.append("| pgolf min-max | " + " | ".join(f"{ps[s][0]:.4f}-{ps[s][1]:.4f}" for s in steps_list) + " |")
        inside = {s: all(rs[s][0] <= dict(v)[s] <= rs[s][1] for _, v in pg) for s in steps_list}
        lines.append("| every pgolf run within the reference's spread | " +
                     " | ".join("yes" if inside[s] else "no" for s in steps_list) + " |")
    command = "/usr/bin/python3 bench/compare_reference_trainer.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    footer = ["", "; ".join(n for n, ran in ((ref_note, ref), (pg_note, pg)) if ran) + ".", f"Command: `{command}` ({time.time() - t0:.0f} s)."]
    print("\n".join(lines + footer))
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n".join(lines + footer) + "\n\n")


if __name__ == "__main__":
    main()
