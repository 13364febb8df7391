//! The one integration-test binary of this crate (snapshot, diff and apply on real git repositories): `cargo test --test all`.

mod suite;
