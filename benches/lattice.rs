//! Core-only lattice benchmarks (no Python): Viterbi, perfect sampling, FFBS, 10-best and
//! marginals on a vocabulary built from a pieces list.
//!
//! With `../shared/corpora` present the text is the shared corpora and the vocabulary is a
//! unigram-style list of the corpus' frequent substrings (log relative frequency); otherwise a
//! deterministic synthetic text. SentencePiece-model benches compare against the peers in
//! `benches/peers_lattice.py`, which loads the real `.model` files.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use probcraft::lattice::batch::{encode_batch, encode_batch_str, Mode};
use probcraft::lattice::graph::Lattice;
use probcraft::lattice::model::Model;
use probcraft::lattice::sample::{self, Method};
use probcraft::lattice::viterbi::{viterbi, Workspace};
use probcraft::lattice::vocab::{PieceKind, PieceSpec, VocabSpec};
use probcraft::lattice::{marginals, nbest, spm};
use probcraft::rng::Stream;
use std::collections::HashMap;
use std::hint::black_box;

fn corpus() -> (String, &'static str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora");
    if let Ok(t) = std::fs::read_to_string(root.join("botchan.txt")) {
        return (t, "botchan");
    }
    let mut s = Stream::new(1, 1);
    let words = [
        "the ", "cat ", "sat ", "on ", "a ", "mat ", "and ", "then ", "slept ", ".",
    ];
    let mut t = String::new();
    while t.len() < 300_000 {
        t.push_str(words[s.below(words.len() as u64) as usize]);
    }
    (t, "synthetic")
}

/// Frequent substrings (1..=6 chars) as a unigram vocabulary, spaces escaped like SentencePiece.
fn model_for(text: &str, size: usize) -> Model {
    let t: Vec<char> = text.replace(' ', "\u{2581}").chars().collect();
    let mut counts: HashMap<String, u64> = HashMap::new();
    for i in 0..t.len() {
        for l in 1..=6.min(t.len() - i) {
            let w: String = t[i..i + l].iter().collect();
            if w.contains('\n') {
                break;
            }
            *counts.entry(w).or_default() += 1;
        }
    }
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut chars: Vec<(String, u64)> = v
        .iter()
        .filter(|(w, _)| w.chars().count() == 1)
        .cloned()
        .collect();
    v.retain(|(w, _)| w.chars().count() > 1);
    v.truncate(size.saturating_sub(chars.len()));
    chars.extend(v);
    let total: f64 = chars.iter().map(|x| x.1 as f64).sum();
    let mut pieces = vec![PieceSpec {
        piece: b"<unk>".to_vec(),
        score: 0.0,
        kind: PieceKind::Unknown,
    }];
    pieces.extend(chars.into_iter().map(|(w, c)| PieceSpec {
        piece: w.into_bytes(),
        score: (c as f64 / total).ln() as f32,
        kind: PieceKind::Normal,
    }));
    let mut spec = VocabSpec::from_pieces(vec![]);
    spec.pieces = pieces;
    spec.unk_id = Some(0);
    Model::from_spec(spec).expect("model")
}

