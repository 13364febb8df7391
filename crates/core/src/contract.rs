//! The sandbox contract: what the backends (the Docker container spec, the Kubernetes Pod
//! builder) and the in-sandbox agent agree on — mount points, environment variable names, the
//! unprivileged uid, the labels on everything a backend creates — in one place, so the two
//! backends cannot drift apart.

/// Where the user's workspace is mounted in the sandbox.
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// The scratch tmpfs (readonly mode) and the copy of the workspace the agent works on there.
pub const SCRATCH_MOUNT: &str = "/scratch";
pub const SCRATCH_WORKDIR: &str = "/scratch/ws";
/// HOME (with CODEX_HOME at `$HOME/.codex`).
pub const HOME_DIR: &str = "/home/codex";
/// The agent's own tmpfs (snapshot store), apart from `/tmp`, which the model may fill.
pub const AGENT_DIR: &str = "/agent";
/// The codex binary in the runner image.
pub const CODEX_BIN: &str = "/usr/local/bin/codex";
/// The in-sandbox agent in the runner image (`agent`, `fetch`); the image's entrypoint is
/// [`AGENT_BIN`] `agent`.
pub const AGENT_BIN: &str = "/usr/local/bin/codex-orchestrator-agent";
/// The egress proxy in the runner image (`proxy`).
pub const EGRESS_BIN: &str = "/usr/local/bin/codex-orchestrator-egress";

/// Environment variable holding the RunSpec JSON.
pub const SPEC_ENV: &str = "CODEX_ORCHESTRATOR_SPEC";
/// The sandbox's variable holding its per-run token for the egress proxy (its codex's "API
/// key"; the real key stays with the proxy).
pub const TOKEN_ENV: &str = "CODEX_ORCHESTRATOR_MODEL_TOKEN";
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
    fn workdirs() {
        assert_eq!(workdir(true), "/scratch/ws");
        assert_eq!(workdir(false), "/workspace");
    }
}
