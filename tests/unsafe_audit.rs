//! Every `unsafe` block or impl in the crate states its invariant in a `// SAFETY:` comment
//! directly above it (within the preceding lines of the same statement).

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_unsafe_block_has_a_safety_comment() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("rust"),
        &mut files,
    );
    let mut missing = Vec::new();
    let mut blocks = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !(code.contains("unsafe {") || code.contains("unsafe impl")) {
                continue;
            }
            blocks += 1;
            let from = i.saturating_sub(6);
            if !lines[from..=i].iter().any(|l| l.contains("SAFETY")) {
                missing.push(format!("{}:{}", f.display(), i + 1));
            }
        }
    }
    assert!(
        blocks > 0,
        "the audit found no unsafe code at all: is the pattern stale?"
    );
    assert!(
        missing.is_empty(),
        "unsafe without a SAFETY comment: {missing:#?}"
    );
}
