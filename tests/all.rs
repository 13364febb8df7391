//! The one integration-test binary: `cargo test --test all`.

mod suite;
mod support;
