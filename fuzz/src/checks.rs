//! The property each fuzz target checks, shared by the libFuzzer targets (`fuzz/`) and the
//! regression replay (`tests/fuzz_regressions.rs`), so a saved input is re-checked by plain
//! `cargo test` with exactly the assertions that found it.
//!
//! Every loader must either succeed or return an `Err` (never panic, hang or allocate beyond
//! its input); a model that loads must round-trip through our own byte format and survive
//! encoding. On the text path, the algorithms must agree with each other: the k-best list is
//! sorted and starts at the Viterbi score, `log Z ≥` the best path score, entropy is finite
//! and non-negative, every sampled path re-spells the prepared text.

use probcraft::lattice::batch::{self, Mode};
use probcraft::lattice::graph::Lattice;
use probcraft::lattice::marginals;
use probcraft::lattice::model::Model;
use probcraft::lattice::nbest::nbest;
use probcraft::lattice::sample::{self, Method};
use probcraft::lattice::swor::sample_without_replacement;
use probcraft::lattice::viterbi::{viterbi, Workspace};
use probcraft::lattice::vocab::{PieceKind, PieceSpec, VocabSpec};
use probcraft::lattice::{formats, spm};
use probcraft::rng::Stream;

/// Longest text the text-path checks run (the lattice algorithms are linear; this keeps one
/// execution in the millisecond range so the fuzzer explores breadth).
const MAX_TEXT: usize = 4096;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

/// Asserts `path` tiles `text` exactly with edges the model knows.
fn check_path(model: &Model, text: &[u8], path: &[(usize, usize, u32)]) {
    let mut at = 0;
    for &(s, e, id) in path {
        assert_eq!(s, at, "path has a gap or overlap at {s}");
        assert!(e > s && e <= text.len(), "edge ({s},{e}) out of range");
        // jieba dictionaries label unknown-character edges with the virtual id `vocab_size`.
        assert!(
            (id as usize) < model.vocab_size() || Some(id) == model.unk_edge(),
            "id {id} out of range"
        );
        at = e;
    }
    assert_eq!(at, text.len(), "path does not reach the end");
}

/// Runs every text-path algorithm on one raw text and cross-checks them.
pub fn exercise(model: &Model, raw: &[u8], knob: u8) {
    let raw = &raw[..raw.len().min(MAX_TEXT)];
    let Ok(text) = model.prepare(raw) else {
        // Only invalid UTF-8 may be refused here.
        assert!(!model.byte_level() && std::str::from_utf8(raw).is_err());
        return;
    };
    let text: &[u8] = &text;
    if text.len() > 4 * MAX_TEXT {
        return;
    }
    let mut ws = Workspace::new();
    let best = match viterbi(model, text, &mut ws) {
        Ok(()) => {
            check_path(model, text, &ws.path);
            Some(
                ws.path
                    .iter()
                    .map(|&(_, _, id)| model.score(id))
                    .sum::<f64>(),
            )
        }
        // Unsegmentable (no UNK piece): every other algorithm must say so too.
        Err(_) => None,
    };
    let k = 1 + (knob as usize % 7);
    match nbest(model, text, k) {
        Ok(list) => {
            let best = best.expect("k-best found a path Viterbi did not");
            assert!(!list.is_empty() && list.len() <= k);
            // f32 Viterbi vs f64 k-best: equal up to rounding of the summed scores.
            assert!(
                (list[0].1 - best).abs() <= 1e-3 * (1.0 + best.abs()),
                "k-best top {} vs Viterbi {best}",
                list[0].1
            );
            for w in list.windows(2) {
                assert!(w[0].1 >= w[1].1, "k-best not sorted");
                assert_ne!(w[0].0, w[1].0, "k-best repeats a path");
            }
            for (p, _) in &list {
                check_path(model, text, p);
            }
        }
        Err(_) => assert!(best.is_none() || text.is_empty()),
    }
    let alpha = [0.0, 0.1, 0.5, 1.0, 3.0][(knob as usize / 7) % 5];
    let w = model.weights(alpha);
    let lat = match Lattice::build(model, text) {
        Ok(l) => l,
        Err(_) => return,
    };
    match marginals::log_partition(model, text, &lat, &w) {
        Ok(lz) => {
            assert!(lz.is_finite(), "log Z = {lz}");
            if let Some(b) = best {
                assert!(
                    lz >= alpha * b - 1e-6 * (1.0 + lz.abs()),
                    "log Z {lz} < α·best"
                );
            }
            let h = marginals::entropy(model, text, &lat, &w).expect("entropy after log Z");
            assert!(h.is_finite() && h >= 0.0, "entropy {h}");
            let m = marginals::marginals(model, text, &lat, &w).expect("marginals after log Z");
            assert!(close(m.log_z, lz));
            // Log-space forward/backward carries a rounding error of about one ulp of |log Z|
            // per position, so a marginal `exp(z + v + b − log Z)` is exact only up to
            // `exp(±ε·|log Z|·L)`: tight for real models, loose for absurd scores (a fuzzed
            // score of 4.5e15 gave an edge "probability" of e³; see docs/limits.md).
            let slack = 1e-9 + 8.0 * f64::EPSILON * (lz.abs() + 1.0) * (text.len() as f64 + 1.0);
            let hi = slack.exp();
            for &(_, _, _, p) in &m.edges {
                assert!(p >= 0.0 && p <= hi, "edge marginal {p} (slack {slack})");
            }
            if !text.is_empty() {
                for b in [m.boundary[0], m.boundary[text.len()]] {
                    assert!((b.ln()).abs() <= slack, "end boundary marginal {b}");
                }
            }
        }
        Err(_) => {
            assert!(
                best.is_none(),
                "Viterbi found a path the forward pass did not"
            );
            return;
        }
    }
    for (i, method) in [Method::Perfect, Method::Ffbs, Method::ViterbiSampling]
        .into_iter()
        .enumerate()
    {
        let mut rng = Stream::new(u64::from(knob), i as u64);
        sample::sample(model, text, &w, method, &mut rng, &mut ws).expect("sampling");
        check_path(model, text, &ws.path);
    }
    let mut rng = Stream::new(7, u64::from(knob));
    let drawn = sample_without_replacement(model, text, &lat, &w, k, &mut rng).expect("swor");
    for (p, _, _) in &drawn {
        check_path(model, text, p);
    }
    marginals::prefix_candidates(model, text, &lat, &w).expect("prefix candidates");
    // The raw-text entry point (normalisation + emission), as Python calls it.
    let mut rng = Stream::new(1, 2);
    let mut out = Vec::new();
    batch::encode(model, raw, Mode::Viterbi, &mut rng, &mut ws, &mut out).expect("encode");
    let mode = Mode::Sample {
        alpha,
        method: Method::Perfect,
    };
    batch::encode(model, raw, mode, &mut rng, &mut ws, &mut out).expect("encode sample");
    let _ = model.decode(&out.iter().map(|&i| i64::from(i)).collect::<Vec<_>>());
}

