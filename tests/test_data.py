"""DataLoader (fork and spawn) and HF datasets with stochastic segmentation."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import probcraft
from probcraft import _toy
from probcraft.data import EpochSampler, HFTokenize, PadCollate, TokenizeDataset, epoch_seed

TEXTS = _toy.corpus(96, seed=9)


@pytest.fixture(scope="module")
def model() -> probcraft.Unigram:
    return _toy.model()


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.tolist() == y.tolist() for x, y in zip(a, b))


def test_items_follow_seed_epoch_index(model: probcraft.Unigram) -> None:
    ds = TokenizeDataset(model, TEXTS, alpha=0.2, seed=5)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expected = model.encode_batch(TEXTS, alpha=0.2, seed=epoch_seed(5, epoch))
        assert _same([ds[i] for i in range(len(ds))], expected)
        # Any batch composition gives the same items: runs, gaps, repeats, (epoch, i) keys.
        idx = [7, 8, 9, 3, 50, 51, 7]
        assert _same(ds.__getitems__(idx), [expected[i] for i in idx])
        assert _same(ds.__getitems__([(epoch, i) for i in idx]), [expected[i] for i in idx])
    assert not _same(ds.epoch_ids(0), ds.epoch_ids(1))
    assert ds[-1].tolist() == ds[len(ds) - 1].tolist()
    # Pickling (what spawned workers receive) keeps everything.
    ds2 = pickle.loads(pickle.dumps(ds))
    assert _same([ds2[i] for i in range(5)], [ds[i] for i in range(5)])


def test_bad_indices(model: probcraft.Unigram) -> None:
    ds = TokenizeDataset(model, TEXTS)
    with pytest.raises(IndexError):
        ds[len(TEXTS)]
    with pytest.raises(TypeError):
        ds[(1, 2, 3)]  # type: ignore[index]
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)
    with pytest.raises(ValueError, match="seed"):
        TokenizeDataset(model, TEXTS, seed=-1)


def test_epoch_sampler() -> None:
    s = EpochSampler(10, seed=3)
    s.set_epoch(0)
    a = list(s)
    s.set_epoch(1)
    b = list(s)
    assert sorted(i for _, i in a) == list(range(10)) and {e for e, _ in a} == {0}
    assert [i for _, i in a] != [i for _, i in b] and {e for e, _ in b} == {1}
    s.set_epoch(0)
    assert list(s) == a


def test_integer_arguments_are_checked_up_front(model: probcraft.Unigram) -> None:
    ds = TokenizeDataset(model, TEXTS)
    # Floats used to be truncated silently by int().
    for bad in (lambda: ds[1.7], lambda: ds[(0, 1.5)], lambda: ds[(0.5, 1)],
                lambda: ds.__getitems__([0, 2.0]), lambda: EpochSampler(2.7),
                lambda: PadCollate(pad_id=1.5), lambda: PadCollate(max_length=2.0),
                lambda: ds.set_epoch(1.0), lambda: HFTokenize(model, seed=0.5),
                lambda: TokenizeDataset(model, TEXTS, seed=1.0)):
        with pytest.raises(TypeError, match="must be an integer"):
            bad()
    # Integer types other than int still work.
    assert ds[np.int64(3)].tolist() == ds[3].tolist()
    assert len(EpochSampler(np.int32(4))) == 4
    # A negative max_length used to slice from the end (dropping the last tokens).
    with pytest.raises(ValueError, match="max_length"):
        PadCollate(max_length=-1)
    with pytest.raises(ValueError, match="pad_id"):
        PadCollate(pad_id=2**63)
    # Seeds and epochs are u64: checked when given, not when the first item is fetched.
    for seed in (-1, 2**64):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64\)"):
            EpochSampler(5, seed=seed)
        with pytest.raises(ValueError, match="seed"):
            HFTokenize(model, seed=seed)
        with pytest.raises(ValueError, match="seed"):
            epoch_seed(seed, 0)
    for obj in (EpochSampler(5), ds):
        for epoch in (-1, 2**64, 2**70):
            with pytest.raises(ValueError, match="epoch"):
                obj.set_epoch(epoch)
        assert obj.epoch == 0
    with pytest.raises(ValueError, match="epoch"):
        ds[(2**64, 0)]
    with pytest.raises(ValueError, match="indices"):
        HFTokenize(model)({"text": ["ab"]}, [-1])
    # The extremes are valid.
    s = EpochSampler(5, seed=2**64 - 1)
    s.set_epoch(2**64 - 1)
    assert sorted(i for _, i in s) == list(range(5))
    assert len(ds[(2**64 - 1, 0)]) >= 0


torch = pytest.importorskip("torch")


def _run_loader(ds, ctx: str, epochs: int, persistent: bool, sampler=None):
    from torch.utils.data import DataLoader

    loader = DataLoader(
        ds,
        batch_size=8,
        shuffle=False,
        sampler=sampler,
        num_workers=2,
        multiprocessing_context=ctx,
        collate_fn=_keep,
        timeout=120,  # a hung worker fails the test instead of blocking it
        persistent_workers=persistent,
    )
    out = []
    for e in range(epochs):
        if sampler is not None:
            sampler.set_epoch(e)
        else:
            ds.set_epoch(e)
        items = [x for batch in loader for x in batch]
        out.append(items)
    return out


def _keep(batch):
    return list(batch)


def test_dataloader_fork_after_parent_threads(model: probcraft.Unigram) -> None:
    # The parent has used threads (a rayon pool exists) before the workers fork; the workers
    # then use two threads each themselves. Non-persistent workers see set_epoch.
    warm = model.encode_batch(TEXTS * 4, alpha=0.2, seed=1, num_threads=2)
    assert len(warm) == 4 * len(TEXTS)
    ds = TokenizeDataset(model, TEXTS, alpha=0.2, seed=13, num_threads=2)
    got = _run_loader(ds, "fork", epochs=2, persistent=False)
    for e in (0, 1):
        assert _same(got[e], ds.epoch_ids(e)), f"epoch {e} differs from encode_batch"
    assert not _same(got[0], got[1])


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_dataloader_persistent_workers_with_epoch_sampler(model: probcraft.Unigram, ctx: str) -> None:
    # Persistent workers never see set_epoch: the (epoch, index) keys carry it. Spawned
    # workers start once (they re-import torch, which is the slow part of this test).
    model.encode_batch(TEXTS, alpha=0.2, seed=1, num_threads=2)
    ds = TokenizeDataset(model, TEXTS, alpha=0.2, seed=13, num_threads=2)
    sampler = EpochSampler(len(TEXTS), seed=4)
    got = _run_loader(ds, ctx, epochs=2, persistent=True, sampler=sampler)
    for e in (0, 1):
        sampler.set_epoch(e)
        order = [i for _, i in sampler]
        expected = ds.epoch_ids(e)
        assert _same(got[e], [expected[i] for i in order]), f"epoch {e} differs"
    assert not _same(got[0], got[1])


def test_pad_collate(model: probcraft.Unigram) -> None:
    ds = TokenizeDataset(model, TEXTS[:4], alpha=None)
    b = PadCollate(pad_id=-1)([ds[i] for i in range(4)])
    lens = b["lengths"].tolist()
    assert b["input_ids"].shape == (4, max(lens)) and b["input_ids"].dtype == torch.int64
    for r in range(4):
        assert b["input_ids"][r, : lens[r]].tolist() == ds[r].tolist()
        assert (b["input_ids"][r, lens[r] :] == -1).all()
        assert b["attention_mask"][r].sum().item() == lens[r]


# --------------------------------------------------------------------------- HF datasets

_HF_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import datasets
    from datasets.fingerprint import Hasher
    from probcraft import _toy
    from probcraft.data import HFTokenize
    datasets.disable_progress_bars()
    root = sys.argv[1]
    ds = datasets.load_from_disk(os.path.join(root, "src"))
    fn = HFTokenize(_toy.model(), alpha=0.2, seed=21)
    out = ds.map(fn, batched=True, batch_size=16, with_indices=True, num_proc=2)
    print(json.dumps({
        "hash": Hasher.hash(fn),
        "fingerprint": out._fingerprint,
        "files": sorted(f["filename"] for f in out.cache_files),
        "ids": out.data.column("input_ids").to_pylist(),
    }))
    """
)


