//! The generated CodexRun CRD: no drift from `crds/codexrun.yaml`, and every `examples/*.yaml`
//! deserializes into the generated types, validates against the CRD's openAPIV3Schema and
//! becomes a Pod that passes the restricted profile.

use std::path::PathBuf;

use codex_orchestrator_kube::crd::{CodexRun, crd_yaml};
use codex_orchestrator_kube::pod::{PodSettings, build_pod, restricted_violations};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResourceExt;

fn root() -> PathBuf {
    codex_orchestrator_testkit::repo_root()
}

#[test]
fn committed_crd_matches_the_generated_one() {
    let generated = crd_yaml().unwrap();
    let path = root().join("crds/codexrun.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "crds/codexrun.yaml is out of date with the CodexRun types.\n\
         Regenerate it with:\n    cargo run -- crd > crds/codexrun.yaml\nand commit the result."
    );
    // The committed YAML is the same object as the derived CRD.
    let parsed: CustomResourceDefinition = serde_saphyr::from_str(&committed).unwrap();
    assert_eq!(parsed, CodexRun::crd());
    let names = &parsed.spec.names;
    assert_eq!(parsed.spec.group, "codex-orchestrator.dev");
    assert_eq!(parsed.spec.scope, "Namespaced");
    assert_eq!(names.short_names, Some(vec!["cxr".to_string()]));
    let v = &parsed.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let cols: Vec<&str> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cols, ["Mode", "Phase", "Attempt", "Age"]);
}

/// The version's openAPIV3Schema as a JSON Schema validator.
fn crd_validator() -> jsonschema::Validator {
    let crd = CodexRun::crd();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn errors(v: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    v.iter_errors(doc).map(|e| e.to_string()).collect()
}

fn examples() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn examples_deserialize_validate_and_build_restricted_pods() {
    let validator = crd_validator();
    let examples = examples();
    assert!(examples.len() >= 4, "{examples:?}");
    for (name, text) in &examples {
        let doc: serde_json::Value = serde_saphyr::from_str(text).unwrap();
        assert_eq!(errors(&validator, &doc), Vec::<String>::new(), "{name}");
        let mut cr: CodexRun =
            serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Typed round trip keeps every field the example sets.
        assert_eq!(serde_json::to_value(&cr).unwrap(), doc, "{name}");
        cr.metadata.namespace = Some("team-a".into());
        cr.metadata.uid = Some("0a1b2c3d-0000-4000-8000-000000000000".into());
        cr.metadata.creation_timestamp = Some(Time("2026-05-01T10:00:00Z".parse().unwrap()));
        let pod = build_pod(&cr, &PodSettings::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(restricted_violations(&pod), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn the_schema_rejects_nonsense() {
    let validator = crd_validator();
    let base: serde_json::Value =
        serde_saphyr::from_str(&examples().into_iter().next().unwrap().1).unwrap();
    let broken = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut d = base.clone();
        f(&mut d);
        errors(&validator, &d)
    };
    assert!(
        !broken(&|d| {
            d["spec"].as_object_mut().unwrap().remove("prompt");
        })
        .is_empty()
    );
    assert!(!broken(&|d| d["spec"]["securityMode"] = "yolo".into()).is_empty());
    assert!(!broken(&|d| d["spec"]["prompt"] = "".into()).is_empty());
    assert!(!broken(&|d| d["spec"]["timeoutSeconds"] = 0.into()).is_empty());
    assert!(
        !broken(&|d| d["spec"]["verify"] = serde_json::json!({"maxFixAttempts": 11})).is_empty()
    );
    // "Exactly one source" is a CEL rule the API server evaluates; the schema carries it.
    let crd = serde_json::to_value(CodexRun::crd()).unwrap();
    let source = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["source"];
    assert_eq!(
        source["x-kubernetes-validations"][0]["rule"],
        "has(self.git) != has(self.pvc)"
    );
}
