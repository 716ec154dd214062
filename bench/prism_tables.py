#!/usr/bin/env python3
"""Markdown tables from pgolf-prism-compare JSON files (docs/prism.md is written from these).

    python3 bench/prism_tables.py results/*.json
"""
import json
import statistics
import sys


def table(path):
    d = json.load(open(path))
    seeds = max(len(m["runs"]) for m in d["models"])
    out = [f"**{d['task']}**, {d['steps']} steps, batch {d['batch']}, {seeds} seed(s), "
           f"held-out {d['eval_sequences']} sequences per seed"
           + (f", token recycling {d['token_recycling']}" if d.get("token_recycling") else ""),
           "",
           "| model | params | held-out CE mean (min-max) | held-out accuracy mean | train s (mean) |",
           "|---|---:|---|---:|---:|"]
    for m in d["models"]:
        ce = [r["heldout_ce"] for r in m["runs"]]
        acc = [r["heldout_acc"] for r in m["runs"]]
        t = [r["train_s"] for r in m["runs"]]
        out.append(f"| {m['model']} | {m['params']:,} | {statistics.mean(ce):.3f} ({min(ce):.3f}-{max(ce):.3f}) "
                   f"| {statistics.mean(acc):.3f} | {statistics.mean(t):.2f} |")
    return "\n".join(out)


def routing(path, model):
    d = json.load(open(path))
    for m in d["models"]:
        if m["model"] != model:
            continue
        out = [f"{model}, {d['task']} (seed 0, one held-out batch after training):", "",
               "| block | neural | memory | symbolic | MRB gate means | read entropy | slot spread |",
               "|---:|---:|---:|---:|---|---:|---:|"]
        for b in m["runs"][0].get("blocks", []):
            gates = " ".join(f"{b[k]:.2f}" for k in sorted(b) if k.startswith("gate_mean"))
            cell = lambda k: f"{b[k]:.2f}" if k in b else "-"
            out.append(f"| {b['block']} | {cell('routed_neural')} | {cell('routed_memory')} | {cell('routed_symbolic')} "
                       f"| {gates} | {cell('read_entropy')} | {b['slot_spread']:.3g} |" if "slot_spread" in b else
                       f"| {b['block']} | {cell('routed_neural')} | {cell('routed_memory')} | {cell('routed_symbolic')} "
                       f"| {gates} | - | - |")
        return "\n".join(out)
    return ""


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(table(p))
        print()
