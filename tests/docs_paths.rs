//! The docs name files that exist: every path of this repository that
//! ARCHITECTURE.md or README.md names in backquotes is there, so that a
//! newcomer's tour never leads to a file that moved.

use std::path::Path;

/// Top-level directories of this repository; a backquoted path under one
/// of them is ours (OVS's `lib/dpif-provider.h` is not).
const OURS: [&str; 9] = [
    "messages/",
    "actors/",
    "src/",
    "tests/",
    "benches/",
    "examples/",
    "tools/",
    "fuzz/",
    ".ci/",
];

fn named_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| OURS.iter().any(|d| s.starts_with(d)))
        .filter(|s| !s.contains(char::is_whitespace) && !s.contains('*'))
        .map(|s| s.trim_end_matches(['.', ',', ':', ')']).to_owned())
        .collect()
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    let mut n = 0;
    for doc in ["ARCHITECTURE.md", "README.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for p in named_paths(&text) {
            n += 1;
            if !root.join(&p).exists() {
                missing.push(format!("{doc}: {p}"));
            }
        }
    }
    assert!(n >= 10, "the docs name only {n} paths: is the scan right?");
    assert!(
        missing.is_empty(),
        "named but missing:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scan_finds_backquoted_paths_only() {
    let text = "see `actors/src/xlate.rs`, `lib/dpif.c` and actors/src/handler.rs, \
                `src/dpif_netdev/` and `tests/*.rs`";
    assert_eq!(
        named_paths(text),
        ["actors/src/xlate.rs", "src/dpif_netdev/"]
    );
}
