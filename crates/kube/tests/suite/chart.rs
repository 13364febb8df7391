//! The Helm chart (`charts/codex-orchestrator`): rendered and linted by real Helm (the PyPI
//! package `helm-python-sdk`, driven by `.ci/helm_chart.py`) for the default and a
//! non-default values file; the rendered manifests are parsed into k8s-openapi types and
//! checked: the restricted profile on our own Pods (the same checker as the run Pods), the
//! RBAC scope (every verb granted, with its reason), the NetworkPolicies, that the chart's
//! CRD equals `crds/codexrun.yaml`, and the ValidatingAdmissionPolicy's CEL evaluated on sample
//! CodexRuns (PyPI `cel-python`, driven by `.ci/vap_cel.py`).
//!
//! Over 600 lines because every check reads the same two renderings of the chart; splitting would
//! render them twice.

use std::collections::{BTreeMap, BTreeSet};

use codex_orchestrator_kube::pod::restricted_violations;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::Value;

const DEFAULT: &str = "charts/codex-orchestrator/ci/default-values.yaml";
const NONDEFAULT: &str = "charts/codex-orchestrator/ci/nondefault-values.yaml";

struct Rendered {
    lint: Value,
    crds: Vec<Value>,
    notes: String,
    /// Every object, in template order.
    objects: Vec<Value>,
}

fn render() -> BTreeMap<String, Rendered> {
    render_files(&[DEFAULT, NONDEFAULT])
}

/// Renders the chart with each values file (paths from the repository root, or absolute); a
/// values file the chart refuses panics here (see [`render_errors`]).
fn render_files(files: &[&str]) -> BTreeMap<String, Rendered> {
    helm_chart(files)
        .into_iter()
        .map(|(k, v)| {
            assert!(v.get("error").is_none(), "{k}: {}", v["error"]);
            (k, v)
        })
        .map(|(k, v)| {
            let mut objects = Vec::new();
            let mut notes = String::new();
            for (name, text) in v["manifests"].as_object().unwrap() {
                let text = text.as_str().unwrap();
                if name.ends_with("NOTES.txt") {
                    notes = text.to_string();
                    continue;
                }
                for doc in text.split("\n---") {
                    let body: String = doc
                        .lines()
                        .filter(|l| !l.trim_start().starts_with('#'))
                        .collect::<Vec<_>>()
                        .join("\n");
                    if body.trim().is_empty() {
                        continue;
                    }
                    let v: Value = serde_saphyr::from_str(&body)
                        .unwrap_or_else(|e| panic!("{k} {name}: {e}\n{body}"));
                    objects.push(v);
                }
            }
            let crds = v["crds"].as_array().unwrap().clone();
            (
                k,
                Rendered {
                    lint: v["lint"].clone(),
                    crds,
                    notes,
                    objects,
                },
            )
        })
        .collect()
}

/// `.ci/helm_chart.py` over `files`: per file, the lint report, manifests and CRDs, or the
/// error the chart refused it with.
fn helm_chart(files: &[&str]) -> BTreeMap<String, Value> {
    let root = codex_orchestrator_testkit::repo_root();
    let out = std::process::Command::new(codex_orchestrator_testkit::helm_python())
        .current_dir(root)
        .args([".ci/helm_chart.py", "charts/codex-orchestrator"])
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm_chart.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A container's environment: name → value, or `secret:<name>/<key>` for a Secret reference.
fn env_of(c: &k8s_openapi::api::core::v1::Container) -> BTreeMap<String, String> {
    c.env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| {
            let v = match (e.value, e.value_from) {
                (Some(v), _) => v,
                (None, Some(f)) => {
                    let k = f.secret_key_ref.unwrap();
                    format!("secret:{}/{}", k.name, k.key)
                }
                _ => String::new(),
            };
            (e.name, v)
        })
        .collect()
}

fn of_kind<'a>(r: &'a Rendered, kind: &str) -> Vec<&'a Value> {
    r.objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v:#}"))
}

