//! Bindings of the unigram trainer (`rust/train/`). The public `Unigram.train` lives in
//! `python/probcraft/train.py`; these private functions do the work.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use std::sync::Mutex;

use super::guarded;
use crate::error::Error;
use crate::lattice::spm;
use crate::lattice::vocab::VocabSpec;
use crate::train::corpus::CorpusBuilder;
use crate::train::{train_interruptible, TrainConfig};

/// Sentences handed to Rust per GIL release: big enough to amortise the hand-off, small enough
/// that a generator corpus is never held whole in Python.
const CHUNK: usize = 8192;

type History = Vec<(String, usize, usize, usize, f64, f64, f64)>;

/// Trains a unigram model. `corpus` is an iterable of sentences, or of file paths when
/// `files=True`. Returns the vocabulary bytes (`VocabSpec::to_bytes`) and the EM history as
/// `(phase, round, sub_iteration, pieces, objective, tokens, seconds)` tuples.
#[pyfunction]
#[pyo3(signature = (corpus, vocab_size, *, files=false, byte_level=false, byte_fallback=false,
    max_piece_length=16, character_coverage=0.9995, user_defined=Vec::new(), num_threads=None,
    seed=0, max_sentences=None, seed_size=1_000_000, shrinking_factor=0.75,
    num_sub_iterations=2, final_iterations=2, progress=false))]
#[allow(clippy::too_many_arguments)]
fn _train_unigram<'py>(
    py: Python<'py>,
    corpus: &Bound<'py, PyAny>,
    vocab_size: usize,
    files: bool,
    byte_level: bool,
    byte_fallback: bool,
    max_piece_length: usize,
    character_coverage: f64,
    user_defined: Vec<String>,
    num_threads: Option<usize>,
    seed: u64,
    max_sentences: Option<usize>,
    seed_size: usize,
    shrinking_factor: f64,
    num_sub_iterations: usize,
    final_iterations: usize,
    progress: bool,
) -> PyResult<(Bound<'py, PyBytes>, History)> {
    let cfg = TrainConfig {
        vocab_size,
        byte_level,
        byte_fallback,
        max_piece_length,
        character_coverage,
        user_defined,
        num_threads,
        seed,
        max_sentences,
        seed_size,
        shrinking_factor,
        num_sub_iterations,
        final_iterations,
        progress,
    };
    // Fail fast on bad settings, before reading a possibly large corpus.
    guarded(py, || cfg.validate())?;
    // The Rust work runs with the GIL released, so Python only acts on Ctrl-C / SIGTERM once
    // it returns (minutes on a big corpus). The core calls this hook between its steps: it
    // takes the GIL for a moment and runs the pending signal handlers; the exception they
    // raise (KeyboardInterrupt, or the CLI's SIGTERM one) is kept here and re-raised in
    // place of the placeholder error that aborts the core.
    let interrupted: Mutex<Option<PyErr>> = Mutex::new(None);
    let check = || -> crate::Result<()> {
        Python::attach(|py| py.check_signals()).map_err(|e| {
            *interrupted.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            Error::Internal("training interrupted by a Python signal handler".into())
        })
    };
    let reraise = |e: PyErr| {
        interrupted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or(e)
    };
    let mut builder = Some(guarded(py, || {
        CorpusBuilder::new(&cfg.user_defined, cfg.max_sentences, cfg.seed)
    })?);
    let iter = corpus.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "corpus must be an iterable of str, got {}",
            corpus
                .get_type()
                .name()
                .map_or("?".into(), |n| n.to_string())
        ))
    })?;
    let mut chunk: Vec<String> = Vec::with_capacity(CHUNK);
    let feed = |py: Python<'_>, chunk: &mut Vec<String>, b: &mut Option<CorpusBuilder>| {
        let mut bb = b.take().expect("builder present");
        let items = std::mem::take(chunk);
        let res = guarded(py, move || {
            for s in &items {
                if files {
                    bb.add_file_interruptible(s, &check)?;
                } else {
                    bb.add(s);
                }
            }
            Ok(bb)
        });
        res.map(|bb| *b = Some(bb)).map_err(reraise)
    };
    for (i, item) in iter.enumerate() {
        let item = item?;
        let s: String = item.extract().map_err(|_| {
            let what = if files { "a file path" } else { "a str" };
            let ty = item.get_type().name().map_or("?".into(), |n| n.to_string());
            if item.is_instance_of::<pyo3::types::PyString>() {
                PyValueError::new_err(format!(
                    "corpus item {i} is not encodable as UTF-8 (lone surrogate?)"
                ))
            } else {
                PyTypeError::new_err(format!("corpus item {i} must be {what}, got {ty}"))
            }
        })?;
        chunk.push(s);
        if chunk.len() == CHUNK {
            feed(py, &mut chunk, &mut builder)?;
            // Iterating a list runs no bytecode, so nothing else would run signal handlers
            // while a long in-memory corpus is read.
            py.check_signals()?;
        }
    }
    if !chunk.is_empty() {
        feed(py, &mut chunk, &mut builder)?;
    }
    let builder = builder.expect("builder present");
    let trained = guarded(py, || {
        train_interruptible(&builder.finish_interruptible(&check)?, &cfg, &check)
    })
    .map_err(reraise)?;
    let history = trained
        .history
        .iter()
        .map(|h| {
            (
                h.phase.to_string(),
                h.round,
                h.sub_iteration,
                h.pieces,
                h.objective,
                h.tokens,
                h.seconds,
            )
        })
        .collect();
    Ok((PyBytes::new(py, &trained.vocab.to_bytes()), history))
}

/// Converts vocabulary bytes (ours) to a SentencePiece `ModelProto`.
#[pyfunction]
fn _vocab_to_sentencepiece<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let out = guarded(py, || {
        let spec = VocabSpec::from_bytes(data)?;
        if !spec.byte_level {
            // SentencePiece's loader refuses such a model ("piece must not include null
            // character": its trie is NUL-terminated), so say so here rather than write a
            // file that cannot be loaded. Trained models never have one; other sources can.
            if let Some((id, p)) = spec
                .pieces
                .iter()
                .enumerate()
                .find(|(_, p)| p.piece.contains(&0))
            {
                return Err(Error::invalid(format!(
                    "model: piece {id} ({:?}) contains a NUL character, which SentencePiece \
                     cannot load",
                    String::from_utf8_lossy(&p.piece)
                )));
            }
        }
        spm::save(&spec)
    })?;
    Ok(PyBytes::new(py, &out))
}

/// Converts a SentencePiece `ModelProto` to vocabulary bytes (ours).
#[pyfunction]
fn _vocab_from_sentencepiece<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let out = guarded(py, || Ok(spm::load(data)?.to_bytes()))?;
    Ok(PyBytes::new(py, &out))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_train_unigram, m)?)?;
    m.add_function(wrap_pyfunction!(_vocab_to_sentencepiece, m)?)?;
    m.add_function(wrap_pyfunction!(_vocab_from_sentencepiece, m)?)?;
    Ok(())
}