/// A model that loaded must survive our own format and a few texts derived from the input.
fn after_load(spec: VocabSpec, data: &[u8]) {
    let bytes = spec.to_bytes();
    let back = VocabSpec::from_bytes(&bytes).expect("our own format rejects a loaded model");
    assert_eq!(back, spec, "VocabSpec round trip changed the model");
    let Ok(model) = Model::from_spec(spec) else {
        return;
    };
    let tail = &data[data.len().saturating_sub(64)..];
    exercise(&model, tail, data.first().copied().unwrap_or(0));
    exercise(&model, "hello wörld 日本語 ".as_bytes(), 3);
}

pub fn sentencepiece(data: &[u8]) {
    if let Ok(spec) = spm::load(data) {
        let saved = spm::save(&spec).expect("save a loaded model");
        let again = spm::load(&saved).expect("reload a saved model");
        assert_eq!(again, spec, "SentencePiece save/load changed the model");
        after_load(spec, data);
    }
}

pub fn hf_json(data: &[u8]) {
    if let Ok(spec) = formats::load_hf_json(data) {
        after_load(spec, data);
    }
}

pub fn bytepiece_json(data: &[u8]) {
    if let Ok(spec) = formats::load_bytepiece_json(data) {
        after_load(spec, data);
    }
}

pub fn jieba_dict(data: &[u8]) {
    if let Ok(spec) = formats::load_jieba_dict(data) {
        after_load(spec, data);
    }
}

pub fn vocab_bytes(data: &[u8]) {
    if let Ok(spec) = VocabSpec::from_bytes(data) {
        after_load(spec, data);
    }
}

fn piece(p: &str, score: f32, kind: PieceKind) -> PieceSpec {
    PieceSpec {
        piece: p.as_bytes().to_vec(),
        score,
        kind,
    }
}

/// The fixed models the text target runs against: SentencePiece-like with UNK and
/// normalisation, one without UNK (unsegmentable texts), a byte-level one, and a
/// byte-fallback one.
pub fn text_models() -> Vec<Model> {
    let mut out = Vec::new();
    let base = [
        ("a", -2.0),
        ("b", -2.5),
        ("ab", -1.5),
        ("aa", -2.2),
        ("aaa", -3.0),
        ("▁", -1.0),
        ("▁a", -1.2),
        ("é", -4.0),
        ("日", -5.0),
        ("日本", -4.5),
        ("本", -5.0),
        ("😀", -6.0),
    ];
    let mut spm_like = VocabSpec::from_pieces(
        base.iter()
            .map(|(p, s)| (p.as_bytes().to_vec(), *s))
            .collect(),
    );
    spm_like
        .pieces
        .insert(0, piece("<unk>", 0.0, PieceKind::Unknown));
    spm_like.unk_id = Some(0);
    spm_like.source = "sentencepiece".into();
    spm_like.normalizer.add_dummy_prefix = true;
    spm_like.normalizer.escape_whitespaces = true;
    spm_like.normalizer.remove_extra_whitespaces = true;
    let mut fallback = spm_like.clone();
    fallback.byte_fallback = true;
    for b in 0..=255u8 {
        fallback
            .pieces
            .push(piece(&format!("<0x{b:02X}>"), -9.0, PieceKind::Byte));
    }
    out.push(Model::from_spec(spm_like).unwrap());
    out.push(Model::from_spec(fallback).unwrap());
    let no_unk = VocabSpec::from_pieces(
        base.iter()
            .map(|(p, s)| (p.as_bytes().to_vec(), *s))
            .collect(),
    );
    out.push(Model::from_spec(no_unk).unwrap());
    let mut bytes: Vec<(Vec<u8>, f32)> = (0..=255u8).map(|b| (vec![b], -6.0)).collect();
    bytes.extend([
        (b"ab".to_vec(), -3.0),
        (vec![0xE6, 0x97], -4.0),
        (b"\xff\xfe".to_vec(), -2.0),
    ]);
    let mut byte_level = VocabSpec::from_pieces(bytes);
    byte_level.byte_level = true;
    byte_level.source = "bytepiece".into();
    out.push(Model::from_spec(byte_level).unwrap());
    out
}

/// Arbitrary bytes on the text path: the first byte picks the model and the knobs.
pub fn text(models: &[Model], data: &[u8]) {
    let Some((&knob, raw)) = data.split_first() else {
        return;
    };
    exercise(&models[knob as usize % models.len()], raw, knob);
}