/// Every permission the chart grants: (role, apiGroup, resource, verb) and why it is needed.
const GRANTS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "controller",
        "codex-orchestrator.dev",
        "codexruns",
        "get",
        "reconcile reads the run",
    ),
    (
        "controller",
        "codex-orchestrator.dev",
        "codexruns",
        "list",
        "the controller's watch (initial list)",
    ),
    (
        "controller",
        "codex-orchestrator.dev",
        "codexruns",
        "watch",
        "the controller's watch",
    ),
    (
        "controller",
        "codex-orchestrator.dev",
        "codexruns",
        "delete",
        "ttlSecondsAfterFinished deletes finished runs",
    ),
    (
        "controller",
        "codex-orchestrator.dev",
        "codexruns/status",
        "patch",
        "status is written by server-side apply",
    ),
    (
        "controller",
        "",
        "pods",
        "get",
        "reconcile reads the run's Pod",
    ),
    (
        "controller",
        "",
        "pods",
        "list",
        "the owned-Pod watch (initial list)",
    ),
    ("controller", "", "pods", "watch", "the owned-Pod watch"),
    ("controller", "", "pods", "create", "a run becomes a Pod"),
    (
        "controller",
        "",
        "pods",
        "delete",
        "cancel, timeout and unschedulable Pods are deleted",
    ),
    (
        "controller",
        "",
        "pods/log",
        "get",
        "the agent's JSONL stream is the Pod log",
    ),
    (
        "controller",
        "",
        "persistentvolumeclaims",
        "get",
        "a tenant's run may mount only its tenant's claim: read its labels first",
    ),
    (
        "controller",
        "",
        "ARTIFACTS",
        "get",
        "reads the artifacts object back",
    ),
    (
        "controller",
        "",
        "ARTIFACTS",
        "create",
        "stores a finished run's artifacts",
    ),
    (
        "controller",
        "",
        "ARTIFACTS",
        "patch",
        "artifacts are written by server-side apply",
    ),
    (
        "controller",
        "events.k8s.io",
        "events",
        "create",
        "a Kubernetes Event per phase change",
    ),
    (
        "controller",
        "events.k8s.io",
        "events",
        "patch",
        "repeated Events are aggregated",
    ),
    (
        "gateway",
        "codex-orchestrator.dev",
        "codexruns",
        "create",
        "codex_run creates a CodexRun",
    ),
    (
        "gateway",
        "codex-orchestrator.dev",
        "codexruns",
        "list",
        "status/list find runs by run-id and tenant labels; /readyz",
    ),
    (
        "gateway",
        "codex-orchestrator.dev",
        "codexruns",
        "patch",
        "the run-id label after create; spec.cancel",
    ),
    (
        "gateway",
        "codex-orchestrator.dev",
        "codexruns",
        "delete",
        "takes back a CodexRun it could not label",
    ),
    (
        "gateway",
        "",
        "pods/log",
        "get",
        "live events of a running run",
    ),
    (
        "gateway",
        "",
        "persistentvolumeclaims",
        "get",
        "a tenant's pvc: workspace must be its own claim: read its labels before creating",
    ),
    (
        "gateway",
        "",
        "ARTIFACTS",
        "get",
        "result, patch, final message, event log of a finished run",
    ),
];

fn granted(r: &Rendered) -> BTreeSet<(String, String, String, String)> {
    assert!(of_kind(r, "ClusterRole").is_empty() && of_kind(r, "ClusterRoleBinding").is_empty());
    let mut out = BTreeSet::new();
    for v in of_kind(r, "Role") {
        let role: Role = typed(v);
        let name = role.metadata.name.clone().unwrap();
        let who = name.rsplit('-').next().unwrap().to_string();
        for rule in role.rules.unwrap_or_default() {
            assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
            for g in rule.api_groups.unwrap_or_default() {
                for res in rule.resources.clone().unwrap_or_default() {
                    for verb in &rule.verbs {
                        assert!(
                            !g.contains('*') && !res.contains('*') && verb != "*",
                            "wildcard in {name}"
                        );
                        out.insert((who.clone(), g.clone(), res.clone(), verb.clone()));
                    }
                }
            }
        }
    }
    out
}

/// Egress rules that each name one address block: (cidr, except, ports).
fn ip_rules(
    rules: &[k8s_openapi::api::networking::v1::NetworkPolicyEgressRule],
) -> Vec<(String, Vec<String>, Vec<i32>)> {
    rules
        .iter()
        .map(|e| {
            let to = e.to.as_ref().unwrap();
            assert_eq!(to.len(), 1);
            let b = to[0].ip_block.clone().expect("an address block");
            let ports = e
                .ports
                .as_ref()
                .unwrap()
                .iter()
                .map(|p| match p.port {
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => n,
                    ref other => panic!("{other:?}"),
                })
                .collect();
            (b.cidr, b.except.unwrap_or_default(), ports)
        })
        .collect()
}

