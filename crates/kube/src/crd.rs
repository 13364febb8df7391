//! The `CodexRun` custom resource (`codex-orchestrator.dev/v1alpha1`, short name `cxr`).
//!
//! The spec is what a user `kubectl apply`s; the status is written only by the controller
//! (status subresource, server-side apply). Field names are camelCase as is usual for
//! Kubernetes; the embedded live counters (`status.progress`, `status.verify`) are the
//! orchestrator's own wire types ([`Progress`], [`VerifySummary`]) and keep their snake_case
//! names, so that the same JSON serves the MCP tools and the CR.
//!
//! Validation that can be expressed in the schema is (CEL `x-kubernetes-validations`): exactly
//! one source, exactly one of `outputSchema.name` / `outputSchema.inline`, bounded numbers.
//! The rest (e.g. `full_access` allowed, a bundled schema name, strict-mode schemas) is checked
//! by the controller, which ends such a run `failed` with a message saying what is wrong.

// `printcolumn(...)` repeats `type_ = "string"`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use codex_orchestrator_core::model::{
    PatchInfo, Progress, RunPhase, SecurityMode, TerminalReason, TokenUsage, VerifyOptions,
    VerifySummary,
};

/// API group of the CRD.
pub const GROUP: &str = "codex-orchestrator.dev";
/// API version of the CRD.
pub const VERSION: &str = "v1alpha1";

/// A Codex run in a hardened Pod: prompt, source, security mode and options. See
/// docs/KUBERNETES.md.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "codex-orchestrator.dev",
    version = "v1alpha1",
    kind = "CodexRun",
    plural = "codexruns",
    shortname = "cxr",
    namespaced,
    status = "CodexRunStatus",
    derive = "PartialEq",
    doc = "A Codex run in a hardened Pod: the prompt, where the source comes from, the security mode and the options; the status carries the live progress and a bounded summary of the result",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.securityMode"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Attempt", type_ = "integer", json_path = ".status.attempt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CodexRunSpec {
    /// The task for Codex.
    #[schemars(length(min = 1, max = 65536))]
    pub prompt: String,
    /// readonly | workspace_write | full_access (full_access only when the controller allows it).
    #[serde(default)]
    pub security_mode: SecurityMode,
    /// Where the workspace comes from: a git repository or an existing PVC (exactly one).
    pub source: SourceSpec,
    /// Runner image override (must equal the controller's runner image unless the controller
    /// allows overrides). Absent = the controller's runner image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The Codex CLI version to run (a supported one: 0.147.0 or 0.163.0). Absent = the runner
    /// image's. The controller must have an image of it (`--codex-image`), unless `image` is
    /// set (which must then hold it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codex_version: Option<String>,
    /// Model name (absent = the controller's default, else the codex version's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A custom model provider (Azure, a gateway, a local model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_provider: Option<ModelProviderSpec>,
    /// The Secret key holding the API key. It is given to the agent as an environment
    /// variable (`CODEX_API_KEY`, or the provider's `envKey`) and redacted from every output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretKeyRef>,
    /// Output contract for the final answer: a bundled schema name or an inline JSON Schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<OutputSchemaSpec>,
    /// When the final answer breaks the output schema, ask Codex once to correct it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub schema_retry: bool,
    /// The verify loop (lint/test/build and fix attempts); absent = defaults per mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyConfig>,
    /// Run deadline in seconds, counted from the moment the agent starts (time spent queued,
    /// scheduling or pulling the image does not count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: Option<u64>,
    /// Hard caps on the run (docs/ATTEMPTS_AND_BUDGETS.md). On Kubernetes only the wall time
    /// is enforced so far: at it the run is stopped and ends `failed`/`budget_exhausted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,
    /// CPU/memory requests and limits of the agent container (absent = controller defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Set to true to stop the run; it ends `cancelled`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
    /// The project's environment (docs/ENVIRONMENTS.md): variables, cache directories and a
    /// setup script run by an init container before the agent. Its Debian packages are
    /// built into `image` (an environment image built with `image build --environment` and
    /// pushed by the team's pipeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentSpec>,
    /// Delete the CodexRun (and everything it owns) this many seconds after it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31536000))]
    pub ttl_seconds_after_finished: Option<u64>,
}

