"""Writes small valid seed inputs for every fuzz target into fuzz/corpus/<target>/.

Run from the repository root with the package installed: `python fuzz/make_seeds.py`.
The SentencePiece seeds are cut down from the shared test models when ../shared exists.
"""

from __future__ import annotations

import base64
import json
import pathlib
import random

import probcraft

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"


def put(target: str, name: str, data: bytes) -> None:
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main() -> None:
    rng = random.Random(0)
    shared = pathlib.Path(__file__).resolve().parents[2] / "shared" / "models"
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb

        for path in sorted(shared.glob("*.model")):
            m = pb.ModelProto()
            m.ParseFromString(path.read_bytes())
            del m.pieces[40:]
            put("sentencepiece", path.stem + "_40", m.SerializeToString())
            m.ClearField("normalizer_spec")
            put("sentencepiece", path.stem + "_nonorm", m.SerializeToString())
    except ImportError:
        pass
    pieces = [("▁", -1.0), ("a", -2.0), ("b", -2.5), ("ab", -1.5), ("日本", -3.0)]
    hf = {
        "version": "1.0",
        "added_tokens": [{"id": 0, "content": "<unk>", "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"},
        "model": {
            "type": "Unigram",
            "unk_id": 0,
            "byte_fallback": False,
            "vocab": [["<unk>", 0.0]] + [[p, s] for p, s in pieces],
        },
    }
    put("hf_json", "small", json.dumps(hf, ensure_ascii=False).encode())
    hf["model"]["byte_fallback"] = True
    hf["model"]["vocab"] += [[f"<0x{b:02X}>", -9.0] for b in range(256)]
    put("hf_json", "byte_fallback", json.dumps(hf).encode())
    bp = {base64.b64encode(bytes([b])).decode(): [3 + b, chr(b), 1 + b] for b in range(256)}
    for i, w in enumerate([b"ab", b"abc", "日本".encode(), b"\xff\xfe"]):
        bp[base64.b64encode(w).decode()] = [259 + i, w.decode("latin-1"), 50 + i]
    put("bytepiece_json", "small", json.dumps(bp).encode())
    words = ["日本", "日", "本", "中国", "人", "中国人", "a", "ab"]
    put("jieba_dict", "small", "".join(f"{w} {rng.randint(1, 999)} n\n" for w in words).encode())
    put("jieba_dict", "notag", "".join(f"{w} {rng.randint(1, 99)}\n" for w in words).encode())
    u = probcraft.Unigram.from_pieces(pieces)
    put("vocab_bytes", "small", u.to_bytes())
    for i, t in enumerate(["", "ab ab", "aaaaaaaaaaaa", "日本語 é😀", "a\u0301 \t\n b", "xyz"]):
        put("text", f"t{i}", bytes([i * 37 % 256]) + t.encode())
    put("text", "bad_utf8", b"\x00ab\xff\xfe\xc3")


if __name__ == "__main__":
    main()
