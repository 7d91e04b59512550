//! The vocabulary every loader produces and every lattice model is built from.
//!
//! Loaders (`SentencePiece` protobuf, HF `tokenizer.json`, BytePiece JSON, jieba `dict.txt`,
//! plain `(piece, log_prob)` lists, our own format) all return a [`VocabSpec`]; the lattice
//! model compiles it into a trie. Keeping this one plain data type between them means a loader
//! never needs to know about the lattice and vice versa, and the spec round-trips through our
//! own deterministic byte format ([`VocabSpec::to_bytes`]) for pickling.

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// SentencePiece's `ModelProto.SentencePiece.Type` (the numeric values match the protobuf).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PieceKind {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl PieceKind {
    pub fn from_u8(v: u8) -> Option<PieceKind> {
        Some(match v {
            1 => PieceKind::Normal,
            2 => PieceKind::Unknown,
            3 => PieceKind::Control,
            4 => PieceKind::UserDefined,
            5 => PieceKind::Unused,
            6 => PieceKind::Byte,
            _ => return None,
        })
    }
}

/// One vocabulary entry; its id is its index in [`VocabSpec::pieces`].
#[derive(Clone, Debug, PartialEq)]
pub struct PieceSpec {
    /// The piece's bytes. UTF-8 text for every format except byte-level ones (BytePiece), whose
    /// pieces may be arbitrary byte strings.
    pub piece: Vec<u8>,
    /// Log-probability (unigram score).
    pub score: f32,
    pub kind: PieceKind,
}

/// SentencePiece's text pipeline settings (`NormalizerSpec`).
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizerSpec {
    /// Rule name, e.g. `nmt_nfkc`, `nfkc`, `identity` (informational).
    pub name: String,
    /// SentencePiece's compiled normalisation rules (double-array trie + replacement strings);
    /// empty = identity.
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
    pub treat_whitespace_as_suffix: bool,
}

impl NormalizerSpec {
    /// No normalisation and no whitespace handling at all (jieba, BytePiece, plain lists).
    pub fn identity() -> Self {
        NormalizerSpec {
            name: "identity".into(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: false,
            remove_extra_whitespaces: false,
            escape_whitespaces: false,
            treat_whitespace_as_suffix: false,
        }
    }
}

/// How a lattice covers a position where the vocabulary has no suitable piece.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum UnknownRule {
    /// SentencePiece's rule: wherever no single-character piece starts at a position, a
    /// one-character edge for `unk_id` with score `min_score − 10` (with `byte_fallback`, byte
    /// pieces instead).
    #[default]
    SentencePiece,
    /// jieba's `get_DAG` rule: only where no piece at all starts at a position, a
    /// one-character edge with this score (jieba's `log(1) − log(total)`). The edge is not a
    /// vocabulary piece (no id): the character is emitted as a word of its own.
    JiebaChar { score: f32 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct VocabSpec {
    pub pieces: Vec<PieceSpec>,
    /// Unknown characters become `<0xXX>` byte pieces (SentencePiece `byte_fallback`).
    pub byte_fallback: bool,
    /// The lattice runs over bytes rather than characters (BytePiece): positions need not be
    /// UTF-8 boundaries and every byte must be a piece.
    pub byte_level: bool,
    pub unk_id: Option<u32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub normalizer: NormalizerSpec,
    /// Where it came from: "sentencepiece", "hf", "bytepiece", "jieba", "pieces", "trained".
    pub source: String,
    /// How positions the vocabulary cannot cover are handled.
    pub unknown: UnknownRule,
    /// Pieces cut out of the raw text before anything else runs, as HF tokenizers does with
    /// its (unnormalised) added tokens: each match is that piece's id, and the text between
    /// matches is encoded on its own. Empty for every other format.
    pub split: Vec<SplitToken>,
}

/// An added token matched in the raw text (leftmost, longest first); `lstrip` / `rstrip`
/// absorb the whitespace on that side of a match (HF's flags of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitToken {
    pub id: u32,
    pub lstrip: bool,
    pub rstrip: bool,
}

const MAGIC: &[u8; 4] = b"PCvb";
/// Version 2 added [`VocabSpec::split`]; version 1 files (no such tokens) still load.
const VERSION: u16 = 2;

fn put_opt(w: &mut Writer, v: Option<u32>) {
    w.u64(v.map_or(u64::MAX, u64::from));
}

fn get_opt(r: &mut Reader<'_>) -> Result<Option<u32>> {
    let v = r.u64()?;
    if v == u64::MAX {
        return Ok(None);
    }
    u32::try_from(v)
        .map(Some)
        .map_err(|_| r.err(format!("special id {v} out of range")))
}

impl VocabSpec {
    /// A vocabulary of normal pieces with no normalisation, e.g. from `Unigram.from_pieces`.
    pub fn from_pieces(pieces: Vec<(Vec<u8>, f32)>) -> Self {
        VocabSpec {
            pieces: pieces
                .into_iter()
                .map(|(piece, score)| PieceSpec {
                    piece,
                    score,
                    kind: PieceKind::Normal,
                })
                .collect(),
            byte_fallback: false,
            byte_level: false,
            unk_id: None,
            bos_id: None,
            eos_id: None,
            pad_id: None,
            normalizer: NormalizerSpec::identity(),
            source: "pieces".into(),
            unknown: UnknownRule::SentencePiece,
            split: Vec::new(),
        }
    }

