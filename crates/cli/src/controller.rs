//! `codex-orchestrator controller`: flags and wiring (the controller itself is in the kube
//! crate).

use std::net::SocketAddr;
use std::time::Duration;

use codex_orchestrator_core::policy::admission::ImageRule;
use codex_orchestrator_core::policy::cluster::SecretRule;
use codex_orchestrator_kube::controller::{Error, Settings};
use codex_orchestrator_kube::pod::{ModelProxy, RunKey};

/// `codex-orchestrator controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Watch CodexRuns in this namespace (default: the client's namespace).
    #[arg(
        long,
        env = "CODEX_ORCHESTRATOR_NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// Watch CodexRuns in all namespaces.
    #[arg(long)]
    pub all_namespaces: bool,
    /// Allow runs in `full_access` mode (open network).
    #[arg(long)]
    pub allow_full_access: bool,
    /// The runner image (the agent, codex, the egress proxy).
    #[arg(long, env = "CODEX_ORCHESTRATOR_RUNNER_IMAGE")]
    pub runner_image: Option<String>,
    /// Let CodexRuns choose any other image in `spec.image`.
    #[arg(long)]
    pub allow_image_override: bool,
    /// An image CodexRuns may name in `spec.image` besides the runner image (an environment
    /// image the team built with `image build --environment` and pushed); repeatable.
    #[arg(
        long = "allowed-image",
        value_name = "IMAGE",
        conflicts_with = "allow_image_override"
    )]
    pub allowed_images: Vec<String>,
    /// The Codex CLI version the runner image holds (default: the newest supported).
    #[arg(long, value_name = "VERSION", default_value = codex_orchestrator_core::codex::DEFAULT_VERSION,
          value_parser = parse_codex_version)]
    pub runner_codex_version: String,
    /// The runner image of another Codex CLI version, for CodexRuns naming it in
    /// `spec.codexVersion`: `VERSION=IMAGE`; repeatable.
    #[arg(long = "codex-image", value_name = "VERSION=IMAGE", value_parser = parse_codex_image)]
    pub codex_images: Vec<(String, String)>,
    /// Default model when a CodexRun names none.
    #[arg(long)]
    pub default_model: Option<String>,
    /// Seconds a run may take when its CodexRun names no timeoutSeconds.
    #[arg(
        long,
        default_value_t = 1800,
        env = "CODEX_ORCHESTRATOR_DEFAULT_TIMEOUT_SECS"
    )]
    pub default_timeout: u64,
    /// The longest timeoutSeconds a CodexRun may ask for.
    #[arg(
        long,
        default_value_t = 4 * 3600,
        env = "CODEX_ORCHESTRATOR_MAX_TIMEOUT_SECS"
    )]
    pub max_timeout: u64,
    /// uid (and gid) the sandbox runs as; never 0.
    #[arg(long, default_value_t = 10001, value_parser = clap::value_parser!(i64).range(1..))]
    pub run_as_uid: i64,
    /// Seconds a Pod may stay unschedulable or unable to pull its image before the run fails.
    #[arg(long, default_value_t = 300)]
    pub scheduling_timeout: u64,
    /// Keep artifacts in Secrets instead of ConfigMaps.
    #[arg(long)]
    pub artifacts_in_secret: bool,
    /// Address of the metrics (/metrics) and health (/healthz, /readyz) endpoints.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Send every run's model traffic through the in-cluster egress proxy at this base URL
    /// (e.g. http://co-model-proxy.ns.svc:8080/v1): run Pods get the proxy's token, never the
    /// API key.
    #[arg(long, requires = "model_proxy_token_secret")]
    pub model_proxy_url: Option<String>,
    /// The Secret holding the proxy token (with --model-proxy-url).
    #[arg(long)]
    pub model_proxy_token_secret: Option<String>,
    /// The key of the proxy token in that Secret.
    #[arg(long, default_value = "token")]
    pub model_proxy_token_key: String,
    /// With --model-proxy-url: give each run its own proxy token, derived from this key
    /// (the proxy's CODEX_ORCHESTRATOR_PROXY_RUN_KEY), instead of the shared token. From the
    /// environment only, so that it never shows in a process list.
    #[arg(
        long = "model-proxy-run-key",
        env = "CODEX_ORCHESTRATOR_MODEL_PROXY_RUN_KEY",
        hide = true,
        hide_env_values = true,
        value_parser = parse_run_key
    )]
    pub model_proxy_run_key: Option<RunKey>,
    /// The setup proxy as run Pods reach it (e.g. `http://co-setup-proxy.ns.svc:3128`): the
    /// only way out of a CodexRun's `setup` init container (docs/ENVIRONMENTS.md). Needs
    /// --model-proxy-run-key (each setup gets a token of its own). Without it, a setup has no
    /// network.
    #[arg(long, value_name = "URL")]
    pub setup_proxy_url: Option<String>,
    /// Longest a CodexRun's setup may take (seconds).
    #[arg(long, default_value_t = 900)]
    pub setup_timeout: u64,
    /// The environment images carry an extra CA bundle (built with `image build --environment
    /// --ca-file`): point pip, cargo, npm, git and curl at the system store that holds it.
    #[arg(long)]
    pub extra_ca: bool,
    /// A Secret CodexRuns may name (`source.git.credentialsSecret`, and `authSecretRef`
    /// without the model proxy); repeatable. Without any, a CodexRun naming a Secret is
    /// refused.
    #[arg(long = "allowed-secret", value_name = "NAME")]
    pub allowed_secrets: Vec<String>,
    /// Each tenant has a namespace named after it (as the gateway's --namespace-per-tenant):
    /// a tenant's run may mount any claim of its own namespace, not only claims labelled
    /// codex-orchestrator.dev/tenant=<tenant>.
    #[arg(long)]
    pub namespace_per_tenant: bool,
}

