//! The gateway's Kubernetes runner against a hostile tenant (issue 12): a `pvc:` workspace of
//! another tenant, a Secret that is not on the allowlist, and a stored event log that is a
//! gzip bomb. A small in-memory API server answers behind kube's `Client`; every refusal is
//! checked for its message and for creating nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use codex_orchestrator_core::model::{RunRequest, SecurityMode};
use codex_orchestrator_core::policy::cluster::SecretRule;
use codex_orchestrator_kube::runner::{
    KubeRunner, KubeRunnerSettings, REQUEST_LABEL_GIT_CREDENTIALS,
};
use codex_orchestrator_runner::Runner;
use codex_orchestrator_runner::error::RunnerError;
use http::Request;
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

use codex_orchestrator_testkit::kubeapi::{self, merge, ok, status_resp};

#[derive(Default)]
struct State {
    runs: BTreeMap<String, Value>,
    pvcs: BTreeMap<String, Value>,
    configmaps: BTreeMap<String, Value>,
    requests: Vec<String>,
}

type Shared = Arc<Mutex<State>>;

fn answer(st: &mut State, method: &str, path: &str, body: Value) -> http::Response<Body> {
    st.requests.push(format!("{method} {path}"));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["api", "v1", "namespaces", _, "persistentvolumeclaims", name]) => {
            match st.pvcs.get(*name) {
                Some(c) => ok(c),
                None => status_resp(404, "NotFound"),
            }
        }
        ("GET", ["api", "v1", "namespaces", _, "configmaps", name]) => {
            match st.configmaps.get(*name) {
                Some(c) => ok(c),
                None => status_resp(404, "NotFound"),
            }
        }
        ("POST", [.., ns, "codexruns"]) => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut cr = body.clone();
            cr["metadata"]["namespace"] = json!(ns);
            cr["metadata"]["uid"] = json!("0a1b2c3d-0000-4000-8000-000000000000");
            cr["metadata"]["creationTimestamp"] = json!("2026-05-01T10:00:00Z");
            st.runs.insert(name, cr.clone());
            ok(&cr)
        }
        ("PATCH", [.., "codexruns", name]) => match st.runs.get_mut(*name) {
            Some(r) => {
                merge(r, &body);
                ok(&r.clone())
            }
            None => status_resp(404, "NotFound"),
        },
        ("GET", [.., "codexruns"]) => ok(&json!({
            "apiVersion": "codex-orchestrator.dev/v1alpha1", "kind": "CodexRunList",
            "metadata": {"resourceVersion": "1"},
            "items": st.runs.values().cloned().collect::<Vec<_>>()})),
        _ => status_resp(404, "NotFound"),
    }
}

struct Fake {
    state: Shared,
    client: kube::Client,
    _server: tokio::task::JoinHandle<()>,
}

fn fake() -> Fake {
    let state: Shared = Arc::default();
    let s = state.clone();
    let (client, server) = kubeapi::client(move |req: Request<Body>| {
        let s = s.clone();
        async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let bytes: Bytes = req.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            answer(&mut s.lock().unwrap(), &method, &path, body)
        }
    });
    Fake {
        state,
        client,
        _server: server,
    }
}

impl Fake {
    fn writes(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| !r.starts_with("GET "))
            .cloned()
            .collect()
    }
}

pub(super) fn request(ws: &str) -> RunRequest {
    RunRequest {
        codex_version: None,
        prompt: "Make x 2".into(),
        workspace: PathBuf::from(ws),
        mode: SecurityMode::WorkspaceWrite,
        model: None,
        provider: None,
        timeout_secs: None,
        output_schema: None,
        schema_retry: false,
        confirm_full_access: false,
        verify: None,
        image: None,
        labels: BTreeMap::new(),
        workspace_growth_limit_mb: None,
    }
}

fn claim(name: &str, tenant: Option<&str>) -> Value {
    let labels = tenant.map_or(json!({}), |t| json!({"codex-orchestrator.dev/tenant": t}));
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "runs", "labels": labels}, "spec": {}})
}

