//! The sandbox contract: what the backends (the Docker container spec, the Kubernetes Pod
//! builder) and the in-sandbox agent agree on — mount points, environment variable names, the
//! unprivileged uid, the labels on everything a backend creates — in one place, so the two
//! backends cannot drift apart.

/// Where the user's workspace is mounted in the sandbox.
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// The scratch tmpfs (readonly mode) and the copy of the workspace the agent works on there.
/// Where a write-mode sandbox sees the host's `<workspace>/.git`, read-only; its
/// `/workspace/.git` is a tmpfs holding the run's private copy (see `crates/workspace/src/private_git.rs`).
pub const HOST_GIT_MOUNT: &str = "/run/codex-orchestrator/host-git";
pub const SCRATCH_MOUNT: &str = "/scratch";
pub const SCRATCH_WORKDIR: &str = "/scratch/ws";
/// HOME (with CODEX_HOME at `$HOME/.codex`).
pub const HOME_DIR: &str = "/home/codex";
/// The agent's own tmpfs (snapshot store), apart from `/tmp`, which the model may fill.
pub const AGENT_DIR: &str = "/agent";
/// The codex binary in the runner image.
pub const CODEX_BIN: &str = "/usr/local/bin/codex";
/// Repository of the runner images.
pub const RUNNER_REPO: &str = "codex-orchestrator-runner";

/// The tag of the runner image of this orchestrator version holding Codex CLI `codex_version`:
/// `codex-orchestrator-runner:<version>-codex<codex_version>` (so images of several codex
/// versions coexist).
pub fn runner_image_tag(codex_version: &str) -> String {
    format!(
        "{RUNNER_REPO}:{}-codex{codex_version}",
        crate::model::VERSION
    )
}

/// The runner image of the default codex version ([`crate::codex::DEFAULT_VERSION`]).
pub fn default_runner_image() -> String {
    runner_image_tag(crate::codex::DEFAULT_VERSION)
}

/// The in-sandbox agent in the runner image (`agent`, `fetch`); the image's entrypoint is
/// [`AGENT_BIN`] `agent`.
pub const AGENT_BIN: &str = "/usr/local/bin/codex-orchestrator-agent";
/// The egress proxy in the runner image (`proxy`).
pub const EGRESS_BIN: &str = "/usr/local/bin/codex-orchestrator-egress";

/// Set to `1` in every sandbox (both backends): the agent may then kill every other process
/// of the sandbox when it stops a run at a resource limit (see
/// `crates/agent/src/process.rs`).
pub const SANDBOX_ENV: &str = "CODEX_ORCHESTRATOR_SANDBOX";
/// Environment variable holding the RunSpec JSON.
pub const SPEC_ENV: &str = "CODEX_ORCHESTRATOR_SPEC";
/// The sandbox's variable holding its per-run token for the egress proxy (its codex's "API
/// key"; the real key stays with the proxy).
pub const TOKEN_ENV: &str = "CODEX_ORCHESTRATOR_MODEL_TOKEN";
/// An attempt of a best-of-N run: its number (1-based), for the project's own scripts.
pub const ATTEMPT_ENV: &str = "CODEX_ORCHESTRATOR_ATTEMPT";
/// An attempt of a best-of-N run: how many attempts its parent has.
pub const ATTEMPTS_ENV: &str = "CODEX_ORCHESTRATOR_ATTEMPTS";
/// The variable the built-in OpenAI provider of codex reads the API key from.
pub const DEFAULT_KEY_ENV: &str = "CODEX_API_KEY";
/// The fetch step's HTTP user name (optional) and password or token for a git source.
pub const GIT_USERNAME_ENV: &str = "CODEX_ORCHESTRATOR_GIT_USERNAME";
pub const GIT_PASSWORD_ENV: &str = "CODEX_ORCHESTRATOR_GIT_PASSWORD";
/// Env var strings longer than this cannot be passed to a process (Linux MAX_ARG_STRLEN is
/// 128 KiB); the spec must fit.
pub const MAX_SPEC_BYTES: usize = 120 * 1024;
/// Patch bytes the agent carries inline in its stream.
pub const MAX_PATCH_BYTES: usize = 8 * 1024 * 1024;

