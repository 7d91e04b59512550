//! Sentence collection and SentencePiece-style pre-processing.
//!
//! Sentences are normalised (whitespace pipeline: `remove_extra_whitespaces`,
//! `add_dummy_prefix`, spaces escaped to `▁`), cut at user-defined symbols (which never take
//! part in EM: they are matched whole at encoding time), and split into whitespace-delimited
//! words, each starting at its `▁`. Only distinct words with their counts are kept, which is
//! what makes training memory-light and the E-step cheap on natural text.

use std::collections::HashMap;
use std::io::BufRead;

use crate::error::{Error, Result};
use crate::lattice::normalizer::{Normalizer, SPACE_MARK};
use crate::lattice::vocab::NormalizerSpec;
use crate::rng::Stream;

/// The text pipeline a trained model records in its `NormalizerSpec`: no character rules
/// (no charsmap), SentencePiece's default whitespace handling.
pub fn training_normalizer_spec() -> NormalizerSpec {
    NormalizerSpec {
        name: "identity".into(),
        precompiled_charsmap: Vec::new(),
        add_dummy_prefix: true,
        remove_extra_whitespaces: true,
        escape_whitespaces: true,
        treat_whitespace_as_suffix: false,
    }
}

/// Bytes of text processed between two calls of an interrupt check (a few tens of
/// milliseconds of work: often enough for Ctrl-C to feel immediate, rarely enough that taking
/// the GIL for the check costs nothing measurable).
const CHECK_BYTES: usize = 4 << 20;

/// Accumulates sentences into distinct words with counts.
pub struct CorpusBuilder {
    normalizer: Normalizer,
    user_defined: Vec<String>,
    words: HashMap<String, u64>,
    user_counts: Vec<u64>,
    n_sentences: u64,
    /// Reservoir of raw sentences when `max_sentences` is set (then words are built at the end).
    reservoir: Option<Reservoir>,
}

struct Reservoir {
    cap: usize,
    seed: u64,
    seen: u64,
    kept: Vec<String>,
}

/// What training consumes: distinct words (normalised, `▁`-prefixed) with their counts.
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    pub words: Vec<(String, u64)>,
    /// Occurrences of each user-defined symbol (same order as given).
    pub user_counts: Vec<u64>,
    pub n_sentences: u64,
}

impl CorpusBuilder {
    /// `max_sentences`: keep a uniform sample of at most that many sentences (reservoir
    /// sampling driven by `seed`), as SentencePiece's `input_sentence_size` does.
    pub fn new(user_defined: &[String], max_sentences: Option<usize>, seed: u64) -> Result<Self> {
        for (i, u) in user_defined.iter().enumerate() {
            if u.is_empty() {
                return Err(Error::invalid(format!(
                    "user_defined[{i}] is the empty string"
                )));
            }
            if user_defined[..i].contains(u) {
                return Err(Error::invalid(format!(
                    "user_defined symbol {u:?} is repeated"
                )));
            }
        }
        if max_sentences == Some(0) {
            return Err(Error::invalid("max_sentences must be at least 1 (or None)"));
        }
        // User symbols are matched on normalised text, so escape their spaces the same way.
        let user_defined = user_defined
            .iter()
            .map(|u| u.replace(' ', &SPACE_MARK.to_string()))
            .collect::<Vec<_>>();
        Ok(CorpusBuilder {
            normalizer: Normalizer::new(&training_normalizer_spec())?,
            user_counts: vec![0; user_defined.len()],
            user_defined,
            words: HashMap::new(),
            n_sentences: 0,
            reservoir: max_sentences.map(|cap| Reservoir {
                cap,
                seed,
                seen: 0,
                kept: Vec::new(),
            }),
        })
    }

    /// Adds one sentence (a line without its newline). Empty lines are ignored.
    pub fn add(&mut self, sentence: &str) {
        let sentence = sentence.trim_end_matches(['\n', '\r']);
        if sentence.is_empty() {
            return;
        }
        if let Some(r) = &mut self.reservoir {
            // Algorithm R with a per-sentence random stream: the sample depends only on the
            // seed and the order of the input.
            let i = r.seen;
            r.seen += 1;
            if r.kept.len() < r.cap {
                r.kept.push(sentence.to_string());
            } else {
                let j = Stream::new(r.seed, i).below(i + 1);
                if (j as usize) < r.cap {
                    r.kept[j as usize] = sentence.to_string();
                }
            }
            return;
        }
        self.add_now(sentence);
    }

