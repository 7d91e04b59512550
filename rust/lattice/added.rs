//! HF tokenizers' added tokens: cut out of the raw text before anything else runs.
//!
//! HF matches its unnormalised added tokens (every special token by default) in the raw text,
//! leftmost and longest first, gives each match its id, and runs the normaliser, the
//! pre-tokenizer and the model on each piece of text between matches separately (so each gets
//! its own `▁` prefix and its own whitespace stripping). `lstrip` / `rstrip` make a match
//! absorb the whitespace on that side. SentencePiece has no such step: its control pieces are
//! never matched in text and its user-defined ones are lattice pieces.

use std::ops::Range;

use super::model::utf8_len;
use super::vocab::VocabSpec;

/// A part of the text: plain text to encode, or an added token matched at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Text(Range<usize>),
    Token { id: u32, at: Range<usize> },
}

#[derive(Debug)]
pub struct Splitter {
    /// `(content, id, lstrip, rstrip)`, longest content first.
    tokens: Vec<(Vec<u8>, u32, bool, bool)>,
    /// Whether some token starts with this byte.
    first: [bool; 256],
    /// The one first byte of every token, when they share it and it is ASCII (`<` for
    /// nearly every tokenizer): the scan is then a `memchr`.
    only: Option<char>,
}

impl Splitter {
    /// The splitter of a vocabulary's `split` tokens; `None` when it has none.
    pub fn new(spec: &VocabSpec) -> Option<Splitter> {
        let mut tokens: Vec<_> = spec
            .split
            .iter()
            .map(|t| {
                (
                    spec.pieces[t.id as usize].piece.clone(),
                    t.id,
                    t.lstrip,
                    t.rstrip,
                )
            })
            .filter(|t| !t.0.is_empty())
            .collect();
        if tokens.is_empty() {
            return None;
        }
        // Longest first, then by id: the first content that matches at a position is the
        // longest one there, whatever order the file listed them in.
        tokens.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let mut first = [false; 256];
        for t in &tokens {
            first[t.0[0] as usize] = true;
        }
        let only = match first.iter().filter(|&&f| f).count() {
            1 => Some(tokens[0].0[0]).filter(u8::is_ascii).map(char::from),
            _ => None,
        };
        Some(Splitter {
            tokens,
            first,
            only,
        })
    }

    /// Where a token could start at or after `i`: a byte some token starts with. Tokens are
    /// UTF-8 and start with a lead byte, so every such position is a character start.
    fn next_candidate(&self, b: &[u8], text: &str, i: usize) -> Option<usize> {
        match self.only {
            Some(c) => text[i..].find(c).map(|k| i + k),
            None => b[i..]
                .iter()
                .position(|&c| self.first[c as usize])
                .map(|k| i + k),
        }
    }

    /// Cuts `text` at the leftmost-longest token matches. Empty text segments (between
    /// adjacent tokens, or all whitespace absorbed) are left out.
    pub fn split(&self, text: &str) -> Vec<Segment> {
        let mut out = Vec::new();
        let b = text.as_bytes();
        let (mut i, mut start) = (0usize, 0usize);
        while let Some(c) = self.next_candidate(b, text, i) {
            i = c;
            if let Some((piece, id, lstrip, rstrip)) =
                self.tokens.iter().find(|t| b[i..].starts_with(&t.0))
            {
                let end_text = if *lstrip {
                    start + text[start..i].trim_end().len()
                } else {
                    i
                };
                if end_text > start {
                    out.push(Segment::Text(start..end_text));
                }
                let end = i + piece.len();
                out.push(Segment::Token {
                    id: *id,
                    at: i..end,
                });
                i = if *rstrip {
                    b.len() - text[end..].trim_start().len()
                } else {
                    end
                };
                start = i;
                continue;
            }
            i += utf8_len(b[i]);
        }
        if start < b.len() {
            out.push(Segment::Text(start..b.len()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::vocab::SplitToken;

    fn splitter(tokens: &[(&str, bool, bool)]) -> Splitter {
        let mut v = VocabSpec::from_pieces(
            tokens
                .iter()
                .map(|t| (t.0.as_bytes().to_vec(), 0.0))
                .collect(),
        );
        v.split = (0..tokens.len())
            .map(|i| SplitToken {
                id: i as u32,
                lstrip: tokens[i].1,
                rstrip: tokens[i].2,
            })
            .collect();
        Splitter::new(&v).unwrap()
    }

    fn cut(s: &Splitter, text: &str) -> Vec<String> {
        s.split(text)
            .iter()
            .map(|g| match g {
                Segment::Text(r) => format!("{:?}", &text[r.clone()]),
                Segment::Token { id, at } => format!("#{id}@{}..{}", at.start, at.end),
            })
            .collect()
    }

    /// Leftmost match first, the longest there; text between matches kept, empty parts not.
    #[test]
    fn leftmost_longest() {
        let s = splitter(&[
            ("<s>", false, false),
            ("<s>x", false, false),
            ("é", false, false),
        ]);
        assert_eq!(cut(&s, "a<s>b"), ["\"a\"", "#0@1..4", "\"b\""]);
        assert_eq!(cut(&s, "<s>xé<s>"), ["#1@0..4", "#2@4..6", "#0@6..9"]);
        assert_eq!(cut(&s, "plain"), ["\"plain\""]);
        assert_eq!(cut(&s, ""), Vec::<String>::new());
    }

    /// `lstrip` / `rstrip` absorb the (Unicode) whitespace on their side only.
    #[test]
    fn strip_flags() {
        let s = splitter(&[("<m>", true, false), ("<r>", false, true)]);
        assert_eq!(cut(&s, "a \u{3000}<m> b"), ["\"a\"", "#0@5..8", "\" b\""]);
        assert_eq!(cut(&s, "a <r>\t b"), ["\"a \"", "#1@2..5", "\"b\""]);
        assert_eq!(cut(&s, "  <m>"), ["#0@2..5"]);
    }
}
