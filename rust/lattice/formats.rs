//! Loaders for the non-SentencePiece vocabulary formats: HF `tokenizer.json` (Unigram models),
//! BytePiece JSON and jieba's `dict.txt`. Each returns a validated [`VocabSpec`].
//!
//! Memory is bounded by the input: JSON is parsed by `serde_json` (whose recursion limit of 128
//! refuses deeply nested documents with an error, not a stack overflow) into a tree no larger
//! than a small multiple of the input, and nothing is pre-allocated from a count in the data.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::normalizer::Normalizer;
use super::vocab::{NormalizerSpec, PieceKind, PieceSpec, SplitToken, UnknownRule, VocabSpec};
use crate::error::{Error, Result};

const HF: &str = "HF tokenizer.json";
const BYTEPIECE: &str = "BytePiece JSON";
const JIEBA: &str = "jieba dictionary";

fn parse_json(what: &str, data: &[u8]) -> Result<Value> {
    serde_json::from_slice(data).map_err(|e| {
        let msg = if e.to_string().contains("recursion limit") {
            format!(
                "nested too deeply (line {}, column {})",
                e.line(),
                e.column()
            )
        } else {
            format!("invalid JSON: {e}")
        };
        Error::format(what, None, msg)
    })
}

fn fail(what: &str, msg: impl Into<String>) -> Error {
    Error::format(what, None, msg)
}

/// Standard-alphabet base64 with `=` padding (Python's `b64encode`); whitespace is refused.
pub(crate) fn base64_decode(s: &str) -> std::result::Result<Vec<u8>, String> {
    let b = s.as_bytes();
    if b.len() % 4 != 0 {
        return Err(format!("base64 length {} is not a multiple of 4", b.len()));
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (k, chunk) in b.chunks_exact(4).enumerate() {
        let last = (k + 1) * 4 == b.len();
        let mut v = 0u32;
        let mut pad = 0;
        for (i, &c) in chunk.iter().enumerate() {
            let d = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' if last && i >= 2 && (i == 3 || chunk[3] == b'=') => {
                    pad += 1;
                    0
                }
                _ => {
                    return Err(format!(
                        "invalid base64 character {:?} at position {}",
                        c as char,
                        k * 4 + i
                    ))
                }
            };
            if pad > 0 && c != b'=' {
                return Err("base64 data after padding".into());
            }
            v = (v << 6) | u32::from(d);
        }
        let bytes = v.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Ok(out)
}

fn as_object<'a>(what: &str, v: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| fail(what, format!("{path} must be an object, found {}", kind(v))))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn type_name<'a>(what: &str, o: &'a Map<String, Value>, path: &str) -> Result<&'a str> {
    o.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| fail(what, format!("{path} has no string \"type\"")))
}

/// How the HF normaliser/pre-tokenizer pair maps onto SentencePiece's pipeline.
#[derive(Default)]
struct HfPipeline {
    charsmap: Option<Vec<u8>>,
    collapse_spaces: bool,
    strip: bool,
    prepend: bool,
    escape: bool,
    /// Metaspace's `prepend_scheme` is `"first"`: a `▁` before the text's first segment only.
    prepend_first: bool,
}

