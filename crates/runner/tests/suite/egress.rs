//! Network egress and key isolation on the real Docker engine (docs/SECURITY_MODES.md): a model-issued
//! command probes the network from inside a `workspace_write` run and from inside a
//! `full_access` run. The "other host" is the mock model's own container, which sits on the
//! outside network, not on the run's.

use std::path::Path;
use std::time::Duration;

use codex_orchestrator_core::model::{RunPhase, RunRequest, SecurityMode, TerminalReason};
use codex_orchestrator_egress as egress;
use codex_orchestrator_runner::Runner;
use serde_json::{Value, json};

use codex_orchestrator_testkit::docker::{DockerEnv, MOCK_KEY, WS_UID, chown_tree, git_workspace};

/// Probes what the sandbox can reach and read, and writes the findings to probe.json. Only
/// addresses of this test's own containers are contacted.
const PROBE: &str = r#"
import json, os, socket, sys, urllib.request, urllib.error

target_ip = sys.argv[1]
out = {}

def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "reached"
    except OSError as e:
        return "blocked: " + type(e).__name__

def resolve(name):
    try:
        socket.getaddrinfo(name, 8080)
        return "resolved"
    except OSError:
        return "unresolved"

def http(url, headers, method="POST"):
    data = b"{}" if method == "POST" else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        return urllib.request.urlopen(req, timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return "error: " + type(e).__name__

out["other_container_by_ip"] = connect(target_ip, 8080)
out["other_container_by_name"] = resolve("mock")
env_dump = json.dumps(dict(os.environ))
for p in ["/proc/1/environ", "/proc/self/environ"]:
    try:
        env_dump += open(p, "rb").read().decode("latin-1")
    except OSError as e:
        env_dump += "unreadable " + p
out["environment"] = env_dump
token = os.environ.get("CODEX_ORCHESTRATOR_MODEL_TOKEN", "")
out["proxy_other_path"] = http("http://model-proxy:8080/v1/files", {"Authorization": "Bearer " + token})
out["proxy_without_token"] = http("http://model-proxy:8080/v1/responses", {})
# An allowed endpoint with headers the sandbox sets: only the allowlisted ones may arrive.
out["proxy_with_org_headers"] = http(
    "http://model-proxy:8080/v1/models",
    {
        "Authorization": "Bearer " + token,
        "OpenAI-Organization": "org-sandbox",
        "OpenAI-Project": "proj-sandbox",
        "X-Forwarded-For": "10.9.9.9",
        "Cookie": "a=b",
        "session-id": "probe-session",
    },
    method="GET",
)
with open("probe.json", "w") as f:
    json.dump(out, f)
print("probed")
"#;

fn request(ws: &Path, mode: SecurityMode) -> RunRequest {
    RunRequest {
        confirm_full_access: mode == SecurityMode::FullAccess,
        verify: Some(codex_orchestrator_core::model::VerifyOptions {
            enabled: Some(false),
            ..Default::default()
        }),
        ..codex_orchestrator_testkit::docker::request(ws, mode, "Probe the network.")
    }
}

async fn mock_ip(env: &DockerEnv) -> String {
    let c = env.docker.inspect_container(&env.mock, None).await.unwrap();
    let nets = c.network_settings.unwrap().networks.unwrap();
    nets[&env.network].ip_address.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_reaches_only_the_model_api_and_never_holds_the_key() {
    // The probe command gets the mock's address as an argument; the script is fixed before
    // the mock starts, so the command reads it from a file the test writes.
    let mut env = DockerEnv::start(json!([
        {"output": [{"exec": "python3 probe.py \"$(cat target_ip)\"", "yield_time_ms": 60000}]},
        {"output": [{"message": "probed"}]},
        {"output": [{"exec": "python3 probe.py \"$(cat target_ip)\"", "yield_time_ms": 60000}]},
        {"output": [{"message": "probed"}]}
    ]))
    .await;
    let ip = mock_ip(&env).await;

    // workspace_write: only the run's own network, no route out, the key nowhere.
    let ww = {
        let ws = git_workspace();
        std::fs::write(ws.path().join("probe.py"), PROBE).unwrap();
        std::fs::write(ws.path().join("target_ip"), &ip).unwrap();
        chown_tree(ws.path(), WS_UID);
        let runner = env.runner().await;
        let id = runner
            .submit(request(ws.path(), SecurityMode::WorkspaceWrite))
            .await
            .unwrap();
        let st = runner.wait(&id, Duration::from_secs(180)).await.unwrap();
        assert_eq!(
            (st.phase, st.reason),
            (RunPhase::Succeeded, Some(TerminalReason::Completed)),
            "{st:#?}"
        );
        let text = std::fs::read_to_string(ws.path().join("probe.json")).unwrap_or_else(|e| {
            let art = futures::executor::block_on(runner.artifacts(&id)).unwrap();
            let ev = std::fs::read_to_string(art.run_dir.unwrap().join("events.jsonl")).unwrap();
            panic!("probe.json: {e}\n{ev}")
        });
        serde_json::from_str::<Value>(&text).unwrap()
    };
    assert!(
        ww["other_container_by_ip"]
            .as_str()
            .unwrap()
            .starts_with("blocked"),
        "{ww}"
    );
    assert_eq!(ww["other_container_by_name"], "unresolved", "{ww}");
    assert_eq!(ww["proxy_other_path"], 403, "{ww}");
    assert_eq!(ww["proxy_without_token"], 401, "{ww}");
    let environment = ww["environment"].as_str().unwrap();
    assert!(!environment.contains(MOCK_KEY), "the key is in the sandbox");
    assert!(environment.contains("CODEX_ORCHESTRATOR_MODEL_TOKEN"));
    // The mock answers 404 to `GET /v1/models`: the request was forwarded.
    assert_eq!(ww["proxy_with_org_headers"], 404, "{ww}");
    // The model turns and the probe's request went through the proxy, authorised with the real
    // key there.
    let reqs = env.mock_requests().await;
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert!(
        reqs.iter().all(|r| r["authorized"] == json!(true)),
        "{reqs:#?}"
    );
    let names = |r: &Value| -> Vec<String> {
        let mut n: Vec<String> = r["headers"].as_object().unwrap().keys().cloned().collect();
        n.sort();
        n
    };
    // The probe's request arrived with exactly these headers: the organisation, project,
    // forwarding and cookie headers the sandbox set were dropped.
    let probe = reqs.iter().find(|r| r["path"] == "/v1/models").unwrap();
    assert_eq!(
        names(probe),
        [
            "accept",
            "authorization",
            "host",
            "session-id",
            "user-agent"
        ],
        "{probe:#}"
    );
    assert_eq!(probe["headers"]["session-id"], "probe-session");
    // codex's own turns keep what codex sends (its session headers), nothing outside the
    // allowlist but what the proxy's HTTP client sets itself.
    for r in reqs.iter().filter(|r| r["path"] == "/v1/responses") {
        let n = names(r);
        for h in ["originator", "session-id", "user-agent", "content-type"] {
            assert!(n.iter().any(|x| x == h), "{h} missing: {n:?}");
        }
        assert!(
            n.iter()
                .all(|h| egress::FORWARDED_REQUEST_HEADERS.contains(&h.as_str())
                    || ["authorization", "host", "content-length"].contains(&h.as_str())),
            "{n:?}"
        );
    }

    // full_access: the same command reaches the other container; the key is still absent.
    let fa = {
        let ws = git_workspace();
        std::fs::write(ws.path().join("target_ip"), &ip).unwrap();
        std::fs::write(ws.path().join("probe.py"), PROBE).unwrap();
        chown_tree(ws.path(), WS_UID);
        let mut cfg = env.config();
        cfg.allow_full_access = true;
        let runner = env.runner_with(cfg).await;
        let id = runner
            .submit(request(ws.path(), SecurityMode::FullAccess))
            .await
            .unwrap();
        let st = runner.wait(&id, Duration::from_secs(180)).await.unwrap();
        assert_eq!(st.phase, RunPhase::Succeeded, "{st:#?}");
        let text = std::fs::read_to_string(ws.path().join("probe.json")).expect("probe.json");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    assert_eq!(fa["other_container_by_ip"], "reached", "{fa}");
    assert_eq!(fa["other_container_by_name"], "resolved", "{fa}");
    assert!(!fa["environment"].as_str().unwrap().contains(MOCK_KEY));
    assert_eq!(env.mock_requests().await.len(), 6);
    // Every run's sandbox, proxy and network are gone.
    assert!(env.store_containers().await.is_empty());
    let nets = env
        .docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .unwrap();
    assert!(
        !nets.iter().any(|n| n
            .name
            .as_deref()
            .is_some_and(|x| x.starts_with("codex-net-"))
            && n.labels
                .as_ref()
                .and_then(|l| l.get("dev.codex-orchestrator.store"))
                == Some(&env.store_key())),
        "a run network was left behind"
    );
    env.cleanup().await;
}
