//! The workspace's architecture rules, checked on the manifests themselves (`cargo metadata`,
//! `cargo tree`): dependencies between our crates point one way, exactly as
//! docs/ARCHITECTURE.md draws them; the core has no async runtime, backend or protocol crate;
//! test code is never a dependency of a product crate.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

fn cargo() -> Command {
    let mut c = Command::new(env!("CARGO"));
    c.current_dir(codex_orchestrator_testkit::repo_root());
    c
}

/// Our crates (short names) and, per kind (`normal`, `dev`), the crates of ours each depends on.
fn graph() -> BTreeMap<String, BTreeMap<&'static str, BTreeSet<String>>> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let short = |name: &str| {
        name.strip_prefix("codex-orchestrator-")
            .unwrap_or(if name == "codex-orchestrator" {
                "cli"
            } else {
                name
            })
            .to_string()
    };
    let mut g = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let mut kinds: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
        for d in p["dependencies"].as_array().unwrap() {
            let name = d["name"].as_str().unwrap();
            if !name.starts_with("codex-orchestrator") {
                continue;
            }
            let kind = match d["kind"].as_str() {
                None => "normal",
                Some("dev") => "dev",
                Some(_) => "build",
            };
            kinds.entry(kind).or_default().insert(short(name));
        }
        g.insert(short(p["name"].as_str().unwrap()), kinds);
    }
    g
}

#[test]
fn our_crates_depend_on_each_other_one_way_only() {
    let g = graph();
    let normal: BTreeMap<String, BTreeSet<String>> = g
        .iter()
        .map(|(k, v)| (k.clone(), v.get("normal").cloned().unwrap_or_default()))
        .collect();
    let set = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
    let expected = BTreeMap::from([
        ("core".to_string(), set(&[])),
        ("http".to_string(), set(&[])),
        ("workspace".to_string(), set(&["core"])),
        ("egress".to_string(), set(&["core", "http"])),
        ("agent".to_string(), set(&["core", "workspace"])),
        ("runner".to_string(), set(&["core", "egress", "workspace"])),
        ("kube".to_string(), set(&["core", "http", "runner"])),
        (
            "server".to_string(),
            set(&["core", "http", "runner", "workspace"]),
        ),
        (
            "cli".to_string(),
            set(&["agent", "core", "egress", "kube", "runner", "server"]),
        ),
        ("testkit".to_string(), set(&["core", "runner"])),
    ]);
    assert_eq!(normal, expected, "see docs/ARCHITECTURE.md");

    // No cycle, counting dev-dependencies too (except on the testkit, which depends on
    // product crates by design and is never a dependency of one).
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, kinds) in &g {
        for deps in kinds.values() {
            for d in deps.iter().filter(|d| d.as_str() != "testkit") {
                edges.entry(k.clone()).or_default().insert(d.clone());
            }
        }
    }
    fn reaches(
        e: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        to: &str,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        e.get(from)
            .into_iter()
            .flatten()
            .any(|n| n == to || (seen.insert(n.clone()) && reaches(e, n, to, seen)))
    }
    for k in edges.keys() {
        assert!(
            !reaches(&edges, k, k, &mut BTreeSet::new()),
            "{k} is on a cycle"
        );
    }
    // Test code never ships: only dev-dependencies on the testkit.
    for (k, kinds) in &g {
        assert!(
            !kinds.get("normal").is_some_and(|d| d.contains("testkit")),
            "{k} depends on the testkit"
        );
    }
}

#[test]
fn the_core_has_no_runtime_backend_or_protocol_crate() {
    let out = cargo()
        .args([
            "tree",
            "--locked",
            "-p",
            "codex-orchestrator-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let crates: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains("codex-orchestrator-core"), "{text}");
    assert!(crates.contains("serde_json"), "{text}");
    for banned in [
        "tokio",
        "kube",
        "kube-client",
        "k8s-openapi",
        "bollard",
        "rmcp",
        "hyper",
        "hyper-util",
        "reqwest",
        "git2",
    ] {
        assert!(
            !crates.contains(banned),
            "core depends on {banned}:\n{text}"
        );
    }
}
