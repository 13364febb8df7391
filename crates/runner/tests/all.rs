//! The one integration-test binary of this crate (the Docker backend against the real engine (hardening, egress, restarts, the image, the verify loop)): `cargo test --test all`.

mod suite;
