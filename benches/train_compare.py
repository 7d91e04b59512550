"""Unigram training: probcraft vs the ``sentencepiece`` trainer, side by side.

Trains both on the shared corpora (botchan.txt at V=1000, zh_fortunes.txt at V=8000), one
thread each, and reports wall time and the quality of the resulting models, all measured with
probcraft's lattice engine on the same text:

- ``viterbi LL``: Σ over lines of the Viterbi path's score, with each model's piece scores
  renormalised to a proper distribution over its normal pieces (SentencePiece ships
  unnormalised Bayesian scores; renormalising only helps it);
- ``log Z``: Σ over lines of the full log-likelihood (all segmentations), scores as shipped;
- ``bytes/token``: UTF-8 bytes of the corpus over Viterbi tokens (higher = better
  compression).

Both trainers use identity character normalisation (``normalization_rule_name='identity'``
for SentencePiece: probcraft does not ship the NFKC tables) and otherwise SentencePiece's
defaults (seed size 1M, shrinking factor 0.75, 2 EM sub-iterations, coverage 0.9995).

    python benches/train_compare.py [--shared ../shared] [--only botchan|zh]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import tempfile
import time

import numpy as np
import sentencepiece as spm

from probcraft import _core
from probcraft.train import train_bytes

ROOT = pathlib.Path(__file__).resolve().parent.parent


def train_spm(path: pathlib.Path, vocab: int) -> tuple[bytes, float]:
    with tempfile.TemporaryDirectory() as d:
        prefix = f"{d}/m"
        t = time.perf_counter()
        spm.SentencePieceTrainer.train(
            input=str(path),
            model_prefix=prefix,
            model_type="unigram",
            vocab_size=vocab,
            num_threads=1,
            normalization_rule_name="identity",
            minloglevel=2,
        )
        dt = time.perf_counter() - t
        return pathlib.Path(prefix + ".model").read_bytes(), dt


def train_ours(path: pathlib.Path, vocab: int) -> tuple[bytes, float]:
    t = time.perf_counter()
    data, _ = train_bytes(path, vocab, num_threads=1, progress=False)
    dt = time.perf_counter() - t
    return _core._vocab_to_sentencepiece(data), dt


def evaluate(model_proto: bytes, lines: list[str]) -> dict[str, float]:
    m = _core.Unigram.from_bytes(_core._vocab_from_sentencepiece(model_proto))
    info = _core._load_vocab("sentencepiece", model_proto)
    normal = np.array([s for (_, s, kind) in info if kind == 1], dtype=np.float64)
    log_norm = float(np.logaddexp.reduce(normal))
    vit = 0.0
    log_z = 0.0
    tokens = 0
    nbytes = 0
    for line in lines:
        ids = m.encode(line)
        vit += sum(m.score(int(i)) for i in ids) - log_norm * len(ids)
        log_z += m.log_partition(line)
        tokens += len(ids)
        nbytes += len(line.encode("utf-8"))
    return {"viterbi": vit, "logz": log_z, "bpt": nbytes / max(tokens, 1), "tokens": tokens}


def parity(model_proto: bytes, lines: list[str]) -> int:
    """Lines where the sentencepiece wheel and probcraft encode our model differently."""
    sp = spm.SentencePieceProcessor(model_proto=model_proto)
    m = _core.Unigram.from_bytes(_core._vocab_from_sentencepiece(model_proto))
    return sum(sp.encode(line) != m.encode(line).tolist() for line in lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--only", choices=["botchan", "zh"])
    a = ap.parse_args()
    corpora = [("botchan.txt", 1000), ("zh_fortunes.txt", 8000)]
    if a.only:
        corpora = [c for c in corpora if c[0].startswith(a.only)]
    rows = []
    for name, vocab in corpora:
        path = pathlib.Path(a.shared) / "corpora" / name
        lines = [ln for ln in path.read_text("utf-8").splitlines() if ln.strip()]
        spm_model, spm_t = train_spm(path, vocab)
        our_model, our_t = train_ours(path, vocab)
        es, eo = evaluate(spm_model, lines), evaluate(our_model, lines)
        mism = parity(our_model, lines)
        rows.append((name, vocab, spm_t, our_t, es, eo, mism, len(lines)))
    hdr = (
        f"{'corpus':<16}{'V':>6} | {'spm s':>7} {'ours s':>7} {'ratio':>6} | "
        f"{'spm viterbi LL':>15} {'ours':>13} | {'spm log Z':>13} {'ours':>13} | "
        f"{'spm B/tok':>9} {'ours':>6} | parity"
    )
    print(hdr)
    print("-" * len(hdr))
    for name, vocab, st, ot, es, eo, mism, n in rows:
        print(
            f"{name:<16}{vocab:>6} | {st:>7.2f} {ot:>7.2f} {st / ot:>5.2f}x | "
            f"{es['viterbi']:>15.0f} {eo['viterbi']:>13.0f} | {es['logz']:>13.0f} "
            f"{eo['logz']:>13.0f} | {es['bpt']:>9.3f} {eo['bpt']:>6.3f} | "
            f"{n - mism}/{n} lines identical"
        )
    print(
        "ratio = spm time / ours (>1: we are faster); LL in nats over the corpus "
        "(higher is better); B/tok = UTF-8 bytes per Viterbi token (higher is better)"
    )
    assert all(math.isfinite(r[4]["logz"]) and math.isfinite(r[5]["logz"]) for r in rows)


if __name__ == "__main__":
    main()
