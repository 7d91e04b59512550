"""Ray Data: tokenizing with sampling through map_batches equals encode_batch line by line."""

from __future__ import annotations

import numpy as np
import pytest

import probcraft
from probcraft import _toy
from probcraft.ray import RayTokenizer

pa = pytest.importorskip("pyarrow")

TEXTS = _toy.corpus(400, seed=17)


@pytest.fixture(scope="module")
def model() -> probcraft.Unigram:
    return _toy.model()


def test_callable_directly_any_batch_format(model: probcraft.Unigram) -> None:
    tok = RayTokenizer(**RayTokenizer.kwargs(model, alpha=0.2, seed=3))
    expected = [e.tolist() for e in model.encode_batch(TEXTS, alpha=0.2, seed=3)]
    # Shuffled rows: each row still uses stream (seed, row_id).
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    t = pa.table({"row_id": perm, "text": [TEXTS[i] for i in perm]})
    got = tok(t)["input_ids"].to_pylist()
    assert got == [expected[i] for i in perm]
    d = tok({"row_id": np.arange(5, 9), "text": np.array(TEXTS[5:9], dtype=object)})
    assert [x.tolist() for x in d["input_ids"]] == expected[5:9]
    pd = pytest.importorskip("pandas")
    df = tok(pd.DataFrame({"row_id": [9, 10], "text": TEXTS[9:11]}))
    assert [x.tolist() for x in df["input_ids"]] == expected[9:11]
    # No index column: deterministic per batch content.
    free = RayTokenizer(model.to_bytes(), alpha=0.2, seed=3, index_column=None)
    a = free(pa.table({"text": TEXTS[:4]}))["input_ids"].to_pylist()
    assert a == free(pa.table({"text": TEXTS[:4]}))["input_ids"].to_pylist()


def test_bad_input(model: probcraft.Unigram) -> None:
    with pytest.raises(TypeError, match="model_bytes"):
        RayTokenizer(model)  # type: ignore[arg-type]
    tok = RayTokenizer(model.to_bytes())
    with pytest.raises(TypeError, match="integers"):
        tok(pa.table({"row_id": [0.5], "text": ["a"]}))
    with pytest.raises(ValueError, match=">= 0"):
        tok(pa.table({"row_id": [-1], "text": ["a"]}))
    with pytest.raises(TypeError, match="batch_format"):
        tok([1, 2])


def test_pickle_ships_bytes_only(model: probcraft.Unigram) -> None:
    import pickle

    tok = RayTokenizer(model.to_bytes(), alpha=None)
    tok(pa.table({"row_id": [0], "text": ["the"]}))
    assert tok._model is not None
    clone = pickle.loads(pickle.dumps(tok))
    assert clone._model is None and clone.model == model


ray = pytest.importorskip("ray", reason="Ray is not installed (pip install probcraft[ray])")


@pytest.mark.timeout(180)  # a stuck cluster fails here instead of at the suite limit
def test_ray_data_map_batches_equals_encode_batch(model: probcraft.Unigram) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        table = pa.table({"row_id": np.arange(len(TEXTS)), "text": TEXTS})
        # Four blocks of 100 rows, batches of 64: batches straddle block boundaries.
        src = ray.data.from_arrow([table.slice(k, 100) for k in range(0, len(TEXTS), 100)])
        out = src.map_batches(
            RayTokenizer,
            fn_constructor_kwargs=RayTokenizer.kwargs(model, alpha=0.2, seed=2024),
            batch_format="pyarrow",
            batch_size=64,
            compute=ray.data.ActorPoolStrategy(size=2),
            # Two actors on a two-CPU cluster must leave room for Ray Data's own tasks.
            num_cpus=0.5,
        )
        table = pa.concat_tables(ray.get(out.to_arrow_refs())).sort_by("row_id")
    finally:
        ray.shutdown()
    expected = model.encode_batch(TEXTS, alpha=0.2, seed=2024)
    assert table.column("row_id").to_pylist() == list(range(len(TEXTS)))
    assert table.column("text").to_pylist() == TEXTS
    got = table.column("input_ids").to_pylist()
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e.tolist(), f"line {i} differs"
    # Sampling really happened: the Viterbi segmentation differs somewhere.
    assert got != [v.tolist() for v in model.encode_batch(TEXTS)]
