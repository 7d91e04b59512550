//! Deterministic binary encoding for pickles and probcraft's own model files.
//!
//! Little-endian fixed-width integers and floats, length-prefixed byte strings, and a header
//! `magic (4 bytes) + format version (u16)`. The same object always encodes to the same bytes
//! (HF `datasets` fingerprints transforms by pickling them). The reader never trusts a length:
//! every read is bounds-checked against what remains and reports the failing offset.

use crate::error::{Error, Result};

#[derive(Default, Debug, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(magic: &[u8; 4], version: u16) -> Self {
        let mut w = Writer { buf: Vec::new() };
        w.buf.extend_from_slice(magic);
        w.u16(version);
        w
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Checks the header and returns a reader positioned after it, plus the format version.
    pub fn new(data: &'a [u8], magic: &[u8; 4], what: &'static str) -> Result<(Self, u16)> {
        let mut r = Reader { data, pos: 0, what };
        let m = r.take(4)?;
        if m != magic {
            return Err(Error::format(
                what,
                Some(0),
                "wrong magic bytes (not this format)",
            ));
        }
        let v = r.u16()?;
        Ok((r, v))
    }

    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::format(self.what, Some(self.pos), msg)
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "truncated: needs {n} more bytes, {} left",
                self.remaining()
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.array()?))
    }
    pub fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// A count of items each at least `min_item_bytes` long, checked against what remains so
    /// that a hostile header cannot make the caller allocate unbounded memory.
    pub fn count(&mut self, min_item_bytes: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64()?;
        let max = (self.remaining() / min_item_bytes.max(1)) as u64;
        if n > max {
            return Err(Error::format(
                self.what,
                Some(at),
                format!("count {n} is larger than the remaining data allows ({max})"),
            ));
        }
        Ok(n as usize)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.count(1)?;
        self.take(n)
    }

    pub fn str(&mut self) -> Result<&'a str> {
        let at = self.pos;
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map_err(|e| Error::format(self.what, Some(at), format!("invalid UTF-8: {e}")))
    }

    /// Fails unless every byte was consumed (trailing garbage means a foreign or corrupt blob).
    pub fn finish(self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.err(format!("{} unexpected trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAGIC: &[u8; 4] = b"TEST";

    #[test]
    fn round_trip() {
        let mut w = Writer::new(MAGIC, 3);
        w.u32(7);
        w.f64(-1.5);
        w.str("héllo");
        let b = w.finish();
        let (mut r, v) = Reader::new(&b, MAGIC, "test blob").unwrap();
        assert_eq!(v, 3);
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.f64().unwrap(), -1.5);
        assert_eq!(r.str().unwrap(), "héllo");
        r.finish().unwrap();
    }

    #[test]
    fn hostile_lengths_are_refused() {
        let mut w = Writer::new(MAGIC, 1);
        w.u64(u64::MAX);
        let b = w.finish();
        let (mut r, _) = Reader::new(&b, MAGIC, "test blob").unwrap();
        let e = r.bytes().unwrap_err();
        assert!(e.to_string().contains("offset 6"), "{e}");
        assert!(Reader::new(b"NOPE\0\0", MAGIC, "x").is_err());
        assert!(Reader::new(b"TE", MAGIC, "x").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut blob = MAGIC.to_vec();
            blob.extend_from_slice(&data);
            if let Ok((mut r, _)) = Reader::new(&blob, MAGIC, "fuzz") {
                let _ = r.str();
                let _ = r.count(8);
                let _ = r.f64();
            }
        }
    }
}