def test_datasets_map_fingerprint_and_cache(tmp_path, model: probcraft.Unigram) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": TEXTS}).save_to_disk(str(tmp_path / "src"))
    script = tmp_path / "run.py"
    script.write_text(_HF_SCRIPT)
    env = dict(os.environ, HF_DATASETS_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")

    def run():
        p = subprocess.run(
            [sys.executable, str(script), str(tmp_path)],
            capture_output=True, text=True, env=env, timeout=240,
        )
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout.strip().splitlines()[-1])

    first = run()
    files = first["files"]
    assert files and all(os.path.exists(f) for f in files)
    mtimes = [os.stat(f).st_mtime_ns for f in files]
    second = run()
    # Same transform hash and fingerprint in a fresh interpreter, and the cache is reused:
    # the second run reads the first run's files rather than writing new ones.
    assert second["hash"] == first["hash"]
    assert second["fingerprint"] == first["fingerprint"]
    assert second["files"] == files
    assert [os.stat(f).st_mtime_ns for f in files] == mtimes
    expected = model.encode_batch(TEXTS, alpha=0.2, seed=21)
    assert first["ids"] == [e.tolist() for e in expected]


def test_hf_tokenize_pickles_deterministically(model: probcraft.Unigram) -> None:
    a = HFTokenize(model, alpha=0.3, seed=2)
    b = HFTokenize(probcraft.Unigram.from_bytes(model.to_bytes()), alpha=0.3, seed=2)
    assert pickle.dumps(a) == pickle.dumps(b)
    assert pickle.dumps(a) != pickle.dumps(HFTokenize(model, alpha=0.3, seed=3))
    c = pickle.loads(pickle.dumps(a))
    batch = {"text": TEXTS[:6]}
    assert c(batch, [10, 11, 12, 0, 1, 5]) == a(batch, [10, 11, 12, 0, 1, 5])
    with pytest.raises(ValueError, match="with_indices"):
        a(batch, [0, 1])
