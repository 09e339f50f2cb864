//! Test helpers: where the real all-MiniLM-L6-v2 model lives, and a loud skip when it is absent
//! (CI sets FEDSEARCH_REQUIRE_MODEL=1, which turns a missing model into a failure).

use std::path::PathBuf;

/// The real model folder, or `None` (after saying so) when it is not installed.
pub fn real_model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FEDSEARCH_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2"));
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    if std::env::var_os("FEDSEARCH_REQUIRE_MODEL").is_some() {
        panic!("FEDSEARCH_REQUIRE_MODEL is set but the real model is not at {}", dir.display());
    }
    eprintln!("SKIPPED: this test needs the real model at {} (run `fedsearch fetch-model`)", dir.display());
    None
}