/// A supported codex version, or the error listing them.
fn parse_codex_version(s: &str) -> Result<String, String> {
    codex_orchestrator_core::codex::require(s)
        .map(|r| r.version.to_string())
        .map_err(|e| e.to_string())
}

/// `VERSION=IMAGE` with a supported version and a non-empty image.
fn parse_codex_image(s: &str) -> Result<(String, String), String> {
    let (v, image) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not VERSION=IMAGE"))?;
    let v = parse_codex_version(v.trim())?;
    let image = image.trim();
    if image.is_empty() {
        return Err(format!("`{s}`: the image is empty"));
    }
    Ok((v, image.to_string()))
}

/// The run key (its debug form, and so `ControllerArgs`'s, hides it).
fn parse_run_key(s: &str) -> Result<RunKey, String> {
    let min = codex_orchestrator_core::runtoken::MIN_KEY_LEN;
    if s.len() < min {
        return Err(format!("the run key must be at least {min} characters"));
    }
    Ok(RunKey(s.to_string()))
}

impl ControllerArgs {
    pub fn settings(&self) -> Settings {
        let mut s = Settings::default();
        let p = &mut s.pod.policy;
        if let Some(img) = &self.runner_image {
            p.runner_image = img.clone();
        }
        if self.allow_image_override {
            p.images = ImageRule::Any;
        } else if !self.allowed_images.is_empty() {
            p.images = ImageRule::Listed(self.allowed_images.clone());
        }
        p.allow_full_access = self.allow_full_access;
        if self.default_model.is_some() {
            p.default_model = self.default_model.clone();
        }
        p.default_timeout_secs = self.default_timeout;
        p.max_timeout_secs = self.max_timeout;
        s.pod.uid = self.run_as_uid;
        s.pod.runner_codex_version = self.runner_codex_version.clone();
        s.pod.codex_images = self.codex_images.iter().cloned().collect();
        s.pod.setup_proxy = self.setup_proxy_url.clone();
        s.pod.setup_timeout_secs = self.setup_timeout;
        s.pod.extra_ca = self.extra_ca;
        s.scheduling_timeout = Duration::from_secs(self.scheduling_timeout);
        s.artifacts_in_secret = self.artifacts_in_secret;
        s.pod.allowed_secrets = SecretRule::listed(self.allowed_secrets.iter().cloned());
        s.namespace_per_tenant = self.namespace_per_tenant;
        if let (Some(url), Some(secret)) = (&self.model_proxy_url, &self.model_proxy_token_secret) {
            s.pod.model_proxy = Some(ModelProxy {
                base_url: url.clone(),
                token_secret: secret.clone(),
                token_key: self.model_proxy_token_key.clone(),
                run_key: self.model_proxy_run_key.clone(),
            });
        }
        s
    }
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn main(a: ControllerArgs) -> Result<(), Error> {
    codex_orchestrator_kube::controller::run(
        a.namespace.clone(),
        a.all_namespaces,
        a.settings(),
        a.listen,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Top {
        #[command(flatten)]
        args: ControllerArgs,
    }

    fn parse(args: &[&str]) -> Result<ControllerArgs, clap::Error> {
        Top::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|t| t.args)
    }

    #[test]
    fn codex_versions_and_their_images_reach_the_pod_settings() {
        let a = parse(&[
            "--runner-image=r:1-codex0.163.0",
            "--codex-image=0.147.0=r:1-codex0.147.0",
        ])
        .unwrap();
        let s = a.settings();
        assert_eq!(
            (
                s.pod.policy.runner_image.as_str(),
                s.pod.runner_codex_version.as_str(),
                s.pod.codex_images.clone()
            ),
            (
                "r:1-codex0.163.0",
                "0.163.0",
                std::collections::BTreeMap::from([(
                    "0.147.0".to_string(),
                    "r:1-codex0.147.0".to_string()
                )])
            )
        );
        for (bad, message) in [
            (
                "--codex-image=0.150.0=r:1",
                "Codex CLI 0.150.0 is not supported; supported versions: 0.147.0, 0.163.0",
            ),
            ("--codex-image=0.147.0", "`0.147.0` is not VERSION=IMAGE"),
            ("--codex-image=0.147.0= ", "`0.147.0= `: the image is empty"),
            (
                "--runner-codex-version=1.0.0",
                "Codex CLI 1.0.0 is not supported; supported versions: 0.147.0, 0.163.0",
            ),
        ] {
            let err = parse(&[bad]).unwrap_err().to_string();
            assert!(err.contains(message), "{bad}: {err}");
        }
    }

    #[test]
    fn environment_images_and_the_setup_proxy_reach_the_pod_settings() {
        let a = parse(&[
            "--allowed-image=registry.example/team/env:0123",
            "--setup-proxy-url=http://co-setup-proxy.tools.svc:3128",
            "--setup-timeout=300",
            "--extra-ca",
        ])
        .unwrap();
        let s = a.settings();
        assert_eq!(
            (
                s.pod.policy.images.clone(),
                s.pod.setup_proxy.clone(),
                s.pod.setup_timeout_secs,
                s.pod.extra_ca
            ),
            (
                ImageRule::Listed(vec!["registry.example/team/env:0123".into()]),
                Some("http://co-setup-proxy.tools.svc:3128".to_string()),
                300,
                true
            )
        );
        let d = parse(&[]).unwrap().settings();
        assert_eq!(
            (d.pod.setup_proxy, d.pod.setup_timeout_secs, d.pod.extra_ca),
            (None, 900, false)
        );
        assert!(parse(&["--allow-image-override", "--allowed-image=x:1"]).is_err());
    }
}
