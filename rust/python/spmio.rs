//! Private test hooks for the model loaders and the SentencePiece normaliser. They exist so
//! that the Python test-suite can check parity with the `sentencepiece`, `tokenizers` and
//! `jieba` packages; the public API is the lattice model built on top of them.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::guarded;
use crate::error::Error;
use crate::lattice::normalizer::Normalizer;
use crate::lattice::vocab::{UnknownRule, VocabSpec};
use crate::lattice::{formats, spm};

/// Normalises `text` exactly as `sentencepiece` does with the model in `model_bytes`.
#[pyfunction]
fn _spm_normalize(py: Python<'_>, model_bytes: &[u8], text: &str) -> PyResult<String> {
    guarded(py, || {
        let spec = spm::load(model_bytes)?;
        Ok(Normalizer::for_vocab(&spec)?.normalize(text))
    })
}

/// `_spm_normalize` over many texts, loading the model once.
#[pyfunction]
fn _spm_normalize_batch(
    py: Python<'_>,
    model_bytes: &[u8],
    texts: Vec<String>,
) -> PyResult<Vec<String>> {
    guarded(py, || {
        let spec = spm::load(model_bytes)?;
        let n = Normalizer::for_vocab(&spec)?;
        Ok(texts.iter().map(|t| n.normalize(t)).collect())
    })
}

/// `_spm_normalize` plus, per output byte, the input byte offset it came from (and the end).
#[pyfunction]
fn _spm_normalize_with_offsets(
    py: Python<'_>,
    model_bytes: &[u8],
    text: &str,
) -> PyResult<(String, Vec<usize>)> {
    guarded(py, || {
        let spec = spm::load(model_bytes)?;
        Ok(Normalizer::for_vocab(&spec)?.normalize_with_offsets(text))
    })
}

/// Loads a SentencePiece model and writes it back.
#[pyfunction]
fn _spm_roundtrip<'py>(py: Python<'py>, model_bytes: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let out = guarded(py, || spm::save(&spm::load(model_bytes)?))?;
    Ok(PyBytes::new(py, &out))
}

fn load_any(format: &str, data: &[u8]) -> crate::Result<VocabSpec> {
    match format {
        "sentencepiece" => spm::load(data),
        "hf" => formats::load_hf_json(data),
        "bytepiece" => formats::load_bytepiece_json(data),
        "jieba" => formats::load_jieba_dict(data),
        "probcraft" => VocabSpec::from_bytes(data),
        other => Err(Error::invalid(format!(
            "unknown vocabulary format {other:?}; expected one of 'sentencepiece', 'hf', \
             'bytepiece', 'jieba', 'probcraft'"
        ))),
    }
}

/// Loads a vocabulary and returns `(piece, score, kind)` per id (kind: SentencePiece's piece
/// type number).
#[pyfunction]
fn _load_vocab<'py>(
    py: Python<'py>,
    format: &str,
    data: &[u8],
) -> PyResult<Vec<(Bound<'py, PyBytes>, f32, u8)>> {
    let spec = guarded(py, || load_any(format, data))?;
    Ok(spec
        .pieces
        .iter()
        .map(|p| (PyBytes::new(py, &p.piece), p.score, p.kind as u8))
        .collect())
}

/// Loads a vocabulary and returns its settings (special ids, flags, normaliser) as a dict.
#[pyfunction]
fn _load_vocab_info<'py>(
    py: Python<'py>,
    format: &str,
    data: &[u8],
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let spec = guarded(py, || load_any(format, data))?;
    let d = pyo3::types::PyDict::new(py);
    d.set_item("size", spec.pieces.len())?;
    d.set_item("source", &spec.source)?;
    d.set_item("unk_id", spec.unk_id)?;
    d.set_item("bos_id", spec.bos_id)?;
    d.set_item("eos_id", spec.eos_id)?;
    d.set_item("pad_id", spec.pad_id)?;
    d.set_item("byte_fallback", spec.byte_fallback)?;
    d.set_item("byte_level", spec.byte_level)?;
    let n = &spec.normalizer;
    d.set_item("normalizer_name", &n.name)?;
    d.set_item(
        "precompiled_charsmap",
        PyBytes::new(py, &n.precompiled_charsmap),
    )?;
    d.set_item("add_dummy_prefix", n.add_dummy_prefix)?;
    d.set_item("remove_extra_whitespaces", n.remove_extra_whitespaces)?;
    d.set_item("escape_whitespaces", n.escape_whitespaces)?;
    d.set_item("treat_whitespace_as_suffix", n.treat_whitespace_as_suffix)?;
    let (rule, score) = match spec.unknown {
        UnknownRule::SentencePiece => ("sentencepiece", None),
        UnknownRule::JiebaChar { score } => ("jieba", Some(score)),
    };
    d.set_item("unknown_rule", rule)?;
    d.set_item("unknown_score", score)?;
    Ok(d)
}

/// Normalises `text` with the normaliser of a vocabulary in any supported format.
#[pyfunction]
fn _vocab_normalize(py: Python<'_>, format: &str, data: &[u8], text: &str) -> PyResult<String> {
    guarded(py, || {
        let spec = load_any(format, data)?;
        Ok(Normalizer::for_vocab(&spec)?.normalize(text))
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_spm_normalize, m)?)?;
    m.add_function(wrap_pyfunction!(_spm_normalize_batch, m)?)?;
    m.add_function(wrap_pyfunction!(_spm_normalize_with_offsets, m)?)?;
    m.add_function(wrap_pyfunction!(_spm_roundtrip, m)?)?;
    m.add_function(wrap_pyfunction!(_load_vocab, m)?)?;
    m.add_function(wrap_pyfunction!(_load_vocab_info, m)?)?;
    m.add_function(wrap_pyfunction!(_vocab_normalize, m)?)?;
    Ok(())
}