fn hf_normalizer(v: &Value, path: &str, p: &mut HfPipeline) -> Result<()> {
    if v.is_null() {
        return Ok(());
    }
    let o = as_object(HF, v, path)?;
    match type_name(HF, o, path)? {
        "Sequence" => {
            let list = o
                .get("normalizers")
                .and_then(Value::as_array)
                .ok_or_else(|| fail(HF, format!("{path}.normalizers must be an array")))?;
            for (i, n) in list.iter().enumerate() {
                hf_normalizer(n, &format!("{path}.normalizers[{i}]"), p)?;
            }
        }
        "Precompiled" => {
            if p.charsmap.is_some() || p.collapse_spaces || p.strip || p.prepend || p.escape {
                return Err(fail(
                    HF,
                    format!("{path}: a Precompiled normaliser must come first and only once"),
                ));
            }
            let cm = match o.get("precompiled_charsmap") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => base64_decode(s)
                    .map_err(|e| fail(HF, format!("{path}.precompiled_charsmap: {e}")))?,
                Some(other) => {
                    return Err(fail(
                        HF,
                        format!(
                            "{path}.precompiled_charsmap must be a base64 string, found {}",
                            kind(other)
                        ),
                    ))
                }
            };
            p.charsmap = Some(cm);
        }
        // SentencePiece's `remove_extra_whitespaces` as transformers' converter spells it:
        // strip, then collapse runs of spaces.
        "Strip" => p.strip = true,
        "Replace" => {
            let pattern = o.get("pattern").and_then(Value::as_object);
            let content = o.get("content").and_then(Value::as_str).unwrap_or("");
            let regex = pattern.and_then(|m| m.get("Regex")).and_then(Value::as_str);
            let string = pattern
                .and_then(|m| m.get("String"))
                .and_then(Value::as_str);
            match (regex, string, content) {
                (Some(" {2,}"), _, " " | "\u{2581}") => p.collapse_spaces = true,
                (_, Some(" "), "\u{2581}") => p.escape = true,
                _ => {
                    return Err(fail(
                        HF,
                        format!(
                            "{path}: Replace({pattern:?} -> {content:?}) has no SentencePiece \
                             equivalent"
                        ),
                    ))
                }
            }
        }
        "Prepend" if o.get("prepend").and_then(Value::as_str) == Some("\u{2581}") => {
            p.prepend = true;
        }
        other => {
            return Err(fail(
                HF,
                format!(
                    "{path}: the {other} normaliser cannot be reproduced (supported: \
                     Precompiled, Strip, Replace of runs of spaces, Prepend(\"▁\"))"
                ),
            ))
        }
    }
    Ok(())
}

fn hf_pre_tokenizer(v: &Value, path: &str, p: &mut HfPipeline) -> Result<()> {
    if v.is_null() {
        return Ok(());
    }
    let o = as_object(HF, v, path)?;
    match type_name(HF, o, path)? {
        "Sequence" => {
            let list = o
                .get("pretokenizers")
                .and_then(Value::as_array)
                .ok_or_else(|| fail(HF, format!("{path}.pretokenizers must be an array")))?;
            for (i, n) in list.iter().enumerate() {
                hf_pre_tokenizer(n, &format!("{path}.pretokenizers[{i}]"), p)?;
            }
        }
        // Splitting at whitespace (and dropping it) before Metaspace re-adds one marker per
        // word: SentencePiece's collapse-and-strip of spaces.
        "WhitespaceSplit" => {
            p.strip = true;
            p.collapse_spaces = true;
        }
        "Metaspace" => {
            let replacement = o.get("replacement").and_then(Value::as_str);
            if replacement != Some("\u{2581}") {
                return Err(fail(
                    HF,
                    format!(
                        "{path}: Metaspace replacement {replacement:?} is not \"▁\"; SentencePiece \
                         only escapes spaces as U+2581"
                    ),
                ));
            }
            p.escape = true;
            let prepend = match (
                o.get("prepend_scheme").and_then(Value::as_str),
                o.get("add_prefix_space").and_then(Value::as_bool),
            ) {
                (Some("always"), _) => true,
                (Some("first"), _) => {
                    p.prepend_first = true;
                    true
                }
                (Some("never"), _) => false,
                (Some(other), _) => {
                    return Err(fail(
                        HF,
                        format!("{path}: unknown Metaspace prepend_scheme {other:?}"),
                    ))
                }
                (None, Some(b)) => b,
                (None, None) => true,
            };
            p.prepend |= prepend;
        }
        other => {
            return Err(fail(
                HF,
                format!(
                    "{path}: the {other} pre-tokenizer cannot be reproduced (supported: \
                     Metaspace with replacement \"▁\", optionally after WhitespaceSplit)"
                ),
            ))
        }
    }
    Ok(())
}

