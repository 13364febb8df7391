//! `codex-orchestrator gateway`: flags and wiring (the gateway itself is in the server crate).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::info;

use codex_orchestrator_core::policy::cluster::SecretRule;
use codex_orchestrator_core::policy::roots::{ClientRootsPolicy, Protected};
use codex_orchestrator_kube::pod::default_policy;
use codex_orchestrator_kube::runner::{KubeRunnerSettings, KubeRunners};
use codex_orchestrator_runner::docker::DockerRunners;
use codex_orchestrator_runner::tenants::RunnerFactory;
use codex_orchestrator_server::gateway::{
    DEFAULT_MAX_REQUEST_BYTES, Gateway, GatewayConfig, GatewayError, MCP_PATH, Tokens,
};
use codex_orchestrator_server::mcp::McpConfig;

/// Which backend the gateway drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    Docker,
    Kube,
}

/// `codex-orchestrator gateway` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Where runs execute: `kube` (CodexRun objects; the controller runs them) or `docker`
    /// (containers on this machine).
    #[arg(long, value_enum)]
    pub backend: BackendKind,
    /// Address to listen on.
    #[arg(
        long,
        default_value = "127.0.0.1:8080",
        env = "CODEX_ORCHESTRATOR_LISTEN"
    )]
    pub listen: SocketAddr,
    /// Tokens: a file of `<token> <tenant> [root=/abs/dir]… [client_roots=ignore|narrow]`
    /// lines, or a directory (a mounted Secret) whose files hold such lines. docker: a tenant's
    /// `root=`s replace `--allowed-root` for it.
    #[arg(long, value_name = "PATH", env = "CODEX_ORCHESTRATOR_TOKENS")]
    pub tokens: PathBuf,
    /// A `Host` header value clients use (repeatable; `name` or `name:port`). Default:
    /// localhost, 127.0.0.1, ::1. In a cluster: the Service's names.
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,
    /// Accept any `Host` header (only behind a proxy that checks it).
    #[arg(long, conflicts_with = "allowed_hosts")]
    pub any_host: bool,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Longest time, in seconds, a `codex_run` call with `wait: true` blocks.
    #[arg(long, value_name = "SECS", default_value_t = codex_orchestrator_server::mcp::DEFAULT_MAX_WAIT.as_secs())]
    pub max_wait: u64,
    /// docker: a directory clients may use as a workspace (repeatable), for tenants without
    /// `root=` options of their own.
    #[arg(long = "allowed-root", value_name = "DIR")]
    pub allowed_roots: Vec<PathBuf>,
    /// Allow `full_access` runs (kube: the controller must allow them too).
    #[arg(long)]
    pub allow_full_access: bool,
    /// Security mode of a run that names none.
    #[arg(long, default_value = "workspace_write")]
    pub default_mode: codex_orchestrator_core::model::SecurityMode,
    /// Who approves a patch apply and a full_access run: auto (ask the tenant's user through
    /// the MCP client where it can, otherwise the model-set flag is enough), human (always
    /// the user; refused when the client cannot ask), client (the flag is enough).
    #[arg(long, value_name = "POLICY", default_value = "auto")]
    pub approval: codex_orchestrator_core::policy::approval::ApprovalPolicy,
    /// kube: namespace of the CodexRuns (default: the client's namespace).
    #[arg(long, env = "CODEX_ORCHESTRATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// kube: put each tenant's runs in the namespace named after the tenant.
    #[arg(long)]
    pub namespace_per_tenant: bool,
    /// kube: `SECRET/KEY` holding the model API key, given to every run (spec.authSecretRef).
    #[arg(
        long,
        value_name = "SECRET/KEY",
        env = "CODEX_ORCHESTRATOR_AUTH_SECRET"
    )]
    pub auth_secret: Option<String>,
    /// kube: a Secret that requests may name for git credentials (label
    /// `git-credentials-secret`); repeatable. Without any, no request may name a Secret.
    #[arg(long = "allowed-secret", value_name = "NAME")]
    pub allowed_secrets: Vec<String>,
    /// kube: delete a CodexRun this many seconds after it finished.
    #[arg(long)]
    pub ttl_seconds_after_finished: Option<u64>,
    /// kube: seconds a run may take when it names no timeout (as the controller's flag).
    #[arg(long, default_value_t = 1800)]
    pub default_timeout: u64,
    /// kube: the longest timeout a run may ask for (as the controller's flag).
    #[arg(long, default_value_t = 4 * 3600)]
    pub max_timeout: u64,
}

