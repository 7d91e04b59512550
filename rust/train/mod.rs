//! Unigram tokenizer training (SentencePiece's algorithm, reimplemented).
//!
//! Pipeline: [`corpus`] collects distinct words; [`seed`] builds the unit alphabet (character
//! coverage) and the seed vocabulary from the suffix array; [`em`] precomputes every word's
//! lattice once and runs EM; [`prune`] shrinks the vocabulary by the likelihood loss of each
//! piece; the loop alternates `num_sub_iterations` EM steps and one pruning step until the
//! vocabulary is within 10% of the target, then keeps the best-scoring pieces and re-estimates
//! their probabilities by plain maximum-likelihood EM.
//!
//! M-step: during the shrinking phase we use SentencePiece's Bayesian (variational, Dirichlet
//! process) update `log p_i = ψ(c_i) − ψ(Σc)`, which discounts rarely used pieces by about
//! `1/(2c)` nats and so pushes EM towards sparse solutions between pruning steps — that
//! sparsity is what the pruning relies on. Pieces whose expected count falls below 0.5 are
//! dropped. The final vocabulary's scores come from plain normalisation `(c_i + a_i) / Σ(c + a)`
//! (maximum likelihood, with half a pseudo-count on single units so that characters absorbed
//! by longer pieces keep a usable probability), so the saved model's scores are proper
//! log-probabilities that (nearly) maximise the corpus likelihood for the chosen pieces.

pub mod corpus;
pub mod em;
pub mod prune;
pub mod seed;
pub mod suffix;

use std::time::Instant;

use crate::error::{Error, Result};
use crate::lattice::spm::parse_byte_piece;
use crate::lattice::vocab::{PieceKind, PieceSpec, UnknownRule, VocabSpec};
use corpus::{training_normalizer_spec, Corpus};
use em::{Lattices, PieceTable};
use seed::Units;

/// Training settings. Defaults match SentencePiece's unigram trainer.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Total vocabulary size, special and user-defined pieces included.
    pub vocab_size: usize,
    /// Train over bytes: all 256 bytes are pieces and no text is ever unknown.
    pub byte_level: bool,
    /// Add the 256 `<0xXX>` byte pieces so unknown characters encode as bytes.
    pub byte_fallback: bool,
    /// Longest piece, in characters (bytes when byte-level).
    pub max_piece_length: usize,
    /// Fraction of the corpus characters the vocabulary must cover (the rest become UNK).
    pub character_coverage: f64,
    pub user_defined: Vec<String>,
    pub num_threads: Option<usize>,
    /// Seed of the sentence sampling (`max_sentences`).
    pub seed: u64,
    pub max_sentences: Option<usize>,
    pub seed_size: usize,
    pub shrinking_factor: f64,
    pub num_sub_iterations: usize,
    /// Maximum-likelihood EM iterations on the final vocabulary.
    pub final_iterations: usize,
    /// One stderr line per EM iteration.
    pub progress: bool,
}

impl TrainConfig {
    pub fn new(vocab_size: usize) -> Self {
        TrainConfig {
            vocab_size,
            byte_level: false,
            byte_fallback: false,
            max_piece_length: 16,
            character_coverage: 0.9995,
            user_defined: Vec::new(),
            num_threads: None,
            seed: 0,
            max_sentences: None,
            seed_size: 1_000_000,
            shrinking_factor: 0.75,
            num_sub_iterations: 2,
            final_iterations: 2,
            progress: false,
        }
    }

    fn n_special(&self) -> usize {
        3 + self.user_defined.len() + if self.byte_fallback { 256 } else { 0 }
    }