/// Loads an HF `tokenizer.json` whose model is `Unigram`.
///
/// The text pipeline is mapped onto SentencePiece's: a `Precompiled` normaliser becomes the
/// charsmap, `Strip` / `Replace(" {2,}")` / `WhitespaceSplit` become `remove_extra_whitespaces`,
/// `Metaspace("▁")` becomes `escape_whitespaces` with `add_dummy_prefix` unless its
/// `prepend_scheme` is `"never"` (`"first"` equals `"always"` for text without added tokens;
/// with `"first"` no added token is cut out of the text, see below).
/// Anything else (NFKC, Lowercase, BERT pre-tokenizers, another replacement character, ...)
/// is refused by name rather than silently approximated. Added tokens marked `special` become
/// CONTROL pieces, other added tokens USER_DEFINED, and those HF matches in the raw text
/// (`normalized: false`, not `single_word`) are also listed in `split` ([`super::added`]);
/// `<s>`/`<bos>`, `</s>`/`<eos>` and `<pad>`
/// among the special ones give the bos/eos/pad ids; with `byte_fallback`, `<0xXX>` pieces are
/// BYTE pieces.
pub fn load_hf_json(data: &[u8]) -> Result<VocabSpec> {
    let root = parse_json(HF, data)?;
    let root = as_object(HF, &root, "the document")?;
    let model = root
        .get("model")
        .ok_or_else(|| fail(HF, "no \"model\" entry (not a tokenizer.json)"))?;
    let model = as_object(HF, model, "model")?;
    let ty = model.get("type").and_then(Value::as_str);
    if let Some(t) = ty {
        if t != "Unigram" {
            return Err(fail(
                HF,
                format!("model.type is {t:?}; only Unigram models define a unigram lattice"),
            ));
        }
    }
    let vocab = model
        .get("vocab")
        .and_then(Value::as_array)
        .ok_or_else(|| fail(HF, "model.vocab must be an array of [piece, score] pairs"))?;
    let byte_fallback = match model.get("byte_fallback") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(fail(
                HF,
                format!("model.byte_fallback must be a boolean, found {}", kind(v)),
            ))
        }
    };
    let mut pieces = Vec::with_capacity(vocab.len());
    for (i, entry) in vocab.iter().enumerate() {
        let pair = entry.as_array().filter(|a| a.len() == 2);
        let (Some(piece), Some(score)) = (
            pair.and_then(|a| a[0].as_str()),
            pair.and_then(|a| a[1].as_f64()),
        ) else {
            return Err(fail(
                HF,
                format!("model.vocab[{i}] must be a [string, number] pair"),
            ));
        };
        if score.is_finite() && !(score as f32).is_finite() {
            // Otherwise reported as "non-finite score -inf" for a finite number.
            return Err(Error::Limit(format!(
                "model.vocab[{i}] has score {score:e}, which does not fit a float32; scores are \
                 log-probabilities and must lie within ±{:e}",
                super::model::MAX_ABS_SCORE
            )));
        }
        let kind = if byte_fallback && super::spm::parse_byte_piece(piece.as_bytes()).is_some() {
            PieceKind::Byte
        } else {
            PieceKind::Normal
        };
        pieces.push(PieceSpec {
            piece: piece.as_bytes().to_vec(),
            score: score as f32,
            kind,
        });
    }
    let unk_id = match model.get("unk_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|u| u32::try_from(u).ok())
                .filter(|&u| (u as usize) < pieces.len())
                .ok_or_else(|| {
                    fail(
                        HF,
                        format!(
                            "model.unk_id {v} is not an id of the {} pieces",
                            pieces.len()
                        ),
                    )
                })?,
        ),
    };
    if let Some(u) = unk_id {
        pieces[u as usize].kind = PieceKind::Unknown;
    }
    let (mut bos_id, mut eos_id, mut pad_id) = (None, None, None);
    // Added tokens HF matches in the raw text (`normalized: false`, the default for special
    // ones) and not only as whole words.
    let mut split = Vec::new();
    if let Some(added) = root.get("added_tokens").filter(|v| !v.is_null()) {
        let added = added
            .as_array()
            .ok_or_else(|| fail(HF, "added_tokens must be an array"))?;
        for (i, t) in added.iter().enumerate() {
            let t = as_object(HF, t, &format!("added_tokens[{i}]"))?;
            let id = t.get("id").and_then(Value::as_u64);
            let content = t.get("content").and_then(Value::as_str);
            let (Some(id), Some(content)) = (id, content) else {
                return Err(fail(
                    HF,
                    format!("added_tokens[{i}] needs an integer id and a string content"),
                ));
            };
            let special = t.get("special").and_then(Value::as_bool).unwrap_or(false);
            let Some(p) = usize::try_from(id).ok().and_then(|i| pieces.get_mut(i)) else {
                return Err(fail(
                    HF,
                    format!(
                        "added_tokens[{i}] (id {id}, {content:?}) is outside the model's \
                         vocabulary; tokens added beyond the Unigram vocabulary are not supported"
                    ),
                ));
            };
            if p.piece != content.as_bytes() {
                return Err(fail(
                    HF,
                    format!(
                        "added_tokens[{i}] says id {id} is {content:?} but the vocabulary has {:?}",
                        String::from_utf8_lossy(&p.piece)
                    ),
                ));
            }
            let flag = |k: &str| t.get(k).and_then(Value::as_bool);
            if !flag("normalized").unwrap_or(!special) && flag("single_word") != Some(true) {
                split.push(SplitToken {
                    id: id as u32,
                    lstrip: flag("lstrip") == Some(true),
                    rstrip: flag("rstrip") == Some(true),
                });
            }
            if p.kind == PieceKind::Unknown {
                continue;
            }
            if special {
                p.kind = PieceKind::Control;
                let slot = match content {
                    "<s>" | "<bos>" => &mut bos_id,
                    "</s>" | "<eos>" => &mut eos_id,
                    "<pad>" => &mut pad_id,
                    _ => continue,
                };
                slot.get_or_insert(id as u32);
            } else {
                p.kind = PieceKind::UserDefined;
            }
        }
    }
    let mut pipeline = HfPipeline::default();
    if let Some(n) = root.get("normalizer") {
        hf_normalizer(n, "normalizer", &mut pipeline)?;
    }
    if let Some(n) = root.get("pre_tokenizer") {
        hf_pre_tokenizer(n, "pre_tokenizer", &mut pipeline)?;
    }
    if pipeline.prepend_first && !split.is_empty() {
        // Segments between added tokens would each get a `▁` (only the first should): kept
        // as before, matched inside the lattice like SentencePiece's pieces (docs/limits.md).
        split.clear();
    }
    if pipeline.prepend && !pipeline.escape {
        return Err(fail(
            HF,
            "a \"▁\" prefix without escaping spaces as \"▁\" has no SentencePiece equivalent",
        ));
    }
    let charsmap = pipeline.charsmap.unwrap_or_default();
    let normalizer = NormalizerSpec {
        name: if charsmap.is_empty() {
            "identity".into()
        } else {
            "precompiled".into()
        },
        precompiled_charsmap: charsmap,
        add_dummy_prefix: pipeline.prepend,
        remove_extra_whitespaces: pipeline.collapse_spaces || pipeline.strip,
        escape_whitespaces: pipeline.escape,
        treat_whitespace_as_suffix: false,
    };
    let spec = VocabSpec {
        pieces,
        byte_fallback,
        byte_level: false,
        unk_id,
        bos_id,
        eos_id,
        pad_id,
        normalizer,
        source: "hf".into(),
        unknown: UnknownRule::SentencePiece,
        split,
    };
    finish(HF, spec)
}

