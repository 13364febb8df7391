//! The one integration-test binary of this crate (the CRD, the Pod builder, the controller against a Kubernetes API stand-in, and the Helm chart): `cargo test --test all`.

mod suite;
