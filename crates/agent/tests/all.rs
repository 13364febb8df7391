//! The one integration-test binary of this crate (the in-sandbox agent and the fetch step, through the agent binary with the real codex and a scripted model): `cargo test --test all`.

mod suite;
