//! The crate's error type. Every fallible core function returns [`Result`]; the Python layer
//! maps each variant to one Python exception class (see `rust/python/mod.rs`).

use std::fmt;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A caller-supplied argument is out of its domain (Python `ValueError`).
    InvalidArgument(String),
    /// An argument has the wrong kind/dtype (Python `TypeError`).
    WrongType(String),
    /// A model or serialized blob could not be parsed (Python `probcraft.ModelFormatError`,
    /// a `ValueError` subclass). `offset` is the byte offset where parsing failed.
    Format {
        what: String,
        offset: Option<usize>,
        message: String,
    },
    /// The input exceeds a documented resource limit (Python `probcraft.LimitError`, a
    /// `ValueError` subclass).
    Limit(String),
    /// File-system failure (Python `OSError`).
    Io(String),
    /// A bug in probcraft (Python `RuntimeError`); includes panics caught at the boundary.
    Internal(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    pub fn format(what: impl Into<String>, offset: Option<usize>, msg: impl Into<String>) -> Self {
        Error::Format {
            what: what.into(),
            offset,
            message: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) | Error::WrongType(m) | Error::Limit(m) | Error::Io(m) => {
                f.write_str(m)
            }
            Error::Format {
                what,
                offset: Some(o),
                message,
            } => write!(f, "{what}: {message} (at byte offset {o})"),
            Error::Format {
                what,
                offset: None,
                message,
            } => write!(f, "{what}: {message}"),
            Error::Internal(m) => write!(f, "internal error in probcraft (please report): {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Turns a caught panic payload into a message.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Runs `f`, converting a panic into [`Error::Internal`] so that no panic crosses an FFI
/// boundary.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(Error::Internal(panic_message(p.as_ref()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_offset() {
        let e = Error::format("sentencepiece model", Some(17), "truncated varint");
        assert_eq!(
            e.to_string(),
            "sentencepiece model: truncated varint (at byte offset 17)"
        );
    }

    #[test]
    fn panics_become_internal_errors() {
        let r: Result<()> = catch_panic(|| panic!("boom"));
        assert_eq!(r, Err(Error::Internal("boom".into())));
        let r: Result<u8> = catch_panic(|| Ok(3));
        assert_eq!(r, Ok(3));
    }
}
