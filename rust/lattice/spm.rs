//! SentencePiece `.model` files: a hand-written reader and writer for the `ModelProto`
//! protobuf (no protoc, no generated code).
//!
//! Only the fields that change how a unigram model encodes are read: the pieces, the
//! `TrainerSpec` fields `model_type`, `treat_whitespace_as_suffix`, `byte_fallback` and the
//! special pieces, and the whole `NormalizerSpec`. Everything else (training options, self-test
//! data, the denormalizer used only for decoding) is skipped. Special ids follow what the
//! `sentencepiece` library itself reports: `unk_id` is the one `UNKNOWN` piece, and
//! `bos`/`eos`/`pad` are the pieces named by `bos_piece`/`eos_piece`/`pad_piece` when those are
//! `CONTROL` pieces (the numeric `*_id` fields are training inputs the library ignores at load).
//!
//! The reader is written for hostile input: every length is checked against what remains
//! before it is used, nothing is allocated ahead of the data that backs it, and the message
//! nesting is fixed (three levels), so no input can recurse or allocate without bound.

use super::normalizer::Normalizer;
use super::vocab::{NormalizerSpec, PieceKind, PieceSpec, UnknownRule, VocabSpec};
use crate::error::{Error, Result};

const WHAT: &str = "sentencepiece model";

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

const MODEL_TYPES: [&str; 4] = ["UNIGRAM", "BPE", "WORD", "CHAR"];

fn err(offset: usize, msg: impl Into<String>) -> Error {
    Error::format(WHAT, Some(offset), msg)
}

/// A cursor over one message's bytes; `base` is the message's offset in the whole file so that
/// errors point at the right place.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

/// One decoded field: its number, the absolute offset of its key, and its payload.
struct Field<'a> {
    number: u32,
    at: usize,
    value: Value<'a>,
}