/// uid (= gid) of the sandbox when the workspace owner is root, and on Kubernetes: the sandbox
/// never runs as uid 0.
pub const FALLBACK_UID: u32 = 10001;

/// The uid:gid the sandbox runs as: the workspace owner's, or [`FALLBACK_UID`] when the owner
/// is root. The bool says whether the fallback was used.
pub fn sandbox_user(owner_uid: u32, owner_gid: u32) -> (u32, u32, bool) {
    if owner_uid == 0 {
        (FALLBACK_UID, FALLBACK_UID, true)
    } else {
        (
            owner_uid,
            if owner_gid == 0 { owner_uid } else { owner_gid },
            false,
        )
    }
}

/// The directory the agent works in for a policy: the scratch copy in readonly mode, else the
/// workspace mount.
pub fn workdir(scratch_copy: bool) -> &'static str {
    if scratch_copy {
        SCRATCH_WORKDIR
    } else {
        WORKSPACE_MOUNT
    }
}

/// The environment every sandbox starts with, besides the spec and the token: a HOME on its
/// tmpfs, a name and a git identity for a uid without a passwd entry.
pub fn base_env() -> Vec<(&'static str, &'static str)> {
    vec![
        (SANDBOX_ENV, "1"),
        ("HOME", HOME_DIR),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("USER", "codex"),
        ("LOGNAME", "codex"),
        ("GIT_AUTHOR_NAME", "Codex"),
        ("GIT_AUTHOR_EMAIL", "codex@sandbox.invalid"),
        ("GIT_COMMITTER_NAME", "Codex"),
        ("GIT_COMMITTER_EMAIL", "codex@sandbox.invalid"),
    ]
}

/// The labels and annotations on everything either backend creates (containers, networks and
/// images on Docker; CodexRuns, Pods, artifacts on Kubernetes): one prefix,
/// [`labels::PREFIX`], on both.
pub mod labels {
    /// The prefix of every label and annotation of ours.
    pub const PREFIX: &str = "codex-orchestrator.dev/";
    /// The prefix Docker objects of earlier versions carry (`dev.codex-orchestrator.run-id`, …):
    /// still read, so their runs are re-attached and their leftovers cleaned (see [`legacy`]).
    pub const LEGACY_DOCKER_PREFIX: &str = "dev.codex-orchestrator.";

    /// Who manages the object (the Kubernetes recommended label), with the value [`MANAGER`].
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGER: &str = "codex-orchestrator";
    /// The run id.
    pub const RUN_ID: &str = "codex-orchestrator.dev/run-id";
    /// The security mode.
    pub const MODE: &str = "codex-orchestrator.dev/mode";
    /// `model-api-only` or `open` (NetworkPolicies select on it).
    pub const NETWORK: &str = "codex-orchestrator.dev/network";
    /// Docker: the run store an object belongs to (a server only touches its own).
    pub const STORE: &str = "codex-orchestrator.dev/store";
    /// Docker: `sandbox`, `proxy` or `network`.
    pub const ROLE: &str = "codex-orchestrator.dev/role";
    /// Kubernetes: the CodexRun of a Pod or artifacts object.
    pub const CODEXRUN: &str = "codex-orchestrator.dev/codexrun";
    /// Kubernetes: the tenant that created a CodexRun.
    pub const TENANT: &str = "codex-orchestrator.dev/tenant";
    /// Kubernetes: `git` or `pvc`.
    pub const SOURCE_KIND: &str = "codex-orchestrator.dev/source-kind";
    /// Kubernetes: the first 16 hex digits of the SHA-256 of the workspace text.
    pub const WORKSPACE_HASH: &str = "codex-orchestrator.dev/workspace-hash";
    /// Kubernetes annotation: the workspace text as the client gave it.
    pub const ANNOTATION_WORKSPACE: &str = "codex-orchestrator.dev/workspace";
    /// Kubernetes annotation: the request's free-form labels as a JSON object.
    pub const ANNOTATION_REQUEST_LABELS: &str = "codex-orchestrator.dev/request-labels";
    /// Kubernetes annotation: when the gateway submitted the run, to the nanosecond (orders
    /// runs created within one second of `creationTimestamp`).
    pub const ANNOTATION_QUEUED_AT: &str = "codex-orchestrator.dev/queued-at";
    /// Images: `base` or `runner`.
    pub const KIND: &str = "codex-orchestrator.dev/kind";
    /// Images: our version, the codex version and binary hash, the content hash, the base key.
    pub const VERSION: &str = "codex-orchestrator.dev/version";
    pub const CODEX_VERSION: &str = "codex-orchestrator.dev/codex-version";
    pub const CODEX_SHA256: &str = "codex-orchestrator.dev/codex-sha256";
    pub const CONTENT_HASH: &str = "codex-orchestrator.dev/content-hash";
    pub const BASE_KEY: &str = "codex-orchestrator.dev/base-key";
    /// Throwaway objects of tests (cleaned by CI).
    pub const TEST: &str = "codex-orchestrator.dev/test";