fn invalid(e: RunnerError) -> String {
    match e {
        RunnerError::InvalidRequest(m) => m,
        other => panic!("not a refusal: {other}"),
    }
}

/// Tenant `alpha` names `pvc:` claims of tenant `beta`, without a tenant label and that do not
/// exist: each refused with what and why, nothing created (the claim is only read). Its own
/// claim is accepted. In its own namespace (`--namespace-per-tenant`) any claim there is its.
#[tokio::test]
async fn a_tenant_mounts_only_its_own_claims() {
    let f = fake();
    {
        let mut st = f.state.lock().unwrap();
        st.pvcs
            .insert("beta-data".into(), claim("beta-data", Some("beta")));
        st.pvcs.insert("shared".into(), claim("shared", None));
        st.pvcs
            .insert("alpha-data".into(), claim("alpha-data", Some("alpha")));
    }
    let alpha = KubeRunner::for_tenant(
        f.client.clone(),
        "runs",
        "alpha",
        KubeRunnerSettings::default(),
    );
    for (ws, why) in [
        (
            "pvc:beta-data/src",
            "PersistentVolumeClaim `beta-data` does not belong to tenant `alpha` (its label codex-orchestrator.dev/tenant is `beta`); refused: a tenant can only mount claims labelled codex-orchestrator.dev/tenant=alpha",
        ),
        (
            "pvc:shared",
            "PersistentVolumeClaim `shared` does not belong to tenant `alpha` (its label codex-orchestrator.dev/tenant is absent); refused: a tenant can only mount claims labelled codex-orchestrator.dev/tenant=alpha",
        ),
        (
            "pvc:nope",
            "PersistentVolumeClaim `nope` does not exist in namespace `runs`; refused: tenant `alpha` can only mount its own claims",
        ),
    ] {
        let e = alpha.submit(request(ws)).await.unwrap_err();
        assert_eq!(invalid(e), why, "{ws}");
    }
    assert_eq!(f.writes(), Vec::<String>::new());
    assert!(f.state.lock().unwrap().runs.is_empty());

    alpha.submit(request("pvc:alpha-data/app")).await.unwrap();
    let runs: Vec<Value> = f.state.lock().unwrap().runs.values().cloned().collect();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0]["spec"]["source"],
        json!({"pvc": {"claimName": "alpha-data", "subPath": "app"}})
    );
    assert_eq!(
        runs[0]["metadata"]["labels"]["codex-orchestrator.dev/tenant"],
        "alpha"
    );

    // One namespace per tenant: the namespace `alpha` is the tenant's; its claims need no
    // label. (The fake serves every namespace's claims from one table.)
    let own_ns = KubeRunner::for_tenant(
        f.client.clone(),
        "alpha",
        "alpha",
        KubeRunnerSettings::default(),
    )
    .in_tenants_namespace();
    own_ns.submit(request("pvc:shared")).await.unwrap();
    // … but a claim still has to exist.
    let e = own_ns.submit(request("pvc:nope")).await.unwrap_err();
    assert_eq!(
        invalid(e),
        "PersistentVolumeClaim `nope` does not exist in namespace `alpha`; refused: tenant `alpha` can only mount its own claims"
    );
}

/// The request label `git-credentials-secret` may only name a Secret on the gateway's
/// allowlist; an empty list allows none. Refused before any API call.
#[tokio::test]
async fn git_credentials_only_from_the_allowlist() {
    let f = fake();
    let settings = KubeRunnerSettings {
        allowed_secrets: SecretRule::listed(["alpha-git"]),
        ..KubeRunnerSettings::default()
    };
    let alpha = KubeRunner::for_tenant(f.client.clone(), "runs", "alpha", settings.clone());
    let mut req = request("https://git.example/team/app.git");
    req.labels.insert(
        REQUEST_LABEL_GIT_CREDENTIALS.into(),
        "prod-db-password".into(),
    );
    let e = alpha.submit(req.clone()).await.unwrap_err();
    assert_eq!(
        invalid(e),
        "spec.source.git.credentialsSecret names Secret `prod-db-password`, which is not on the allowlist of Secrets runs may use (allowed: `alpha-git`); refused: a run may only read Secrets the operator allowed (controller and gateway flag --allowed-secret, chart value allowedSecrets)"
    );
    assert!(f.state.lock().unwrap().requests.is_empty());

    let none = KubeRunner::for_tenant(
        f.client.clone(),
        "runs",
        "alpha",
        KubeRunnerSettings {
            allowed_secrets: SecretRule::listed(Vec::<String>::new()),
            ..settings.clone()
        },
    );
    req.labels
        .insert(REQUEST_LABEL_GIT_CREDENTIALS.into(), "alpha-git".into());
    let e = none.submit(req.clone()).await.unwrap_err();
    assert!(invalid(e).contains("(the list is empty)"));
    assert!(f.state.lock().unwrap().requests.is_empty());

    alpha.submit(req).await.unwrap();
    let runs: Vec<Value> = f.state.lock().unwrap().runs.values().cloned().collect();
    assert_eq!(
        runs[0]["spec"]["source"]["git"]["credentialsSecret"],
        json!({"name": "alpha-git"})
    );
}

