//! The segmentation lattice engine: unigram vocabularies, their loaders, text normalisation,
//! and exact decoding / sampling / counting over the lattice of a text's segmentations.
//!
//! - [`model`]: a [`vocab::VocabSpec`] compiled into a double-array [`trie`] with
//!   SentencePiece's scoring and unknown-character rules;
//! - [`viterbi`]: SentencePiece-identical Viterbi, single pass, O(L) memory;
//! - [`sample`]: perfect (reservoir) sampling, FFBS, and the historic biased rule;
//! - [`nbest`], [`swor`], [`marginals`]: exact k-best, sampling without replacement,
//!   partition functions, entropy, marginals, token healing, the EM E-step;
//! - [`batch`]: single and batched encoding with per-item random streams;
//! - [`codeunits`]: UTF-8 from a Python `str`'s code units (batches read off the GIL).

pub mod added;
pub mod batch;
pub mod codeunits;
pub mod formats;
pub mod graph;
pub mod marginals;
pub mod model;
pub mod nbest;
pub mod normalizer;
pub mod sample;
pub mod spm;
pub mod swor;
pub mod trie;
pub mod viterbi;
pub mod vocab;
pub mod wordcache;
pub mod wordsample;
