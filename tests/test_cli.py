"""The command line: encode / decode / inspect / entropy / train, formats, atomic output,
malformed input, reproducible per-line seeds."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import probcraft
from probcraft import cli

PIECES = [
    ("a", -1.0), ("b", -1.5), ("c", -2.0), ("ab", -1.8), ("bc", -2.2), ("abc", -2.5),
    (" ", -1.2), ("é", -3.0), ("x", -3.0), ("xa", -2.0),
]


@pytest.fixture()
def model_path(tmp_path: pathlib.Path) -> pathlib.Path:
    m = probcraft.Unigram.from_pieces(PIECES)
    p = tmp_path / "m.pcvb"
    p.write_bytes(m.to_bytes())
    return p


@pytest.fixture()
def corpus(tmp_path: pathlib.Path) -> pathlib.Path:
    rng = np.random.default_rng(0)
    alphabet = list("abc x") + ["é"]
    lines = ["".join(rng.choice(alphabet, size=rng.integers(0, 30))) for _ in range(300)]
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def run(*args: str) -> int:
    return cli.main([str(a) for a in args])


def test_encode_npy_matches_api_and_per_line_seeds(model_path, corpus, tmp_path) -> None:
    out = tmp_path / "ids.npy"
    assert run("encode", "-m", model_path, "-i", corpus, "-o", out, "--alpha", "0.5",
               "--seed", "7", "--threads", "2", "--batch-size", "37", "-q") == 0
    ids = np.load(out)
    offs = np.load(tmp_path / "ids.offsets.npy")
    lines = corpus.read_text(encoding="utf-8").split("\n")[:-1]
    assert offs.size == len(lines) + 1 and offs[-1] == ids.size
    m = probcraft.Unigram.from_bytes(model_path.read_bytes())
    ref_ids, ref_offs = m.encode_batch(lines, alpha=0.5, seed=7, flat=True)
    assert np.array_equal(ids, ref_ids) and np.array_equal(offs, ref_offs)
    # Any line alone reproduces its row: line i uses stream (seed, i).
    for i in (0, 5, 123, 299):
        alone, _ = m.encode_batch([lines[i]], alpha=0.5, seed=7, flat=True, stream_offset=i)
        assert np.array_equal(alone, ids[offs[i]:offs[i + 1]])
    # Round trip through decode.
    txt = tmp_path / "back.txt"
    assert run("decode", "-m", model_path, "-i", out, "-o", txt) == 0
    assert txt.read_text(encoding="utf-8").split("\n")[:-1] == lines


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_encode_other_formats(model_path, corpus, tmp_path, fmt) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"ids.{fmt}"
    assert run("encode", "-m", model_path, "-i", corpus, "-o", out, "--bos", "0", "--eos", "1",
               "-q") == 0
    lines = corpus.read_text(encoding="utf-8").split("\n")[:-1]
    m = probcraft.Unigram.from_bytes(model_path.read_bytes())
    if fmt == "jsonl":
        rows = [json.loads(r)["ids"] for r in out.read_text().splitlines()]
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(out).column("ids").to_pylist()
    assert len(rows) == len(lines)
    for line, row in zip(lines, rows):
        assert row == [0] + m.encode(line).tolist() + [1]


def test_jsonl_input_and_bad_lines(model_path, tmp_path, capsys) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": "abc"}\n{"other": 1}\n{"text": "bca"}\nnot json\n')
    out = tmp_path / "o.jsonl"
    assert run("encode", "-m", model_path, "-i", src, "-o", out, "-q") == 1
    err = capsys.readouterr().err
    assert "line 2" in err and "missing field 'text'" in err
    assert not out.exists(), "a failed run must not leave output"
    assert run("encode", "-m", model_path, "-i", src, "-o", out, "--on-error", "skip", "-q") == 0
    rows = [json.loads(r) for r in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [0, 1, 2, 3]
    assert rows[1]["ids"] is None and rows[3]["ids"] is None
    assert rows[0]["ids"] is not None and rows[2]["ids"] is not None


def test_invalid_utf8_reported_with_line_number(model_path, tmp_path, capsys) -> None:
    src = tmp_path / "bad.txt"
    src.write_bytes(b"abc\nab\xff\xfec\n")
    out = tmp_path / "o.npy"
    assert run("encode", "-m", model_path, "-i", src, "-o", out, "-q") == 1
    err = capsys.readouterr().err
    assert "line 2" in err and "invalid UTF-8" in err
    assert not out.exists() and not (tmp_path / "o.offsets.npy").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_interrupted_run_leaves_no_partial_output(model_path, tmp_path) -> None:
    big = tmp_path / "big.txt"
    line = ("abc bca é xa " * 40 + "\n").encode()
    with open(big, "wb") as f:
        for _ in range(200_000):
            f.write(line)
    out = tmp_path / "o.npy"
    p = subprocess.Popen(
        [sys.executable, "-m", "probcraft.cli", "encode", "-m", str(model_path), "-i", str(big),
         "-o", str(out), "--alpha", "0.1", "--seed", "0", "--threads", "1", "-q"],
        stderr=subprocess.PIPE,
    )
    time.sleep(1.5)
    assert p.poll() is None, "run finished too quickly to interrupt; enlarge the input"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert not out.exists() and not (tmp_path / "o.offsets.npy").exists()
    leftovers = [q.name for q in tmp_path.iterdir() if q.name not in ("big.txt", "m.pcvb")]
    assert leftovers == []


def test_inspect_and_entropy(model_path, corpus, capsys) -> None:
    assert run("inspect", "-m", model_path, "--pieces", "3") == 0
    out = capsys.readouterr().out
    assert '"vocab_size": 10' in out
    assert run("entropy", "-m", model_path, "-i", corpus, "--alpha", "1.0", "--per-line") == 0
    out = capsys.readouterr().out.splitlines()
    m = probcraft.Unigram.from_bytes(model_path.read_bytes())
    first = corpus.read_text(encoding="utf-8").split("\n")[0]
    line_no, h = out[0].split("\t")
    assert line_no == "1" and float(h) == pytest.approx(m.entropy(first, alpha=1.0), abs=1e-6)


def test_bad_arguments(model_path, corpus, tmp_path) -> None:
    assert run("encode", "-m", tmp_path / "missing.model", "-i", corpus, "-o", tmp_path / "o.npy") == 1
    with pytest.raises(SystemExit):
        run("encode", "-m", model_path, "-i", corpus, "-o", tmp_path / "o.unknown")
    junk = tmp_path / "junk.model"
    junk.write_bytes(os.urandom(64))
    assert run("inspect", "-m", junk) == 1


def test_console_script_entry_point() -> None:
    exe = pathlib.Path(sys.executable).with_name("probcraft")
    if not exe.exists():
        pytest.skip("console script not installed next to this interpreter")
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "encode" in r.stdout


def test_train_then_sentencepiece_loads_it(corpus, tmp_path) -> None:
    spm = pytest.importorskip("sentencepiece")
    out = tmp_path / "t.model"
    assert run("train", "-i", corpus, "--vocab-size", "40", "-o", out, "--character-coverage",
               "1.0", "-q") == 0
    sp = spm.SentencePieceProcessor(model_file=str(out))
    m = probcraft.Unigram.from_sentencepiece(out)
    assert sp.get_piece_size() == m.vocab_size == 40
    for line in corpus.read_text(encoding="utf-8").split("\n")[:50]:
        assert sp.encode(line) == m.encode(line).tolist()
    # Byte-level models cannot be a SentencePiece .model: a clear error, no output file.
    bad = tmp_path / "b.model"
    assert run("train", "-i", corpus, "--vocab-size", "300", "-o", bad, "--byte-level",
               "--format", "sentencepiece", "-q") == 1
    assert not bad.exists()


def test_main_job_demo_runs_end_to_end(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "probcraft.demo", "--workdir", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "decode round trip: exact" in r.stdout
    assert (tmp_path / "demo.model").exists() and (tmp_path / "ids.offsets.npy").exists()
