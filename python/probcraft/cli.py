"""The ``probcraft`` command line: train unigram models and tokenize corpora.

Subcommands::

    probcraft train   --input corpus.txt --vocab-size 8000 --output m.model
    probcraft encode  --model m.model --input corpus.txt --output ids.npy [--alpha 0.1 --seed 0]
    probcraft decode  --model m.model --input ids.npy --output text.txt
    probcraft inspect --model m.model
    probcraft entropy --model m.model --input corpus.txt --alpha 1.0 [--per-line]

Guarantees:

* Output is written to a temporary file beside the destination and renamed into place only
  when complete, so an interrupted or failed run never leaves a truncated output file. New
  files get the usual ``0o666 & ~umask`` mode; an overwritten file keeps its mode.
* An output (``.offsets.npy`` sidecars included) that is the same file as an input or the
  model is refused (exit status 2) before anything is read or written.
* Line ``i`` (0-based, counting every input line) is segmented with the random stream
  ``(seed, i)``: any line can be reproduced alone with ``Unigram.encode(line, seed=...)``
  via ``probcraft.derive_line_seed`` semantics (the batch API does this for you).
* Bad lines (invalid UTF-8, JSON without the field, ...) are reported with their line
  number; ``--on-error fail`` (default) stops with exit status 1 and no output,
  ``--on-error skip`` writes an empty row (``null`` in JSONL / Parquet) and goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import signal
import stat
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

__all__ = ["main", "load_model", "read_records", "InputError"]


class InputError(ValueError):
    """A malformed input record; ``line`` is its 1-based line (or row) number and ``path``
    its file when that is not simply the command's ``--input``."""

    def __init__(self, line: int, message: str, path: Optional[str] = None) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.path = path


class _UsageError(Exception):
    """A bad combination of arguments, found before any work: exit status 2, like argparse."""


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def _non_negative_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {v}")
    return v


def _seed(text: str) -> int:
    # Seeds are u64 in the core; checked here so that a huge value is a usage error rather
    # than an OverflowError traceback from deep inside training or encoding.
    v = int(text)
    if not 0 <= v < 2**64:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**64), got {v}")
    return v


def _offsets_path(p: pathlib.Path) -> pathlib.Path:
    """The ``.offsets.npy`` sidecar of an ids file: ``x.npy`` -> ``x.offsets.npy``, any other
    name gets the suffix appended. Case-insensitive, like the format detection, so that the
    writer and the reader (``decode``) agree on ``X.NPY`` too."""
    stem = p.name[: -len(".npy")] if p.name.lower().endswith(".npy") else p.name
    return p.with_name(stem + ".offsets.npy")


# ---------------------------------------------------------------------------------------------
# Models


def load_model(path: str | os.PathLike[str], kind: str = "auto") -> Any:
    """Loads a model file, guessing its format from its content when ``kind == "auto"``.

    Formats: ``sentencepiece`` (``.model`` protobuf), ``hf`` (``tokenizer.json``),
    ``bytepiece`` (BytePiece JSON), ``jieba`` (``dict.txt``), ``probcraft`` (our own format).
    """
    from . import Unigram

    p = pathlib.Path(path)
    data = p.read_bytes()
    if kind == "auto":
        kind = _sniff_model(data, p.name)
    loaders: dict[str, Callable[[bytes], Any]] = {
        "sentencepiece": Unigram.from_sentencepiece,
        "hf": Unigram.from_hf_json,
        "bytepiece": Unigram.from_bytepiece,
        "jieba": Unigram.from_jieba_dict,
        "probcraft": Unigram.from_bytes,
    }
    if kind not in loaders:
        raise ValueError(f"unknown model format {kind!r}; expected one of {sorted(loaders)}")
    return loaders[kind](data)


def _sniff_model(data: bytes, name: str) -> str:
    if data[:4] == b"PCvb":
        return "probcraft"
    head = data[:4096].lstrip()
    if head[:1] == b"{":
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "hf"  # let the HF loader produce the detailed error
        if isinstance(obj, dict) and "model" in obj:
            return "hf"
        return "bytepiece"
    if name.endswith(".txt"):
        return "jieba"
    return "sentencepiece"


