//! The strict in-process API server of the testkit (`codex_orchestrator_testkit::apiserver`)
//! through kube's own client — its semantics, and the real controller event loop
//! (`controller::serve`: `Controller::run` with its watches) running a CodexRun against it,
//! with the test playing the kubelet (Pod status and log).

use std::sync::Arc;
use std::time::Duration;

use codex_orchestrator_core::model::{RunPhase, SecurityMode};
use codex_orchestrator_kube::controller::Settings;
use codex_orchestrator_kube::crd::CodexRun;
use codex_orchestrator_kube::pod::restricted_violations;
use codex_orchestrator_testkit::apiserver::ApiServer;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::controller::{agent_stream, pod_log, running, terminated};

const NS: &str = "tools";
const BOUND: Duration = Duration::from_secs(20);

/// The API server as the tests use it: CodexRuns validated by the CRD, Pods by the
/// restricted profile.
pub(super) fn strict_api() -> ApiServer {
    let crd = serde_json::to_value(CodexRun::crd()).unwrap();
    ApiServer::builder()
        .crd("codexruns", &crd, "v1alpha1")
        .admit(
            "pods",
            Arc::new(|v: &Value| {
                let pod: Pod = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
                let bad = restricted_violations(&pod);
                if bad.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "violates PodSecurity \"restricted:latest\": {}",
                        bad.join(", ")
                    ))
                }
            }),
        )
        .build()
}

fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}))
    .unwrap()
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn apiserver_versions_names_selectors_and_pages() {
    let api = strict_api();
    let cms: Api<ConfigMap> = Api::namespaced(api.client(NS), NS);
    // generateName, and a name that exists.
    let mut g = cm("", json!({}));
    g.metadata.name = None;
    g.metadata.generate_name = Some("art-".into());
    let made = cms.create(&PostParams::default(), &g).await.unwrap();
    let name = made.name_any();
    assert!(name.starts_with("art-") && name.len() == 9, "{name}");
    assert!(made.metadata.uid.is_some() && made.metadata.creation_timestamp.is_some());
    let e = cms
        .create(&PostParams::default(), &cm(&name, json!({})))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 409);
    // Optimistic concurrency: a write of a stale version is refused.
    let mut stale = made.clone();
    let mut fresh = made.clone();
    fresh.data = Some([("k".to_string(), "2".to_string())].into());
    let v2 = cms
        .replace(&name, &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(v2.resource_version(), made.resource_version());
    stale.data = Some([("k".to_string(), "3".to_string())].into());
    let e = cms
        .replace(&name, &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(code(&e), 409);
    assert_eq!(cms.get(&name).await.unwrap().data.unwrap()["k"], "2");

    // Label selectors and pages.
    for i in 0..5 {
        let tier = if i % 2 == 0 { "web" } else { "db" };
        cms.create(
            &PostParams::default(),
            &cm(&format!("c{i}"), json!({"tier": tier})),
        )
        .await
        .unwrap();
    }
    let names = |l: Vec<ConfigMap>| l.iter().map(ResourceExt::name_any).collect::<Vec<_>>();
    let web = cms
        .list(&ListParams::default().labels("tier=web"))
        .await
        .unwrap();
    assert_eq!(names(web.items), ["c0", "c2", "c4"]);
    let not_web = cms
        .list(&ListParams::default().labels("tier,tier notin (web)"))
        .await
        .unwrap();
    assert_eq!(names(not_web.items), ["c1", "c3"]);
    let page = cms.list(&ListParams::default().limit(4)).await.unwrap();
    assert_eq!(page.items.len(), 4);
    let rest = cms
        .list(
            &ListParams::default()
                .limit(4)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 2);
    assert!(rest.metadata.continue_.is_none());
    let e = cms
        .list(&ListParams::default().labels("tier in web"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 400);
    let e = cms
        .list(&ListParams::default().fields("data.k=v"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 400);
}

#[tokio::test]
async fn apiserver_server_side_apply_status_finalizers_and_garbage_collection() {
    let api = strict_api();
    let client = api.client(NS);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let apply = |m: &'static str, v: &str| {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"x": v}});
        let cms = cms.clone();
        async move {
            cms.patch("owned", &PatchParams::apply(m), &Patch::Apply(&obj))
                .await
        }
    };
    apply("one", "1").await.unwrap();
    let e = apply("two", "2").await.unwrap_err();
    assert_eq!(code(&e), 409);
    let forced = cms
        .patch(
            "owned",
            &PatchParams::apply("two").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"x": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["x"], "2");
    let e = cms
        .patch(
            "owned",
            &PatchParams::apply(""),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap"})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 422, "fieldManager is required");

    // The status subresource of a CodexRun.
    let runs: Api<CodexRun> = Api::namespaced(client.clone(), NS);
    let mut cr = super::pod::test_run("r1", SecurityMode::Readonly, super::pod::git_source());
    cr.metadata.namespace = None;
    cr.status = Some(Default::default());
    let made = runs.create(&PostParams::default(), &cr).await.unwrap();
    assert!(made.status.is_none(), "status is dropped on create");
    let p = runs
        .patch(
            "r1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "running"}, "spec": {"cancel": true}})),
        )
        .await
        .unwrap();
    assert!(p.status.is_none(), "the main resource ignores status");
    assert!(p.spec.cancel);
    assert_eq!(p.metadata.generation, Some(2));
    let p = runs
        .patch_status(
            "r1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "running"}, "spec": {"cancel": false}})),
        )
        .await
        .unwrap();
    assert_eq!(p.status.unwrap().phase, Some(RunPhase::Running));
    assert!(p.spec.cancel, "the status subresource ignores the rest");
    assert_eq!(p.metadata.generation, Some(2));

    // Admission: the CRD's CEL rule (exactly one source), the Pod Security profile.
    let mut both = cr.clone();
    both.metadata.name = Some("r2".into());
    both.spec.source.pvc = Some(codex_orchestrator_kube::crd::PvcSource {
        claim_name: "c".into(),
        sub_path: None,
    });
    let e = runs
        .create(&PostParams::default(), &both)
        .await
        .unwrap_err();
    assert_eq!(code(&e), 422);
    assert!(
        e.to_string()
            .contains("exactly one of source.git and source.pvc must be set"),
        "{e}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let bad: Pod = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "i"}]}}),
    )
    .unwrap();
    let e = pods.create(&PostParams::default(), &bad).await.unwrap_err();
    assert_eq!(code(&e), 403);
    assert!(e.to_string().contains("hostNetwork"), "{e}");

    // Finalizers hold a deletion; owners' deletion collects dependents.
    let owner_ref = json!([{"apiVersion": "codex-orchestrator.dev/v1alpha1", "kind": "CodexRun",
        "name": "r1", "uid": made.metadata.uid.clone().unwrap(), "controller": true}]);
    let mut dep = cm("dep", json!({}));
    dep.metadata.owner_references = Some(serde_json::from_value(owner_ref).unwrap());
    cms.create(&PostParams::default(), &dep).await.unwrap();
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["test/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let h = cms.get("held").await.unwrap();
    assert!(h.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::<()>::Json(
            serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers"}]))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(code(&cms.get("held").await.unwrap_err()), 404);
    let e = runs
        .delete(
            "r1",
            &DeleteParams::default().preconditions(kube::api::Preconditions {
                uid: Some("wrong".into()),
                resource_version: None,
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 409);
    runs.delete("r1", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(
        code(&cms.get("dep").await.unwrap_err()),
        404,
        "collected with its owner"
    );
    assert!(cms.get("owned").await.is_ok(), "not owned: kept");
}

#[tokio::test]
async fn apiserver_watches_resume_relist_after_410_and_logs_follow() {
    let api = strict_api();
    let client = api.client(NS);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    cms.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    let api2 = api.clone();
    let mut next = async || {
        let e = match tokio::time::timeout(BOUND, events.next()).await {
            Ok(Some(Ok(e))) => e,
            Ok(Some(Err(watcher::Error::WatchError(s)))) => return format!("error:{}", s.code),
            Ok(other) => panic!("{other:?}"),
            Err(_) => panic!("no watch event; requests: {:#?}", api2.requests()),
        };
        match e {
            watcher::Event::Init => "init".to_string(),
            watcher::Event::InitApply(o) => format!("init:{}", o.name_any()),
            watcher::Event::InitDone => "done".into(),
            watcher::Event::Apply(o) => format!("apply:{}", o.name_any()),
            watcher::Event::Delete(o) => format!("delete:{}", o.name_any()),
        }
    };
    for _ in 0..3 {
        seen.push(next().await);
    }
    assert_eq!(seen, ["init", "init:a", "done"]);
    cms.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    assert_eq!(next().await, "apply:b");
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(next().await, "delete:a");
    // History forgotten and the watch ended: the resume gets 410, the watcher lists again.
    let watches_before = api
        .requests()
        .iter()
        .filter(|r| r.contains("watch=true"))
        .count();
    cms.create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    api.compact();
    let mut after = Vec::new();
    for _ in 0..10 {
        let e = next().await;
        let done = e == "done";
        after.push(e);
        if done {
            break;
        }
    }
    // The live watch may have delivered c before it ended; then the resume is refused.
    let tail = ["error:410", "init", "init:b", "init:c", "done"];
    assert!(after.ends_with(&tail.map(String::from)), "{after:?}");
    assert!(
        after[..after.len() - tail.len()]
            .iter()
            .all(|e| e == "apply:c"),
        "{after:?}"
    );
    let reqs = api.requests();
    let lists = reqs
        .iter()
        .filter(|r| r.starts_with("GET") && r.contains("limit=500"))
        .count();
    assert_eq!(lists, 2, "listed again: {reqs:#?}");
    assert!(reqs.iter().filter(|r| r.contains("watch=true")).count() > watches_before);

    // Pod logs: not before the container starts; then followed until the log ends.
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"automountServiceAccountToken": false, "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "agent", "image": "i", "securityContext": {"allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true}}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let lp = LogParams {
        follow: true,
        container: Some("agent".into()),
        ..Default::default()
    };
    assert_eq!(code(&pods.log_stream("p", &lp).await.err().unwrap()), 400);
    api.append_log(NS, "p", "agent", "one\n");
    let mut lines = pods.log_stream("p", &lp).await.unwrap().lines();
    assert_eq!(lines.next().await.unwrap().unwrap(), "one");
    api.append_log(NS, "p", "agent", "two\n");
    assert_eq!(lines.next().await.unwrap().unwrap(), "two");
    api.close_log(NS, "p", "agent");
    assert!(
        tokio::time::timeout(BOUND, lines.next())
            .await
            .unwrap()
            .is_none(),
        "the follow ends with the log"
    );
}

/// The real controller loop over the strict API server: a CodexRun submitted through the
/// gateway's Kubernetes runner gets its Pod (admitted by the restricted profile), the Pod's log
/// is followed into the status, and the finished run has its artifacts and a terminal status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_controller_loop_runs_a_codexrun_against_the_strict_api_server() {
    use codex_orchestrator_kube::runner::{KubeRunner, KubeRunnerSettings};
    use codex_orchestrator_runner::Runner;
    let api = strict_api();
    let client = api.client(NS);
    let stop = CancellationToken::new();
    let settings = Settings {
        status_interval: Duration::from_millis(0),
        tail_wait: Duration::from_secs(5),
        retail_backoff: Duration::from_millis(50),
        ..Settings::default()
    };
    let loop_ = tokio::spawn(codex_orchestrator_kube::controller::serve(
        client.clone(),
        NS.into(),
        false,
        settings,
        "127.0.0.1:0".parse().unwrap(),
        stop.clone(),
    ));
    let runner = KubeRunner::for_tenant(
        client.clone(),
        NS,
        "alpha",
        KubeRunnerSettings {
            auth_secret: Some(codex_orchestrator_kube::crd::SecretKeyRef {
                name: "openai".into(),
                key: "api-key".into(),
            }),
            ..KubeRunnerSettings::default()
        },
    );
    let req = super::tenancy::request("https://git.example.com/app.git");
    let id = runner.submit(req).await.unwrap();

    // The controller makes the Pod (a create the restricted profile admitted).
    let pod = eventually("the Pod exists", async || {
        api.list("pods")
            .into_iter()
            .find(|p| p["metadata"]["labels"]["codex-orchestrator.dev/run-id"] == id.as_str())
    })
    .await;
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let cr_name = pod["metadata"]["ownerReferences"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // The kubelet's part: running, the agent's log, exit 0.
    let (clean, result) = agent_stream();
    api.set_pod_status(NS, &pod_name, running(&super::controller::now()));
    let log = pod_log(&clean);
    let (first, second) = log.split_at(log.len() / 2);
    api.append_log(NS, &pod_name, "agent", first);
    eventually("progress in the status", async || {
        let cr = api.get("codexruns", NS, &cr_name)?;
        (cr["status"]["phase"] == "running"
            && cr["status"]["progress"]["events_seen"].as_u64()? > 0)
            .then_some(())
    })
    .await;
    api.append_log(NS, &pod_name, "agent", second);
    api.close_log(NS, &pod_name, "agent");
    api.set_pod_status(NS, &pod_name, terminated("Succeeded", 0, "Completed"));

    let st = eventually("the run ends", async || {
        let st = runner.status(&id).await.ok()?;
        st.phase.is_terminal().then_some(st)
    })
    .await;
    assert_eq!(st.phase, RunPhase::Succeeded, "{st:?}");
    let art = runner.artifacts(&id).await.unwrap();
    let got = art.result.unwrap();
    assert_eq!(got.phase, RunPhase::Succeeded);
    assert_eq!(got.changed_files, result.changed_files);
    assert_eq!(got.commands, result.commands);
    assert_eq!(
        art.patch.as_deref(),
        Some("diff --git a/hello.txt b/hello.txt\n+hello\n")
    );
    assert_eq!(art.last_message.as_deref(), Some("Done."));
    // What the controller did, as the API server saw it: watches (with bookmarks), the Pod
    // create, status by server-side apply, the log followed.
    let reqs = api.requests();
    let has = |p: &str| reqs.iter().any(|r| r.contains(p));
    assert!(has("watch=true"), "{reqs:#?}");
    assert!(has("allowWatchBookmarks=true"));
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("POST /api/v1/namespaces/tools/pods"))
    );
    assert!(
        reqs.iter().any(|r| r.starts_with("PATCH")
            && r.contains("/status?")
            && r.contains("fieldManager="))
    );
    assert!(has(&format!("pods/{pod_name}/log?")));
    stop.cancel();
    tokio::time::timeout(BOUND, loop_)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
