//! The segmentation lattice engine: unigram vocabularies, their loaders, text normalisation,
//! and exact decoding / sampling / counting over the lattice of a text's segmentations.

pub mod normalizer;
pub mod vocab;