# ---------------------------------------------------------------------------------------------
# Inputs


def _detect_format(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    low = path.lower()
    if low.endswith((".jsonl", ".ndjson", ".jsonl.gz")):
        return "jsonl"
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    return "text"


def read_records(
    path: str, fmt: str = "auto", field: str = "text"
) -> Iterator[tuple[int, Optional[str], Optional[str]]]:
    """Yields ``(line_index, text, error)``; exactly one of ``text`` / ``error`` is set.

    ``line_index`` is 0-based and counts every record, bad ones included, so that per-line
    seeds stay aligned with the input.
    """
    fmt = _detect_format(path, fmt)
    if fmt == "parquet":
        yield from _read_parquet(path, field)
        return
    opener: Callable[..., Any] = open
    if path.endswith(".gz"):
        import gzip

        opener = gzip.open
    src = sys.stdin.buffer if path == "-" else opener(path, "rb")
    with contextlib.ExitStack() as stack:
        if path != "-":
            stack.enter_context(src)
        for i, raw in enumerate(src):
            if raw.endswith(b"\n"):
                raw = raw[:-1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield i, None, f"invalid UTF-8 at byte {e.start} of the line"
                continue
            if fmt == "text":
                yield i, line, None
                continue
            if not line.strip():
                yield i, None, "empty line (expected a JSON object)"
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield i, None, f"invalid JSON: {e.msg} at column {e.colno}"
                continue
            if not isinstance(obj, dict) or field not in obj:
                yield i, None, f"missing field {field!r}"
                continue
            val = obj[field]
            if not isinstance(val, str):
                yield i, None, f"field {field!r} is {type(val).__name__}, not a string"
                continue
            yield i, val, None


def _read_parquet(path: str, field: str) -> Iterator[tuple[int, Optional[str], Optional[str]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - pyarrow is a test extra
        raise SystemExit("reading Parquet needs pyarrow: pip install pyarrow") from e
    f = pq.ParquetFile(path)
    if field not in f.schema_arrow.names:
        raise InputError(1, f"Parquet file has no column {field!r} (columns: {f.schema_arrow.names})")
    i = 0
    for batch in f.iter_batches(columns=[field], batch_size=8192):
        for val in batch.column(0).to_pylist():
            if isinstance(val, str):
                yield i, val, None
            else:
                yield i, None, f"column {field!r} holds {type(val).__name__}, not a string"
            i += 1


def _batches(
    records: Iterator[tuple[int, Optional[str], Optional[str]]], size: int
) -> Iterator[list[tuple[int, Optional[str], Optional[str]]]]:
    batch: list[tuple[int, Optional[str], Optional[str]]] = []
    for r in records:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------
# Atomic outputs


class _AtomicFiles:
    """Temporary files beside their destinations, renamed into place by ``commit()``.

    On any exit without ``commit()`` (error, Ctrl-C, SIGTERM) the temporaries are removed, so
    no destination is ever left truncated or half-written.
    """

    def __init__(self, *dests: pathlib.Path) -> None:
        self.pairs: list[tuple[pathlib.Path, pathlib.Path]] = []
        for d in dests:
            d.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{d.name}.", suffix=".partial", dir=d.parent)
            os.close(fd)
            self.pairs.append((pathlib.Path(tmp), d))
        self.done = False

    def tmp(self, i: int = 0) -> pathlib.Path:
        return self.pairs[i][0]

    def commit(self) -> None:
        for tmp, dest in self.pairs:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            # mkstemp creates 0600 files and os.replace keeps the temporary's mode, so without
            # this every output would be private and an overwritten file would lose its mode.
            # Applied only now, as a read-only destination mode would stop us writing the
            # temporary.
            os.chmod(tmp, _dest_mode(dest))
        for tmp, dest in self.pairs:
            os.replace(tmp, dest)
        self.done = True

    def __enter__(self) -> "_AtomicFiles":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.done:
            for tmp, _ in self.pairs:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()


def _dest_mode(dest: pathlib.Path) -> int:
    """The mode an output should get: the existing destination's, else ``0o666 & ~umask``
    (what ``open(dest, "w")`` would have given)."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(dest).st_mode)
    umask = os.umask(0o022)  # the only portable way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask


class _NpyStream:
    """Appends int arrays to a raw temp file; ``finish`` writes a proper ``.npy``."""

    def __init__(self, path: pathlib.Path, dtype: Any) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.raw = path.with_name(path.name + ".raw")
        self.f = open(self.raw, "wb")
        self.n = 0

    def write(self, arr: np.ndarray) -> None:
        a = np.ascontiguousarray(arr, dtype=self.dtype)
        self.f.write(a.tobytes())
        self.n += a.size

    def finish(self) -> None:
        self.f.close()
        with open(self.path, "wb") as out:
            np.lib.format.write_array_header_1_0(
                out, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                      "shape": (self.n,)}
            )
            with open(self.raw, "rb") as src:
                while chunk := src.read(1 << 22):
                    out.write(chunk)
        self.raw.unlink()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.f.close()
        with contextlib.suppress(FileNotFoundError):
            self.raw.unlink()


class _Writer:
    """Writes encoded rows in one of the output formats, into temporaries."""

    def __init__(self, out: pathlib.Path, fmt: str) -> None:
        self.fmt = fmt
        if fmt == "npy":
            self.offsets_path = _offsets_path(out)
            self.files = _AtomicFiles(out, self.offsets_path)
            self.ids = _NpyStream(self.files.tmp(0), np.int32)
            self.offs = _NpyStream(self.files.tmp(1), np.int64)
            self.offs.write(np.zeros(1, np.int64))
            self.total = 0
        else:
            self.files = _AtomicFiles(out)
            if fmt == "jsonl":
                self.fh = open(self.files.tmp(0), "w", encoding="utf-8")
            elif fmt == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                self.pa = pa
                self.schema = pa.schema([("line", pa.int64()), ("ids", pa.list_(pa.int32()))])
                self.pq = pq.ParquetWriter(str(self.files.tmp(0)), self.schema)
            else:
                raise ValueError(f"unknown output format {fmt!r}")

    def write(self, lines: np.ndarray, ids: np.ndarray, offsets: np.ndarray,
              valid: np.ndarray) -> None:
        if self.fmt == "npy":
            self.ids.write(ids)
            self.offs.write(offsets[1:] + self.total)
            self.total += int(offsets[-1])
        elif self.fmt == "jsonl":
            buf = io.StringIO()
            for r, line in enumerate(lines):
                row = ids[offsets[r]:offsets[r + 1]].tolist() if valid[r] else None
                buf.write(json.dumps({"line": int(line), "ids": row}))
                buf.write("\n")
            self.fh.write(buf.getvalue())
        else:
            pa = self.pa
            arr = pa.ListArray.from_arrays(
                pa.array(offsets.astype(np.int32)), pa.array(ids, type=pa.int32()),
                mask=pa.array(~valid),
            )
            self.pq.write_table(pa.table({"line": pa.array(lines, pa.int64()), "ids": arr},
                                         schema=self.schema))

    def commit(self) -> None:
        if self.fmt == "npy":
            self.ids.finish()
            self.offs.finish()
        elif self.fmt == "jsonl":
            self.fh.close()
        else:
            self.pq.close()
        self.files.commit()

    def abort(self) -> None:
        if self.fmt == "npy":
            self.ids.abort()
            self.offs.abort()
        elif self.fmt == "jsonl":
            with contextlib.suppress(Exception):
                self.fh.close()
        else:
            with contextlib.suppress(Exception):
                self.pq.close()
        self.files.__exit__(None, None, None)


def _output_format(path: pathlib.Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    n = path.name.lower()
    if n.endswith(".npy"):
        return "npy"
    if n.endswith((".parquet", ".pq")):
        return "parquet"
    if n.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    raise SystemExit(f"cannot tell the output format from {path.name!r}: use --output-format")


# ---------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """A one-line progress report on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool, total_bytes: Optional[int]) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total_bytes
        self.t0 = time.perf_counter()
        self.last = 0.0

    def update(self, lines: int, nbytes: int, tokens: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        dt = max(now - self.t0, 1e-9)
        pct = f" {100 * nbytes / self.total:5.1f}%" if self.total else ""
        sys.stderr.write(
            f"\r{pct} {lines:,} lines  {nbytes / 1e6:,.1f} MB  {tokens:,} tokens  "
            f"{nbytes / 1e6 / dt:,.1f} MB/s  {lines / dt:,.0f} lines/s "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


# ---------------------------------------------------------------------------------------------
# Subcommands


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: ``samefile`` when both exist (symlinks, hard links,
    ``./x`` vs ``x``), else the resolved paths (an output that does not exist yet may still be
    spelled through a symlinked directory)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _check_paths(a: argparse.Namespace) -> None:
    """Refuses an output that is also an input or the model, before any work.

    Outputs are renamed over their destination at the end, so ``-i c.txt -o c.txt`` would
    silently replace the user's corpus (or model) with the result.
    """
    inputs: list[tuple[str, str]] = []  # (role, path)
    outputs: list[str] = []
    if a.cmd == "train":
        inputs = [("input", p) for p in a.input if p != "-"]
        outputs = [a.output]
    elif a.cmd == "encode":
        inputs = [("model", a.model)] + ([("input", a.input)] if a.input != "-" else [])
        out = pathlib.Path(a.output)
        outputs = [a.output]
        if _output_format(out, a.output_format) == "npy":
            outputs.append(str(_offsets_path(out)))
    elif a.cmd == "decode":
        inputs = [("model", a.model), ("input", a.input)]
        if a.input.lower().endswith(".npy"):
            inputs.append(("input offsets", str(_offsets_path(pathlib.Path(a.input)))))
        outputs = [a.output] if a.output != "-" else []
    for o in outputs:
        for role, i in inputs:
            if _same_file(o, i):
                what = f"output {o}" if o == a.output else f"output {o} (written beside {a.output})"
                raise _UsageError(f"{what} is the same file as the {role} {i}; refusing to "
                                  f"overwrite it (choose another output path)")


def _install_sigterm() -> None:
    # SIGTERM (e.g. a job scheduler) unwinds like Ctrl-C so that temporaries are removed.
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not in the main thread
        signal.signal(signal.SIGTERM, handler)


def cmd_encode(a: argparse.Namespace) -> int:
    model = load_model(a.model, a.model_format)
    for name, special in (("--bos", a.bos), ("--eos", a.eos)):
        # Checked here, as the range is the model's: an id outside it would be written as is
        # (and one past int32 would end in an OverflowError deep in the writer).
        if special is not None and not 0 <= special < model.vocab_size:
            raise _UsageError(f"{name} {special} is not a piece id of {a.model} "
                              f"(ids are 0..{model.vocab_size - 1})")
    out = pathlib.Path(a.output)
    ofmt = _output_format(out, a.output_format)
    total_bytes = None if a.input == "-" else os.path.getsize(a.input)
    prog = _Progress(not a.quiet, total_bytes)
    writer = _Writer(out, ofmt)
    n_lines = n_tokens = n_bytes = n_bad = 0
    t0 = time.perf_counter()
    try:
        for batch in _batches(read_records(a.input, a.input_format, a.field), a.batch_size):
            good = [(i, t) for i, t, err in batch if err is None]
            for i, _, err in batch:
                if err is not None:
                    if a.on_error == "fail":
                        raise InputError(i + 1, err)
                    n_bad += 1
                    print(f"probcraft encode: skipping line {i + 1}: {err}", file=sys.stderr)
            lines = np.array([i for i, _, _ in batch], dtype=np.int64)
            texts = [t for _, t in good]
            indices = np.array([i for i, _ in good], dtype=np.int64)
            ids, offs = model.encode_batch(texts, alpha=a.alpha, seed=a.seed, method=a.method,
                                           num_threads=a.threads, flat=True, indices=indices)
            ids, offs = _add_specials(ids, offs, a.bos, a.eos)
            # Re-insert rows for skipped lines (empty) so that row r is input line lines[r].
            valid = np.array([err is None for _, _, err in batch], dtype=bool)
            if not valid.all():
                lens = np.zeros(len(batch), np.int64)
                lens[valid] = np.diff(offs)
                offs = np.concatenate([[0], np.cumsum(lens)])
            writer.write(lines, ids, offs, valid)
            n_lines += len(batch)
            n_tokens += int(ids.size)
            n_bytes += sum(len(t.encode("utf-8")) + 1 for t in texts)
            prog.update(n_lines, n_bytes, n_tokens)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        prog.update(n_lines, n_bytes, n_tokens, force=True)
        prog.close()
    dt = time.perf_counter() - t0
    if not a.quiet:
        print(
            f"encoded {n_lines:,} lines ({n_bad} skipped), {n_tokens:,} tokens, "
            f"{n_bytes / 1e6:.2f} MB in {dt:.2f} s ({n_bytes / 1e6 / max(dt, 1e-9):.1f} MB/s) "
            f"-> {out}",
            file=sys.stderr,
        )
    return 0


def _add_specials(ids: np.ndarray, offs: np.ndarray, bos: Optional[int],
                  eos: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
    if bos is None and eos is None:
        return ids, offs
    n = len(offs) - 1
    extra = (bos is not None) + (eos is not None)
    lens = np.diff(offs) + extra
    new_offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    out = np.empty(int(new_offs[-1]), dtype=np.int32)
    for r in range(n):
        s, e = new_offs[r], new_offs[r + 1]
        if bos is not None:
            out[s] = bos
            s += 1
        if eos is not None:
            out[e - 1] = eos
            e -= 1
        out[s:e] = ids[offs[r]:offs[r + 1]]
    return out, new_offs


def _read_ids(path: str) -> Iterator[Optional[list[int]]]:
    p = pathlib.Path(path)
    n = p.name.lower()
    if n.endswith(".npy"):
        try:
            ids = np.load(p, allow_pickle=False)
        except ValueError as e:  # e.g. an object array, or not a .npy file at all
            raise ValueError(f"{p}: cannot read ids: {e}") from None
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise ValueError(f"{p}: expected a 1-D array of integer ids (as written by "
                             f"`probcraft encode`), got a {ids.ndim}-D {ids.dtype} array")
        offs_path = _offsets_path(p)
        if not offs_path.exists():
            raise SystemExit(f"{offs_path} not found (written by `probcraft encode` beside {p.name})")
        offs = np.load(offs_path, allow_pickle=False)
        if offs.ndim != 1 or offs.size == 0 or offs[0] != 0 or offs[-1] != ids.size \
                or np.any(np.diff(offs) < 0):
            raise SystemExit(f"{offs_path} is not a valid offsets array for {p.name}")
        for r in range(offs.size - 1):
            yield ids[offs[r]:offs[r + 1]].tolist()
    elif n.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(p).iter_batches(columns=["ids"]):
            yield from batch.column(0).to_pylist()
    else:
        # Binary, decoded line by line: a text-mode file would fail with a bare
        # UnicodeDecodeError naming neither the file nor the line.
        with open(p, "rb") as f:
            for i, raw in enumerate(f):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(i + 1, f"invalid UTF-8 at byte {e.start} of the line") \
                        from None
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(i + 1, f"invalid JSON: {e.msg}") from None
                row = obj.get("ids") if isinstance(obj, dict) else obj
                if row is not None and not isinstance(row, list):
                    raise InputError(i + 1, "expected a list of ids")
                yield row


def _row_problem(row: Any, vocab_size: int) -> Optional[str]:
    """What is wrong with a row of ids, in words (``None`` if nothing is found)."""
    for k, x in enumerate(row):
        if type(x) is not int:
            return f"id at position {k} is {type(x).__name__} {x!r}, not an integer"
        if not 0 <= x < vocab_size:
            return f"id {x} at position {k} is not a piece id (ids are 0..{vocab_size - 1})"
    return None


def cmd_decode(a: argparse.Namespace) -> int:
    model = load_model(a.model, a.model_format)
    out = pathlib.Path(a.output) if a.output != "-" else None
    files = _AtomicFiles(out) if out else None
    try:
        fh = open(files.tmp(0), "w", encoding="utf-8") if files else sys.stdout
        with contextlib.ExitStack() as st:
            if files:
                st.enter_context(fh)
            for i, row in enumerate(_read_ids(a.input)):
                if row is None:
                    fh.write("\n")
                    continue
                try:
                    # JSON / Parquet rows may hold anything: floats, bools (which decode
                    # would take as 0 / 1), nested lists. One cheap pass over the row.
                    if isinstance(row, list) and not all(type(x) is int for x in row):
                        raise TypeError("not all ints")
                    text = model.decode(row)
                except (ValueError, OverflowError, TypeError) as e:
                    raise InputError(i + 1, _row_problem(row, model.vocab_size) or str(e)) \
                        from None
                fh.write(text)
                fh.write("\n")
        if files:
            files.commit()
    finally:
        if files:
            files.__exit__(None, None, None)
    return 0


def cmd_inspect(a: argparse.Namespace) -> int:
    model = load_model(a.model, a.model_format)
    info = model.info()
    print(json.dumps(info, indent=2, ensure_ascii=False, default=str))
    if a.pieces:
        for i in range(min(a.pieces, model.vocab_size)):
            print(f"{i}\t{model.id_to_piece(i)!r}\t{model.score(i):.6f}")
    return 0


def cmd_entropy(a: argparse.Namespace) -> int:
    model = load_model(a.model, a.model_format)
    total_h = 0.0
    total_bytes = 0
    n = 0
    for i, text, err in read_records(a.input, a.input_format, a.field):
        if err is not None:
            if a.on_error == "fail":
                raise InputError(i + 1, err)
            print(f"probcraft entropy: skipping line {i + 1}: {err}", file=sys.stderr)
            continue
        assert text is not None
        h = model.entropy(text, alpha=a.alpha)
        if a.per_line:
            print(f"{i + 1}\t{h:.6f}")
        total_h += h
        total_bytes += len(text.encode("utf-8"))
        n += 1
    print(
        f"lines {n}  alpha {a.alpha}  total entropy {total_h:.4f} nats  "
        f"mean {total_h / max(n, 1):.4f} nats/line  {total_h / max(total_bytes, 1):.5f} nats/byte",
        file=sys.stderr if a.per_line else sys.stdout,
    )
    return 0


def _train_sentences(paths: Sequence[str]) -> Iterator[str]:
    """The lines of ``paths`` (``.gz`` decompressed, ``-`` = stdin) as ``encode`` reads text
    (``\n`` or ``\r\n`` endings), stopping at the first line that is not UTF-8."""
    for path in paths:
        for i, line, err in read_records(path, "text"):
            if line is None:
                raise InputError(i + 1, err or "unreadable line", path=path)
            yield line


def cmd_train(a: argparse.Namespace) -> int:
    from .train import to_sentencepiece, train

    out = pathlib.Path(a.output)
    fmt = a.format
    if fmt == "auto":
        fmt = "probcraft" if a.byte_level else "sentencepiece"
    if fmt == "sentencepiece" and a.byte_level:
        raise ValueError("byte-level models have non-UTF-8 pieces and cannot be saved as a "
                         "SentencePiece .model; use --format probcraft")
    # The trainer reads plain files itself (fast, in Rust); compressed files and stdin are
    # read here and streamed to it as sentences instead. Both give the same model.
    if any(p == "-" or p.lower().endswith(".gz") for p in a.input):
        corpus: Any = _train_sentences(a.input)
        as_files = False
    else:
        corpus, as_files = list(a.input), True
    t0 = time.perf_counter()
    model = train(
        corpus, a.vocab_size, byte_level=a.byte_level, max_piece_length=a.max_piece_length,
        character_coverage=a.character_coverage, user_defined=tuple(a.user_defined or ()),
        num_threads=a.threads, seed=a.seed, progress=not a.quiet, files=as_files,
    )
    with _AtomicFiles(out) as files:
        data = to_sentencepiece(model) if fmt == "sentencepiece" else model.to_bytes()
        files.tmp(0).write_bytes(data)
        files.commit()
    if not a.quiet:
        print(f"trained {model.vocab_size} pieces in {time.perf_counter() - t0:.2f} s -> {out} "
              f"({fmt} format)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="probcraft", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", "-m", required=True, help="model file")
        sp.add_argument("--model-format", default="auto",
                        choices=["auto", "sentencepiece", "hf", "bytepiece", "jieba", "probcraft"])

    def input_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--input", "-i", required=True, help="input file ('-' = stdin)")
        sp.add_argument("--input-format", default="auto", choices=["auto", "text", "jsonl", "parquet"])
        sp.add_argument("--field", default="text", help="JSONL field / Parquet column (default: text)")
        sp.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                        help="what to do with a bad line (default: fail)")

    t = sub.add_parser("train", help="train a unigram model")
    t.add_argument("--input", "-i", nargs="+", required=True,
                   help="text files, one sentence a line (.gz read too; '-' = stdin)")
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--output", "-o", required=True)
    t.add_argument("--format", choices=["auto", "sentencepiece", "probcraft"], default="auto",
                   help="auto: SentencePiece .model, or probcraft's own format when byte-level")
    t.add_argument("--byte-level", action="store_true")
    t.add_argument("--max-piece-length", type=int, default=16)
    t.add_argument("--character-coverage", type=float, default=0.9995)
    t.add_argument("--user-defined", nargs="*")
    t.add_argument("--threads", type=_positive_int, default=None)
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--quiet", "-q", action="store_true")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("encode", help="text -> token ids")
    model_args(e)
    input_args(e)
    e.add_argument("--output", "-o", required=True, help="out.npy (+ out.offsets.npy), .parquet or .jsonl")
    e.add_argument("--output-format", default="auto", choices=["auto", "npy", "parquet", "jsonl"])
    e.add_argument("--alpha", type=float, default=None, help="sample with this alpha (default: Viterbi)")
    e.add_argument("--seed", type=_seed, default=None, help="line i uses stream (seed, i)")
    e.add_argument("--method", default="perfect", choices=["perfect", "ffbs", "viterbi-sampling"])
    e.add_argument("--threads", type=_positive_int, default=None)
    e.add_argument("--bos", type=int, default=None, help="prepend this id to every line")
    e.add_argument("--eos", type=int, default=None, help="append this id to every line")
    e.add_argument("--batch-size", type=_positive_int, default=4096)
    e.add_argument("--quiet", "-q", action="store_true")
    e.set_defaults(fn=cmd_encode)

    d = sub.add_parser("decode", help="token ids -> text")
    model_args(d)
    d.add_argument("--input", "-i", required=True, help="ids.npy (+ .offsets.npy), .parquet or .jsonl")
    d.add_argument("--output", "-o", default="-")
    d.set_defaults(fn=cmd_decode)

    s = sub.add_parser("inspect", help="describe a model")
    model_args(s)
    s.add_argument("--pieces", type=_non_negative_int, default=0, help="also list the first N pieces")
    s.set_defaults(fn=cmd_inspect)

    h = sub.add_parser("entropy", help="segmentation entropy per line or for the corpus")
    model_args(h)
    input_args(h)
    h.add_argument("--alpha", type=float, default=1.0)
    h.add_argument("--per-line", action="store_true")
    h.set_defaults(fn=cmd_entropy)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _install_sigterm()
    try:
        _check_paths(args)
        rc = int(args.fn(args))
        # Flush here, not at exit, so that a closed pipe is reported to the handler below.
        sys.stdout.flush()
        return rc
    except _UsageError as e:
        print(f"probcraft {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("probcraft: interrupted; no output was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`probcraft inspect | head`): not an error worth a
        # message. As the Python docs recommend, point stdout at devnull so the interpreter's
        # own flush at exit does not raise again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except InputError as e:
        print(f"probcraft {args.cmd}: {e.path or args.input}: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"probcraft {args.cmd}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