    fn add_now(&mut self, sentence: &str) {
        self.n_sentences += 1;
        let norm = self.normalizer.normalize(sentence);
        let mut rest = norm.as_str();
        // Cut at user-defined symbols (longest match at the earliest position).
        while !rest.is_empty() {
            let mut hit: Option<(usize, usize)> = None;
            if !self.user_defined.is_empty() {
                'scan: for (pos, _) in rest.char_indices() {
                    let mut best: Option<usize> = None;
                    for (k, u) in self.user_defined.iter().enumerate() {
                        if rest[pos..].starts_with(u.as_str())
                            && best.is_none_or(|b| self.user_defined[b].len() < u.len())
                        {
                            best = Some(k);
                        }
                    }
                    if let Some(k) = best {
                        hit = Some((pos, k));
                        break 'scan;
                    }
                }
            }
            let (chunk, next) = match hit {
                Some((pos, k)) => {
                    self.user_counts[k] += 1;
                    (&rest[..pos], &rest[pos + self.user_defined[k].len()..])
                }
                None => (rest, ""),
            };
            self.add_words(chunk);
            rest = next;
        }
    }

    fn add_words(&mut self, chunk: &str) {
        let mut start = 0;
        for (pos, c) in chunk.char_indices() {
            if c == SPACE_MARK && pos > start {
                self.bump(&chunk[start..pos]);
                start = pos;
            }
        }
        if start < chunk.len() {
            self.bump(&chunk[start..]);
        }
    }

    fn bump(&mut self, w: &str) {
        if let Some(c) = self.words.get_mut(w) {
            *c += 1;
        } else {
            self.words.insert(w.to_string(), 1);
        }
    }

    /// Adds every line of a UTF-8 text file; a line that is not UTF-8 is an error naming the
    /// file and the line.
    pub fn add_file(&mut self, path: &str) -> Result<()> {
        self.add_file_interruptible(path, &|| Ok(()))
    }

    /// [`add_file`](Self::add_file), calling `check` every [`CHECK_BYTES`] bytes read so that
    /// reading a large file can be interrupted (see [`super::Interrupt`]).
    pub fn add_file_interruptible(&mut self, path: &str, check: super::Interrupt) -> Result<()> {
        check()?;
        let f = std::fs::File::open(path).map_err(|e| Error::Io(format!("{path}: {e}")))?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        let mut unchecked = 0usize;
        loop {
            buf.clear();
            let n = r
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::Io(format!("{path}: {e}")))?;
            if n == 0 {
                return Ok(());
            }
            unchecked += n;
            if unchecked >= CHECK_BYTES {
                unchecked = 0;
                check()?;
            }
            line_no += 1;
            let line = std::str::from_utf8(&buf).map_err(|e| {
                Error::invalid(format!(
                    "{path}: line {line_no} is not valid UTF-8 (byte {} of the line)",
                    e.valid_up_to() + 1
                ))
            })?;
            self.add(line);
        }
    }

    /// The distinct words, sorted (so the result never depends on hashing order).
    pub fn finish(self) -> Corpus {
        // Only the check can fail, and this one never does.
        self.finish_interruptible(&|| Ok(())).unwrap_or_default()
    }

    /// [`finish`](Self::finish), calling `check` while it processes the sampled sentences
    /// (`max_sentences`), which can take as long as reading them did.
    pub fn finish_interruptible(mut self, check: super::Interrupt) -> Result<Corpus> {
        if let Some(r) = self.reservoir.take() {
            let mut unchecked = 0usize;
            for s in &r.kept {
                unchecked += s.len();
                if unchecked >= CHECK_BYTES {
                    unchecked = 0;
                    check()?;
                }
                self.add_now(s);
            }
        }
        let mut words: Vec<(String, u64)> = self.words.into_iter().collect();
        words.sort_unstable();
        Ok(Corpus {
            words,
            user_counts: self.user_counts,
            n_sentences: self.n_sentences,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_start_at_the_space_mark() {
        let mut b = CorpusBuilder::new(&[], None, 0).unwrap();
        b.add("  hello   world \n");
        b.add("hello");
        let c = b.finish();
        assert_eq!(
            c.words,
            vec![("▁hello".to_string(), 2), ("▁world".to_string(), 1)]
        );
        assert_eq!(c.n_sentences, 2);
    }

    #[test]
    fn user_symbols_are_cut_out() {
        let mut b = CorpusBuilder::new(&["<sep>".into(), "<s".into()], None, 0).unwrap();
        b.add("a<sep>b <sep>");
        let c = b.finish();
        assert_eq!(c.user_counts, vec![2, 0]);
        let w: Vec<&str> = c.words.iter().map(|w| w.0.as_str()).collect();
        assert_eq!(w, vec!["b", "▁", "▁a"]);
    }

    #[test]
    fn reading_is_interruptible() {
        // A file of several check intervals: the hook runs during the read, and its error
        // stops the read at once.
        let path = std::env::temp_dir().join(format!(
            "probcraft_corpus_interrupt_{}.txt",
            std::process::id()
        ));
        let line = "some words of a sentence\n";
        let n_lines = 3 * CHECK_BYTES / line.len();
        std::fs::write(&path, line.repeat(n_lines)).unwrap();
        let path_s = path.to_str().unwrap();
        let calls = std::cell::Cell::new(0usize);
        let count = || {
            calls.set(calls.get() + 1);
            Ok(())
        };
        let mut b = CorpusBuilder::new(&[], None, 0).unwrap();
        b.add_file_interruptible(path_s, &count).unwrap();
        assert!(calls.get() >= 3, "{} checks", calls.get());
        assert_eq!(b.finish().n_sentences, n_lines as u64);
        let stop = || Err(Error::Io("stop".into()));
        let mut b = CorpusBuilder::new(&[], None, 0).unwrap();
        let e = b.add_file_interruptible(path_s, &stop).unwrap_err();
        assert_eq!(e, Error::Io("stop".into()));
        std::fs::remove_file(&path).unwrap();
        // Sampled sentences are processed in `finish`, which checks too.
        let mut b = CorpusBuilder::new(&[], Some(1 << 20), 0).unwrap();
        for _ in 0..n_lines {
            b.add(line);
        }
        let e = b.finish_interruptible(&stop).unwrap_err();
        assert_eq!(e, Error::Io("stop".into()));
    }

    #[test]
    fn reservoir_keeps_at_most_cap_sentences_deterministically() {
        let run = || {
            let mut b = CorpusBuilder::new(&[], Some(5), 9).unwrap();
            for i in 0..100 {
                b.add(&format!("s{i}"));
            }
            b.finish()
        };
        let c = run();
        assert_eq!(c.n_sentences, 5);
        assert_eq!(c.words, run().words);
    }
}
