//! SentencePiece's text pipeline: character normalisation then whitespace handling
//! (`remove_extra_whitespaces`, `add_dummy_prefix`, `escape_whitespaces` → `▁`).
//!
//! Only the whitespace pipeline is implemented so far; applying `precompiled_charsmap`
//! (the compiled NFKC rules) is the next step, tracked in the lattice issue.

use super::vocab::NormalizerSpec;
use crate::error::Result;

/// The whitespace marker SentencePiece substitutes for spaces (U+2581).
pub const SPACE_MARK: char = '\u{2581}';

#[derive(Clone, Debug)]
pub struct Normalizer {
    spec: NormalizerSpec,
}

impl Normalizer {
    pub fn new(spec: &NormalizerSpec) -> Result<Self> {
        Ok(Normalizer { spec: spec.clone() })
    }

    pub fn spec(&self) -> &NormalizerSpec {
        &self.spec
    }

    /// True when `normalize` returns its input unchanged.
    pub fn is_identity(&self) -> bool {
        let s = &self.spec;
        s.precompiled_charsmap.is_empty()
            && !s.add_dummy_prefix
            && !s.remove_extra_whitespaces
            && !s.escape_whitespaces
    }

    pub fn normalize(&self, text: &str) -> String {
        if self.is_identity() {
            return text.to_string();
        }
        let s = &self.spec;
        let space = if s.escape_whitespaces {
            SPACE_MARK
        } else {
            ' '
        };
        let mut out = String::with_capacity(text.len() + 3);
        let mut input = text;
        if s.remove_extra_whitespaces {
            input = input.trim_start_matches(' ');
        }
        if input.is_empty() {
            return out;
        }
        if s.add_dummy_prefix && !s.treat_whitespace_as_suffix {
            out.push(space);
        }
        let mut prev_space = s.add_dummy_prefix && !s.treat_whitespace_as_suffix;
        for c in input.chars() {
            if c == ' ' {
                if s.remove_extra_whitespaces && prev_space {
                    continue;
                }
                out.push(space);
                prev_space = true;
            } else {
                out.push(c);
                prev_space = false;
            }
        }
        if s.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.pop();
            }
        }
        if s.add_dummy_prefix && s.treat_whitespace_as_suffix && !out.is_empty() {
            out.push(space);
        }
        out
    }
}
