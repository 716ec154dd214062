#!/usr/bin/python3
"""safetensors interop between pgolf and the PyTorch reference GPT (the float64 port of
make_golden.py), for tests/golden/test_safetensors_golden.cpp. A test tool: it reads and writes the
safetensors format itself with json + struct (the `safetensors` package is not a Debian package).

Generate (writes tests/golden/safetensors/):
    /usr/bin/python3 tests/golden/make_safetensors_golden.py
  reference -> pgolf: the tiny reference GPT (make_golden.py's tiny_reference spec), built after
  torch.manual_seed(SEED) with the reference's init and then perturbed as make_golden.py does (the
  reference zero-inits every output projection, which would hide every block weight from the loss),
  saved as its state dict:
    tiny_reference_f64.safetensors    every tensor F64
    tiny_reference_mixed.safetensors  the dtypes a reference run saves (the bf16 model with fp32
                                      CastedLinear weights and control tensors: tok_emb.weight BF16,
                                      matrices F32), plus q_gain as F16 to cover that reader
    tiny_reference.manifest           spec, batch, seq, the tokens, and the float64 loss of each
                                      file's weights (the mixed file's rounded values, read back)
  The C++ test imports each file into Gpt<tiny, double> and must get the same loss within 1e-10.

Check (pgolf -> reference): the C++ test writes a pgolf model (double; perturbed, then a few SGD
steps with pgolf's backward) as safetensors to
its build folder, build/tests/pgolf_tiny_reference_export.safetensors; then
    /usr/bin/python3 tests/golden/make_safetensors_golden.py --check FILE
  loads FILE into the port with load_state_dict(strict=True) (every name, every shape), scores the
  manifest's tokens in float64 and writes the loss to pgolf_export.manifest; the C++ test compares
  its own loss with that number (1e-10). Rerun both when the export or the model changes.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_golden as mg  # noqa: E402  (the float64 port, its spec line and its perturbation)

OUT = os.path.join(HERE, "safetensors")
SPEC = dict(mg.CASES["tiny_reference"], seed=11)
BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def to_bytes(t, dtype):
    flat = t.detach().contiguous().reshape(-1)
    if dtype == "F64":
        return struct.pack(f"<{flat.numel()}d", *flat.tolist())
    if dtype == "F32":
        return struct.pack(f"<{flat.numel()}f", *flat.to(torch.float32).tolist())
    if dtype == "F16":
        return flat.to(torch.float16).numpy().astype("<f2").tobytes()
    if dtype == "BF16":  # no numpy bfloat16: the raw 16 bits through an int16 view
        return flat.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    raise ValueError(dtype)


def from_bytes(raw, dtype, shape):
    if dtype == "F64":
        t = torch.tensor(struct.unpack(f"<{len(raw) // 8}d", raw), dtype=torch.float64)
    elif dtype == "F32":
        t = torch.tensor(struct.unpack(f"<{len(raw) // 4}f", raw), dtype=torch.float64)
    elif dtype == "F16":
        t = torch.from_numpy(np.frombuffer(raw, dtype="<f2").astype(np.float64))
    elif dtype == "BF16":
        t = torch.from_numpy(np.frombuffer(raw, dtype="<i2").copy()).view(torch.bfloat16).to(torch.float64)
    else:
        raise ValueError(f"dtype {dtype} is not read by this tool")
    return t.reshape(shape)


def write_safetensors(path, tensors, dtype_of, metadata):
    header, blobs, at = {"__metadata__": metadata}, [], 0
    for name, t in tensors:
        raw = to_bytes(t, dtype_of(name))
        header[name] = {"dtype": dtype_of(name), "shape": list(t.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True)
    text += " " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text.encode() + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode())
    meta = header.pop("__metadata__", {})
    buf = data[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        assert end - b == BYTES[e["dtype"]] * int(np.prod(e["shape"], dtype=np.int64)), name
        out[name] = from_bytes(buf[b:end], e["dtype"], e["shape"])
    return out, meta


def mixed_dtype(name):
    if name == "tok_emb.weight":
        return "BF16"
    if name.endswith("q_gain"):
        return "F16"
    return "F32"


def loss_of(state, x, y):
    model = mg.GPT(SPEC)
    model.load_state_dict(state, strict=True)  # every name and shape, nothing extra
    with torch.no_grad():
        return model(x, y).item()


def tokens_line(key, t):
    return key + " " + " ".join(str(v) for v in t.reshape(-1).tolist())


def generate():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(SPEC["seed"])
    model = mg.GPT(SPEC)
    ordered = mg.pgolf_order(model)
    mg.perturb(ordered)
    x, y = mg.random_batch(SPEC)
    meta = {"format": "pt", "source": "tests/golden/make_safetensors_golden.py"}
    losses = {}
    for kind, dtype_of in (("f64", lambda n: "F64"), ("mixed", mixed_dtype)):
        path = os.path.join(OUT, f"tiny_reference_{kind}.safetensors")
        write_safetensors(path, ordered, dtype_of, meta)
        state, _ = read_safetensors(path)  # the values as stored (rounded in the mixed file)
        losses[kind] = loss_of(state, x, y)
    with open(os.path.join(OUT, "tiny_reference.manifest"), "w") as f:
        f.write("# written by tests/golden/make_safetensors_golden.py; do not edit\n")
        f.write(f"spec {mg.spec_line(SPEC)}\n")
        f.write(f"batch {SPEC['batch']}\nseq {SPEC['seq']}\n")
        f.write(f"loss_f64 {losses['f64']!r}\nloss_mixed {losses['mixed']!r}\n")
        f.write(tokens_line("x", x) + "\n" + tokens_line("y", y) + "\n")
    print(f"tiny_reference: loss f64 {losses['f64']:.15f}, mixed {losses['mixed']:.15f}")


def read_manifest():
    values = {}
    with open(os.path.join(OUT, "tiny_reference.manifest")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, rest = line.rstrip("\n").split(" ", 1)
            values[key] = rest
    b, s = int(values["batch"]), int(values["seq"])
    x = torch.tensor([int(v) for v in values["x"].split()]).reshape(b, s)
    y = torch.tensor([int(v) for v in values["y"].split()]).reshape(b, s)
    assert values["spec"] == mg.spec_line(SPEC), "the manifest's spec is not this script's"
    return x, y


def check(path):
    state, meta = read_safetensors(path)
    assert meta.get("pgolf.naming") == "reference", f"{path} does not say it uses the reference's names: {meta}"
    x, y = read_manifest()
    loss = loss_of(state, x, y)
    with open(os.path.join(OUT, "pgolf_export.manifest"), "w") as f:
        f.write("# written by tests/golden/make_safetensors_golden.py --check; do not edit\n")
        f.write(f"# the PyTorch port's float64 loss of pgolf's export, on tiny_reference.manifest's tokens\n")
        f.write(f"variant {meta.get('pgolf.variant', '?')}\nfingerprint {meta.get('pgolf.table_fingerprint', '?')}\n")
        f.write(f"loss {loss!r}\n")
    print(f"{path}: PyTorch float64 loss {loss!r} (metadata {meta})")


def main():
    torch.set_num_threads(1)
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    elif len(sys.argv) == 1:
        generate()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
