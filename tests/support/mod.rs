//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// `tests/fixtures/` of this crate.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The real codex 0.147.0 transcripts (copied from the shared fixtures).
pub fn codex_fixtures() -> PathBuf {
    fixtures_dir().join("codex-exec-0.147")
}