fn finish(what: &str, spec: VocabSpec) -> Result<VocabSpec> {
    spec.validate().map_err(|e| match e {
        Error::InvalidArgument(m) => fail(what, m),
        other => other,
    })?;
    Normalizer::new(&spec.normalizer)?;
    Ok(spec)
}

/// BytePiece's reserved ids 0, 1, 2 (not in its JSON file).
const BYTEPIECE_SPECIALS: [&str; 3] = ["<pad>", "<bos>", "<eos>"];

/// Loads a BytePiece vocabulary: a JSON object `base64(piece) → [id, text, count]` with ids
/// from 3 (ids 0, 1, 2 are BytePiece's `<pad>`, `<bos>`, `<eos>`, added here as CONTROL
/// pieces). Scores are `log(count / total)` over the file's pieces, as BytePiece's tokenizer
/// computes them. The lattice is byte-level, and every single byte must be a piece: BytePiece's
/// trainer always adds any missing byte (count 1) and its tokenizer relies on that, so a file
/// without all 256 is refused rather than patched (patching would change every score).
/// BytePiece applies NFC and splits text after newline runs before tokenizing; that is not
/// part of this spec (the normaliser is the identity).
pub fn load_bytepiece_json(data: &[u8]) -> Result<VocabSpec> {
    let root = parse_json(BYTEPIECE, data)?;
    let obj = as_object(BYTEPIECE, &root, "the document")?;
    let mut entries: Vec<(u64, Vec<u8>, f64)> = Vec::with_capacity(obj.len());
    for (key, v) in obj {
        let piece = base64_decode(key)
            .map_err(|e| fail(BYTEPIECE, format!("key {key:?} is not base64: {e}")))?;
        let arr = v.as_array().filter(|a| a.len() == 3);
        let (Some(id), Some(count)) = (
            arr.and_then(|a| a[0].as_u64()),
            arr.and_then(|a| a[2].as_f64()),
        ) else {
            return Err(fail(
                BYTEPIECE,
                format!("entry {key:?} must be [id, text, count] with an integer id"),
            ));
        };
        if !(count > 0.0 && count.is_finite()) {
            return Err(fail(
                BYTEPIECE,
                format!("entry {key:?} has count {count}; counts must be positive"),
            ));
        }
        if piece.is_empty() {
            return Err(fail(BYTEPIECE, format!("entry {key:?} is the empty piece")));
        }
        entries.push((id, piece, count));
    }
    if entries.is_empty() {
        return Err(fail(BYTEPIECE, "no pieces"));
    }
    entries.sort_by_key(|e| e.0);
    for (k, e) in entries.iter().enumerate() {
        if e.0 != k as u64 + 3 {
            return Err(fail(
                BYTEPIECE,
                format!(
                    "ids must be 3, 4, ... without gaps or repeats; found id {} where {} was \
                     expected",
                    e.0,
                    k + 3
                ),
            ));
        }
    }
    let mut have = [false; 256];
    for e in &entries {
        if let [b] = e.1[..] {
            have[b as usize] = true;
        }
    }
    let missing: Vec<String> = (0..256)
        .filter(|&b| !have[b])
        .map(|b| format!("0x{b:02x}"))
        .collect();
    if !missing.is_empty() {
        return Err(fail(
            BYTEPIECE,
            format!(
                "{} of the 256 single-byte pieces are missing (BytePiece vocabularies contain \
                 them all), e.g. {}",
                missing.len(),
                missing[..missing.len().min(8)].join(", ")
            ),
        ));
    }
    let total: f64 = entries.iter().map(|e| e.2).sum();
    let log_total = total.ln();
    let mut pieces: Vec<PieceSpec> = BYTEPIECE_SPECIALS
        .iter()
        .map(|s| PieceSpec {
            piece: s.as_bytes().to_vec(),
            score: 0.0,
            kind: PieceKind::Control,
        })
        .collect();
    for (_, piece, count) in entries {
        if BYTEPIECE_SPECIALS.iter().any(|s| s.as_bytes() == piece) {
            return Err(fail(
                BYTEPIECE,
                format!(
                    "the piece {:?} collides with BytePiece's reserved token of that name",
                    String::from_utf8_lossy(&piece)
                ),
            ));
        }
        pieces.push(PieceSpec {
            piece,
            score: (count.ln() - log_total) as f32,
            kind: PieceKind::Normal,
        });
    }
    let spec = VocabSpec {
        pieces,
        byte_fallback: false,
        byte_level: true,
        unk_id: None,
        pad_id: Some(0),
        bos_id: Some(1),
        eos_id: Some(2),
        normalizer: NormalizerSpec::identity(),
        source: "bytepiece".into(),
        unknown: UnknownRule::SentencePiece,
        split: Vec::new(),
    };
    finish(BYTEPIECE, spec)
}

