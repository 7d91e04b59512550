"""Lattice engine against SentencePiece, HF tokenizers and jieba, side by side, one core.

Groups (ratio = throughput / the reference row):
- Viterbi batch encode: ``sentencepiece`` ``encode(lines, num_threads=1)`` is the reference;
- sampling α=0.1: ``sentencepiece`` FFBS (``enable_sampling=True, nbest_size=-1``) is the
  reference; ours "perfect" (and FFBS); our Viterbi is listed for the "within 1.5×" bar;
- 10-best: ``sentencepiece`` ``nbest_encode_as_ids(line, 10)`` per line is the reference;
- threads: our batch Viterbi on 1 thread is the reference for 2 threads;
- jieba ``cut(HMM=False)`` against ours with jieba's dict.txt.

When the file loaders are not available yet (before the loader branch is merged), our model
is rebuilt from the ``sentencepiece`` vocabulary and fed text pre-normalised by
``sentencepiece`` — the rows then say "(pre-normalised)" and exclude normalisation time.

Run ``python benches/peers_lattice.py --memory`` for the 100 MB single-line peak-memory check.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from compare import Case  # noqa: E402

import probcraft  # noqa: E402
from probcraft import Unigram  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared"
PAIRS = [("spm_en_botchan_1k.model", "botchan.txt"), ("spm_zh_fortunes_8k.model", "zh_fortunes.txt")]


def _ours(sp, path):
    """Our model and a text transform: the real loader, or spm's vocabulary + spm's
    normaliser when the loader is not merged yet."""
    try:
        return Unigram.from_sentencepiece(str(path)), (lambda t: t), ""
    except RuntimeError as e:
        if "not merged" not in str(e):
            raise
    pieces = []
    for i in range(sp.vocab_size()):
        p = sp.id_to_piece(i)
        if sp.is_control(i):
            p = f"\x00control{i}"  # never matches text, like a CONTROL piece
        pieces.append((p, sp.get_score(i)))
    return Unigram.from_pieces(pieces, unk=sp.unk_id()), sp.normalize, " (pre-normalised)"


def _hf(sp, pieces_from):
    try:
        from tokenizers import Tokenizer
        from tokenizers.models import Unigram as HFUnigram
    except ImportError as e:  # pragma: no cover
        return None, f"tokenizers not installed ({e})"
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.vocab_size())]
    # tokenizers' SentencePiece converter needs the protobuf package; build the same Unigram
    # from the vocabulary instead and feed it pre-normalised text.
    return Tokenizer(HFUnigram(vocab, unk_id=sp.unk_id())), None


def cases(opts) -> list[Case]:
    try:
        import sentencepiece as spm
    except ImportError:
        return [Case("lattice", "sentencepiece", None, skip="sentencepiece not installed")]
    if not SHARED.is_dir():
        return [Case("lattice", "all", None, skip=f"{SHARED} not found")]
    out: list[Case] = []
    for model_name, corpus in PAIRS:
        path = SHARED / "models" / model_name
        sp = spm.SentencePieceProcessor(model_file=str(path))
        lines = [ln for ln in (SHARED / "corpora" / corpus).read_text(encoding="utf-8").split("\n") if ln]
        if opts.quick:
            lines = lines[:500]
        nbytes = sum(len(ln.encode()) for ln in lines)
        ours, prep, note = _ours(sp, path)
        texts = [prep(ln) for ln in lines]
        tag = model_name.replace(".model", "")
        g = f"Viterbi batch, {tag}"
        out.append(Case(g, "sentencepiece encode", lambda sp=sp, l=lines: sp.encode(l, num_threads=1), nbytes=nbytes, ref=True))
        out.append(Case(g, "probcraft encode_batch" + note, lambda o=ours, t=texts: o.encode_batch(t, num_threads=1, flat=True), nbytes=nbytes))
        hf, why = _hf(sp, None)
        if hf is None:
            out.append(Case(g, "HF tokenizers", None, skip=why))
        else:
            hft = [sp.normalize(ln) for ln in lines]
            out.append(Case(g, "HF tokenizers Unigram (pre-normalised)", lambda h=hf, t=hft: h.encode_batch(t), nbytes=nbytes))
        g = f"sampling alpha=0.1, {tag}"
        out.append(Case(g, "sentencepiece FFBS", lambda sp=sp, l=lines: sp.encode(l, enable_sampling=True, alpha=0.1, nbest_size=-1, num_threads=1), nbytes=nbytes, ref=True))
        out.append(Case(g, "probcraft perfect" + note, lambda o=ours, t=texts: o.encode_batch(t, alpha=0.1, seed=1, num_threads=1, flat=True), nbytes=nbytes))
        out.append(Case(g, "probcraft ffbs" + note, lambda o=ours, t=texts: o.encode_batch(t, alpha=0.1, seed=1, num_threads=1, flat=True, method="ffbs"), nbytes=nbytes))
        out.append(Case(g, "probcraft Viterbi (for the 1.5x bar)" + note, lambda o=ours, t=texts: o.encode_batch(t, num_threads=1, flat=True), nbytes=nbytes))
        if hf is not None:
            hft = [sp.normalize(ln) for ln in lines]
            out.append(Case(g, "HF tokenizers (no alpha control; deterministic)", lambda h=hf, t=hft: h.encode_batch(t), nbytes=nbytes))
        g = f"10-best, {tag}"
        sub = lines[: max(50, len(lines) // 8)]
        sub_t = [prep(ln) for ln in sub]
        sub_bytes = sum(len(ln.encode()) for ln in sub)
        out.append(Case(g, "sentencepiece nbest_encode_as_ids", lambda sp=sp, l=sub: [sp.nbest_encode_as_ids(x, 10) for x in l], nbytes=sub_bytes, ref=True))
        out.append(Case(g, "probcraft nbest" + note, lambda o=ours, t=sub_t: [o.nbest(x, 10) for x in t], nbytes=sub_bytes))
        # Token spans in the source text (SentencePiece's proto begin/end; ours per line).
        g = f"spans per line, {tag}"
        out.append(Case(g, "sentencepiece encode(return_type='proto')", lambda sp=sp, l=sub: [sp.encode(x, return_type="proto") for x in l],
                        nbytes=sub_bytes, ref=True))
        out.append(Case(g, "probcraft encode_with_spans", lambda o=ours, l=sub: [o.encode_with_spans(x) for x in l], nbytes=sub_bytes))
        # A data loader's call: a small batch with the default thread count (per-call costs).
        g = f"32-line batches, default threads, {tag}"
        few, few_t = lines[:32], texts[:32]
        few_bytes = sum(len(ln.encode()) for ln in few)
        out.append(Case(g, "sentencepiece encode (its default threads)", lambda sp=sp, l=few: sp.encode(l), nbytes=few_bytes, ref=True))
        out.append(Case(g, "probcraft encode_batch (list)", lambda o=ours, t=few_t: o.encode_batch(t), nbytes=few_bytes))
        out.append(Case(g, "probcraft encode_batch perfect (list)", lambda o=ours, t=few_t: o.encode_batch(t, alpha=0.1), nbytes=few_bytes))
        g = f"threads, {tag}"
        big = texts * (1 if opts.quick else 2)
        bb = nbytes * (1 if opts.quick else 2)
        out.append(Case(g, "probcraft Viterbi 1 thread", lambda o=ours, t=big: o.encode_batch(t, num_threads=1, flat=True), nbytes=bb, ref=True))
        out.append(Case(g, "probcraft Viterbi 2 threads", lambda o=ours, t=big: o.encode_batch(t, num_threads=2, flat=True), nbytes=bb,
                        pair="probcraft Viterbi 1 thread"))
        out.append(Case(g, "probcraft perfect 1 thread", lambda o=ours, t=big: o.encode_batch(t, alpha=0.1, seed=1, num_threads=1, flat=True), nbytes=bb))
        out.append(Case(g, "probcraft perfect 2 threads", lambda o=ours, t=big: o.encode_batch(t, alpha=0.1, seed=1, num_threads=2, flat=True), nbytes=bb,
                        pair="probcraft perfect 1 thread"))
        # The default list-of-arrays form (what a data loader gets): 2 threads against its 1.
        out.append(Case(g, "probcraft Viterbi list 1 thread", lambda o=ours, t=big: o.encode_batch(t, num_threads=1), nbytes=bb))
        out.append(Case(g, "probcraft Viterbi list 2 threads", lambda o=ours, t=big: o.encode_batch(t, num_threads=2), nbytes=bb,
                        pair="probcraft Viterbi list 1 thread"))
        # Scaling beyond two where the machine has the cores (the 16-core device).
        ncpu = os.cpu_count() or 1
        for k in sorted({4, 8, 16} | {ncpu}):
            if 2 < k <= ncpu:
                out.append(Case(g, f"probcraft Viterbi {k} threads", lambda o=ours, t=big, k=k: o.encode_batch(t, num_threads=k, flat=True),
                                nbytes=bb))
    out.extend(_jieba_cases(opts))
    return out


def _jieba_cases(opts) -> list[Case]:
    try:
        import jieba
    except ImportError:
        return [Case("jieba", "jieba", None, skip="jieba not installed")]
    jieba.setLogLevel(60)
    dict_path = pathlib.Path(jieba.__file__).parent / "dict.txt"
    lines = [ln for ln in (SHARED / "corpora" / "zh_fortunes.txt").read_text(encoding="utf-8").split("\n") if ln]
    if opts.quick:
        lines = lines[:500]
    nbytes = sum(len(ln.encode()) for ln in lines)
    tk = jieba.Tokenizer(str(dict_path))
    tk.initialize()
    g = "jieba dict.txt Viterbi, zh_fortunes"
    out = [Case(g, "jieba cut(HMM=False)", lambda: [list(tk.cut(x, HMM=False)) for x in lines], nbytes=nbytes, ref=True)]
    try:
        ours = Unigram.from_jieba_dict(str(dict_path))
        out.append(Case(g, "probcraft encode_batch", lambda: ours.encode_batch(lines, num_threads=1, flat=True), nbytes=nbytes))
    except RuntimeError as e:
        out.append(Case(g, "probcraft", None, skip=str(e)))
    return out


def memory_check(mb: int = 100) -> None:
    """Peak RSS of encoding one `mb` MB line (Viterbi and perfect sampling), in a child."""
    code = f"""
import resource, probcraft, numpy as np
m = probcraft.Unigram.from_pieces([(c, -3.0) for c in "abcdefgh "] + [("ab", -2.0), ("cde", -2.5), ("fgh ", -2.0)])
text = ("abcdefgh " * ({mb} * 1_000_000 // 9 + 1))[: {mb} * 1_000_000]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ids = m.encode(text); del ids
v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ids = m.encode(text, alpha=0.1, seed=1); del ids
s = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{mb} MB line: peak RSS above baseline: Viterbi {{(v - base) / 1024:.0f}} MB, then perfect sampling {{(s - base) / 1024:.0f}} MB ({{(s - base) / 1024 / {mb}:.1f}}x input)")
"""
    subprocess.run([sys.executable, "-c", code], check=True)


if __name__ == "__main__":
    if "--memory" in sys.argv:
        memory_check()
    else:
        print("run through benches/compare.py --engine lattice", file=sys.stderr)
        print(probcraft.build_info())
