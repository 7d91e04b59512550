//! Replays the saved fuzzing inputs (`tests/fuzz_regressions/<target>/*`) through the same
//! checks the fuzz targets run (`fuzz/src/checks.rs`), so every input that once crashed, hung
//! or broke an invariant stays fixed under plain `cargo test`.

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    files
}

fn replay(target: &str, check: impl Fn(&[u8])) {
    for path in inputs(target) {
        let data = std::fs::read(&path).unwrap();
        // A panic names the file that caused it.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        assert!(r.is_ok(), "regression input {} failed", path.display());
    }
}

#[test]
fn sentencepiece() {
    replay("sentencepiece", checks::sentencepiece);
}

#[test]
fn hf_json() {
    replay("hf_json", checks::hf_json);
}

#[test]
fn bytepiece_json() {
    replay("bytepiece_json", checks::bytepiece_json);
}

#[test]
fn jieba_dict() {
    replay("jieba_dict", checks::jieba_dict);
}

#[test]
fn vocab_bytes() {
    replay("vocab_bytes", checks::vocab_bytes);
}

#[test]
fn text() {
    let models = checks::text_models();
    replay("text", |d| checks::text(&models, d));
}
