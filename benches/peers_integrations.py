"""Integrations: Ray Data map_batches throughput against encode_batch, same corpus and seeds.

Both rows tokenize the same texts with sampling (alpha=0.2) and produce the same ids (checked
once before timing). Ray runs on a local cluster started once (`ray.init(num_cpus=cpus)`,
start-up not timed) with one actor per CPU; its time includes scheduling, Arrow block
transfer through the object store and collecting the result on the driver - what a
pipeline pays. encode_batch runs in-process with num_threads = cpus.
"""

from __future__ import annotations

import os

from compare import Case

import numpy as np

from probcraft import _toy


def cases(opts) -> list[Case]:
    n = 2_000 if opts.quick else 20_000
    texts = _toy.corpus(n, seed=1)
    nbytes = sum(len(t.encode()) for t in texts)
    model = _toy.model()
    cpus = max(1, min(os.cpu_count() or 1, 4))
    group = f"tokenize {n} lines with sampling (alpha=0.2), {cpus} cpus"
    out = [
        Case(group, f"probcraft encode_batch(num_threads={cpus})",
             lambda: model.encode_batch(texts, alpha=0.2, seed=7, num_threads=cpus, flat=True),
             nbytes=nbytes, ref=True),
    ]
    try:
        import pyarrow as pa
        import ray

        from probcraft.ray import RayTokenizer
    except ImportError as e:
        return out + [Case(group, "Ray Data map_batches(RayTokenizer)", None, skip=f"{e}")]

    table = pa.table({"row_id": np.arange(n), "text": texts})
    state = {}

    def setup() -> None:
        if not ray.is_initialized():
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            ray.data.DataContext.get_current().enable_progress_bars = False
        state["expected"] = model.encode_batch(texts, alpha=0.2, seed=7, flat=True)

    def run():
        ds = ray.data.from_arrow([table.slice(k, 1000) for k in range(0, n, 1000)])
        res = ds.map_batches(
            RayTokenizer,
            fn_constructor_kwargs=RayTokenizer.kwargs(model, alpha=0.2, seed=7),
            batch_format="pyarrow", batch_size=1000,
            compute=ray.data.ActorPoolStrategy(size=cpus), num_cpus=0.5,
        )
        t = pa.concat_tables(ray.get(res.to_arrow_refs()))
        if "checked" not in state:
            t = t.sort_by("row_id")
            ids = t.column("input_ids").combine_chunks()
            assert np.array_equal(ids.values.to_numpy(), state["expected"][0]), "ids differ"
            state["checked"] = True
        return t

    out.append(Case(group, f"Ray Data map_batches(RayTokenizer), {cpus} actors", run,
                    nbytes=nbytes, setup=setup))
    return out