    /// Deterministic bytes (our own model format and the pickle state).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, VERSION);
        w.str(&self.source);
        w.u8(self.byte_fallback as u8);
        w.u8(self.byte_level as u8);
        for id in [self.unk_id, self.bos_id, self.eos_id, self.pad_id] {
            put_opt(&mut w, id);
        }
        let n = &self.normalizer;
        w.str(&n.name);
        w.bytes(&n.precompiled_charsmap);
        for flag in [
            n.add_dummy_prefix,
            n.remove_extra_whitespaces,
            n.escape_whitespaces,
            n.treat_whitespace_as_suffix,
        ] {
            w.u8(flag as u8);
        }
        w.u64(self.pieces.len() as u64);
        for p in &self.pieces {
            w.bytes(&p.piece);
            w.f32(p.score);
            w.u8(p.kind as u8);
        }
        match self.unknown {
            UnknownRule::SentencePiece => {
                w.u8(0);
                w.f32(0.0);
            }
            UnknownRule::JiebaChar { score } => {
                w.u8(1);
                w.f32(score);
            }
        }
        w.u64(self.split.len() as u64);
        for t in &self.split {
            w.u64(u64::from(t.id));
            w.u8(t.lstrip as u8 | (t.rstrip as u8) << 1);
        }
        w.finish()
    }

