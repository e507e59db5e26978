//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`: seeds and the inputs of bugs
//! the fuzzer found) through the fuzz targets' own bodies, on stable, in every `cargo test`.

use std::path::{Path, PathBuf};

// The same source file the cargo-fuzz targets run (it uses only this package's dependencies).
#[path = "../../fuzz/src/lib.rs"]
mod targets;

/// Every file of `fuzz/corpus/<target>/`, sorted.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("the corpus {} is committed: {error}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus input through `target`; reports every input that panics, by file name.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let files = corpus(target);
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let bytes = std::fs::read(path).expect("corpus file");
            std::panic::catch_unwind(|| run(&bytes))
                .err()
                .map(|_| path.display().to_string())
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} {target} inputs fail:\n  {}",
        failures.len(),
        files.len(),
        failures.join("\n  ")
    );
    files.len()
}

#[test]
fn the_event_decoder_corpus_replays() {
    let inputs = replay("event_decoder", targets::event_decoder);
    assert!(inputs >= 10, "only {inputs} event_decoder inputs");
}

#[test]
fn the_decoders_corpus_replays() {
    let inputs = replay("decoders", targets::decoders);
    assert!(inputs >= 10, "only {inputs} decoders inputs");
}