/// Exactly one of `git` and `pvc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.git) != has(self.pvc)",
    "message": "exactly one of source.git and source.pvc must be set"
}]))]
pub struct SourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcSource>,
}

/// A git repository cloned into the Pod by an init container (`codex-orchestrator fetch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// Clone URL (`http://`, `https://`, `git://`, `file://`).
    #[schemars(length(min = 1, max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.startsWith('http://') || self.startsWith('https://') || self.startsWith('git://') || self.startsWith('file://')",
        "message": "url must start with http://, https://, git:// or file://"
    }]))]
    pub url: String,
    /// Branch, tag or commit (absent = the remote's default branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub revision: Option<String>,
    /// A Secret with keys `username` (optional) and `password` (a password or token) for
    /// HTTP authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<LocalObjectRef>,
}

/// An existing PersistentVolumeClaim (in the run's namespace) holding the workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSource {
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Directory inside the volume (absent = its root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!self.startsWith('/') && !self.contains('..')",
        "message": "subPath must be relative and must not contain '..'"
    }]))]
    pub sub_path: Option<String>,
}

/// A CodexRun's budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    /// Most seconds the run may take from the agent's start; the run's deadline when shorter
    /// than `timeoutSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_wall_seconds: Option<u64>,
}

impl BudgetSpec {
    /// The run budget this is (pure).
    pub fn to_budget(&self) -> Option<codex_orchestrator_core::model::RunBudget> {
        self.max_wall_seconds
            .map(|w| codex_orchestrator_core::model::RunBudget {
                max_wall_secs: Some(w),
                ..Default::default()
            })
    }
}

/// What runs before the agent, and what it and the agent share (the fields of
/// `.codex-orchestrator/environment.toml` that are not built into the image).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// A shell script run in the workspace by the `setup` init container (the sandbox's user,
    /// `bash -eo pipefail`), with HTTPS to the allowed registries through the chart's setup
    /// proxy only. It may write git-ignored paths of the workspace and the caches; anything
    /// else git would see fails the run (`failed`/`setup_failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub setup: Option<String>,
    /// Non-secret variables for the setup, codex and the verify commands.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
    /// Absolute directories the setup fills and the agent reads (read-only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub caches: Vec<String>,
    /// A PersistentVolumeClaim (in the run's namespace) that keeps the caches between runs,
    /// one sub-directory per cache; without it they last as long as the Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub cache_claim: Option<String>,
}

impl EnvironmentSpec {
    /// The declaration this stands for, checked by the same rules as the workspace file.
    pub fn to_environment(
        &self,
    ) -> Result<codex_orchestrator_core::environment::Environment, String> {
        let env = codex_orchestrator_core::environment::Environment {
            setup: self.setup.clone(),
            env: self.env.clone(),
            caches: self.caches.clone(),
            ..Default::default()
        };
        env.check().map_err(|e| {
            e.to_string()
                .replace(codex_orchestrator_core::environment::FILE, "environment")
        })?;
        Ok(env)
    }
}

/// A reference to an object in the run's namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a Secret in the run's namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A custom model provider (Codex's `model_providers.<name>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelProviderSpec {
    /// Provider id (letters, digits, `_`, `-`).
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// Base URL; Codex posts to `<baseUrl>/responses`.
    #[schemars(length(min = 1, max = 2048))]
    pub base_url: String,
    /// Environment variable the API key is passed in (default `CODEX_API_KEY` is used only by
    /// the built-in provider, so a custom provider with a key must name one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_key: Option<String>,
    /// Extra provider settings passed through verbatim (`query_params`, retries…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Exactly one of `name` (a bundled schema) and `inline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.name) != has(self.inline)",
    "message": "exactly one of outputSchema.name and outputSchema.inline must be set"
}]))]
pub struct OutputSchemaSpec {
    /// A bundled schema: default_output, code_change, analysis_report, test_results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An inline JSON Schema (strict-mode compatible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub inline: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The verify loop's options (see docs/VERIFY_LOOP.md); each falls back to the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_detect: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub max_fix_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub command_timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 1048576))]
    pub output_cap_bytes: Option<u64>,
}

