#!/usr/bin/env python3
"""Tokenize a dataset with subword sampling for a training run.

Every epoch sees different segmentations (subword regularisation), each one reproducible from
(seed, epoch, index). The loop below is what a training script runs: a DataLoader with worker
processes feeding padded batches.

    python examples/tokenize_dataset.py OUT_DIR [--model spm.model] [--corpus file.txt]

Without --model a small vocabulary is built from the corpus (probcraft._toy); without
--corpus a synthetic corpus is used. Writes OUT_DIR/epochs.json (token counts per epoch and
the first item of each epoch).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import probcraft
from probcraft import _toy
from probcraft.data import EpochSampler, PadCollate, TokenizeDataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=pathlib.Path)
    ap.add_argument("--model", type=pathlib.Path, help="SentencePiece .model")
    ap.add_argument("--corpus", type=pathlib.Path, help="text file, one example per line")
    ap.add_argument("--alpha", type=float, default=0.2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args(argv)

    from torch.utils.data import DataLoader

    texts = (args.corpus.read_text(encoding="utf-8").splitlines() if args.corpus
             else _toy.corpus(512))
    texts = [t for t in texts if t.strip()]
    model = (probcraft.Unigram.from_sentencepiece(args.model) if args.model
             else _toy.model(texts))

    dataset = TokenizeDataset(model, texts, alpha=args.alpha, seed=args.seed)
    sampler = EpochSampler(len(dataset), shuffle=True, seed=args.seed)
    loader = DataLoader(dataset, batch_size=32, sampler=sampler, num_workers=args.workers,
                        collate_fn=PadCollate(pad_id=0), persistent_workers=args.workers > 0)
    report = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        n_tokens = 0
        for batch in loader:
            n_tokens += int(batch["lengths"].sum())  # a training step would go here
        dt = time.perf_counter() - t0
        first = int(next(iter(sampler))[1])
        report.append({
            "epoch": epoch,
            "tokens": n_tokens,
            "seconds": round(dt, 3),
            "first_index": first,
            "first_pieces": [model.id_to_piece(int(i)) for i in dataset[(epoch, first)]],
        })
        print(f"epoch {epoch}: {len(dataset)} texts, {n_tokens} tokens in {dt:.2f} s")
    viterbi = sum(len(ids) for ids in model.encode_batch(texts))
    print(f"Viterbi segmentation: {viterbi} tokens (sampling at alpha={args.alpha} gives more)")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "epochs.json").write_text(json.dumps(
        {"viterbi_tokens": viterbi, "epochs": report}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
