//! The official Python MCP SDK's client (`mcp` from PyPI, in the test venv), driven by
//! `crates/testkit/py/mcp_client.py`, against our server in each protocol version: over
//! streamable HTTP (the in-process listener over the scripted [`FakeRunner`]) and over stdio
//! (the real binary).

use std::path::Path;
use std::time::Duration;

use codex_orchestrator_server::mcp::http::HttpListener;
use codex_orchestrator_server::mcp::{ApprovalPolicy, McpConfig, OrchestratorServer};
use codex_orchestrator_testkit::docker::tree_contents;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::mcp::canonical;

const TOOLS: [&str; 7] = [
    "codex_git_diff",
    "codex_patch_apply",
    "codex_run",
    "codex_run_artifacts",
    "codex_run_cancel",
    "codex_run_list",
    "codex_run_status",
];

/// Runs the driver with `args` (transport and options) and `ops`; returns its JSON report.
async fn drive(args: Vec<String>, ops: Value) -> Value {
    let (python, script) =
        tokio::task::spawn_blocking(codex_orchestrator_testkit::python_mcp_client)
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ops_file = dir.path().join("ops.json");
    std::fs::write(&ops_file, ops.to_string()).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(python)
            .arg(script)
            .args(["--timeout", "120", "--ops"])
            .arg(&ops_file)
            .args(&args)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Python client finishes")
    .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn tool_names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_client_over_http_in_each_protocol_version() {
    let root = tempfile::tempdir().unwrap();
    let root_c = canonical(root.path());
    let (runner, id, ws) = super::mcp_protocol::finished_readonly(&root_c);
    let patch = {
        use codex_orchestrator_runner::Runner;
        runner.artifacts(&id).await.unwrap().patch.unwrap()
    };
    let server = OrchestratorServer::new(
        runner.clone(),
        McpConfig {
            allowed_roots: vec![root_c.clone()],
            approval: ApprovalPolicy::Auto,
            ..McpConfig::default()
        },
    )
    .unwrap();
    let listener = HttpListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{}/mcp", listener.local_addr());
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(listener.serve(move || Ok(server.clone()), shutdown.clone()));

    let before = tree_contents(&ws);
    let ops = json!([
        {"op": "list_tools"},
        {"op": "list_resource_templates"},
        {"op": "list_resources"},
        {"op": "read_resource", "uri": format!("codex-run://{id}/patch")},
        {"op": "call_tool", "name": "codex_patch_apply", "arguments": {"run_id": id, "approve": true}},
    ]);
    for protocol in ["2025-06-18", "2025-11-25", "2026-07-28"] {
        let args = vec![
            "--http".into(),
            url.clone(),
            "--protocol".into(),
            protocol.into(),
            "--elicit".into(),
            "decline".into(),
        ];
        let r = drive(args, ops.clone()).await;
        assert_eq!(r["protocol_version"], protocol, "{r:#}");
        let res = &r["results"];
        assert_eq!(tool_names(&res[0]), TOOLS, "{protocol}");
        let templates: Vec<&str> = res[1]["resourceTemplates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["uriTemplate"].as_str().unwrap())
            .collect();
        assert_eq!(
            templates,
            [
                "codex-run://{run_id}/result",
                "codex-run://{run_id}/patch{?offset,limit}",
                "codex-run://{run_id}/final-message{?offset,limit}",
                "codex-run://{run_id}/events{?offset,limit}"
            ],
            "{protocol}"
        );
        let uris: Vec<&str> = res[2]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["uri"].as_str().unwrap())
            .collect();
        assert_eq!(
            uris,
            ["result", "patch", "final-message", "events"].map(|p| format!("codex-run://{id}/{p}")),
            "{protocol}"
        );
        assert_eq!(res[3]["contents"][0]["text"], json!(patch), "{protocol}");
        assert_eq!(res[3]["contents"][0]["mimeType"], "text/x-diff");
        // The human was asked (what the Python client saw) and declined: nothing applied.
        assert_eq!(res[4]["isError"], json!(true), "{protocol}: {:#}", res[4]);
        assert_eq!(
            text(&res[4]),
            "the user declined applying the patch; nothing was changed"
        );
        let asked = r["elicitations"].as_array().unwrap();
        assert_eq!(asked.len(), 1, "{protocol}");
        assert!(
            asked[0]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Apply the changes Codex made in run {id} to ")),
            "{protocol}: {asked:?}"
        );
        assert_eq!(asked[0]["requestedSchema"]["required"], json!(["confirm"]));
        assert_eq!(tree_contents(&ws), before, "{protocol}: unchanged");
    }

    // Accepted (2026-07-28, an input request): applied.
    let r = drive(
        vec![
            "--http".into(),
            url.clone(),
            "--elicit".into(),
            "accept".into(),
        ],
        json!([{"op": "call_tool", "name": "codex_patch_apply", "arguments": {"run_id": id, "approve": false}}]),
    )
    .await;
    assert_eq!(r["protocol_version"], "2026-07-28", "the SDK's default");
    assert_eq!(
        r["results"][0]["structuredContent"]["applied"],
        json!(true),
        "{r:#}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("new.txt")).unwrap(),
        "new\n"
    );
    shutdown.cancel();
    serving.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_client_over_stdio_against_the_binary() {
    let ws = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let binary = |approval: &str| -> Vec<String> {
        [
            "--stdio",
            "--",
            codex_orchestrator_testkit::bins::cli().to_str().unwrap(),
            "--state-dir",
            state.path().to_str().unwrap(),
            "mcp",
            "--allow-full-access",
            "--approval",
            approval,
            "--allowed-root",
            ws.path().to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let full_access = json!({"prompt": "Deploy", "security_mode": "full_access"});
    let ops = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "codex_run", "arguments": full_access},
    ]);
    for (protocol, elicit, want) in [
        (
            "2025-06-18",
            "decline",
            "the user declined the full_access run; nothing was started",
        ),
        (
            "2025-11-25",
            "cancel",
            "the user cancelled the approval of the full_access run; nothing was started",
        ),
        (
            "2026-07-28",
            "decline",
            "the user declined the full_access run; nothing was started",
        ),
        (
            "2025-11-25",
            "none",
            "this server requires a human's approval (approval policy `human`), and this MCP client cannot ask its user: it declared no elicitation capability. Use a client that supports elicitation; confirm_full_access: true alone is not enough here",
        ),
    ] {
        // The driver's options first: everything after `--` is the server's command line.
        let mut args: Vec<String> = ["--protocol", protocol, "--elicit", elicit]
            .map(String::from)
            .to_vec();
        args.extend(binary("human"));
        let r = drive(args, ops.clone()).await;
        assert_eq!(r["protocol_version"], protocol, "{r:#}");
        assert_eq!(
            r["server_info"]["name"],
            if protocol == "2026-07-28" {
                Value::Null
            } else {
                json!("codex-orchestrator")
            }
        );
        assert_eq!(tool_names(&r["results"][0]), TOOLS);
        assert_eq!(r["results"][1]["isError"], json!(true), "{r:#}");
        assert_eq!(text(&r["results"][1]), want, "{protocol} {elicit}");
        assert_eq!(
            r["elicitations"].as_array().unwrap().len(),
            usize::from(elicit != "none"),
            "{protocol} {elicit}"
        );
    }
    // Nothing was started: no run directory was made.
    assert!(no_runs(state.path()), "{}", state.path().display());
    // Every decision is in the audit log, with the channel the client's protocol allowed.
    let audit: Vec<(String, String)> = std::fs::read_to_string(state.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["action"] == "approval")
        .map(|v| {
            let s = |v: &Value| v.as_str().unwrap().to_owned();
            (s(&v["outcome"]), s(&v["approval"]["channel"]))
        })
        .collect();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        audit,
        vec![
            pair("asked", "elicitation"),
            pair("declined", "elicitation"),
            pair("asked", "elicitation"),
            pair("cancelled", "elicitation"),
            pair("asked", "input_request"),
            pair("declined", "input_request"),
            pair("refused", "none"),
        ]
    );
}

/// True when the state directory holds no run.
fn no_runs(state: &Path) -> bool {
    let runs = state.join("runs");
    !runs.exists() || std::fs::read_dir(&runs).unwrap().next().is_none()
}
