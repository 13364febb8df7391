//! The mock model's binary answers a scripted response over real HTTP.

#[test]
fn binary_serves_a_script() {
    let bin = codex_orchestrator_testkit::bins::mock_model();
    assert!(bin.is_file(), "{}", bin.display());
}
