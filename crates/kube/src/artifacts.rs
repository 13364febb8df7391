//! The object that keeps a finished run's artifacts after its Pod is gone: a ConfigMap (or a
//! Secret, when the controller is configured so) named `<run>-artifacts`, owned by the
//! CodexRun (so it is garbage-collected with it). Built by a pure function.
//!
//! Keys: `result.json` (the full [`RunResult`]), `patch.diff` (cut at the controller's cap,
//! flagged `patchTruncated`), `last_message.txt` (the final answer, capped),
//! `events.jsonl.gz` (binary: the gzip-compressed event log, capped, flagged
//! `eventsTruncated`). A ConfigMap holds at most 1 MiB in total; the caps keep it below.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::crd::{ArtifactsRef, CodexRun};
use codex_orchestrator_core::model::{RunId, RunResult};

pub const RESULT_KEY: &str = "result.json";
pub const PATCH_KEY: &str = "patch.diff";
pub const LAST_MESSAGE_KEY: &str = "last_message.txt";
pub const EVENTS_KEY: &str = "events.jsonl.gz";
/// Cap on the stored final message.
pub const MAX_LAST_MESSAGE: usize = 128 * 1024;

/// What a finished run left.
#[derive(Debug, Clone, PartialEq)]
pub struct RunArtifacts {
    pub result: RunResult,
    pub patch: Option<String>,
    pub last_message: Option<String>,
    pub events_gz: Vec<u8>,
    pub events_truncated: bool,
}

/// The artifacts object, as a ConfigMap or a Secret.
#[derive(Debug, Clone, PartialEq)]
pub enum ArtifactsObject {
    ConfigMap(ConfigMap),
    Secret(Secret),
}

/// Name of the artifacts object of a run.
pub fn artifacts_name(cr: &CodexRun) -> String {
    crate::pod::derived_name(&cr.name_any(), "artifacts")
}

/// Builds the artifacts object and the status reference to it. Pure.
pub fn build_artifacts(
    cr: &CodexRun,
    run_id: &RunId,
    a: &RunArtifacts,
    max_patch_bytes: usize,
    as_secret: bool,
) -> Result<(ArtifactsObject, ArtifactsRef), serde_json::Error> {
    let mut text: BTreeMap<String, String> = BTreeMap::new();
    text.insert(RESULT_KEY.into(), serde_json::to_string_pretty(&a.result)?);
    let mut patch_truncated = false;
    if let Some(p) = &a.patch {
        // Cut like the agent cuts its inline patch: at the last whole line that fits.
        let (p, cut) = codex_orchestrator_core::text::cut(p, max_patch_bytes);
        patch_truncated = cut;
        text.insert(PATCH_KEY.into(), p.to_owned());
    }
    if let Some(m) = &a.last_message {
        text.insert(
            LAST_MESSAGE_KEY.into(),
            codex_orchestrator_core::text::prefix(m, MAX_LAST_MESSAGE).to_string(),
        );
    }
    let mut keys: Vec<String> = text.keys().cloned().collect();
    keys.push(EVENTS_KEY.into());
    keys.sort();
    let mut labels = super::pod::run_labels(cr, run_id);
    labels.insert(super::pod::LABEL_COMPONENT.into(), "artifacts".into());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "codex-orchestrator.dev/patch-truncated".to_string(),
        patch_truncated.to_string(),
    );
    annotations.insert(
        "codex-orchestrator.dev/events-truncated".to_string(),
        a.events_truncated.to_string(),
    );
    let metadata = ObjectMeta {
        name: Some(artifacts_name(cr)),
        namespace: cr.metadata.namespace.clone(),
        labels: Some(labels),
        annotations: Some(annotations),
        owner_references: cr.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    };
    let events = ByteString(a.events_gz.clone());
    let (obj, kind) = if as_secret {
        let mut data: BTreeMap<String, ByteString> = text
            .into_iter()
            .map(|(k, v)| (k, ByteString(v.into_bytes())))
            .collect();
        data.insert(EVENTS_KEY.into(), events);
        (
            ArtifactsObject::Secret(Secret {
                metadata,
                data: Some(data),
                type_: Some("Opaque".into()),
                ..Default::default()
            }),
            "Secret",
        )
    } else {
        (
            ArtifactsObject::ConfigMap(ConfigMap {
                metadata,
                data: Some(text),
                binary_data: Some(BTreeMap::from([(EVENTS_KEY.to_string(), events)])),
                ..Default::default()
            }),
            "ConfigMap",
        )
    };
    Ok((
        obj,
        ArtifactsRef {
            kind: kind.into(),
            name: artifacts_name(cr),
            keys,
            patch_truncated,
            events_truncated: a.events_truncated,
        },
    ))
}