/// `SECRET/KEY` → a secret key reference.
pub fn parse_secret_key(s: &str) -> Result<codex_orchestrator_kube::crd::SecretKeyRef, String> {
    match s.split_once('/') {
        Some((n, k)) if !n.is_empty() && !k.is_empty() && !k.contains('/') => {
            Ok(codex_orchestrator_kube::crd::SecretKeyRef {
                name: n.to_string(),
                key: k.to_string(),
            })
        }
        _ => Err(format!("`{s}` is not SECRET/KEY")),
    }
}

/// `codex-orchestrator gateway`: serves until SIGTERM/SIGINT.
pub async fn main(
    cfg: codex_orchestrator_runner::config::Config,
    a: GatewayArgs,
) -> Result<(), GatewayError> {
    let tokens = Tokens::load(&a.tokens)?;
    let mut protected = cfg.protected_dirs();
    protected.push(Protected::new(&a.tokens, "the gateway's tokens"));
    let factory: Arc<dyn RunnerFactory> = match a.backend {
        BackendKind::Docker => {
            let mut cfg = cfg.clone();
            cfg.protected
                .push(Protected::new(&a.tokens, "the gateway's tokens"));
            let runners = DockerRunners::new(cfg);
            // What a previous gateway left (runs it was starting or driving when it was
            // stopped) is reclaimed now, not when each tenant next connects.
            runners.recover_known_tenants();
            Arc::new(runners)
        }
        BackendKind::Kube => {
            let auth_secret = a
                .auth_secret
                .as_deref()
                .map(parse_secret_key)
                .transpose()
                .map_err(GatewayError::Setup)?;
            // The controller's rules, so a request the controller would refuse is refused here,
            // before a CodexRun exists.
            let mut policy = default_policy();
            policy.allow_full_access = a.allow_full_access;
            policy.default_timeout_secs = a.default_timeout;
            policy.max_timeout_secs = a.max_timeout;
            policy.verify_defaults = cfg.verify.clone();
            let settings = KubeRunnerSettings {
                auth_secret,
                ttl_seconds_after_finished: a.ttl_seconds_after_finished,
                policy,
                allowed_secrets: SecretRule::listed(a.allowed_secrets.iter().cloned()),
            };
            let runners =
                KubeRunners::connect(a.namespace.clone(), a.namespace_per_tenant, settings)
                    .await
                    .map_err(|e| GatewayError::Setup(e.to_string()))?;
            Arc::new(runners)
        }
    };
    let roots = if a.allowed_roots.is_empty() && a.backend == BackendKind::Docker {
        vec![std::env::current_dir().map_err(|e| GatewayError::Setup(e.to_string()))?]
    } else {
        a.allowed_roots.clone()
    };
    let allowed_hosts = if a.any_host {
        Vec::new()
    } else if a.allowed_hosts.is_empty() {
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
    } else {
        a.allowed_hosts.clone()
    };
    let gw = Arc::new(Gateway::new(
        tokens,
        factory,
        GatewayConfig {
            allowed_hosts,
            max_request_bytes: a.max_request_bytes,
            mcp: McpConfig {
                allowed_roots: roots,
                default_workspace: None,
                max_wait: Duration::from_secs(a.max_wait),
                default_mode: a.default_mode,
                client_roots: ClientRootsPolicy::Ignore,
                protected,
                approval: a.approval,
            },
            audit: Some(codex_orchestrator_runner::audit::ServerAudit::new(
                &cfg.state_dir,
            )),
        },
    )?);
    let listener = TcpListener::bind(a.listen)
        .await
        .map_err(|e| GatewayError::Setup(format!("cannot listen on {}: {e}", a.listen)))?;
    info!(
        backend = ?a.backend,
        tenants = gw.tenant_count(),
        "codex-orchestrator gateway on http://{}{MCP_PATH}",
        listener.local_addr().map_or(a.listen, |x| x)
    );
    gw.serve(listener, codex_orchestrator_server::cancel_on_signal())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_key_references() {
        assert_eq!(
            parse_secret_key("openai/api-key"),
            Ok(codex_orchestrator_kube::crd::SecretKeyRef {
                name: "openai".into(),
                key: "api-key".into()
            })
        );
        for bad in ["openai", "/k", "s/", "a/b/c"] {
            assert!(parse_secret_key(bad).is_err(), "{bad}");
        }
    }
}