#[test]
fn chart_renders_lints_and_passes_the_manifest_checks() {
    let rendered = render();
    let crd_file =
        std::fs::read_to_string(codex_orchestrator_testkit::repo_root().join("crds/codexrun.yaml"))
            .unwrap();
    for (values, r) in &rendered {
        // Lint, strict: no errors, nothing above "info".
        assert_eq!(
            r.lint["errors"],
            serde_json::json!([]),
            "{values}: {:#}",
            r.lint
        );
        let loud: Vec<&Value> = r.lint["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_u64().unwrap() > 1)
            .collect();
        assert!(loud.is_empty(), "{values}: {loud:#?}");

        // The CRD is the generated one, byte for byte.
        assert_eq!(r.crds.len(), 1, "{values}");
        assert_eq!(
            r.crds[0]["data"].as_str().unwrap(),
            crd_file,
            "{values}: the chart's CRD drifted from crds/codexrun.yaml"
        );

        // Every object parses as its k8s-openapi type.
        for o in &r.objects {
            match o["kind"].as_str().unwrap() {
                "ServiceAccount" => {
                    let sa: ServiceAccount = typed(o);
                    assert_eq!(sa.automount_service_account_token, Some(false));
                }
                "Role" => drop(typed::<Role>(o)),
                "RoleBinding" => drop(typed::<RoleBinding>(o)),
                "Service" => drop(typed::<Service>(o)),
                "Secret" => drop(typed::<Secret>(o)),
                "NetworkPolicy" => drop(typed::<NetworkPolicy>(o)),
                "Deployment" => drop(typed::<Deployment>(o)),
                "ValidatingAdmissionPolicy" => drop(typed::<ValidatingAdmissionPolicy>(o)),
                "ValidatingAdmissionPolicyBinding" => {
                    let b: ValidatingAdmissionPolicyBinding = typed(o);
                    let spec = b.spec;
                    assert_eq!(spec.policy_name, "co-codex-orchestrator-tools-codexruns");
                    assert_eq!(spec.validation_actions, ["Deny"]);
                    assert_eq!(
                        spec.match_resources
                            .unwrap()
                            .namespace_selector
                            .unwrap()
                            .match_labels,
                        Some(BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_string(),
                            "tools".to_string()
                        )]))
                    );
                }
                other => panic!("{values}: unexpected kind {other}"),
            }
        }

        // Our own Pods pass the restricted profile (the run Pods' checker, unchanged).
        let deployments = of_kind(r, "Deployment");
        // The egress proxy is on by default (off in the non-default values).
        let proxied = values != NONDEFAULT;
        // With it the setup proxy (docs/ENVIRONMENTS.md), which needs the model proxy's run key.
        assert_eq!(deployments.len(), if proxied { 4 } else { 2 }, "{values}");
        for d in deployments {
            let d: Deployment = typed(d);
            if d.metadata.name.as_deref() == Some("co-codex-orchestrator-setup-proxy") {
                let pod = Pod {
                    metadata: d.spec.template.metadata.clone().unwrap_or_default(),
                    spec: d.spec.template.spec.clone(),
                    status: None,
                };
                assert_eq!(
                    restricted_violations(&pod),
                    Vec::<String>::new(),
                    "{values}"
                );
                let spec = pod.spec.unwrap();
                assert_eq!(spec.automount_service_account_token, Some(false));
                assert!(spec.volumes.is_none(), "{values}: {:?}", spec.volumes);
                let c = &spec.containers[0];
                assert_eq!(
                    c.args.clone().unwrap(),
                    ["connect-proxy", "--listen=0.0.0.0:3128"]
                );
                assert_eq!(
                    env_of(c),
                    BTreeMap::from([
                        ("RUST_LOG".to_string(), "info".to_string()),
                        (
                            "CODEX_ORCHESTRATOR_SETUP_ALLOW".to_string(),
                            codex_orchestrator_core::environment::DEFAULT_SETUP_HOSTS.join(",")
                        ),
                        (
                            "CODEX_ORCHESTRATOR_PROXY_RUN_KEY".to_string(),
                            "secret:co-codex-orchestrator-model-proxy-token/run-key".to_string()
                        ),
                    ])
                );
                continue;
            }
            if d.metadata.name.as_deref() == Some("co-codex-orchestrator-model-proxy") {
                let pod = Pod {
                    metadata: d.spec.template.metadata.clone().unwrap_or_default(),
                    spec: d.spec.template.spec.clone(),
                    status: None,
                };
                let v = restricted_violations(&pod);
                assert!(v.is_empty(), "{values} model-proxy: {v:?}");
                // No Kubernetes API access at all; the key and the token from Secrets.
                let spec = pod.spec.unwrap();
                assert_eq!(spec.automount_service_account_token, Some(false));
                assert!(spec.volumes.is_none(), "{values}: {:?}", spec.volumes);
                let c = &spec.containers[0];
                assert_eq!(c.args.clone().unwrap(), ["proxy", "--listen=0.0.0.0:8080"]);
                let env = env_of(c);
                assert_eq!(
                    env,
                    BTreeMap::from([
                        ("RUST_LOG".to_string(), "info".to_string()),
                        (
                            "CODEX_ORCHESTRATOR_PROXY_UPSTREAM".to_string(),
                            "https://api.openai.com/v1".to_string()
                        ),
                        (
                            "CODEX_ORCHESTRATOR_PROXY_TOKEN".to_string(),
                            "secret:co-codex-orchestrator-model-proxy-token/token".to_string()
                        ),
                        (
                            "CODEX_ORCHESTRATOR_PROXY_RUN_KEY".to_string(),
                            "secret:co-codex-orchestrator-model-proxy-token/run-key".to_string()
                        ),
                        (
                            "CODEX_ORCHESTRATOR_PROXY_API_KEY".to_string(),
                            "secret:openai-api-key/api-key".to_string()
                        ),
                    ])
                );
                continue;
            }
            let t = d.spec.template;
            let pod = Pod {
                metadata: t.metadata.unwrap_or_default(),
                spec: t.spec,
                status: None,
            };
            let v = restricted_violations(&pod);
            assert!(v.is_empty(), "{values} {:?}: {v:?}", d.metadata.name);
            // The API token is mounted explicitly, read-only, instead of automounted.
            let spec = pod.spec.unwrap();
            assert!(spec.volumes.unwrap().iter().any(|v| v.projected.is_some()));
            let c = &spec.containers[0];
            assert!(
                c.volume_mounts
                    .as_ref()
                    .unwrap()
                    .iter()
                    .all(|m| m.read_only == Some(true) || m.mount_path == "/tmp")
            );
            assert!(c.resources.as_ref().unwrap().limits.is_some());
        }

        // RBAC: exactly the listed grants, each with its reason.
        let artifacts = if values == NONDEFAULT {
            "secrets"
        } else {
            "configmaps"
        };
        let want: BTreeSet<(String, String, String, String)> = GRANTS
            .iter()
            .map(|(who, g, res, verb, why)| {
                assert!(!why.is_empty());
                let res = if *res == "ARTIFACTS" { artifacts } else { res };
                (
                    who.to_string(),
                    g.to_string(),
                    res.to_string(),
                    verb.to_string(),
                )
            })
            .collect();
        assert_eq!(granted(r), want, "{values}");
        for b in of_kind(r, "RoleBinding") {
            let b: RoleBinding = typed(b);
            assert_eq!(b.role_ref.kind, "Role");
            assert_eq!(b.subjects.unwrap()[0].name, b.metadata.name.unwrap());
        }

        // NetworkPolicy for run Pods: no ingress; egress to DNS first, then only the listed
        // model-API / proxy / extra destinations.
        let policies: BTreeMap<String, NetworkPolicy> = of_kind(r, "NetworkPolicy")
            .into_iter()
            .map(|v| {
                let p: NetworkPolicy = typed(v);
                (p.metadata.name.clone().unwrap(), p)
            })
            .collect();
        let runs = policies["co-codex-orchestrator-runs"].spec.clone().unwrap();
        assert_eq!(
            runs.pod_selector.unwrap().match_labels.unwrap()["codex-orchestrator.dev/network"],
            "model-api-only"
        );
        assert_eq!(runs.policy_types.unwrap(), vec!["Ingress", "Egress"]);
        assert_eq!(runs.ingress.unwrap_or_default().len(), 0);
        let egress = runs.egress.unwrap();
        let dns = &egress[0];
        assert!(
            dns.ports.as_ref().unwrap().iter().all(|p| p.port
                == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(53)))
        );
        let mut egress_rest = &egress[1..];
        if proxied {
            // First the egress proxy's Pods on 8080, and no address block for the model API.
            let to_proxy = &egress_rest[0];
            let sel = to_proxy.to.as_ref().unwrap()[0]
                .pod_selector
                .clone()
                .unwrap()
                .match_labels
                .unwrap();
            assert_eq!(sel["app.kubernetes.io/component"], "model-proxy");
            assert_eq!(
                to_proxy.ports.as_ref().unwrap()[0].port,
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
            );
            egress_rest = &egress_rest[1..];
            // Then the setup proxy's Pods on 3128 (only a setup token opens a tunnel there).
            let to_setup = &egress_rest[0];
            let sel = to_setup.to.as_ref().unwrap()[0]
                .pod_selector
                .clone()
                .unwrap()
                .match_labels
                .unwrap();
            assert_eq!(sel["app.kubernetes.io/component"], "setup-proxy");
            assert_eq!(
                to_setup.ports.as_ref().unwrap()[0].port,
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(3128))
            );
            egress_rest = &egress_rest[1..];
        }
        // Only address blocks besides DNS and the proxies.
        let rest = ip_rules(egress_rest);
        let open = policies.get("co-codex-orchestrator-runs-open");
        if values == NONDEFAULT {
            assert_eq!(
                rest,
                vec![
                    ("10.20.0.5/32".to_string(), vec![], vec![3128]),
                    ("10.30.0.0/24".to_string(), vec![], vec![80, 9418]),
                ]
            );
            // allowFullAccess: open egress only for Pods labelled `open`.
            let o = open.expect("runs-open policy").spec.clone().unwrap();
            assert_eq!(
                o.pod_selector.unwrap().match_labels.unwrap()["codex-orchestrator.dev/network"],
                "open"
            );
            assert_eq!(o.ingress.unwrap_or_default().len(), 0);
        } else {
            // Run Pods reach only DNS and the proxy; the proxy reaches only DNS and the model
            // API, and is reached only by run Pods.
            assert_eq!(rest, vec![]);
            let p = policies["co-codex-orchestrator-model-proxy"]
                .spec
                .clone()
                .unwrap();
            let from = p.ingress.unwrap();
            assert_eq!(from.len(), 1);
            assert_eq!(
                from[0].from.as_ref().unwrap()[0]
                    .pod_selector
                    .clone()
                    .unwrap()
                    .match_labels
                    .unwrap()["app.kubernetes.io/component"],
                "run"
            );
            let proxy_rest = ip_rules(&p.egress.unwrap()[1..]);
            let public_https = vec![(
                "0.0.0.0/0".to_string(),
                [
                    "10.0.0.0/8",
                    "172.16.0.0/12",
                    "192.168.0.0/16",
                    "169.254.0.0/16",
                ]
                .map(String::from)
                .to_vec(),
                vec![443],
            )];
            assert_eq!(proxy_rest, public_https);
            // The setup proxy: reached only by run Pods on 3128; reaches DNS and public HTTPS.
            let sp = policies["co-codex-orchestrator-setup-proxy"]
                .spec
                .clone()
                .unwrap();
            let from = sp.ingress.unwrap();
            assert_eq!(
                (
                    from.len(),
                    from[0].ports.as_ref().unwrap()[0].port.clone(),
                    from[0].from.as_ref().unwrap()[0]
                        .pod_selector
                        .clone()
                        .unwrap()
                        .match_labels
                        .unwrap()["app.kubernetes.io/component"]
                        .clone()
                ),
                (
                    1,
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(3128)),
                    "run".to_string()
                )
            );
            let setup_rest = ip_rules(&sp.egress.unwrap()[1..]);
            assert_eq!(setup_rest, public_https);
            assert!(open.is_none(), "no open egress without allowFullAccess");
        }

        // The gateway: the Service's names are allowed hosts; tokens from the Secret; the
        // controller and the gateway get --allow-full-access only when asked.
        let args = |name: &str| -> Vec<String> {
            let d: Deployment = typed(
                of_kind(r, "Deployment")
                    .into_iter()
                    .find(|d| d["metadata"]["name"] == name)
                    .unwrap(),
            );
            d.spec.template.spec.unwrap().containers[0]
                .args
                .clone()
                .unwrap()
        };
        let gw = args("co-codex-orchestrator-gateway");
        for h in [
            "co-codex-orchestrator-gateway",
            "co-codex-orchestrator-gateway.tools.svc.cluster.local",
        ] {
            assert!(gw.contains(&format!("--allowed-host={h}")), "{gw:?}");
        }
        assert!(
            gw.contains(&"--backend=kube".to_string())
                && gw.contains(&"--namespace=tools".to_string())
        );
        let want_mode = if values == NONDEFAULT {
            "--default-mode=readonly"
        } else {
            "--default-mode=workspace_write"
        };
        assert!(gw.contains(&want_mode.to_string()), "{gw:?}");
        let want_approval = if values == NONDEFAULT {
            "--approval=human"
        } else {
            "--approval=auto"
        };
        assert!(gw.contains(&want_approval.to_string()), "{gw:?}");
        let ctl = args("co-codex-orchestrator-controller");
        // The runner image names its codex version; other versions' images come from
        // codexImages.
        let runner_image = if values == NONDEFAULT {
            "registry.example/codex-orchestrator-runner:0.1.0-rc1"
        } else {
            "codex-orchestrator-runner:0.1.0-codex0.163.0"
        };
        assert!(
            ctl.contains(&format!("--runner-image={runner_image}"))
                && ctl.contains(&"--runner-codex-version=0.163.0".to_string()),
            "{ctl:?}"
        );
        assert_eq!(
            ctl.contains(
                &"--codex-image=0.147.0=registry.example/codex-orchestrator-runner:0.1.0-rc1-codex0.147.0"
                    .to_string()
            ),
            values == NONDEFAULT,
            "{ctl:?}"
        );
        let proxy_args = [
            "--model-proxy-url=http://co-codex-orchestrator-model-proxy.tools.svc.cluster.local:8080/v1".to_string(),
            "--model-proxy-token-secret=co-codex-orchestrator-model-proxy-token".to_string(),
        ];
        assert_eq!(
            proxy_args.iter().all(|a| ctl.contains(a)),
            proxied,
            "{ctl:?}"
        );
        assert_eq!(
            ctl.contains(&"--allow-full-access".to_string()),
            values == NONDEFAULT,
            "{ctl:?}"
        );
        // Environment images the controller lets CodexRuns name (allowedImages).
        let images: Vec<&String> = ctl
            .iter()
            .filter(|a| a.starts_with("--allowed-image="))
            .collect();
        if values == NONDEFAULT {
            assert_eq!(images, ["--allowed-image=registry.example/team/env:0123"]);
        } else {
            assert!(images.is_empty(), "{ctl:?}");
        }
        // The gateway admits by the controller's rules, full_access included.
        assert_eq!(
            gw.contains(&"--allow-full-access".to_string()),
            values == NONDEFAULT,
            "{gw:?}"
        );
        // Secrets runs may name: allowedSecrets on both, plus the API key's Secret on the
        // controller when run Pods read it themselves (no model proxy).
        let allowed = |a: &[String]| -> Vec<String> {
            a.iter()
                .filter_map(|x| x.strip_prefix("--allowed-secret="))
                .map(str::to_string)
                .collect()
        };
        if values == NONDEFAULT {
            assert_eq!(allowed(&gw), ["team-a-git", "team-b-git"]);
            assert_eq!(allowed(&ctl), ["team-a-git", "team-b-git", "azure-key"]);
        } else {
            assert_eq!(allowed(&gw), Vec::<String>::new());
            assert_eq!(allowed(&ctl), Vec::<String>::new());
        }
        let secrets = of_kind(r, "Secret");
        if values == NONDEFAULT {
            let s: Secret = typed(secrets[0]);
            assert_eq!(
                s.string_data.unwrap()["tokens"].trim(),
                "ci-token-aaaaaaaaaaaaaaaa team-a\nci-token-bbbbbbbbbbbbbbbb team-b"
            );
            assert!(gw.contains(&"--auth-secret=azure-key/token".to_string()));
        } else {
            // The only Secret of the default install: the proxy's token.
            let names: Vec<&str> = secrets
                .iter()
                .map(|s| s["metadata"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["co-codex-orchestrator-model-proxy-token"]);
            let t: Secret = typed(secrets[0]);
            let data = t.data.unwrap();
            assert_eq!(data["token"].0.len(), 48);
            assert_eq!(data["run-key"].0.len(), 48);
            // The controller derives each run's own proxy token from the run key.
            let d: Deployment = typed(
                of_kind(r, "Deployment")
                    .into_iter()
                    .find(|d| d["metadata"]["name"] == "co-codex-orchestrator-controller")
                    .unwrap(),
            );
            let env = d.spec.template.spec.unwrap().containers[0]
                .env
                .clone()
                .unwrap();
            let key = env
                .iter()
                .find(|e| e.name == "CODEX_ORCHESTRATOR_MODEL_PROXY_RUN_KEY")
                .unwrap()
                .value_from
                .clone()
                .unwrap()
                .secret_key_ref
                .unwrap();
            assert_eq!(
                (key.name.as_str(), key.key.as_str()),
                ("co-codex-orchestrator-model-proxy-token", "run-key")
            );
            assert!(gw.contains(&"--auth-secret=openai-api-key/api-key".to_string()));
        }
        assert!(
            r.notes
                .contains("http://co-codex-orchestrator-gateway.tools.svc.cluster.local:80/mcp"),
            "{}",
            r.notes
        );
    }
}

