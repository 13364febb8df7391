//! The one integration-test binary of this crate (the command line through the real binary, and the workspace's architecture rules): `cargo test --test all`.

mod suite;