    /// Parses [`VocabSpec::to_bytes`] output; every field is validated (see [`Self::validate`]).
    pub fn from_bytes(data: &[u8]) -> Result<Self> {
        let (mut r, version) = Reader::new(data, MAGIC, "probcraft vocabulary")?;
        if version != VERSION && version != 1 {
            return Err(r.err(format!("unsupported format version {version}")));
        }
        let source = r.str()?.to_string();
        let byte_fallback = r.u8()? != 0;
        let byte_level = r.u8()? != 0;
        let unk_id = get_opt(&mut r)?;
        let bos_id = get_opt(&mut r)?;
        let eos_id = get_opt(&mut r)?;
        let pad_id = get_opt(&mut r)?;
        let name = r.str()?.to_string();
        let precompiled_charsmap = r.bytes()?.to_vec();
        let mut flags = [false; 4];
        for f in &mut flags {
            *f = r.u8()? != 0;
        }
        // Each piece takes at least 8 (length) + 4 (score) + 1 (kind) bytes.
        let n = r.count(13)?;
        let mut pieces = Vec::with_capacity(n);
        for _ in 0..n {
            let piece = r.bytes()?.to_vec();
            let score = r.f32()?;
            let at = r.position();
            let kind = PieceKind::from_u8(r.u8()?)
                .ok_or_else(|| Error::format("probcraft vocabulary", Some(at), "bad piece type"))?;
            pieces.push(PieceSpec { piece, score, kind });
        }
        let at = r.position();
        let unknown = match (r.u8()?, r.f32()?) {
            (0, _) => UnknownRule::SentencePiece,
            (1, score) => UnknownRule::JiebaChar { score },
            (t, _) => {
                return Err(Error::format(
                    "probcraft vocabulary",
                    Some(at),
                    format!("unknown rule tag {t}"),
                ))
            }
        };
        let mut split = Vec::new();
        if version >= 2 {
            // Each entry takes 8 (id) + 1 (flags) bytes.
            for _ in 0..r.count(9)? {
                let at = r.position();
                let id = u32::try_from(r.u64()?).map_err(|_| {
                    Error::format(
                        "probcraft vocabulary",
                        Some(at),
                        "split token id out of range",
                    )
                })?;
                let f = r.u8()?;
                split.push(SplitToken {
                    id,
                    lstrip: f & 1 != 0,
                    rstrip: f & 2 != 0,
                });
            }
        }
        r.finish()?;
        let spec = VocabSpec {
            pieces,
            byte_fallback,
            byte_level,
            unk_id,
            bos_id,
            eos_id,
            pad_id,
            normalizer: NormalizerSpec {
                name,
                precompiled_charsmap,
                add_dummy_prefix: flags[0],
                remove_extra_whitespaces: flags[1],
                escape_whitespaces: flags[2],
                treat_whitespace_as_suffix: flags[3],
            },
            source,
            unknown,
            split,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what every loader must guarantee: a non-empty vocabulary below 2^31 pieces,
    /// finite scores, non-empty and unique pieces, special ids in range, UTF-8 pieces unless
    /// byte-level.
    pub fn validate(&self) -> Result<()> {
        if self.pieces.is_empty() {
            return Err(Error::invalid("the vocabulary is empty"));
        }
        if self.pieces.len() > i32::MAX as usize {
            return Err(Error::Limit(format!(
                "vocabulary of {} pieces exceeds the limit of 2**31-1",
                self.pieces.len()
            )));
        }
        let mut seen = std::collections::HashMap::with_capacity(self.pieces.len());
        for (i, p) in self.pieces.iter().enumerate() {
            if !p.score.is_finite() {
                return Err(Error::invalid(format!(
                    "piece {i} ({:?}) has a non-finite score {}",
                    String::from_utf8_lossy(&p.piece),
                    p.score
                )));
            }
            if p.piece.is_empty() {
                return Err(Error::invalid(format!("piece {i} is the empty string")));
            }
            if !self.byte_level && std::str::from_utf8(&p.piece).is_err() {
                return Err(Error::invalid(format!("piece {i} is not valid UTF-8")));
            }
            if let Some(j) = seen.insert(p.piece.as_slice(), i) {
                return Err(Error::invalid(format!(
                    "duplicate piece {:?} (ids {j} and {i})",
                    String::from_utf8_lossy(&p.piece)
                )));
            }
        }
        if let UnknownRule::JiebaChar { score } = self.unknown {
            if !score.is_finite() {
                return Err(Error::invalid(format!(
                    "the unknown-character score {score} is not finite"
                )));
            }
        }
        for (name, id) in [
            ("unk_id", self.unk_id),
            ("bos_id", self.bos_id),
            ("eos_id", self.eos_id),
            ("pad_id", self.pad_id),
        ] {
            if let Some(id) = id {
                if id as usize >= self.pieces.len() {
                    return Err(Error::invalid(format!(
                        "{name}={id} is out of range for a vocabulary of {} pieces",
                        self.pieces.len()
                    )));
                }
            }
        }
        if let Some(t) = self
            .split
            .iter()
            .find(|t| t.id as usize >= self.pieces.len())
        {
            return Err(Error::invalid(format!(
                "added token id {} is out of range for a vocabulary of {} pieces",
                t.id,
                self.pieces.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Version 1 files (written before added tokens were kept) still load, with none; the
    /// current version keeps them.
    #[test]
    fn version_1_files_load_and_split_tokens_round_trip() {
        let mut v = VocabSpec::from_pieces(vec![(b"a".to_vec(), -1.0), (b"<s>".to_vec(), 0.0)]);
        let mut old = v.to_bytes();
        // Version 1 = this layout without the trailing split-token count.
        old.truncate(old.len() - 8);
        old[4..6].copy_from_slice(&1u16.to_le_bytes());
        let back = VocabSpec::from_bytes(&old).unwrap();
        assert_eq!(back, v);
        v.split.push(SplitToken {
            id: 1,
            lstrip: false,
            rstrip: true,
        });
        assert_eq!(VocabSpec::from_bytes(&v.to_bytes()).unwrap(), v);
        v.split[0].id = 2;
        assert!(VocabSpec::from_bytes(&v.to_bytes()).is_err());
    }

    fn sample() -> VocabSpec {
        let mut v = VocabSpec::from_pieces(vec![
            (b"a".to_vec(), -1.0),
            (b"ab".to_vec(), -2.5),
            ("▁é".as_bytes().to_vec(), -3.0),
        ]);
        v.unk_id = Some(0);
        v.pieces[0].kind = PieceKind::Unknown;
        v.normalizer.add_dummy_prefix = true;
        v
    }

    #[test]
    fn unknown_rule_round_trips() {
        let mut v = sample();
        v.unknown = UnknownRule::JiebaChar { score: -17.5 };
        assert_eq!(VocabSpec::from_bytes(&v.to_bytes()).unwrap(), v);
        v.unknown = UnknownRule::JiebaChar {
            score: f32::NEG_INFINITY,
        };
        assert!(v.validate().is_err());
    }

    #[test]
    fn round_trip_is_exact_and_deterministic() {
        let v = sample();
        let b = v.to_bytes();
        assert_eq!(b, sample().to_bytes());
        assert_eq!(VocabSpec::from_bytes(&b).unwrap(), v);
    }

    #[test]
    fn validation_catches_hostile_vocabularies() {
        let mut v = sample();
        v.pieces[1].score = f32::NAN;
        assert!(v.validate().unwrap_err().to_string().contains("non-finite"));
        let mut v = sample();
        v.pieces[2].piece = b"a".to_vec();
        assert!(v.validate().unwrap_err().to_string().contains("duplicate"));
        let v = VocabSpec::from_pieces(vec![]);
        assert!(v.validate().unwrap_err().to_string().contains("empty"));
        let mut v = sample();
        v.eos_id = Some(99);
        assert!(v.validate().is_err());
    }

    #[test]
    fn truncated_bytes_are_refused_at_every_length() {
        let b = sample().to_bytes();
        for n in 0..b.len() {
            assert!(
                VocabSpec::from_bytes(&b[..n]).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
    }
}