    pub fn validate(&self) -> Result<()> {
        if self.max_piece_length == 0 || self.max_piece_length > 64 {
            return Err(Error::invalid(format!(
                "max_piece_length must be in 1..=64, got {}",
                self.max_piece_length
            )));
        }
        if !(self.character_coverage > 0.0 && self.character_coverage <= 1.0) {
            return Err(Error::invalid(format!(
                "character_coverage must be in (0, 1], got {}",
                self.character_coverage
            )));
        }
        if !(self.shrinking_factor > 0.0 && self.shrinking_factor < 1.0) {
            return Err(Error::invalid(format!(
                "shrinking_factor must be in (0, 1), got {}",
                self.shrinking_factor
            )));
        }
        if self.num_sub_iterations == 0 {
            return Err(Error::invalid("num_sub_iterations must be at least 1"));
        }
        if self.seed_size < 2 {
            return Err(Error::invalid("seed_size must be at least 2"));
        }
        if self.vocab_size > i32::MAX as usize {
            return Err(Error::Limit(format!(
                "vocab_size={} exceeds the limit of 2**31-1",
                self.vocab_size
            )));
        }
        if self.vocab_size <= self.n_special() {
            return Err(Error::invalid(format!(
                "vocab_size={} is too small: the 3 special pieces (<unk>, <s>, </s>){}{} already \
                 take {}",
                self.vocab_size,
                if self.user_defined.is_empty() {
                    String::new()
                } else {
                    format!(", {} user-defined pieces", self.user_defined.len())
                },
                if self.byte_fallback {
                    ", 256 byte-fallback pieces"
                } else {
                    ""
                },
                self.n_special()
            )));
        }
        self.validate_user_defined()?;
        parallel::resolve_threads(self.num_threads)?;
        Ok(())
    }

    /// User-defined symbols become pieces next to `<unk>`, `<s>`, `</s>` (and the `<0xXX>`
    /// byte pieces): a symbol equal to one of them would make a vocabulary with a duplicate
    /// piece, which `to_vocab` only detects after the whole training run, so refuse it here.
    /// NUL is refused because SentencePiece cannot load a piece containing it (its trie is
    /// NUL-terminated), so such a model could never be exported.
    fn validate_user_defined(&self) -> Result<()> {
        for (i, u) in self.user_defined.iter().enumerate() {
            if u.contains('\0') {
                return Err(Error::invalid(format!(
                    "user_defined[{i}] ({u:?}) contains a NUL character, which no piece may \
                     contain"
                )));
            }
            if SPECIAL_PIECES.iter().any(|(p, _)| p == u) {
                return Err(Error::invalid(format!(
                    "user_defined[{i}] ({u:?}) clashes with the special piece of the same name \
                     (<unk>, <s> and </s> are always in the vocabulary)"
                )));
            }
            if self.byte_fallback && parse_byte_piece(u.as_bytes()).is_some() {
                return Err(Error::invalid(format!(
                    "user_defined[{i}] ({u:?}) clashes with the byte piece of the same name \
                     (byte_fallback=True adds <0x00> … <0xFF>)"
                )));
            }
        }
        Ok(())
    }
}

/// The special pieces every trained vocabulary starts with (ids 0, 1, 2; see `to_vocab`).
const SPECIAL_PIECES: [(&str, PieceKind); 3] = [
    ("<unk>", PieceKind::Unknown),
    ("<s>", PieceKind::Control),
    ("</s>", PieceKind::Control),
];

use crate::parallel;

/// One EM iteration as recorded in [`Trained::history`].
#[derive(Clone, Debug)]
pub struct Iteration {
    /// `"em"` (shrinking phase, Bayesian M-step) or `"final"` (maximum likelihood).
    pub phase: &'static str,
    pub round: usize,
    pub sub_iteration: usize,
    /// Pieces in the model the E-step ran with.
    pub pieces: usize,
    /// Corpus negative log-likelihood per word occurrence under that model (nats); in the
    /// final phase after its first iteration, the negative log posterior (likelihood plus the
    /// pseudo-count prior), which that phase never increases.
    pub objective: f64,
    /// Expected number of tokens in the corpus.
    pub tokens: f64,
    pub seconds: f64,
}

#[derive(Debug)]
pub struct Trained {
    pub vocab: VocabSpec,
    pub history: Vec<Iteration>,
}

struct State {
    table: PieceTable,
    lat: Lattices,
    scores: Vec<f64>,
    alive: Vec<bool>,
    required: Vec<bool>,
}

impl State {
    fn n_alive(&self) -> usize {
        self.alive.iter().filter(|&&a| a).count()
    }

    fn unk_score(&self) -> f64 {
        let min = self
            .scores
            .iter()
            .zip(&self.alive)
            .filter(|(_, &a)| a)
            .map(|(s, _)| *s)
            .fold(f64::INFINITY, f64::min);
        if min.is_finite() {
            min - 10.0
        } else {
            -10.0
        }
    }
}

/// A hook that training calls between its steps (each EM iteration, each pruning round, and
/// between the set-up phases); an error from it aborts training and is returned as is. The
/// Python binding checks for pending signals there, so that Ctrl-C / SIGTERM stop a long run
/// within about one EM iteration instead of after it ends. It runs on the calling thread.
pub type Interrupt<'a> = &'a dyn Fn() -> Result<()>;

