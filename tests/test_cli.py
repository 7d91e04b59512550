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


# --------------------------------------------------------------------------- robustness


def _snapshot(d: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_output_that_is_an_input_is_refused(model_path, corpus, tmp_path, capsys) -> None:
    # Outputs are renamed over their destination: without the check each of these silently
    # replaced the user's corpus, ids or model with the result.
    ids = tmp_path / "ids.npy"
    assert run("encode", "-m", model_path, "-i", corpus, "-o", ids, "-q") == 0
    jsonl = tmp_path / "ids.jsonl"
    assert run("encode", "-m", model_path, "-i", corpus, "-o", jsonl, "-q") == 0
    (tmp_path / "t.offsets.npy").write_text("abc\n", encoding="utf-8")  # a text input
    (tmp_path / "link.txt").symlink_to(corpus)
    os.link(corpus, tmp_path / "hard.txt")
    (tmp_path / "sub").mkdir()
    cases = [
        ["train", "-i", corpus, "--vocab-size", "20", "-o", corpus, "-q"],
        ["train", "-i", model_path, corpus, "--vocab-size", "20", "-o", tmp_path / "link.txt", "-q"],
        ["train", "-i", tmp_path / "hard.txt", "--vocab-size", "20", "-o", corpus, "-q"],
        ["encode", "-m", model_path, "-i", corpus, "-o", corpus, "--output-format", "jsonl", "-q"],
        ["encode", "-m", model_path, "-i", jsonl, "-o", jsonl, "--field", "x", "-q"],
        ["encode", "-m", model_path, "-i", corpus, "-o", model_path, "--output-format", "npy", "-q"],
        ["encode", "-m", model_path, "-i", corpus, "-o", tmp_path / "sub" / ".." / "link.txt",
         "--output-format", "npy", "-q"],
        # The .offsets.npy sidecar counts as an output.
        ["encode", "-m", model_path, "-i", tmp_path / "t.offsets.npy", "--input-format", "text",
         "-o", tmp_path / "t.npy", "-q"],
        ["decode", "-m", model_path, "-i", jsonl, "-o", jsonl],
        ["decode", "-m", model_path, "-i", ids, "-o", model_path],
        ["decode", "-m", model_path, "-i", ids, "-o", tmp_path / "ids.offsets.npy"],
    ]
    before = _snapshot(tmp_path)
    for args in cases:
        assert run(*args) == 2, args
        err = capsys.readouterr().err
        assert "is the same file as the" in err and "refusing to overwrite" in err, err
        assert _snapshot(tmp_path) == before, f"{args} changed files"


def test_output_file_modes(model_path, corpus, tmp_path) -> None:
    # mkstemp makes 0600 files and os.replace keeps that mode: outputs must instead get the
    # mode open() would give (0o666 & ~umask), and an overwritten file must keep its own.
    old = os.umask(0o027)
    try:
        ids, offs = tmp_path / "ids.npy", tmp_path / "ids.offsets.npy"
        js, txt, mdl = tmp_path / "ids.jsonl", tmp_path / "back.txt", tmp_path / "t.model"
        assert run("encode", "-m", model_path, "-i", corpus, "-o", ids, "-q") == 0
        assert run("encode", "-m", model_path, "-i", corpus, "-o", js, "-q") == 0
        assert run("decode", "-m", model_path, "-i", ids, "-o", txt) == 0
        assert run("train", "-i", corpus, "--vocab-size", "20", "-o", mdl, "-q") == 0
        for p in (ids, offs, js, txt, mdl):
            assert oct(p.stat().st_mode & 0o777) == oct(0o640), p.name
        for p, mode in ((ids, 0o604), (offs, 0o600), (js, 0o644), (txt, 0o444), (mdl, 0o660)):
            p.chmod(mode)
        assert run("encode", "-m", model_path, "-i", corpus, "-o", ids, "-q") == 0
        assert run("encode", "-m", model_path, "-i", corpus, "-o", js, "-q") == 0
        assert run("decode", "-m", model_path, "-i", ids, "-o", txt) == 0  # even read-only
        assert run("train", "-i", corpus, "--vocab-size", "20", "-o", mdl, "-q") == 0
        for p, mode in ((ids, 0o604), (offs, 0o600), (js, 0o644), (txt, 0o444), (mdl, 0o660)):
            assert oct(p.stat().st_mode & 0o777) == oct(mode), p.name
    finally:
        os.umask(old)


@pytest.mark.parametrize("bos,eos", [("10", None), (None, "-1"), ("99999999999", "1"),
                                     ("0", "5000")])
def test_bos_eos_must_be_piece_ids(model_path, corpus, tmp_path, capsys, bos, eos) -> None:
    out = tmp_path / "o.npy"
    args = ["encode", "-m", model_path, "-i", corpus, "-o", out, "-q"]
    args += ["--bos", bos] if bos else []
    args += ["--eos", eos] if eos else []
    assert run(*args) == 2
    err = capsys.readouterr().err
    assert ("--bos" in err or "--eos" in err) and "ids are 0..9" in err, err
    assert not out.exists() and not (tmp_path / "o.offsets.npy").exists()
    assert run("encode", "-m", model_path, "-i", corpus, "-o", out, "--bos", "0", "--eos", "9",
               "-q") == 0


@pytest.mark.parametrize("args,name", [
    (["train", "--seed", "99999999999999999999999"], "--seed"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--threads", "0"], "--threads"),
    (["encode", "--seed", str(2**64)], "--seed"),
    (["encode", "--batch-size", "0"], "--batch-size"),
    (["encode", "--batch-size", "-5"], "--batch-size"),
    (["encode", "--threads", "-1"], "--threads"),
])
def test_out_of_range_numbers_are_usage_errors(model_path, corpus, tmp_path, capsys, args,
                                                name) -> None:
    cmd, rest = args[0], args[1:]
    common = (["-i", corpus, "--vocab-size", "20"] if cmd == "train"
              else ["-m", model_path, "-i", corpus])
    out = tmp_path / ("t.model" if cmd == "train" else "o.npy")
    with pytest.raises(SystemExit) as exc:
        run(cmd, *common, "-o", out, *rest, "-q")
    assert exc.value.code == 2
    assert f"argument {name}" in capsys.readouterr().err
    assert not out.exists()


def test_largest_seed_is_accepted(model_path, corpus, tmp_path) -> None:
    assert run("encode", "-m", model_path, "-i", corpus, "-o", tmp_path / "o.npy", "--alpha",
               "0.5", "--seed", str(2**64 - 1), "-q") == 0
    assert run("train", "-i", corpus, "--vocab-size", "20", "-o", tmp_path / "t.model",
               "--seed", str(2**64 - 1), "-q") == 0


@pytest.mark.parametrize("content,expected", [
    (b'{"ids": [1, 2]}\n{"ids": [1]}\xff\n', "line 2: invalid UTF-8 at byte 12"),
    (b"[1, 2]\n[1, 2.5]\n", "line 2: id at position 1 is float 2.5, not an integer"),
    (b"[1, 99999999999999999999999]\n",
     "line 1: id 99999999999999999999999 at position 1 is not a piece id (ids are 0..9)"),
    (b"[-1]\n", "line 1: id -1 at position 0 is not a piece id"),
    (b"[true]\n", "line 1: id at position 0 is bool True, not an integer"),
    (b'[1, "2"]\n', "line 1: id at position 1 is str '2', not an integer"),
    (b"[[1, 2]]\n", "line 1: id at position 0 is list [1, 2], not an integer"),
])
def test_decode_bad_jsonl_names_file_line_and_problem(model_path, tmp_path, capsys, content,
                                                      expected) -> None:
    src = tmp_path / "ids.jsonl"
    src.write_bytes(content)
    out = tmp_path / "back.txt"
    assert run("decode", "-m", model_path, "-i", src, "-o", out) == 1
    err = capsys.readouterr().err
    assert f"{src}: {expected}" in err, err
    assert not out.exists()


@pytest.mark.parametrize("ids,what", [
    (np.zeros((2, 3), np.int32), "got a 2-D int32 array"),
    (np.array([1.0, 2.0]), "got a 1-D float64 array"),
])
def test_decode_bad_npy_is_named(model_path, tmp_path, capsys, ids, what) -> None:
    p = tmp_path / "ids.npy"
    np.save(p, ids)
    np.save(tmp_path / "ids.offsets.npy", np.array([0, ids.size], np.int64))
    assert run("decode", "-m", model_path, "-i", p, "-o", tmp_path / "back.txt") == 1
    err = capsys.readouterr().err
    assert str(p) in err and "expected a 1-D array of integer ids" in err and what in err, err


def test_uppercase_npy_round_trip(model_path, corpus, tmp_path) -> None:
    # The writer named the sidecar IDS.NPY.offsets.npy while decode looked for
    # IDS.offsets.npy: both now strip the extension case-insensitively.
    out = tmp_path / "IDS.NPY"
    assert run("encode", "-m", model_path, "-i", corpus, "-o", out, "-q") == 0
    assert (tmp_path / "IDS.offsets.npy").exists()
    back = tmp_path / "back.txt"
    assert run("decode", "-m", model_path, "-i", out, "-o", back) == 0
    assert back.read_text(encoding="utf-8") == corpus.read_text(encoding="utf-8")


def test_train_reads_gzip_and_stdin_like_plain_files(corpus, tmp_path, monkeypatch,
                                                      capsys) -> None:
    import gzip
    import io

    gz = tmp_path / "corpus.txt.gz"
    gz.write_bytes(gzip.compress(corpus.read_bytes()))
    plain, from_gz, from_stdin = (tmp_path / f"{n}.model" for n in ("plain", "gz", "stdin"))
    assert run("train", "-i", corpus, "--vocab-size", "30", "-o", plain, "-q") == 0
    assert run("train", "-i", gz, "--vocab-size", "30", "-o", from_gz, "-q") == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(corpus.read_bytes())))
    assert run("train", "-i", "-", "--vocab-size", "30", "-o", from_stdin, "-q") == 0
    assert from_gz.read_bytes() == plain.read_bytes() == from_stdin.read_bytes()
    # A bad line in a compressed file is reported with the file and line.
    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(gzip.compress(b"abc\nab\xffc\n"))
    out = tmp_path / "bad.model"
    assert run("train", "-i", corpus, bad, "--vocab-size", "30", "-o", out, "-q") == 1
    err = capsys.readouterr().err
    assert f"{bad}: line 2: invalid UTF-8" in err, err
    assert not out.exists()


def test_closed_stdout_pipe_is_quiet(model_path) -> None:
    # `probcraft inspect | head -1`: the reader goes away; no "Broken pipe" error message.
    p = subprocess.Popen(
        [sys.executable, "-m", "probcraft.cli", "inspect", "-m", str(model_path), "--pieces", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    p.stdout.close()  # before the child has written anything: its first flush hits EPIPE
    err = p.stderr.read()
    p.wait(timeout=60)
    p.stderr.close()
    assert err == b"", err
    assert p.returncode == 1


def test_python_dash_m_probcraft(model_path) -> None:
    r = subprocess.run([sys.executable, "-m", "probcraft", "inspect", "-m", str(model_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '"vocab_size": 10' in r.stdout
