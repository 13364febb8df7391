//! The one integration-test binary of this crate (the JSONL decoder and fold against real codex transcripts): `cargo test --test all`.

mod suite;