enum Value<'a> {
    Varint(u64),
    /// Only skipped: no field we read is a fixed64.
    Fixed64,
    Fixed32(u32),
    /// Payload and its absolute offset.
    Len(&'a [u8], usize),
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Cursor { buf, pos: 0, base }
    }

    fn at(&self) -> usize {
        self.base + self.pos
    }

    fn varint(&mut self) -> Result<u64> {
        let start = self.at();
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(err(start, "truncated varint"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(err(start, "varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let at = self.at();
        if n > self.buf.len() - self.pos {
            return Err(err(
                at,
                format!(
                    "truncated {what}: needs {n} bytes, {} remain",
                    self.buf.len() - self.pos
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn next_field(&mut self) -> Result<Option<Field<'a>>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let at = self.at();
        let key = self.varint()?;
        let wire = (key & 7) as u8;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(err(at, format!("invalid field number {number}")));
        }
        let value = match wire {
            WIRE_VARINT => Value::Varint(self.varint()?),
            WIRE_FIXED64 => {
                self.take(8, "fixed64 field")?;
                Value::Fixed64
            }
            WIRE_LEN => {
                let len_at = self.at();
                let len = self.varint()?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= self.buf.len() - self.pos)
                    .ok_or_else(|| {
                        err(
                            len_at,
                            format!(
                                "length {len} exceeds the {} bytes that remain",
                                self.buf.len() - self.pos
                            ),
                        )
                    })?;
                let data_at = self.at();
                Value::Len(self.take(len, "length-delimited field")?, data_at)
            }
            WIRE_FIXED32 => {
                let b = self.take(4, "fixed32 field")?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            }
            3 | 4 => {
                return Err(err(
                    at,
                    format!(
                        "field {number} uses the deprecated group wire type (not a ModelProto)"
                    ),
                ))
            }
            w => return Err(err(at, format!("field {number} has invalid wire type {w}"))),
        };
        Ok(Some(Field {
            number: number as u32,
            at,
            value,
        }))
    }
}

fn wrong_wire(f: &Field<'_>, msg: &str, expected: &str) -> Error {
    err(
        f.at,
        format!(
            "{msg} field {} has the wrong wire type (expected {expected})",
            f.number
        ),
    )
}

impl Field<'_> {
    fn varint(&self, msg: &str) -> Result<u64> {
        match self.value {
            Value::Varint(v) => Ok(v),
            _ => Err(wrong_wire(self, msg, "varint")),
        }
    }
    fn bool(&self, msg: &str) -> Result<bool> {
        Ok(self.varint(msg)? != 0)
    }
    /// protobuf `int32`: negative values are sign-extended to 64 bits on the wire.
    fn int32(&self, msg: &str) -> Result<i32> {
        Ok(self.varint(msg)? as i64 as i32)
    }
    fn float(&self, msg: &str) -> Result<f32> {
        match self.value {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            _ => Err(wrong_wire(self, msg, "fixed32 float")),
        }
    }
    fn bytes(&self, msg: &str) -> Result<(&[u8], usize)> {
        match self.value {
            Value::Len(b, at) => Ok((b, at)),
            _ => Err(wrong_wire(self, msg, "length-delimited")),
        }
    }
    fn string(&self, msg: &str) -> Result<String> {
        let (b, at) = self.bytes(msg)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => Err(err(
                at + e.valid_up_to(),
                format!("{msg} field {} is not valid UTF-8", self.number),
            )),
        }
    }
}

/// The `TrainerSpec` fields that matter at encoding time, with protobuf defaults.
struct Trainer {
    model_type: i32,
    model_type_at: usize,
    treat_whitespace_as_suffix: bool,
    byte_fallback: bool,
    unk_piece: String,
    bos_piece: String,
    eos_piece: String,
    pad_piece: String,
}

impl Default for Trainer {
    fn default() -> Self {
        Trainer {
            model_type: 1,
            model_type_at: 0,
            treat_whitespace_as_suffix: false,
            byte_fallback: false,
            unk_piece: "<unk>".into(),
            bos_piece: "<s>".into(),
            eos_piece: "</s>".into(),
            pad_piece: "<pad>".into(),
        }
    }
}

/// Parses one occurrence of an embedded message into `t`; protobuf merges repeated
/// occurrences of a singular message field, which calling this again on the same `t` does.
fn parse_trainer(buf: &[u8], base: usize, t: &mut Trainer) -> Result<()> {
    const M: &str = "TrainerSpec";
    let mut c = Cursor::new(buf, base);
    while let Some(f) = c.next_field()? {
        match f.number {
            3 => {
                t.model_type = f.int32(M)?;
                t.model_type_at = f.at;
            }
            24 => t.treat_whitespace_as_suffix = f.bool(M)?,
            35 => t.byte_fallback = f.bool(M)?,
            45 => t.unk_piece = f.string(M)?,
            46 => t.bos_piece = f.string(M)?,
            47 => t.eos_piece = f.string(M)?,
            48 => t.pad_piece = f.string(M)?,
            _ => {}
        }
    }
    Ok(())
}

fn parse_normalizer(buf: &[u8], base: usize, n: &mut NormalizerSpec) -> Result<()> {
    const M: &str = "NormalizerSpec";
    let mut c = Cursor::new(buf, base);
    while let Some(f) = c.next_field()? {
        match f.number {
            1 => n.name = f.string(M)?,
            2 => n.precompiled_charsmap = f.bytes(M)?.0.to_vec(),
            3 => n.add_dummy_prefix = f.bool(M)?,
            4 => n.remove_extra_whitespaces = f.bool(M)?,
            5 => n.escape_whitespaces = f.bool(M)?,
            _ => {}
        }
    }
    Ok(())
}

fn parse_piece(buf: &[u8], base: usize) -> Result<PieceSpec> {
    const M: &str = "SentencePiece";
    let mut c = Cursor::new(buf, base);
    let mut p = PieceSpec {
        piece: Vec::new(),
        score: 0.0,
        kind: PieceKind::Normal,
    };
    while let Some(f) = c.next_field()? {
        match f.number {
            1 => p.piece = f.string(M)?.into_bytes(),
            2 => p.score = f.float(M)?,
            3 => {
                let v = f.varint(M)?;
                p.kind = u8::try_from(v)
                    .ok()
                    .and_then(PieceKind::from_u8)
                    .ok_or_else(|| err(f.at, format!("unknown piece type {v}")))?;
            }
            _ => {}
        }
    }
    Ok(p)
}

/// The canonical spelling of byte piece `b` (`<0x0A>`), as SentencePiece writes and requires.
pub fn byte_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

pub(crate) fn parse_byte_piece(p: &[u8]) -> Option<u8> {
    let hex = p.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    if hex.len() != 2
        || !hex
            .iter()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
    {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Checks the invariants the `sentencepiece` library enforces when it loads a model (one
/// UNKNOWN piece, byte pieces only with `byte_fallback`, then all 256 of them), so that we
/// refuse exactly the models it refuses.
fn check_sentencepiece_rules(pieces: &[PieceSpec], byte_fallback: bool) -> Result<u32> {
    let mut unk = None;
    let mut bytes_found = [false; 256];
    for (i, p) in pieces.iter().enumerate() {
        match p.kind {
            PieceKind::Unknown => {
                if let Some(j) = unk {
                    return Err(Error::invalid(format!(
                        "more than one UNKNOWN piece (ids {j} and {i})"
                    )));
                }
                unk = Some(i as u32);
            }
            PieceKind::Byte => {
                if !byte_fallback {
                    return Err(Error::invalid(format!(
                        "byte piece {:?} (id {i}) found although byte_fallback is false",
                        String::from_utf8_lossy(&p.piece)
                    )));
                }
                let b = parse_byte_piece(&p.piece).ok_or_else(|| {
                    Error::invalid(format!(
                        "byte piece {:?} (id {i}) is not of the form <0xXX>",
                        String::from_utf8_lossy(&p.piece)
                    ))
                })?;
                bytes_found[b as usize] = true;
            }
            _ => {}
        }
    }
    let unk = unk.ok_or_else(|| Error::invalid("the model has no UNKNOWN piece"))?;
    if byte_fallback {
        if let Some(b) = bytes_found.iter().position(|f| !f) {
            return Err(Error::invalid(format!(
                "byte_fallback is true but byte piece {} is missing (all 256 are required)",
                byte_piece(b as u8)
            )));
        }
    }
    Ok(unk)
}

fn as_format(e: Error) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::format(WHAT, None, m),
        other => other,
    }
}

/// Parses a SentencePiece `.model` (serialized `ModelProto`). Only unigram models are
/// accepted; the returned spec has passed [`VocabSpec::validate`] and its normaliser has been
/// checked to compile.
pub fn load(bytes: &[u8]) -> Result<VocabSpec> {
    let mut pieces = Vec::new();
    let mut trainer = Trainer::default();
    // The protobuf defaults, which apply when a field (or the whole message) is absent.
    let mut normalizer = NormalizerSpec {
        name: String::new(),
        precompiled_charsmap: Vec::new(),
        add_dummy_prefix: true,
        remove_extra_whitespaces: true,
        escape_whitespaces: true,
        treat_whitespace_as_suffix: false,
    };
    let mut c = Cursor::new(bytes, 0);
    while let Some(f) = c.next_field()? {
        match f.number {
            1 => {
                let (b, at) = f.bytes("ModelProto")?;
                pieces.push(parse_piece(b, at)?);
            }
            2 => {
                let (b, at) = f.bytes("ModelProto")?;
                parse_trainer(b, at, &mut trainer)?;
            }
            3 => {
                let (b, at) = f.bytes("ModelProto")?;
                parse_normalizer(b, at, &mut normalizer)?;
            }
            _ => {}
        }
    }
    if trainer.model_type != 1 {
        let name = usize::try_from(trainer.model_type - 1)
            .ok()
            .and_then(|i| MODEL_TYPES.get(i))
            .map_or_else(
                || format!("unknown model_type {}", trainer.model_type),
                |n| format!("a {n} model"),
            );
        return Err(err(
            trainer.model_type_at,
            format!(
                "this is {name}; only UNIGRAM models are supported (BPE, WORD and CHAR models \
                 do not define a unigram lattice)"
            ),
        ));
    }
    if pieces.is_empty() {
        return Err(Error::format(
            WHAT,
            None,
            "no pieces (empty or not a SentencePiece model)",
        ));
    }
    normalizer.treat_whitespace_as_suffix = trainer.treat_whitespace_as_suffix;
    let unk = check_sentencepiece_rules(&pieces, trainer.byte_fallback).map_err(as_format)?;
    let control = |name: &str| {
        pieces
            .iter()
            .position(|p| p.kind == PieceKind::Control && p.piece == name.as_bytes())
            .map(|i| i as u32)
    };
    let spec = VocabSpec {
        bos_id: control(&trainer.bos_piece),
        eos_id: control(&trainer.eos_piece),
        pad_id: control(&trainer.pad_piece),
        unk_id: Some(unk),
        byte_fallback: trainer.byte_fallback,
        byte_level: false,
        normalizer,
        pieces,
        source: "sentencepiece".into(),
        unknown: UnknownRule::SentencePiece,
        split: Vec::new(),
    };
    spec.validate().map_err(as_format)?;
    Normalizer::new(&spec.normalizer)?;
    Ok(spec)
}

/// Protobuf encoder for the handful of field kinds a `ModelProto` needs.
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }
    fn uint(&mut self, field: u32, v: u64) {
        self.key(field, WIRE_VARINT);
        self.varint(v);
    }
    fn int32(&mut self, field: u32, v: i32) {
        self.uint(field, v as i64 as u64);
    }
    fn bool(&mut self, field: u32, v: bool) {
        self.uint(field, v as u64);
    }
    fn float(&mut self, field: u32, v: f32) {
        self.key(field, WIRE_FIXED32);
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn bytes(&mut self, field: u32, v: &[u8]) {
        self.key(field, WIRE_LEN);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
    }
}

/// Writes `spec` as a SentencePiece unigram `ModelProto` that the `sentencepiece` library loads
/// and encodes with exactly as we do. Refuses what SentencePiece cannot represent: byte-level
/// vocabularies, non-UTF-8 pieces, a missing or second UNKNOWN piece, byte pieces without
/// `byte_fallback` (or an incomplete set with it), and special ids that are not CONTROL pieces.
pub fn save(spec: &VocabSpec) -> Result<Vec<u8>> {
    spec.validate()?;
    if spec.byte_level {
        return Err(Error::invalid(
            "a byte-level vocabulary cannot be written as a SentencePiece model \
             (SentencePiece lattices run over characters)",
        ));
    }
    if spec.unknown != UnknownRule::SentencePiece {
        return Err(Error::invalid(
            "this vocabulary covers unknown characters by jieba's rule, which a SentencePiece \
             model cannot express",
        ));
    }
    let unk = check_sentencepiece_rules(&spec.pieces, spec.byte_fallback)?;
    if spec.unk_id != Some(unk) {
        return Err(Error::invalid(format!(
            "unk_id is {:?} but the UNKNOWN piece has id {unk}",
            spec.unk_id
        )));
    }
    Normalizer::new(&spec.normalizer)?;
    let mut special = Vec::new();
    for (name, id, field) in [
        ("bos_id", spec.bos_id, 46),
        ("eos_id", spec.eos_id, 47),
        ("pad_id", spec.pad_id, 48),
    ] {
        if let Some(id) = id {
            let p = &spec.pieces[id as usize];
            if p.kind != PieceKind::Control {
                return Err(Error::invalid(format!(
                    "{name}={id} is not a CONTROL piece; SentencePiece only recognises CONTROL \
                     pieces as special tokens"
                )));
            }
            special.push((field, p.piece.as_slice()));
        }
    }

    let mut model = Enc::default();
    for p in &spec.pieces {
        let mut e = Enc::default();
        e.bytes(1, &p.piece);
        e.float(2, p.score);
        e.uint(3, p.kind as u64);
        model.bytes(1, &e.0);
    }

    let mut t = Enc::default();
    t.uint(3, 1); // UNIGRAM
    t.int32(4, i32::try_from(spec.pieces.len()).unwrap_or(i32::MAX));
    t.bool(24, spec.normalizer.treat_whitespace_as_suffix);
    t.bool(35, spec.byte_fallback);
    let id = |v: Option<u32>| v.map_or(-1, |v| v as i32);
    t.int32(40, unk as i32);
    t.int32(41, id(spec.bos_id));
    t.int32(42, id(spec.eos_id));
    t.int32(43, id(spec.pad_id));
    t.bytes(45, &spec.pieces[unk as usize].piece);
    // SentencePiece finds specials by name (`<s>` unless told otherwise), so an absent special
    // whose default name is a CONTROL piece gets a name that is in no vocabulary of ours.
    let absent = absent_name(spec);
    for (field, default) in [(46, "<s>"), (47, "</s>"), (48, "<pad>")] {
        match special.iter().find(|(f, _)| *f == field) {
            Some((_, piece)) => t.bytes(field, piece),
            None => {
                let default_is_control = spec
                    .pieces
                    .iter()
                    .any(|p| p.kind == PieceKind::Control && p.piece == default.as_bytes());
                if default_is_control {
                    t.bytes(field, absent.as_bytes());
                }
            }
        }
    }
    model.bytes(2, &t.0);

    let n = &spec.normalizer;
    let mut e = Enc::default();
    if !n.name.is_empty() {
        e.bytes(1, n.name.as_bytes());
    }
    if !n.precompiled_charsmap.is_empty() {
        e.bytes(2, &n.precompiled_charsmap);
    }
    e.bool(3, n.add_dummy_prefix);
    e.bool(4, n.remove_extra_whitespaces);
    e.bool(5, n.escape_whitespaces);
    model.bytes(3, &e.0);
    Ok(model.0)
}

/// A special-piece name that is not in the vocabulary.
fn absent_name(spec: &VocabSpec) -> String {
    let mut name = String::from("<none>");
    while spec.pieces.iter().any(|p| p.piece == name.as_bytes()) {
        name.insert(1, '_');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> VocabSpec {
        let pieces = vec![
            ("<unk>", 0.0, PieceKind::Unknown),
            ("<s>", 0.0, PieceKind::Control),
            ("</s>", 0.0, PieceKind::Control),
            ("▁a", -1.5, PieceKind::Normal),
            ("b", -2.25, PieceKind::Normal),
            ("<sep>", 0.0, PieceKind::UserDefined),
        ];
        VocabSpec {
            pieces: pieces
                .into_iter()
                .map(|(p, s, k)| PieceSpec {
                    piece: p.as_bytes().to_vec(),
                    score: s,
                    kind: k,
                })
                .collect(),
            byte_fallback: false,
            byte_level: false,
            unk_id: Some(0),
            bos_id: Some(1),
            eos_id: Some(2),
            pad_id: None,
            normalizer: NormalizerSpec {
                name: "identity".into(),
                precompiled_charsmap: Vec::new(),
                add_dummy_prefix: true,
                remove_extra_whitespaces: false,
                escape_whitespaces: true,
                treat_whitespace_as_suffix: true,
            },
            source: "sentencepiece".into(),
            unknown: UnknownRule::SentencePiece,
            split: Vec::new(),
        }
    }

    #[test]
    fn save_then_load_is_exact() {
        let v = small();
        let b = save(&v).unwrap();
        assert_eq!(load(&b).unwrap(), v);
        assert_eq!(save(&load(&b).unwrap()).unwrap(), b);
    }

    #[test]
    fn defaults_apply_when_fields_are_absent() {
        let mut m = Enc::default();
        let mut p = Enc::default();
        p.bytes(1, b"<unk>");
        p.uint(3, 2);
        m.bytes(1, &p.0);
        let mut p = Enc::default();
        p.bytes(1, b"x");
        m.bytes(1, &p.0);
        let v = load(&m.0).unwrap();
        assert_eq!(v.pieces[1].kind, PieceKind::Normal);
        assert_eq!(v.pieces[1].score, 0.0);
        assert!(v.normalizer.add_dummy_prefix);
        assert!(v.normalizer.remove_extra_whitespaces);
        assert!(v.normalizer.escape_whitespaces);
        assert_eq!(v.unk_id, Some(0));
        assert_eq!(v.bos_id, None);
    }

    #[test]
    fn foreign_model_types_are_refused_by_name() {
        let mut b = save(&small()).unwrap();
        let mut t = Enc::default();
        t.uint(3, 2);
        let mut m = Enc::default();
        m.bytes(2, &t.0);
        b.extend_from_slice(&m.0);
        let e = load(&b).unwrap_err().to_string();
        assert!(e.contains("BPE model") && e.contains("only UNIGRAM"), "{e}");
    }

    #[test]
    fn truncations_and_hostile_lengths_are_format_errors() {
        let b = save(&small()).unwrap();
        // Protobuf is not self-delimiting: a prefix that ends between top-level fields is a
        // valid (smaller) model, so only cuts inside a field must fail.
        let mut boundaries = vec![];
        let mut c = Cursor::new(&b, 0);
        while c.next_field().unwrap().is_some() {
            boundaries.push(c.pos);
        }
        for n in 1..b.len() {
            match load(&b[..n]) {
                Err(Error::Format { .. }) => {}
                Ok(_) if boundaries.contains(&n) => {}
                other => panic!("prefix of {n} bytes gave {other:?}"),
            }
        }
        // A length-delimited field claiming 2^62 bytes.
        let mut h = vec![0x0a];
        h.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]);
        let e = load(&h).unwrap_err().to_string();
        assert!(e.contains("exceeds") && e.contains("offset 1"), "{e}");
        // Wrong wire type for the pieces field.
        assert!(load(&[0x08, 0x01])
            .unwrap_err()
            .to_string()
            .contains("wire type"));
        // Group wire type.
        assert!(load(&[0x0b]).unwrap_err().to_string().contains("group"));
        // Eleven-byte varint.
        assert!(
            load(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .is_err()
        );
    }

    #[test]
    fn sentencepiece_load_rules_are_enforced() {
        let mut v = small();
        v.pieces[0].kind = PieceKind::Normal;
        v.unk_id = None;
        assert!(save(&v).unwrap_err().to_string().contains("UNKNOWN"));
        let mut v = small();
        v.pieces[4] = PieceSpec {
            piece: b"<0x41>".to_vec(),
            score: 0.0,
            kind: PieceKind::Byte,
        };
        assert!(save(&v).unwrap_err().to_string().contains("byte_fallback"));
        v.byte_fallback = true;
        assert!(save(&v).unwrap_err().to_string().contains("missing"));
        let mut v = small();
        v.pieces[3].score = f32::NAN;
        assert!(save(&v).is_err());
        let mut v = small();
        v.byte_level = true;
        assert!(save(&v).is_err());
    }

    #[test]
    fn non_utf8_pieces_report_their_offset() {
        let mut m = Enc::default();
        let mut p = Enc::default();
        p.bytes(1, b"\xff");
        m.bytes(1, &p.0);
        match load(&m.0) {
            Err(Error::Format {
                offset: Some(4), ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn absent_specials_are_not_found_by_default_name() {
        let mut v = small();
        v.bos_id = None;
        let b = save(&v).unwrap();
        assert_eq!(load(&b).unwrap().bos_id, None);
    }

    #[test]
    fn byte_pieces_parse_only_in_canonical_form() {
        assert_eq!(parse_byte_piece(b"<0x0A>"), Some(10));
        assert_eq!(parse_byte_piece(b"<0x0a>"), None);
        assert_eq!(parse_byte_piece(b"<0xA>"), None);
        assert_eq!(byte_piece(255), "<0xFF>");
    }
}
