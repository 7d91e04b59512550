//! The segmentation lattice engine: unigram vocabularies, their loaders, text normalisation,
//! and exact decoding / sampling / counting over the lattice of a text's segmentations.

pub mod formats;
pub mod normalizer;
pub mod spm;
pub mod vocab;