/// Python's `bytes.strip()` whitespace set (ASCII space, \t, \n, \v, \f, \r).
fn py_strip(mut b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    while b.first().is_some_and(ws) {
        b = &b[1..];
    }
    while b.last().is_some_and(ws) {
        b = &b[..b.len() - 1];
    }
    b
}

/// Parses a Python `int()` literal as jieba's dictionary uses it: optional sign, ASCII digits.
fn parse_freq(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Loads jieba's `dict.txt` (lines `word freq [tag]`, read as jieba's `gen_pfdict` does:
/// each line stripped, split on single spaces, the first two fields used, a later line for the
/// same word replacing its frequency while every line's frequency counts towards the total).
///
/// Scores follow jieba's `calc`: `log(freq) − log(total)`. A word with frequency 0 is never an
/// edge of jieba's DAG, so it is left out of the vocabulary (ids are the kept words in order of
/// first appearance). jieba's dictionary does not hold every character: where no word at all
/// starts at a position, `get_DAG` adds the one-character edge with score
/// `log(1) − log(total)`, and only there (a character that starts a longer word but is not a
/// word itself gets no single-character edge). That rule is recorded as
/// [`UnknownRule::JiebaChar`]; with it, Viterbi over this lattice is `jieba.cut(text,
/// HMM=False)` inside each of jieba's pre-split blocks (runs matching `re_han_default`), before
/// jieba's merging of consecutive single ASCII letters/digits; ties go to the longer word.
pub fn load_jieba_dict(data: &[u8]) -> Result<VocabSpec> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut words: Vec<(&str, i64)> = Vec::new();
    let mut total: i64 = 0;
    let mut line_start = 0usize;
    for (n, raw) in data.split(|&b| b == b'\n').enumerate() {
        let lineno = n + 1;
        let at = line_start;
        line_start += raw.len() + 1;
        // `split` yields one empty piece after a final newline; jieba's line iteration does not.
        if raw.is_empty() && line_start > data.len() {
            break;
        }
        let line = std::str::from_utf8(py_strip(raw)).map_err(|e| {
            Error::format(
                JIEBA,
                Some(at),
                format!("line {lineno} is not valid UTF-8 ({e})"),
            )
        })?;
        let mut fields = line.split(' ');
        let (Some(word), Some(freq)) = (fields.next(), fields.next()) else {
            return Err(Error::format(
                JIEBA,
                Some(at),
                format!("line {lineno}: expected \"word freq [tag]\", found {line:?}"),
            ));
        };
        let Some(freq) = parse_freq(freq) else {
            return Err(Error::format(
                JIEBA,
                Some(at),
                format!("line {lineno}: frequency {freq:?} is not a non-negative integer"),
            ));
        };
        if word.is_empty() {
            return Err(Error::format(
                JIEBA,
                Some(at),
                format!("line {lineno}: empty word"),
            ));
        }
        total = total.checked_add(freq).ok_or_else(|| {
            Error::format(
                JIEBA,
                Some(at),
                format!("line {lineno}: total frequency overflows"),
            )
        })?;
        match index.get(word) {
            Some(&i) => words[i].1 = freq,
            None => {
                index.insert(word, words.len());
                words.push((word, freq));
            }
        }
    }
    if total <= 0 {
        return Err(fail(
            JIEBA,
            "the total frequency is zero (jieba cannot score such a dictionary)",
        ));
    }
    let log_total = (total as f64).ln();
    let pieces: Vec<PieceSpec> = words
        .into_iter()
        .filter(|&(_, f)| f > 0)
        .map(|(w, f)| PieceSpec {
            piece: w.as_bytes().to_vec(),
            score: ((f as f64).ln() - log_total) as f32,
            kind: PieceKind::Normal,
        })
        .collect();
    if pieces.is_empty() {
        return Err(fail(JIEBA, "no word has a positive frequency"));
    }
    let spec = VocabSpec {
        pieces,
        byte_fallback: false,
        byte_level: false,
        unk_id: None,
        bos_id: None,
        eos_id: None,
        pad_id: None,
        normalizer: NormalizerSpec::identity(),
        source: "jieba".into(),
        unknown: UnknownRule::JiebaChar {
            score: -log_total as f32,
        },
        split: Vec::new(),
    };
    finish(JIEBA, spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn base64_matches_python() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("/w==").unwrap(), b"\xff");
        for bad in ["Y", "Y===", "Y=Q=", "YQ==YQ==", "Y Q=", "YQ=a"] {
            assert!(base64_decode(bad).is_err(), "{bad}");
        }
    }

    fn b64(b: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in b.chunks(3) {
            let v = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    s.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    fn bytepiece_doc(extra: &[(&[u8], u64)], skip_byte: Option<u8>) -> String {
        let mut entries = vec![];
        let mut id = 3;
        for b in 0..=255u8 {
            if Some(b) == skip_byte {
                continue;
            }
            entries.push(format!("\"{}\": [{id}, \"\", 2]", b64(&[b])));
            id += 1;
        }
        for (p, c) in extra {
            entries.push(format!("\"{}\": [{id}, \"x\", {c}]", b64(p)));
            id += 1;
        }
        format!("{{{}}}", entries.join(","))
    }

    #[test]
    fn bytepiece_scores_ids_and_specials() {
        let doc = bytepiece_doc(&[(b"ab", 100), ("中".as_bytes(), 88)], None);
        let v = load_bytepiece_json(doc.as_bytes()).unwrap();
        assert_eq!(v.pieces.len(), 3 + 256 + 2);
        assert!(v.byte_level);
        assert_eq!(v.pieces[1].piece, b"<bos>");
        assert_eq!(v.pieces[3].piece, b"\x00");
        assert_eq!(v.pieces[259].piece, b"ab");
        let total = 256.0 * 2.0 + 100.0 + 88.0f64;
        assert!((f64::from(v.pieces[259].score) - (100.0f64 / total).ln()).abs() < 1e-6);
        let e = load_bytepiece_json(bytepiece_doc(&[], Some(7)).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("0x07"), "{e}");
        assert!(load_bytepiece_json(b"{\"YQ==\": [5, \"a\", 1]}").is_err());
        assert!(load_bytepiece_json(b"[]").is_err());
    }

    #[test]
    fn jieba_rules() {
        let d = "\u{4e2d} 10 n\n\u{4e2d}\u{56fd} 30 ns\n\u{56fd} 0\n\u{4e2d} 20\r\n\n";
        // The empty line is an error in jieba too.
        let e = load_jieba_dict(d.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("line 5"), "{e}");
        let d = "\u{4e2d} 10 n\n\u{4e2d}\u{56fd} 30 ns\n\u{56fd} 0\n\u{4e2d} 20\r\n";
        let v = load_jieba_dict(d.as_bytes()).unwrap();
        // Total counts every line: 10 + 30 + 0 + 20; the later 20 replaces the first 10.
        let lt = 60f64.ln();
        assert_eq!(v.pieces.len(), 2);
        assert_eq!(v.pieces[0].piece, "\u{4e2d}".as_bytes());
        assert_eq!(v.pieces[0].score, (20f64.ln() - lt) as f32);
        assert_eq!(v.unknown, UnknownRule::JiebaChar { score: -lt as f32 });
        assert!(load_jieba_dict(b"a -3\n").is_err());
        assert!(load_jieba_dict(b"a 0\n").is_err());
        assert!(load_jieba_dict(b"a\xff 3\n")
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }

    #[test]
    fn hf_unigram_with_metaspace() {
        let doc = r#"{"added_tokens":[{"id":0,"content":"<unk>","special":true},
            {"id":1,"content":"</s>","special":true}],
            "normalizer":{"type":"Sequence","normalizers":[
              {"type":"Strip","left":false,"right":true},
              {"type":"Replace","pattern":{"Regex":" {2,}"},"content":"▁"}]},
            "pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true},
            "model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0.0],["</s>",0.0],["▁a",-1.5],["b",-2.0]],"byte_fallback":false}}"#;
        let v = load_hf_json(doc.as_bytes()).unwrap();
        assert_eq!(v.unk_id, Some(0));
        assert_eq!(v.eos_id, Some(1));
        assert_eq!(v.pieces[1].kind, PieceKind::Control);
        assert!(v.normalizer.add_dummy_prefix && v.normalizer.escape_whitespaces);
        assert!(v.normalizer.remove_extra_whitespaces);
        let bpe = r#"{"model":{"type":"BPE","vocab":{},"merges":[]}}"#;
        assert!(load_hf_json(bpe.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("BPE"));
        let nfkc = doc.replace(
            r#"{"type":"Strip","left":false,"right":true},"#,
            r#"{"type":"NFKC"},"#,
        );
        assert!(load_hf_json(nfkc.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("NFKC"));
    }

    #[test]
    fn deep_json_is_refused() {
        let deep = "[".repeat(100_000);
        for f in [load_hf_json, load_bytepiece_json] {
            let e = f(deep.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("nested too deeply"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = load_hf_json(&data);
            let _ = load_bytepiece_json(&data);
            let _ = load_jieba_dict(&data);
            let _ = super::super::spm::load(&data);
            let _ = VocabSpec::from_bytes(&data);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = load_hf_json(s.as_bytes());
            let _ = load_bytepiece_json(s.as_bytes());
            let _ = load_jieba_dict(s.as_bytes());
        }
    }
}