    /// The name an earlier version gave `label` on Docker objects, if it had one
    /// (`codex-orchestrator.dev/run-id` → `dev.codex-orchestrator.run-id`).
    pub fn legacy(label: &str) -> Option<String> {
        if label == MANAGED_BY {
            return Some(format!("{LEGACY_DOCKER_PREFIX}managed"));
        }
        label
            .strip_prefix(PREFIX)
            .map(|rest| format!("{LEGACY_DOCKER_PREFIX}{rest}"))
    }

    /// The value of `label` in `labels`, under its name or its [`legacy`] name.
    pub fn get<'a, M>(labels: &'a M, label: &str) -> Option<&'a String>
    where
        M: LabelMap,
    {
        labels
            .get_label(label)
            .or_else(|| legacy(label).and_then(|l| labels.get_label(&l)))
    }

    /// A map of labels (the engines give `HashMap`s, Kubernetes `BTreeMap`s).
    pub trait LabelMap {
        fn get_label(&self, key: &str) -> Option<&String>;
    }
    impl<S: std::hash::BuildHasher> LabelMap for std::collections::HashMap<String, String, S> {
        fn get_label(&self, key: &str) -> Option<&String> {
            self.get(key)
        }
    }
    impl LabelMap for std::collections::BTreeMap<String, String> {
        fn get_label(&self, key: &str) -> Option<&String> {
            self.get(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_root() {
        assert_eq!(sandbox_user(0, 0), (FALLBACK_UID, FALLBACK_UID, true));
        assert_eq!(sandbox_user(1000, 1000), (1000, 1000, false));
        assert_eq!(sandbox_user(1000, 0), (1000, 1000, false));
    }

    #[test]
    fn labels_have_one_prefix_and_a_legacy_name_on_docker() {
        use labels::*;
        for l in [
            RUN_ID,
            MODE,
            NETWORK,
            STORE,
            ROLE,
            CODEXRUN,
            TENANT,
            SOURCE_KIND,
            WORKSPACE_HASH,
            ANNOTATION_WORKSPACE,
            ANNOTATION_REQUEST_LABELS,
            ANNOTATION_QUEUED_AT,
            KIND,
            VERSION,
            CODEX_VERSION,
            CODEX_SHA256,
            CONTENT_HASH,
            BASE_KEY,
            TEST,
        ] {
            assert!(l.starts_with(PREFIX), "{l}");
        }
        assert_eq!(
            legacy(RUN_ID).as_deref(),
            Some("dev.codex-orchestrator.run-id")
        );
        assert_eq!(
            legacy(MANAGED_BY).as_deref(),
            Some("dev.codex-orchestrator.managed")
        );
        assert_eq!(legacy("other/x"), None);
        let old = std::collections::HashMap::from([(
            "dev.codex-orchestrator.store".to_string(),
            "k".to_string(),
        )]);
        assert_eq!(get(&old, STORE).map(String::as_str), Some("k"));
        let new = std::collections::BTreeMap::from([(STORE.to_string(), "n".to_string())]);
        assert_eq!(get(&new, STORE).map(String::as_str), Some("n"));
        assert_eq!(get(&new, RUN_ID), None);
    }

    #[test]
    fn workdirs() {
        assert_eq!(workdir(true), "/scratch/ws");
        assert_eq!(workdir(false), "/workspace");
    }
}
