#!/usr/bin/env python3
"""Writes the crafted regression inputs of fuzz/regressions/ (the inputs the fuzzers found, in a
readable form). Each one crashed, overflowed or hit a sanitizer before its fix; every target must
now turn it into a pgolf::Error. Run from the repository root after make_corpus (it starts from the
seed corpus): python3 fuzz/make_regressions.py"""
import pathlib
import struct

root = pathlib.Path(__file__).resolve().parent
corpus, out = root / "corpus", root / "regressions"


def write(target, name, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def patch(data, offset, fmt, value):
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


# Artifact (1 flag byte, then the file; flag 1 = the harness recomputes both CRCs): a payload size
# of 2^49 bytes in the header made decode_artifact allocate it before decompressing.
art = (corpus / "artifact" / "none_fixcrc").read_bytes()
write("artifact", "huge_raw_size", patch(art, 1 + 24, "<Q", 0x3000000000000))

# Checkpoint (flag byte, then the file; flag 1 = the harness recomputes the trailing CRC). Layout:
# magic 8, version 4, scalar 4, fingerprint 8, step 8, ms 8, file 8, pos 8, seed 8 -> tensor count
# at 64, the first tensor's length at 68.
ckp = (corpus / "checkpoint" / "float_fixcrc").read_bytes()
write("checkpoint", "tensor_count_4g", patch(ckp, 1 + 64, "<I", 0xFFFFFFFF))
write("checkpoint", "tensor_length_wraps", patch(ckp, 1 + 68, "<Q", 1 << 62))  # 2^62 * 4 bytes wraps to 0
at = 1 + 68
for _ in range(struct.unpack_from("<I", ckp, 1 + 64)[0]):
    at += 8 + 4 * struct.unpack_from("<Q", ckp, at)[0]
# Without the seed's empty third tensor (its 8-byte length just before the counter count), so the
# decoder reaches the counters.
dense = patch(ckp[: at - 8] + ckp[at:], 1 + 64, "<I", 2)
write("checkpoint", "counter_count_4g", patch(dense, at - 8, "<I", 0xFFFFFFFF))
# An empty tensor (the seed's third one) made ByteReader memcpy from a null pointer (UBSan).
write("checkpoint", "empty_tensor", (corpus / "checkpoint" / "float").read_bytes())

# JSONL: nesting deep enough to overflow the stack of the recursive skip_value (the release build
# segfaults at about a million levels; the sanitized build at 50,000).
write("jsonl", "deep_nesting", b'{"a":' + b"[" * 60000 + b"]" * 60000 + b', "text": "x"}')
write("jsonl", "deep_unclosed", b'{"a":' + b"{\"k\":" * 20000)

# Tokenizer (mode byte 3: the payload is a SentencePiece model file). A unigram model with a piece
# "\0": SentencePiece's trie builder (darts_clone) sees a zero-length key and throws its own
# exception from SentencePieceProcessor::Load, which escaped data::Tokenizer as a non-pgolf error.


def varint(n):
    b = bytearray()
    while True:
        b.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(b)


def field(number, payload):  # a length-delimited protobuf field
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def piece(text, score, kind=None):  # ModelProto.SentencePiece: piece 1, score 2, type 3
    body = field(1, text) + b"\x15" + struct.pack("<f", score) + (b"\x18" + bytes([kind]) if kind else b"")
    return field(1, body)


model = (piece(b"<unk>", 0.0, 2) + piece(b"<s>", 0.0, 3) + piece("\u2581".encode(), -1.0) + piece(b"e", -2.0) +
         piece(b"\0", -3.0) + field(3, field(1, b"identity")))  # normalizer_spec.name
write("tokenizer", "zero_length_piece", b"\x03" + model)