fn benches(c: &mut Criterion) {
    let (text, name) = corpus();
    let model = model_for(&text, 8000);
    let lines: Vec<Vec<u8>> = text
        .lines()
        .map(|l| {
            model
                .prepare(l.replace(' ', "\u{2581}").as_bytes())
                .unwrap()
                .into_owned()
        })
        .collect();
    let joined: Vec<u8> = lines.concat();
    let nbytes = joined.len() as u64;
    let mut g = c.benchmark_group(format!("lattice/{name}"));
    g.throughput(Throughput::Bytes(nbytes));
    g.sample_size(10);
    g.bench_function("viterbi_lines", |b| {
        let mut ws = Workspace::new();
        b.iter(|| {
            for l in &lines {
                viterbi(&model, l, &mut ws).unwrap();
                black_box(ws.path.len());
            }
        })
    });
    g.bench_function("perfect_a0.1_lines", |b| {
        let mut ws = Workspace::new();
        let w = model.weights(0.1);
        let mut rng = Stream::new(1, 0);
        b.iter(|| {
            for l in &lines {
                sample::perfect(&model, l, &w, &mut rng, &mut ws).unwrap();
                black_box(ws.path.len());
            }
        })
    });
    g.bench_function("ffbs_a0.1_lines", |b| {
        let mut ws = Workspace::new();
        let w = model.weights(0.1);
        let mut rng = Stream::new(1, 0);
        b.iter(|| {
            for l in &lines {
                sample::sample(&model, l, &w, Method::Ffbs, &mut rng, &mut ws).unwrap();
                black_box(ws.path.len());
            }
        })
    });
    g.bench_function("nbest10_lines", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(nbest::nbest(&model, l, 10).unwrap().len());
            }
        })
    });
    g.bench_function("marginals_lines", |b| {
        let w = model.weights(1.0);
        b.iter(|| {
            for l in &lines {
                let lat = Lattice::build(&model, l).unwrap();
                black_box(marginals::marginals(&model, l, &lat, &w).unwrap().log_z);
            }
        })
    });
    for threads in [1usize, 2] {
        g.bench_function(format!("encode_batch_viterbi_{threads}t"), |b| {
            b.iter(|| {
                black_box(encode_batch(&model, &lines, Mode::Viterbi, 1, 0, Some(threads)).unwrap())
            })
        });
    }
    g.bench_function("viterbi_one_long_line", |b| {
        let mut ws = Workspace::new();
        b.iter(|| {
            viterbi(&model, &joined, &mut ws).unwrap();
            black_box(ws.path.len())
        })
    });
    g.finish();
}

/// The shared SentencePiece models on their corpora (the `compare.py` workload without
/// Python): batch encode of raw lines (normalisation included), and the Viterbi / perfect
/// passes alone on pre-normalised lines. Skipped when `../shared` is absent.
fn spm_benches(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    for (model_file, corpus, tag) in [
        ("spm_en_botchan_1k.model", "botchan.txt", "en"),
        ("spm_zh_fortunes_8k.model", "zh_fortunes.txt", "zh"),
    ] {
        let (Ok(bytes), Ok(text)) = (
            std::fs::read(root.join("models").join(model_file)),
            std::fs::read_to_string(root.join("corpora").join(corpus)),
        ) else {
            continue;
        };
        let model = Model::from_spec(spm::load(&bytes).expect("spm model")).expect("model");
        let raw: Vec<&str> = text.split('\n').filter(|l| !l.is_empty()).collect();
        let prepared: Vec<Vec<u8>> = raw
            .iter()
            .map(|l| model.prepare(l.as_bytes()).unwrap().into_owned())
            .collect();
        let nbytes: usize = raw.iter().map(|l| l.len()).sum();
        let mut g = c.benchmark_group(format!("spm/{tag}"));
        g.throughput(Throughput::Bytes(nbytes as u64));
        g.sample_size(20);
        for threads in [1usize, 2] {
            g.bench_function(format!("encode_batch_viterbi_{threads}t"), |b| {
                b.iter(|| {
                    black_box(
                        encode_batch_str(&model, &raw, Mode::Viterbi, 1, 0, Some(threads)).unwrap(),
                    )
                })
            });
            let perfect = Mode::new(Some(0.1), "perfect").unwrap();
            g.bench_function(format!("encode_batch_perfect_{threads}t"), |b| {
                b.iter(|| {
                    black_box(encode_batch_str(&model, &raw, perfect, 1, 0, Some(threads)).unwrap())
                })
            });
        }
        g.bench_function("normalize_only", |b| {
            let mut buf = Vec::new();
            b.iter(|| {
                for l in &raw {
                    black_box(model.prepare_str_into(l, &mut buf).unwrap().len());
                }
            })
        });
        g.bench_function("viterbi_prepared", |b| {
            let mut ws = Workspace::new();
            b.iter(|| {
                for l in &prepared {
                    viterbi(&model, l, &mut ws).unwrap();
                    black_box(ws.path.len());
                }
            })
        });
        g.bench_function("perfect_prepared", |b| {
            let mut ws = Workspace::new();
            let w = model.weights(0.1);
            let mut rng = Stream::new(1, 0);
            b.iter(|| {
                for l in &prepared {
                    sample::perfect(&model, l, &w, &mut rng, &mut ws).unwrap();
                    black_box(ws.path.len());
                }
            })
        });
        g.finish();
    }
}

criterion_group!(lattice, benches, spm_benches);
criterion_main!(lattice);