/// 1 GiB of zeros in about 1 MiB of gzip (repeated flushed deflate blocks), valid CRC and
/// size.
fn zero_bomb(mib: u32) -> Vec<u8> {
    let block_in = vec![0u8; 1024 * 1024];
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&block_in).unwrap();
    enc.flush().unwrap();
    let block = enc.get_ref().clone();
    let mut one = flate2::Crc::new();
    one.update(&block_in);
    let mut crc = flate2::Crc::new();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    for _ in 0..mib {
        out.extend_from_slice(&block);
        crc.combine(&one);
    }
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(u64::from(mib) << 20).to_le_bytes()[..4]);
    out
}

/// A finished run whose stored `events.jsonl.gz` is a gzip bomb (someone with write access to
/// the ConfigMap, or a forged status pointing at another object): `events` answers with a
/// clear error instead of inflating a gigabyte.
#[tokio::test]
async fn a_gzip_bomb_as_the_stored_event_log_is_a_clear_error() {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::ConfigMap;
    let f = fake();
    let bomb = zero_bomb(1024);
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    let bomb_len = bomb.len();
    {
        let mut st = f.state.lock().unwrap();
        st.runs.insert(
            "r".into(),
            json!({"apiVersion": "codex-orchestrator.dev/v1alpha1", "kind": "CodexRun",
                "metadata": {"name": "r", "namespace": "runs",
                    "uid": "0a1b2c3d-0000-4000-8000-000000000000",
                    "creationTimestamp": "2026-05-01T10:00:00Z",
                    "labels": {"app.kubernetes.io/managed-by": "codex-orchestrator",
                        "codex-orchestrator.dev/tenant": "alpha",
                        "codex-orchestrator.dev/run-id": "20260501100000-0a1b2c3d"}},
                "spec": {"prompt": "p", "source": {"git": {"url": "https://g/r.git"}}},
                "status": {"phase": "succeeded", "artifacts": {"kind": "ConfigMap",
                    "name": "r-artifacts", "keys": ["events.jsonl.gz"]}}}),
        );
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("r-artifacts".into()),
                namespace: Some("runs".into()),
                ..Default::default()
            },
            binary_data: Some(BTreeMap::from([(
                "events.jsonl.gz".to_string(),
                ByteString(bomb),
            )])),
            ..Default::default()
        };
        st.configmaps
            .insert("r-artifacts".into(), serde_json::to_value(&cm).unwrap());
    }
    let alpha = KubeRunner::for_tenant(
        f.client.clone(),
        "runs",
        "alpha",
        KubeRunnerSettings::default(),
    );
    let id = codex_orchestrator_core::model::RunId::parse("20260501100000-0a1b2c3d").unwrap();
    let e = alpha.events(&id, 0, 100).await.unwrap_err();
    eprintln!("a {bomb_len}-byte gzip bomb (1 GiB inflated) refused: {e}");
    assert_eq!(
        e.to_string(),
        RunnerError::Corrupt(
            "the stored event log is unreadable: the stored event log inflates to more than 67108864 bytes (a gzip bomb?); stopped reading it there".into()
        )
        .to_string()
    );
}
