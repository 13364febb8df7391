//! The one integration-test binary of this crate (the MCP tools, the patch workflow, the gateway and the security of runs, through the real binary): `cargo test --test all`.

mod suite;
