//! Security modes and the single policy both backends derive their sandbox from (docs/SECURITY_MODES.md).
//!
//! [`SecurityPolicy::for_mode`] is a pure mapping. The Docker container spec and the Kubernetes
//! Pod spec are both built from a `SecurityPolicy`, never from the mode directly, so the two
//! backends cannot drift apart.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How much a run may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    /// The workspace is mounted read-only; codex works on a scratch copy inside the sandbox and
    /// the result is a patch artifact only.
    Readonly,
    /// The workspace is mounted read-write; changes land in place (and as a patch artifact).
    #[default]
    WorkspaceWrite,
    /// Like `workspace_write`, with an open network. Needs an explicit opt-in.
    FullAccess,
}

impl SecurityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityMode::Readonly => "readonly",
            SecurityMode::WorkspaceWrite => "workspace_write",
            SecurityMode::FullAccess => "full_access",
        }
    }
}

impl std::fmt::Display for SecurityMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SecurityMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "readonly" | "read_only" => Ok(SecurityMode::Readonly),
            "workspace_write" => Ok(SecurityMode::WorkspaceWrite),
            "full_access" => Ok(SecurityMode::FullAccess),
            other => Err(format!(
                "unknown security mode `{other}`: expected readonly, workspace_write or full_access"
            )),
        }
    }
}

/// What network a sandbox gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkAccess {
    /// Only the model API should be reachable (enforced by the network the run joins).
    ModelApiOnly,
    /// Unrestricted.
    Open,
}

/// The concrete sandbox rules for one run. Pure data derived from a [`SecurityMode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecurityPolicy {
    pub mode: SecurityMode,
    /// Mount the user's workspace read-only.
    pub workspace_read_only: bool,
    /// The agent copies the workspace to a scratch directory inside the sandbox and works there.
    pub scratch_copy: bool,
    /// Whether changes land in the user's workspace.
    pub changes_in_place: bool,
    /// Default for the verify loop when a request does not say.
    pub verify_by_default: bool,
    pub network: NetworkAccess,
    /// Every command is appended to an audit log.
    pub audit_commands: bool,
    /// Always true: the sandbox never runs as uid 0.
    pub run_as_non_root: bool,
    /// Always true.
    pub drop_all_capabilities: bool,
    /// Always true.
    pub no_new_privileges: bool,
    /// Always true.
    pub read_only_root_fs: bool,
}

impl SecurityPolicy {
    pub fn for_mode(mode: SecurityMode) -> Self {
        let readonly = mode == SecurityMode::Readonly;
        SecurityPolicy {
            mode,
            workspace_read_only: readonly,
            scratch_copy: readonly,
            changes_in_place: !readonly,
            verify_by_default: !readonly,
            network: if mode == SecurityMode::FullAccess {
                NetworkAccess::Open
            } else {
                NetworkAccess::ModelApiOnly
            },
            audit_commands: mode == SecurityMode::FullAccess,
            run_as_non_root: true,
            drop_all_capabilities: true,
            no_new_privileges: true,
            read_only_root_fs: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_per_mode() {
        let ro = SecurityPolicy::for_mode(SecurityMode::Readonly);
        assert_eq!(
            ro,
            SecurityPolicy {
                mode: SecurityMode::Readonly,
                workspace_read_only: true,
                scratch_copy: true,
                changes_in_place: false,
                verify_by_default: false,
                network: NetworkAccess::ModelApiOnly,
                audit_commands: false,
                run_as_non_root: true,
                drop_all_capabilities: true,
                no_new_privileges: true,
                read_only_root_fs: true,
            }
        );
        let ww = SecurityPolicy::for_mode(SecurityMode::WorkspaceWrite);
        assert!(!ww.workspace_read_only && ww.changes_in_place && ww.verify_by_default);
        assert_eq!(ww.network, NetworkAccess::ModelApiOnly);
        let fa = SecurityPolicy::for_mode(SecurityMode::FullAccess);
        assert_eq!(fa.network, NetworkAccess::Open);
        assert!(fa.audit_commands && fa.run_as_non_root && fa.read_only_root_fs);
    }

    #[test]
    fn parse_modes() {
        assert_eq!("readonly".parse(), Ok(SecurityMode::Readonly));
        assert_eq!("read-only".parse(), Ok(SecurityMode::Readonly));
        assert_eq!("workspace-write".parse(), Ok(SecurityMode::WorkspaceWrite));
        assert_eq!("FULL_ACCESS".parse(), Ok(SecurityMode::FullAccess));
        let err = "suggest".parse::<SecurityMode>().unwrap_err();
        assert!(err.contains("unknown security mode `suggest`"), "{err}");
    }
}