/// Trains a unigram vocabulary on `corpus`.
pub fn train(corpus: &Corpus, cfg: &TrainConfig) -> Result<Trained> {
    train_interruptible(corpus, cfg, &|| Ok(()))
}

/// [`train`], calling `check` between steps (see [`Interrupt`]).
pub fn train_interruptible(
    corpus: &Corpus,
    cfg: &TrainConfig,
    check: Interrupt,
) -> Result<Trained> {
    cfg.validate()?;
    check()?;
    if corpus.words.is_empty() {
        return Err(Error::invalid(
            "the training corpus is empty (no non-blank sentences outside user-defined symbols)",
        ));
    }
    let t0 = Instant::now();
    let threads = cfg.num_threads;
    let total_units: usize = corpus.words.iter().map(|(w, _)| w.len() + 1).sum();
    if total_units >= u32::MAX as usize {
        return Err(Error::Limit(format!(
            "the distinct words of the corpus take {total_units} bytes; the trainer's limit is              2**32-1 (use max_sentences to sample)"
        )));
    }
    let mut units = Units::build(corpus, cfg.byte_level, cfg.character_coverage);
    check()?;
    let n_units = units.alphabet.len() - 2;
    let target = cfg.vocab_size - cfg.n_special();
    if n_units > target {
        return Err(Error::invalid(format!(
            "vocab_size={} is too small: the corpus needs {} {} (character_coverage={}) plus {} \
             special pieces, so vocab_size must be at least {}",
            cfg.vocab_size,
            n_units,
            if cfg.byte_level {
                "byte pieces"
            } else {
                "required characters"
            },
            cfg.character_coverage,
            cfg.n_special(),
            n_units + cfg.n_special()
        )));
    }
    let seeds = seed::seed_pieces_interruptible(
        &units,
        cfg.max_piece_length,
        cfg.seed_size.max(n_units),
        check,
    )?;
    check()?;
    if seeds.len() < target {
        return Err(Error::invalid(format!(
            "vocab_size={} is too large for this corpus: it yields at most {} candidate pieces, \
             so vocab_size must be at most {}",
            cfg.vocab_size,
            seeds.len(),
            seeds.len() + cfg.n_special()
        )));
    }
    let total: f64 = seeds.iter().map(|s| s.1).sum();
    let log_total = total.ln();
    let mut init_scores = Vec::with_capacity(seeds.len());
    let mut pieces = Vec::with_capacity(seeds.len());
    for (p, s) in seeds {
        init_scores.push(if s > 0.0 {
            s.ln() - log_total
        } else {
            -log_total - 10.0
        });
        pieces.push(p);
    }
    let (table, id_of) = PieceTable::new(pieces);
    let mut scores = vec![0.0; table.len()];
    for (old, &new) in id_of.iter().enumerate() {
        scores[new as usize] = init_scores[old];
    }
    let required: Vec<bool> = (0..table.len() as u32)
        .map(|i| table.piece(i).len() == 1)
        .collect();
    let lat = Lattices::build_interruptible(&units, &table, threads, check)?;
    check()?;
    let mut st = State {
        alive: vec![true; table.len()],
        table,
        lat,
        scores,
        required,
    };
    let occurrences: f64 = st.lat.word_count.iter().sum();
    if cfg.progress {
        eprintln!(
            "unigram: {} distinct words, {} units, {} seed pieces, {} lattice edges ({:.1}s)",
            units.words.len(),
            n_units,
            st.table.len(),
            st.lat.edges.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    let alphabet = std::mem::take(&mut units.alphabet);
    drop(units);
    let desired = ((cfg.vocab_size as f64) * 1.1) as usize;
    let desired = desired.saturating_sub(cfg.n_special()).max(target);
    let mut history = Vec::new();
    let mut round = 0;
    loop {
        for sub in 0..cfg.num_sub_iterations {
            check()?;
            let t = Instant::now();
            let (expected, ll) = st
                .lat
                .expected_counts(&st.scores, st.unk_score(), threads)?;
            let it = Iteration {
                phase: "em",
                round,
                sub_iteration: sub,
                pieces: st.n_alive(),
                objective: -ll / occurrences,
                tokens: expected.iter().sum(),
                seconds: 0.0,
            };
            bayes_m_step(&mut st, &expected, target);
            st.lat.retain(&st.alive);
            record(&mut history, it, t, cfg.progress);
        }
        if st.n_alive() <= desired {
            break;
        }
        check()?;
        let size = ((st.n_alive() as f64) * cfg.shrinking_factor) as usize;
        let keep = prune::prune(
            &st.table,
            &st.lat,
            &st.scores,
            st.unk_score(),
            &st.alive,
            &st.required,
            size.max(desired),
            threads,
        )?;
        let before = st.n_alive();
        for (i, k) in keep.iter().enumerate() {
            if !k {
                st.alive[i] = false;
                st.scores[i] = f64::NEG_INFINITY;
            }
        }
        if st.n_alive() == before {
            // Nothing left to prune (every piece is required or irreplaceable).
            break;
        }
        st.lat.retain(&st.alive);
        round += 1;
    }
    // Keep the required units and the best-scoring others.
    let mut others: Vec<(f64, u32)> = (0..st.table.len() as u32)
        .filter(|&i| st.alive[i as usize] && !st.required[i as usize])
        .map(|i| (st.scores[i as usize], i))
        .collect();
    others.sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    let n_required = st
        .required
        .iter()
        .zip(&st.alive)
        .filter(|(r, a)| **r && **a)
        .count();
    for &(_, i) in others.iter().skip(target - n_required) {
        st.alive[i as usize] = false;
        st.scores[i as usize] = f64::NEG_INFINITY;
    }
    st.lat.retain(&st.alive);
    // Fixed during the final phase so that it is plain EM (monotone in the likelihood).
    let unk_final = st.unk_score();
    for sub in 0..cfg.final_iterations {
        check()?;
        let t = Instant::now();
        let (expected, ll) = st.lat.expected_counts(&st.scores, unk_final, threads)?;
        let it = Iteration {
            phase: "final",
            round: round + 1,
            sub_iteration: sub,
            pieces: st.n_alive(),
            // The first iteration runs with the Bayesian-phase scores: no prior term yet.
            objective: -(ll + if sub > 0 { log_prior(&st) } else { 0.0 }) / occurrences,
            tokens: expected.iter().sum(),
            seconds: 0.0,
        };
        map_m_step(&mut st, &expected);
        record(&mut history, it, t, cfg.progress);
    }
    let vocab = to_vocab(&st, cfg, &id_to_bytes_fn(&st.table, &alphabet))?;
    if cfg.progress {
        eprintln!(
            "unigram: {} pieces in {:.1}s",
            vocab.pieces.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(Trained { vocab, history })
}

fn record(history: &mut Vec<Iteration>, mut it: Iteration, t: Instant, progress: bool) {
    it.seconds = t.elapsed().as_secs_f64();
    if progress {
        eprintln!(
            "unigram {} round {} iter {}: {} pieces, {:.4} nats/word, {:.0} tokens ({:.2}s)",
            it.phase, it.round, it.sub_iteration, it.pieces, it.objective, it.tokens, it.seconds
        );
    }
    history.push(it);
}

/// SentencePiece's Bayesian M-step; pieces expected fewer than 0.5 times die (while at least
/// `target` pieces remain), required units never.
fn bayes_m_step(st: &mut State, expected: &[f64], target: usize) {
    const THRESHOLD: f64 = 0.5;
    let mut weak: Vec<(f64, u32)> = (0..expected.len() as u32)
        .filter(|&i| {
            st.alive[i as usize] && !st.required[i as usize] && expected[i as usize] < THRESHOLD
        })
        .map(|i| (expected[i as usize], i))
        .collect();
    weak.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let can_drop = st.n_alive().saturating_sub(target);
    for &(_, i) in weak.iter().take(can_drop) {
        st.alive[i as usize] = false;
    }
    // Survivors below the threshold (kept only to reach the target) and never-seen required
    // units get a small floor so their scores stay finite and lowest.
    let floor = |i: usize| expected[i].max(if st.required[i] { 1e-3 } else { 1e-6 });
    let sum: f64 = (0..expected.len())
        .filter(|&i| st.alive[i])
        .map(floor)
        .sum();
    let dsum = em::digamma(sum);
    for i in 0..expected.len() {
        st.scores[i] = if st.alive[i] {
            em::digamma(floor(i)) - dsum
        } else {
            f64::NEG_INFINITY
        };
    }
}

/// Pseudo-counts of the final (MAP) M-step: half an occurrence for each required unit, so
/// that single characters absorbed by longer pieces keep a usable probability for unseen text
/// (and absent bytes of byte-level models get one), and a negligible one for other pieces so
/// that every score stays finite.
fn prior(required: bool) -> f64 {
    if required {
        0.5
    } else {
        1e-9
    }
}

/// `Σ a_i log θ_i`: the log prior density (up to a constant) the final EM maximises with the
/// likelihood.
fn log_prior(st: &State) -> f64 {
    (0..st.scores.len())
        .filter(|&i| st.alive[i])
        .map(|i| prior(st.required[i]) * st.scores[i])
        .sum()
}

/// MAP M-step on a fixed vocabulary: `θ_i ∝ c_i + a_i`. With fixed pseudo-counts this is EM for
/// the posterior, so the final phase never lowers likelihood + log prior.
fn map_m_step(st: &mut State, expected: &[f64]) {
    let sum: f64 = (0..expected.len())
        .filter(|&i| st.alive[i])
        .map(|i| expected[i] + prior(st.required[i]))
        .sum();
    let log_sum = sum.ln();
    for (i, &c) in expected.iter().enumerate() {
        if st.alive[i] {
            st.scores[i] = (c + prior(st.required[i])).ln() - log_sum;
        }
    }
}

fn id_to_bytes_fn<'a>(
    table: &'a PieceTable,
    alphabet: &'a [Vec<u8>],
) -> impl Fn(u32) -> Vec<u8> + 'a {
    move |id| {
        table
            .piece(id)
            .iter()
            .flat_map(|&c| alphabet[c as usize].iter().copied())
            .collect()
    }
}

fn to_vocab(st: &State, cfg: &TrainConfig, bytes_of: &dyn Fn(u32) -> Vec<u8>) -> Result<VocabSpec> {
    let special = |s: &str, kind| PieceSpec {
        piece: s.as_bytes().to_vec(),
        score: 0.0,
        kind,
    };
    let mut pieces: Vec<PieceSpec> = SPECIAL_PIECES.iter().map(|&(p, k)| special(p, k)).collect();
    for u in &cfg.user_defined {
        pieces.push(special(u, PieceKind::UserDefined));
    }
    if cfg.byte_fallback {
        for b in 0..=255u8 {
            pieces.push(special(&format!("<0x{b:02X}>"), PieceKind::Byte));
        }
    }
    let mut normal: Vec<(f64, Vec<u8>)> = (0..st.table.len() as u32)
        .filter(|&i| st.alive[i as usize])
        .map(|i| (st.scores[i as usize], bytes_of(i)))
        .collect();
    normal.sort_by(|x, y| y.0.total_cmp(&x.0).then_with(|| x.1.cmp(&y.1)));
    let taken: std::collections::HashSet<Vec<u8>> =
        pieces.iter().map(|p| p.piece.clone()).collect();
    for (s, p) in normal {
        if !taken.contains(&p) {
            pieces.push(PieceSpec {
                piece: p,
                score: s as f32,
                kind: PieceKind::Normal,
            });
        }
    }
    if pieces.len() != cfg.vocab_size {
        return Err(Error::invalid(format!(
            "vocab_size={} cannot be reached on this corpus (got {} pieces); try a smaller \
             vocab_size",
            cfg.vocab_size,
            pieces.len()
        )));
    }
    let spec = VocabSpec {
        pieces,
        byte_fallback: cfg.byte_fallback,
        byte_level: cfg.byte_level,
        unk_id: Some(0),
        bos_id: Some(1),
        eos_id: Some(2),
        pad_id: None,
        normalizer: training_normalizer_spec(),
        source: "trained".into(),
        unknown: UnknownRule::SentencePiece,
        split: Vec::new(),
    };
    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corpus::CorpusBuilder;

    fn corpus(lines: &[&str]) -> Corpus {
        let mut b = CorpusBuilder::new(&[], None, 0).unwrap();
        for _ in 0..20 {
            for l in lines {
                b.add(l);
            }
        }
        b.finish()
    }

    const LINES: &[&str] = &[
        "the cat sat on the mat",
        "the dog sat on the log",
        "a cat and a dog",
        "東京 と 大阪",
    ];

    #[test]
    fn trains_exact_size_deterministically() {
        let c = corpus(LINES);
        let mut cfg = TrainConfig::new(40);
        cfg.num_threads = Some(1);
        let a = train(&c, &cfg).unwrap();
        assert_eq!(a.vocab.pieces.len(), 40);
        assert_eq!(a.vocab.pieces[0].kind, PieceKind::Unknown);
        cfg.num_threads = Some(3);
        let b = train(&c, &cfg).unwrap();
        assert_eq!(a.vocab.to_bytes(), b.vocab.to_bytes());
        // Normal scores are log-probabilities summing to one.
        let total: f64 = a
            .vocab
            .pieces
            .iter()
            .filter(|p| p.kind == PieceKind::Normal)
            .map(|p| (p.score as f64).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        let pieces: Vec<&[u8]> = a.vocab.pieces.iter().map(|p| &p.piece[..]).collect();
        assert!(pieces.contains(&"▁the".as_bytes()));
    }

    #[test]
    fn byte_level_has_all_bytes() {
        let c = corpus(LINES);
        let mut cfg = TrainConfig::new(300);
        cfg.byte_level = true;
        let t = train(&c, &cfg).unwrap();
        assert!(t.vocab.byte_level);
        for b in 0..=255u8 {
            assert!(t.vocab.pieces.iter().any(|p| p.piece == [b]), "byte {b}");
        }
    }

    #[test]
    fn user_defined_clashing_with_special_pieces_is_refused_up_front() {
        for (ud, byte_fallback, ok) in [
            ("<unk>", false, false),
            ("<s>", false, false),
            ("</s>", false, false),
            ("<0x41>", true, false),
            ("<0xff>", true, true), // not a byte piece: those are uppercase
            ("<0x41>", false, true),
            ("a\0b", false, false),
        ] {
            let mut cfg = TrainConfig::new(400);
            cfg.byte_fallback = byte_fallback;
            cfg.user_defined = vec!["<sep>".into(), ud.into()];
            match cfg.validate() {
                Ok(()) => assert!(ok, "{ud:?} accepted"),
                Err(e) => {
                    assert!(!ok, "{ud:?}: {e}");
                    assert!(e.to_string().contains("user_defined[1]"), "{e}");
                }
            }
        }
    }

    #[test]
    fn nul_is_never_in_a_piece() {
        // SentencePiece cannot load a piece containing NUL; NUL is unknown text instead.
        let c = corpus(&["a\0b cd", "\0\0 x\0"]);
        let t = train(&c, &TrainConfig::new(10)).unwrap();
        assert!(t.vocab.pieces.iter().all(|p| !p.piece.contains(&0)));
        // Coverage is computed without it, as there: the other characters are all required.
        let chars: Vec<&[u8]> = t.vocab.pieces.iter().map(|p| &p.piece[..]).collect();
        for ch in ["a", "b", "c", "d", "x"] {
            assert!(chars.contains(&ch.as_bytes()), "{ch}");
        }
    }

    #[test]
    fn the_interrupt_hook_aborts_training() {
        let c = corpus(LINES);
        let cfg = TrainConfig::new(40);
        let calls = std::cell::Cell::new(0usize);
        // Count the checks of a full run, then fail at each one in turn: every abort must
        // return the hook's error as is, whatever the phase.
        let count = || {
            calls.set(calls.get() + 1);
            Ok(())
        };
        train_interruptible(&c, &cfg, &count).unwrap();
        let n = calls.get();
        assert!(n > 2 * cfg.num_sub_iterations, "{n} checks");
        for k in 1..=n {
            calls.set(0);
            let fail_at_k = || {
                calls.set(calls.get() + 1);
                if calls.get() == k {
                    Err(Error::Io("stop".into()))
                } else {
                    Ok(())
                }
            };
            let e = train_interruptible(&c, &cfg, &fail_at_k).unwrap_err();
            assert_eq!(e, Error::Io("stop".into()), "check {k}");
            assert_eq!(calls.get(), k, "training went on after check {k} failed");
        }
    }

    #[test]
    fn refuses_impossible_sizes() {
        let c = corpus(LINES);
        for (v, msg) in [
            (3, "too small"),
            (10, "required characters"),
            (5000, "too large"),
        ] {
            let e = train(&c, &TrainConfig::new(v)).unwrap_err().to_string();
            assert!(e.contains(msg), "{v}: {e}");
        }
        let e = train(&Corpus::default(), &TrainConfig::new(50)).unwrap_err();
        assert!(e.to_string().contains("empty"));
    }
}
