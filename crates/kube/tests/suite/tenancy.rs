//! The gateway's Kubernetes runner against a hostile tenant (issue 12): a `pvc:` workspace of
//! another tenant, a Secret that is not on the allowlist, and a stored event log that is a
//! gzip bomb. The testkit's strict API server answers behind kube's `Client`; every refusal
//! is checked for its message and for creating nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use codex_orchestrator_core::model::{RunRequest, SecurityMode};
use codex_orchestrator_core::policy::cluster::SecretRule;
use codex_orchestrator_kube::pod::run_id_for;
use codex_orchestrator_kube::runner::{
    KubeRunner, KubeRunnerSettings, REQUEST_LABEL_GIT_CREDENTIALS,
};
use codex_orchestrator_runner::Runner;
use codex_orchestrator_runner::error::RunnerError;
use codex_orchestrator_testkit::apiserver::ApiServer;
use serde_json::{Value, json};

use super::apiserver::strict_api;

/// The strict API server of the testkit and a client of it in namespace `runs`.
struct Fake {
    api: ApiServer,
    client: kube::Client,
}

fn fake() -> Fake {
    let api = strict_api();
    let client = api.client("runs");
    Fake { api, client }
}

impl Fake {
    /// Every request that could change something.
    fn writes(&self) -> Vec<String> {
        self.api
            .requests()
            .into_iter()
            .filter(|r| !r.starts_with("GET "))
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
        budget: None,
        attempts: None,
        stop_on_first_pass: false,
        tokens_left: None,
    }
}

fn claim(name: &str, tenant: Option<&str>) -> Value {
    let labels = tenant.map_or(json!({}), |t| json!({"codex-orchestrator.dev/tenant": t}));
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": labels}, "spec": {}})
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
    for (name, tenant) in [
        ("beta-data", Some("beta")),
        ("shared", None),
        ("alpha-data", Some("alpha")),
    ] {
        f.api.insert("runs", claim(name, tenant)).unwrap();
    }
    f.api.insert("alpha", claim("shared", None)).unwrap();
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
    assert!(f.api.list("codexruns").is_empty());

    alpha.submit(request("pvc:alpha-data/app")).await.unwrap();
    let runs = f.api.list("codexruns");
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
    // label.
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
    assert_eq!(f.api.requests(), Vec::<String>::new());

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
    assert_eq!(f.api.requests(), Vec::<String>::new());

    alpha.submit(req).await.unwrap();
    let runs = f.api.list("codexruns");
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
    let run = f
        .api
        .insert(
            "runs",
            json!({"apiVersion": "codex-orchestrator.dev/v1alpha1", "kind": "CodexRun",
                "metadata": {"name": "r",
                    "labels": {"app.kubernetes.io/managed-by": "codex-orchestrator",
                        "codex-orchestrator.dev/tenant": "alpha"}},
                "spec": {"prompt": "p", "source": {"git": {"url": "https://g/r.git"}}}}),
        )
        .unwrap();
    let id = run_id_for(&serde_json::from_value(run).unwrap()).unwrap();
    // What the controller writes at the end: the run id label, a status naming the artifacts.
    f.api
        .edit("codexruns", "runs", "r", |r| {
            r["metadata"]["labels"]["codex-orchestrator.dev/run-id"] = json!(id.as_str());
            r["status"] = json!({"phase": "succeeded", "runId": id.as_str(),
                "artifacts": {"kind": "ConfigMap", "name": "r-artifacts", "keys": ["events.jsonl.gz"]}});
        })
        .unwrap();
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("r-artifacts".into()),
            ..Default::default()
        },
        binary_data: Some(BTreeMap::from([(
            "events.jsonl.gz".to_string(),
            ByteString(bomb),
        )])),
        ..Default::default()
    };
    let mut cm = serde_json::to_value(&cm).unwrap();
    cm["apiVersion"] = json!("v1");
    cm["kind"] = json!("ConfigMap");
    f.api.insert("runs", cm).unwrap();
    let alpha = KubeRunner::for_tenant(
        f.client.clone(),
        "runs",
        "alpha",
        KubeRunnerSettings::default(),
    );
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