/// The chart's ValidatingAdmissionPolicy, evaluated as the API server would (every CEL
/// expression compiled and run by cel-python through `.ci/vap_cel.py`) on sample CodexRuns:
/// Secrets only from the list (authSecretRef only without the model proxy), an update that
/// keeps a reference is not refused again, and the tenant label cannot change.
#[test]
fn the_admission_policy_admits_and_refuses_like_the_controller() {
    let rendered = render();
    let run = |git: Option<&str>, auth: Option<&str>, tenant: Option<&str>| {
        let mut git_src = serde_json::json!({"url": "https://git.example/app.git"});
        if let Some(g) = git {
            git_src["credentialsSecret"] = serde_json::json!({"name": g});
        }
        let mut cr = serde_json::json!({
            "apiVersion": "codex-orchestrator.dev/v1alpha1", "kind": "CodexRun",
            "metadata": {"name": "r", "namespace": "tools"},
            "spec": {"prompt": "p", "source": {"git": git_src}}});
        if let Some(a) = auth {
            cr["spec"]["authSecretRef"] = serde_json::json!({"name": a, "key": "k"});
        }
        if let Some(t) = tenant {
            cr["metadata"]["labels"] = serde_json::json!({"codex-orchestrator.dev/tenant": t});
        }
        cr
    };
    let pvc = serde_json::json!({
        "apiVersion": "codex-orchestrator.dev/v1alpha1", "kind": "CodexRun",
        "metadata": {"name": "p", "namespace": "tools"},
        "spec": {"prompt": "p", "source": {"pvc": {"claimName": "data"}}}});
    let git_refused = |name: &str| {
        format!(
            "spec.source.git.credentialsSecret names Secret `{name}`, which is not on the allowlist of Secrets runs may use (chart value allowedSecrets); refused"
        )
    };
    let auth_refused = |name: &str| {
        format!(
            "spec.authSecretRef names Secret `{name}`, which is not on the allowlist of Secrets runs may use (chart value allowedSecrets); refused"
        )
    };
    let tenant_refused = "the label codex-orchestrator.dev/tenant of a CodexRun cannot change (it decides which claims the run may mount); refused".to_string();
    for (values, r) in &rendered {
        let vap = of_kind(r, "ValidatingAdmissionPolicy");
        assert_eq!(vap.len(), 1, "{values}");
        let nondefault = values == NONDEFAULT;
        // (object, oldObject, expected refusals)
        let mut cases: Vec<(Value, Value, Vec<String>)> = vec![
            (pvc.clone(), Value::Null, vec![]),
            (run(None, None, None), Value::Null, vec![]),
            (
                run(Some("prod-db"), None, None),
                Value::Null,
                vec![git_refused("prod-db")],
            ),
            // Keeping a reference on update (spec.cancel) is not refused again.
            (
                run(Some("prod-db"), None, None),
                run(Some("prod-db"), None, None),
                vec![],
            ),
            // Changing it to another unlisted Secret is.
            (
                run(Some("prod-db"), None, None),
                run(Some("other"), None, None),
                vec![git_refused("prod-db")],
            ),
            // The tenant label cannot change, nor be added or removed.
            (
                run(None, None, Some("beta")),
                run(None, None, Some("alpha")),
                vec![tenant_refused.clone()],
            ),
            (
                run(None, None, Some("beta")),
                run(None, None, None),
                vec![tenant_refused.clone()],
            ),
            (
                run(None, None, Some("alpha")),
                run(None, None, Some("alpha")),
                vec![],
            ),
        ];
        if nondefault {
            // allowedSecrets [team-a-git, team-b-git]; no proxy: authSecretRef counts and
            // the API key's Secret (azure-key) is allowed.
            cases.push((
                run(Some("team-a-git"), Some("azure-key"), None),
                Value::Null,
                vec![],
            ));
            cases.push((
                run(Some("team-b-git"), Some("someone-elses-key"), None),
                Value::Null,
                vec![auth_refused("someone-elses-key")],
            ));
            cases.push((
                run(Some("x"), Some("y"), None),
                Value::Null,
                vec![git_refused("x"), auth_refused("y")],
            ));
        } else {
            // Empty list: no git Secret; with the model proxy authSecretRef is not read, so
            // it is not checked.
            cases.push((
                run(Some("team-a-git"), None, None),
                Value::Null,
                vec![git_refused("team-a-git")],
            ));
            cases.push((run(None, Some("anything"), None), Value::Null, vec![]));
        }
        let input = serde_json::json!({
            "policy": vap[0],
            "cases": cases.iter().map(|(o, old, _)| serde_json::json!({"object": o, "oldObject": old})).collect::<Vec<_>>(),
        });
        let mut child = std::process::Command::new(codex_orchestrator_testkit::helm_python())
            .current_dir(codex_orchestrator_testkit::repo_root())
            .arg(".ci/vap_cel.py")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(serde_json::to_string(&input).unwrap().as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{values}: vap_cel.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
        let want: Vec<Vec<String>> = cases.into_iter().map(|(_, _, w)| w).collect();
        assert_eq!(got, want, "{values}");
    }
}

/// The egress proxy signs in with ChatGPT from a Secret (`modelProxy.chatgptAuth`): the
/// sign-in is copied into a memory-backed volume only the proxy mounts, the proxy forwards to
/// the ChatGPT backend and gets no API key, the run Pods reach it at the backend's path, and
/// more than one replica (two refreshers of one sign-in) is refused.
#[test]
fn the_model_proxy_signs_in_with_chatgpt_from_a_secret() {
    const CHATGPT: &str = "charts/codex-orchestrator/ci/chatgpt-values.yaml";
    let dir = tempfile::tempdir().unwrap();
    let two = dir.path().join("two-replicas.yaml");
    std::fs::write(
        &two,
        "modelProxy:\n  replicas: 2\n  chatgptAuth: {secretName: codex-chatgpt}\n",
    )
    .unwrap();
    let two = two.to_string_lossy().into_owned();
    let mut all = helm_chart(&[CHATGPT, &two]);
    let refused = all.remove(&two).unwrap();
    assert!(
        refused["error"].as_str().unwrap().contains(
            "modelProxy.chatgptAuth needs modelProxy.replicas: 1 (two proxies refreshing one \
             ChatGPT sign-in would invalidate each other's tokens)"
        ),
        "{refused}"
    );
    let r = render_files(&[CHATGPT]).remove(CHATGPT).unwrap();
    assert_eq!(r.lint["errors"], serde_json::json!([]), "{:#}", r.lint);
    let proxy: Deployment = typed(
        of_kind(&r, "Deployment")
            .into_iter()
            .find(|d| d["metadata"]["name"] == "co-codex-orchestrator-model-proxy")
            .unwrap(),
    );
    assert_eq!(proxy.spec.replicas, Some(1));
    let t = proxy.spec.template;
    let pod = Pod {
        metadata: t.metadata.unwrap_or_default(),
        spec: t.spec,
        status: None,
    };
    assert_eq!(restricted_violations(&pod), Vec::<String>::new());
    let spec = pod.spec.unwrap();
    let volumes = serde_json::to_value(spec.volumes.unwrap()).unwrap();
    assert_eq!(
        volumes,
        serde_json::json!([
            {"name": "chatgpt-secret", "secret": {"secretName": "codex-chatgpt", "defaultMode": 0o440,
             "items": [{"key": "auth.json", "path": "auth.json"}]}},
            {"name": "chatgpt", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            // The extra CA bundle (extraCaBundle in the same values file).
            {"name": "extra-ca", "configMap": {"name": "corp-ca",
             "items": [{"key": "bundle.pem", "path": "ca.crt"}]}}
        ])
    );
    let init = &spec.init_containers.unwrap()[0];
    assert_eq!(
        init.command.clone().unwrap(),
        [
            "/bin/sh",
            "-c",
            "cp /chatgpt-secret/auth.json /chatgpt/auth.json && chmod 0600 /chatgpt/auth.json"
        ]
    );
    let c = &spec.containers[0];
    let env = env_of(c);
    assert_eq!(
        env,
        BTreeMap::from([
            ("RUST_LOG".to_string(), "info".to_string()),
            (
                "CODEX_ORCHESTRATOR_PROXY_UPSTREAM".to_string(),
                "https://chatgpt.com/backend-api/codex".to_string()
            ),
            (
                "CODEX_ORCHESTRATOR_PROXY_TOKEN".to_string(),
                "secret:co-codex-orchestrator-model-proxy-token/token".to_string()
            ),
            (
                "CODEX_ORCHESTRATOR_PROXY_RUN_KEY".to_string(),
                "secret:co-codex-orchestrator-model-proxy-token/run-key".to_string()
            ),
            (
                "CODEX_ORCHESTRATOR_PROXY_CHATGPT_AUTH_FILE".to_string(),
                "/chatgpt/auth.json".to_string()
            ),
            (
                "CODEX_ORCHESTRATOR_PROXY_EXTRA_CA".to_string(),
                "/etc/codex-orchestrator/extra-ca/ca.crt".to_string()
            ),
        ])
    );
    let mounts: Vec<(String, Option<bool>)> = c
        .volume_mounts
        .clone()
        .unwrap()
        .into_iter()
        .map(|m| (m.mount_path, m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            ("/chatgpt".to_string(), None),
            ("/etc/codex-orchestrator/extra-ca".to_string(), Some(true))
        ]
    );
    // Only the proxy mounts the sign-in.
    for d in of_kind(&r, "Deployment") {
        if d["metadata"]["name"] != "co-codex-orchestrator-model-proxy" {
            assert!(!d.to_string().contains("codex-chatgpt"), "{d}");
        }
    }
    let controller = of_kind(&r, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "co-codex-orchestrator-controller")
        .unwrap();
    let args: Vec<String> = serde_json::from_value(
        controller["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
    )
    .unwrap();
    assert!(
        args.contains(
            &"--model-proxy-url=http://co-codex-orchestrator-model-proxy.tools.svc.cluster.local:8080/backend-api/codex"
                .to_string()
        ),
        "{args:?}"
    );
    // The setup proxy's address and time limit, and the environment images' extra CA.
    for want in [
        "--setup-proxy-url=http://co-codex-orchestrator-setup-proxy.tools.svc.cluster.local:3128",
        "--setup-timeout=900",
        "--extra-ca",
    ] {
        assert!(args.contains(&want.to_string()), "{want}: {args:?}");
    }
}