impl VerifyConfig {
    /// The request-level options this config stands for.
    pub fn to_options(&self) -> VerifyOptions {
        let VerifyConfig {
            enabled,
            lint,
            test,
            build,
            auto_detect,
            max_fix_attempts,
            command_timeout_seconds,
            output_cap_bytes,
        } = self.clone();
        VerifyOptions {
            enabled,
            lint,
            test,
            build,
            auto_detect,
            max_fix_attempts,
            command_timeout_secs: command_timeout_seconds,
            output_cap_bytes,
        }
    }

    /// The config a request's options become in a CodexRun. Both directions name every field,
    /// so the two types cannot drift apart: a field added to one is a compile error here until
    /// it is mapped. (They stay two types because their wire names differ: the CRD's are
    /// camelCase, the MCP tools' snake_case, and neither may change.)
    pub fn from_options(o: &VerifyOptions) -> Self {
        let VerifyOptions {
            enabled,
            lint,
            test,
            build,
            auto_detect,
            max_fix_attempts,
            command_timeout_secs,
            output_cap_bytes,
        } = o.clone();
        VerifyConfig {
            enabled,
            lint,
            test,
            build,
            auto_detect,
            max_fix_attempts,
            command_timeout_seconds: command_timeout_secs,
            output_cap_bytes,
        }
    }
}

/// Written by the controller only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodexRunStatus {
    /// queued, starting, running, verifying, fixing, succeeded, failed, cancelled, timed_out, lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    /// Why the run ended (terminal phases only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<TerminalReason>,
    /// Human-readable detail for the phase / reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The orchestrator's run id (derived from the object's creation time and uid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The Pod running the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// 0 = the first Codex run, n = the n-th fix attempt.
    #[serde(default)]
    pub attempt: u32,
    /// Live counters from the agent's event stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The verify loop so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySummary>,
    /// A bounded summary of the result (the full result is in the artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultSummary>,
    /// Where the artifacts of a finished run are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<ArtifactsRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Exit code of the agent container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// When the agent container started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Conditions `Started` and `Finished` (standard Kubernetes conditions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Bounded result summary kept in the status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultSummary {
    /// The final answer, cut to a few KiB (the full text is in the artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// True when `summary` was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub summary_truncated: bool,
    /// Changed files (at most 50 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_files: Vec<String>,
    pub changed_files_count: u64,
    pub commands_run: u64,
    pub commands_failed: u64,
    /// MCP tool calls codex made, and how many failed (each failure is also an error).
    #[serde(default)]
    pub mcp_tool_calls: u64,
    #[serde(default)]
    pub mcp_tool_calls_failed: u64,
    /// Web searches codex made.
    #[serde(default)]
    pub web_searches: u64,
    pub errors: u64,
    pub attempts: u32,
    pub tokens: TokenUsage,
    /// The patch's size and stats (its file list capped like `changedFiles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchInfo>,
    /// With an output schema: whether the final answer satisfied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_valid: Option<bool>,
    /// With the verify loop: whether the last round passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_passed: Option<bool>,
    /// The Codex CLI version that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codex_version: Option<String>,
    /// Why the result came from codex's last message instead of its event stream (the
    /// stream could not be used); absent for a normal run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// The object holding a finished run's artifacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactsRef {
    /// `ConfigMap` or `Secret`.
    pub kind: String,
    pub name: String,
    /// Keys present (`result.json`, `patch.diff`, `last_message.txt`, `events.jsonl.gz`).
    pub keys: Vec<String>,
    /// The stored patch was cut at the controller's cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub patch_truncated: bool,
    /// The stored event log was cut at the controller's cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub events_truncated: bool,
}

/// Schema of a free-form JSON object (kept verbatim by the API server).
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The CRD as YAML, exactly as committed in `crds/codexrun.yaml`.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let crd = CodexRun::crd();
    let body = serde_saphyr::to_string(&crd)?;
    Ok(format!(
        "# Generated by `codex-orchestrator crd`; do not edit (regenerate with\n# `cargo run -- crd > crds/codexrun.yaml`).\n{body}"
    ))
}
