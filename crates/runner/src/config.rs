//! Server configuration: a TOML file, then environment variables, then command-line flags
//! (each later source overrides the earlier). Validated once at start-up.
//!
//! ```toml
//! state_dir = "/home/me/.local/state/codex-orchestrator"
//! max_concurrent_runs = 2
//! default_timeout_secs = 300
//! max_timeout_secs = 3600
//! codex_version = "0.163.0"           # the Codex CLI of runs that name none (default: newest supported)
//! default_model = "gpt-5.5"           # absent = the codex version's default (see below)
//! default_provider = "azure"          # a key of [providers]; absent = OpenAI (CODEX_API_KEY)
//! max_event_log_mb = 64               # a run's stored events.jsonl; past it events are counted
//! max_workspace_growth_mb = 2048      # write modes: the run stops when the workspace grew this much
//!
//! [docker]
//! image = "codex-orchestrator-runner:0.1.0-codex0.163.0"   # absent = the codex version's image
//! network = "bridge"
//! memory_mb = 4096
//! cpus = 2.0
//! pids_limit = 512
//! allowed_images = ["corp/codex-runner:0.1.0"]   # besides the runner image (always allowed)
//!
//! [verify]                            # the verify loop's defaults (docs/VERIFY_LOOP.md)
//! modes = ["workspace_write", "full_access"]
//! auto_detect = true
//! max_fix_attempts = 2
//! command_timeout_secs = 300
//! output_cap_bytes = 32768
//!
//! [providers.azure]
//! base_url = "https://example.openai.azure.com/openai/v1"
//! env_key = "AZURE_OPENAI_API_KEY"
//! extra = { query_params = { "api-version" = "2025-04-01-preview" } }
//!
//! [auth]                              # how runs without a provider reach OpenAI
//! mode = "chatgpt"                    # "api_key" (default: CODEX_API_KEY) | "chatgpt"
//! chatgpt_auth_file = "/home/me/.codex/auth.json"  # default $CODEX_HOME/auth.json, ~/.codex/auth.json
//! chatgpt_base_url = "https://chatgpt.com/backend-api/codex"  # the default (codex's own)
//! ```
//!
//! The Codex CLI versions are those of `codex_orchestrator_core::codex::SUPPORTED`; a request
//! may name one (`codex_version`), whose runner image is then built on first use when
//! `docker.image` is not set, or must be `docker.image` or one of `allowed_images` (by its
//! codex-version label). Without a `default_model`, codex 0.163 uses its own default model and
//! 0.147 gets `gpt-5.5` (its own default needs a code-mode host its wheel lacks).
//!
//! With `[auth] mode = "chatgpt"` (environment: `CODEX_ORCHESTRATOR_AUTH_MODE`,
//! `CODEX_ORCHESTRATOR_CHATGPT_AUTH_FILE`) a run without a provider uses the ChatGPT sign-in of
//! a Codex `auth.json` (`codex login`): only the run's egress proxy reads it (its directory is
//! mounted into the proxy container, which runs as the file's owner), forwards to the ChatGPT
//! backend with its tokens, refreshes them and writes the file back
//! (`codex_orchestrator_egress::chatgpt`). The sandbox gets the per-run token as always. A run
//! that names a provider uses that provider's key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use codex_orchestrator_core::policy::admission::{AdmissionPolicy, ImageRule};
use codex_orchestrator_core::policy::roots::Protected;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use codex_orchestrator_core::model::{ModelProvider, VerifyDefaults, WireApi};

/// Default of [`Config::max_event_log_mb`].
pub const DEFAULT_MAX_EVENT_LOG_MB: u64 = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// Runner image; default `codex-orchestrator-runner:<version>` (built on first use).
    pub image: Option<String>,
    /// Docker network the run containers join.
    pub network: String,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids_limit: i64,
    /// Size of the /tmp tmpfs.
    pub tmp_mb: u64,
    /// Size of the HOME/CODEX_HOME tmpfs.
    pub home_mb: u64,
    /// Size of the scratch tmpfs holding the workspace copy in readonly mode.
    pub scratch_mb: u64,
    /// Seconds between SIGTERM and SIGKILL when a run is cancelled.
    pub stop_grace_secs: u64,
    /// Seconds after the agent's deadline before the container is killed outright.
    pub hard_kill_grace_secs: u64,
    /// Images a request may name besides the runner image (which is always allowed). Each
    /// must be a runner image of this orchestrator version.
    pub allowed_images: Vec<String>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            image: None,
            network: "bridge".into(),
            memory_mb: 4096,
            cpus: 2.0,
            pids_limit: 1024,
            tmp_mb: 1024,
            home_mb: 512,
            scratch_mb: 2048,
            stop_grace_secs: 10,
            hard_kill_grace_secs: 20,
            allowed_images: Vec::new(),
        }
    }
}

/// Project environments (`[environment]`, docs/ENVIRONMENTS.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Hosts (names, or `*.example.com`) a setup script may reach over HTTPS; a workspace's
    /// `allow_hosts` can only narrow this list.
    pub allow_hosts: Vec<String>,
    /// Longest a setup script may run.
    pub setup_timeout_secs: u64,
    /// Docker network the setup proxy reaches the allowed hosts through (the setup container
    /// itself is only on the run's own internal setup network).
    pub network: String,
    /// A PEM bundle of extra CA certificates (a TLS-inspecting proxy's): added to the system
    /// store of environment images, given to pip, cargo, npm, git and curl in setup and
    /// sandbox, and trusted by the egress proxy upstream.
    pub ca_file: Option<PathBuf>,
}

impl Default for EnvironmentConfig {
    fn default() -> Self {
        EnvironmentConfig {
            allow_hosts: codex_orchestrator_core::environment::DEFAULT_SETUP_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            setup_timeout_secs: 900,
            network: "bridge".into(),
            ca_file: None,
        }
    }
}

impl EnvironmentConfig {
    /// The extra CA bundle's bytes (checked to hold a certificate), if one is configured.
    pub fn ca_bundle(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let bytes = std::fs::read(path).map_err(|e| ConfigError::Invalid {
            key: "environment.ca_file".into(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
            return Err(ConfigError::Invalid {
                key: "environment.ca_file".into(),
                message: format!("{} holds no PEM certificate", path.display()),
            });
        }
        Ok(Some(bytes))
    }
}

/// How runs without a provider authenticate to OpenAI (`[auth] mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// `CODEX_API_KEY` (or `OPENAI_API_KEY`) from the orchestrator's environment.
    #[default]
    ApiKey,
    /// A ChatGPT sign-in: a Codex `auth.json`.
    Chatgpt,
}

/// The `[auth]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The `auth.json` of the ChatGPT sign-in (absolute); default
    /// [`resolve_chatgpt_auth_file`].
    pub chatgpt_auth_file: Option<PathBuf>,
    /// The backend the proxy forwards a ChatGPT sign-in's requests to (codex's own
    /// `chatgpt_base_url`); default [`codex_orchestrator_egress::chatgpt::CHATGPT_BASE_URL`].
    pub chatgpt_base_url: Option<String>,
}

/// The `auth.json` of a ChatGPT sign-in: `configured`, else `$CODEX_HOME/auth.json`, else
/// `$HOME/.codex/auth.json` (codex's own places). Pure.
pub fn resolve_chatgpt_auth_file(
    configured: Option<&Path>,
    codex_home: Option<&std::ffi::OsStr>,
    home: Option<&std::ffi::OsStr>,
) -> PathBuf {
    let set = |v: Option<&std::ffi::OsStr>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    match (configured, set(codex_home), set(home)) {
        (Some(p), _, _) => p.to_path_buf(),
        (None, Some(c), _) => c.join("auth.json"),
        (None, None, Some(h)) => h.join(".codex").join("auth.json"),
        (None, None, None) => PathBuf::from("/root/.codex/auth.json"),
    }
}

/// A `[prices."<model>"]` table: US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input: f64,
    /// Input read from the model's cache; default: `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    pub output: f64,
}

impl PriceConfig {
    /// The price in millionths of a dollar per million tokens (checked by
    /// [`Config::validate`]: finite, not negative).
    pub fn price(&self) -> codex_orchestrator_core::model::ModelPrice {
        let micro = |usd: f64| (usd * 1_000_000.0).round().clamp(0.0, 1e18) as u64;
        codex_orchestrator_core::model::ModelPrice {
            input: micro(self.input),
            cached_input: micro(self.cached_input.unwrap_or(self.input)),
            output: micro(self.output),
        }
    }
}

/// The `[attempts]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttemptsConfig {
    /// The most attempts one request may ask for (1..=8).
    pub max: u32,
    /// The judge's criteria, deciding first to last.
    pub order: Vec<codex_orchestrator_core::judge::Criterion>,
}

impl Default for AttemptsConfig {
    fn default() -> Self {
        AttemptsConfig {
            max: codex_orchestrator_core::policy::admission::DEFAULT_MAX_ATTEMPTS,
            order: codex_orchestrator_core::judge::JudgeConfig::default().order,
        }
    }
}

impl AttemptsConfig {
    /// The judge these settings give.
    pub fn judge(&self) -> codex_orchestrator_core::judge::JudgeConfig {
        codex_orchestrator_core::judge::JudgeConfig {
            order: self.order.clone(),
        }
    }
}

/// A `[providers.<name>]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub base_url: String,
    #[serde(default)]
    pub env_key: Option<String>,
    #[serde(default)]
    pub wire_api: WireApi,
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub state_dir: PathBuf,
    pub max_concurrent_runs: usize,
    pub default_timeout_secs: u64,
    pub max_timeout_secs: u64,
    /// The Codex CLI version of runs that name none (its runner image is the default image).
    pub codex_version: String,
    pub default_model: Option<String>,
    pub default_provider: Option<String>,
    pub allow_full_access: bool,
    pub docker: DockerConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    /// How runs without a provider authenticate (`[auth]`).
    pub auth: AuthConfig,
    /// Project environments: the setup allowlist, its time limit, extra CA certificates.
    pub environment: EnvironmentConfig,
    /// The budget per run (`[budget] max_tokens`, `max_model_requests`): the default of a
    /// request that sets none and the most one may ask for (docs/ATTEMPTS_AND_BUDGETS.md).
    pub budget: codex_orchestrator_core::model::RunBudget,
    /// Parallel attempts (`[attempts] max`, `order`): the most one request may ask for and
    /// the judge's order of criteria (docs/ATTEMPTS_AND_BUDGETS.md).
    pub attempts: AttemptsConfig,
    /// What each model costs (`[prices."<model>"]`), for budgets in money
    /// (`budget.max_cost_cents`).
    pub prices: BTreeMap<String, PriceConfig>,
    /// Cap of a run's stored event log (`events.jsonl`), in MiB: past it, events are still
    /// folded and counted (`result.event_log`) but not stored; the run's completion always is.
    pub max_event_log_mb: u64,
    /// Verify loop defaults (requests override them per run).
    pub verify: VerifyDefaults,
    /// How much a workspace may grow (MiB) in the write modes before the run is stopped
    /// (`failed`/`resource_limit`); requests may ask for less. 0 = no limit.
    pub max_workspace_growth_mb: u64,
    /// Directories no workspace may be, lie in or contain, besides `state_dir` (which is always
    /// protected): the configuration directory, the gateway's tokens, other tenants' roots.
    /// Filled at start-up, never from the file.
    #[serde(skip)]
    pub protected: Vec<Protected>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: default_state_dir(),
            max_concurrent_runs: 2,
            default_timeout_secs: 300,
            max_timeout_secs: 3600,
            codex_version: codex_orchestrator_core::codex::DEFAULT_VERSION.to_string(),
            default_model: None,
            default_provider: None,
            allow_full_access: false,
            docker: DockerConfig::default(),
            providers: BTreeMap::new(),
            auth: AuthConfig::default(),
            environment: EnvironmentConfig::default(),
            budget: Default::default(),
            attempts: AttemptsConfig::default(),
            prices: BTreeMap::new(),
            max_event_log_mb: DEFAULT_MAX_EVENT_LOG_MB,
            verify: VerifyDefaults::default(),
            max_workspace_growth_mb: DEFAULT_MAX_WORKSPACE_GROWTH_MB,
            protected: Vec::new(),
        }
    }
}

/// `$XDG_STATE_HOME/codex-orchestrator`, else `~/.local/state/codex-orchestrator`.
pub fn default_state_dir() -> PathBuf {
    xdg_dir("XDG_STATE_HOME", ".local/state").join("codex-orchestrator")
}

/// `$XDG_CONFIG_HOME/codex-orchestrator/config.toml`, else `~/.config/…`.
pub fn default_config_path() -> PathBuf {
    xdg_dir("XDG_CONFIG_HOME", ".config")
        .join("codex-orchestrator")
        .join("config.toml")
}

fn xdg_dir(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() && Path::new(&v).is_absolute() => PathBuf::from(v),
        _ => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"));
            home.join(fallback)
        }
    }
}

/// What of the configuration a workspace must not touch: the directory of the default
/// configuration file (even before it exists: a model that could create it would configure the
/// next start), or an explicitly given file itself.
pub fn config_protection(file: &Path, explicit: bool) -> Protected {
    match (explicit, file.parent()) {
        (false, Some(dir)) => Protected::new(dir, "the orchestrator's configuration directory"),
        _ => Protected::new(file, "the orchestrator's configuration file"),
    }
}

/// Default of [`Config::max_workspace_growth_mb`]: 2 GiB.
pub const DEFAULT_MAX_WORKSPACE_GROWTH_MB: u64 = 2048;

/// Command-line overrides (all optional); the CLI fills this from its flags.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub image: Option<String>,
    pub codex_version: Option<String>,
    pub network: Option<String>,
    pub max_concurrent_runs: Option<usize>,
    pub allow_full_access: Option<bool>,
}

impl Config {
    /// [`Config::max_event_log_mb`] in bytes.
    pub fn max_event_log_bytes(&self) -> u64 {
        self.max_event_log_mb.saturating_mul(1024 * 1024)
    }

    /// Loads `path` (or the default path if it exists), applies the environment, then `ov`.
    pub fn load(path: Option<&Path>, ov: &Overrides) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("CODEX_ORCHESTRATOR_"))
            .collect();
        let (file, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (default_config_path(), false),
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
            Err(source) => return Err(ConfigError::Read { path: file, source }),
        };
        let mut cfg = Self::from_parts(text.as_deref(), &file, &env, ov)?;
        cfg.protected.push(config_protection(&file, explicit));
        Ok(cfg)
    }

    /// Every directory no workspace may touch: [`Config::protected`] and the state directory.
    pub fn protected_dirs(&self) -> Vec<Protected> {
        let mut out = vec![Protected::new(
            &self.state_dir,
            "the orchestrator's state directory",
        )];
        out.extend(self.protected.iter().cloned());
        out
    }

    /// Pure core of [`Config::load`].
    pub fn from_parts(
        file_text: Option<&str>,
        file_path: &Path,
        env: &BTreeMap<String, String>,
        ov: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut cfg: Config = match file_text {
            Some(t) => toml::from_str(t).map_err(|e| ConfigError::Parse {
                path: file_path.to_path_buf(),
                message: e.to_string(),
            })?,
            None => Config::default(),
        };
        let parse_num = |key: &str, v: &str| -> Result<u64, ConfigError> {
            v.trim().parse::<u64>().map_err(|_| ConfigError::Invalid {
                key: key.into(),
                message: format!("`{v}` is not a whole number"),
            })
        };
        for (k, v) in env {
            match k.as_str() {
                "CODEX_ORCHESTRATOR_STATE_DIR" => cfg.state_dir = PathBuf::from(v),
                "CODEX_ORCHESTRATOR_IMAGE" => cfg.docker.image = Some(v.clone()),
                "CODEX_ORCHESTRATOR_CODEX_VERSION" => cfg.codex_version = v.trim().to_string(),
                "CODEX_ORCHESTRATOR_NETWORK" => cfg.docker.network = v.clone(),
                "CODEX_ORCHESTRATOR_MAX_CONCURRENT_RUNS" => {
                    cfg.max_concurrent_runs = parse_num(k, v)? as usize
                }
                "CODEX_ORCHESTRATOR_DEFAULT_TIMEOUT_SECS" => {
                    cfg.default_timeout_secs = parse_num(k, v)?
                }
                "CODEX_ORCHESTRATOR_MAX_TIMEOUT_SECS" => cfg.max_timeout_secs = parse_num(k, v)?,
                "CODEX_ORCHESTRATOR_MAX_EVENT_LOG_MB" => cfg.max_event_log_mb = parse_num(k, v)?,
                "CODEX_ORCHESTRATOR_DEFAULT_MODEL" => cfg.default_model = Some(v.clone()),
                "CODEX_ORCHESTRATOR_ALLOW_FULL_ACCESS" => {
                    cfg.allow_full_access = matches!(v.as_str(), "1" | "true" | "yes")
                }
                "CODEX_ORCHESTRATOR_AUTH_MODE" => {
                    cfg.auth.mode = match v.trim() {
                        "api_key" => AuthMode::ApiKey,
                        "chatgpt" => AuthMode::Chatgpt,
                        other => {
                            return Err(ConfigError::Invalid {
                                key: k.clone(),
                                message: format!("`{other}` is not `api_key` or `chatgpt`"),
                            });
                        }
                    }
                }
                "CODEX_ORCHESTRATOR_CHATGPT_AUTH_FILE" => {
                    cfg.auth.chatgpt_auth_file = Some(PathBuf::from(v))
                }
                "CODEX_ORCHESTRATOR_CA_FILE" => cfg.environment.ca_file = Some(PathBuf::from(v)),
                "CODEX_ORCHESTRATOR_CHATGPT_BASE_URL" => {
                    cfg.auth.chatgpt_base_url = Some(v.trim().to_string())
                }
                _ => {}
            }
        }
        if let Some(v) = &ov.state_dir {
            cfg.state_dir = v.clone();
        }
        if let Some(v) = &ov.image {
            cfg.docker.image = Some(v.clone());
        }
        if let Some(v) = &ov.codex_version {
            cfg.codex_version = v.clone();
        }
        if let Some(v) = &ov.network {
            cfg.docker.network = v.clone();
        }
        if let Some(v) = ov.max_concurrent_runs {
            cfg.max_concurrent_runs = v;
        }
        if let Some(v) = ov.allow_full_access {
            cfg.allow_full_access = v;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        if !self.state_dir.is_absolute() {
            return Err(bad(
                "state_dir",
                format!("`{}` must be an absolute path", self.state_dir.display()),
            ));
        }
        if self.max_concurrent_runs == 0 {
            return Err(bad("max_concurrent_runs", "must be at least 1".into()));
        }
        if self.default_timeout_secs == 0 || self.default_timeout_secs > self.max_timeout_secs {
            return Err(bad(
                "default_timeout_secs",
                format!(
                    "must be between 1 and max_timeout_secs ({})",
                    self.max_timeout_secs
                ),
            ));
        }
        if let Err(e) = codex_orchestrator_core::codex::require(&self.codex_version) {
            return Err(bad("codex_version", e.to_string()));
        }
        if self.max_event_log_mb == 0 {
            return Err(bad("max_event_log_mb", "must be at least 1".into()));
        }
        if let Err((key, message)) = self.verify.validate() {
            return Err(bad(&format!("verify.{key}"), message));
        }
        let d = &self.docker;
        if d.memory_mb < 256 {
            return Err(bad("docker.memory_mb", "must be at least 256".into()));
        }
        if !(d.cpus > 0.0 && d.cpus <= 1024.0) {
            return Err(bad("docker.cpus", "must be > 0".into()));
        }
        if d.pids_limit < 64 {
            return Err(bad("docker.pids_limit", "must be at least 64".into()));
        }
        if d.network.is_empty() || d.network == "host" {
            return Err(bad(
                "docker.network",
                "the host network is never allowed for run containers".into(),
            ));
        }
        if d.allowed_images.iter().any(|i| i.trim().is_empty()) {
            return Err(bad(
                "docker.allowed_images",
                "an image name is empty".into(),
            ));
        }
        if let Some(f) = &self.auth.chatgpt_auth_file
            && !f.is_absolute()
        {
            return Err(bad(
                "auth.chatgpt_auth_file",
                format!("`{}` must be an absolute path", f.display()),
            ));
        }
        if let Some(u) = &self.auth.chatgpt_base_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(bad(
                "auth.chatgpt_base_url",
                format!("`{u}` is not an http(s) URL"),
            ));
        }
        let e = &self.environment;
        if e.allow_hosts.is_empty() {
            return Err(bad(
                "environment.allow_hosts",
                "empty: a setup could reach nothing (name the registries it may use)".into(),
            ));
        }
        let as_declared = codex_orchestrator_core::environment::Environment {
            allow_hosts: e.allow_hosts.clone(),
            ..Default::default()
        };
        if let Err(codex_orchestrator_core::environment::EnvironmentError::Invalid {
            field,
            message,
        }) = as_declared.check()
        {
            return Err(bad(&format!("environment.{field}"), message));
        }
        if e.network.is_empty() || e.network == "host" {
            return Err(bad(
                "environment.network",
                "the host network is never allowed for the setup proxy".into(),
            ));
        }
        if e.setup_timeout_secs == 0 {
            return Err(bad(
                "environment.setup_timeout_secs",
                "must be at least 1".into(),
            ));
        }
        if let Some(f) = &e.ca_file
            && !f.is_absolute()
        {
            return Err(bad(
                "environment.ca_file",
                format!("`{}` must be an absolute path", f.display()),
            ));
        }
        let max = codex_orchestrator_core::policy::admission::MAX_ATTEMPTS;
        if self.attempts.max == 0 || self.attempts.max > max {
            return Err(bad(
                "attempts.max",
                format!("{} is out of range (1..={max})", self.attempts.max),
            ));
        }
        self.attempts
            .judge()
            .check()
            .map_err(|m| bad("attempts.order", m))?;
        for (model, p) in &self.prices {
            if [Some(p.input), p.cached_input, Some(p.output)]
                .iter()
                .flatten()
                .any(|v| !v.is_finite() || *v < 0.0)
            {
                return Err(bad(
                    &format!("prices.{model}"),
                    "prices are US dollars per million tokens, 0 or more".into(),
                ));
            }
        }
        if [
            self.budget.max_tokens,
            self.budget.max_model_requests,
            self.budget.max_wall_secs,
            self.budget.max_cost_cents,
        ]
        .contains(&Some(0))
        {
            return Err(bad(
                "budget",
                "a cap must be at least 1 (leave it out for none)".into(),
            ));
        }
        if let Some(p) = &self.default_provider
            && !self.providers.contains_key(p)
        {
            return Err(bad(
                "default_provider",
                format!("`{p}` is not defined under [providers]"),
            ));
        }
        for name in self.providers.keys() {
            self.provider(name)
                .validate()
                .map_err(|m| bad(&format!("providers.{name}"), m))?;
        }
        Ok(())
    }

    /// The backend a ChatGPT sign-in's requests go to.
    pub fn chatgpt_base_url(&self) -> &str {
        self.auth
            .chatgpt_base_url
            .as_deref()
            .unwrap_or(codex_orchestrator_egress::chatgpt::CHATGPT_BASE_URL)
    }

    /// The `auth.json` runs without a provider sign in with, when `[auth] mode = "chatgpt"`.
    pub fn chatgpt_auth_file(&self) -> Option<PathBuf> {
        (self.auth.mode == AuthMode::Chatgpt).then(|| {
            resolve_chatgpt_auth_file(
                self.auth.chatgpt_auth_file.as_deref(),
                std::env::var_os("CODEX_HOME").as_deref(),
                std::env::var_os("HOME").as_deref(),
            )
        })
    }

    /// The provider named `name` as a [`ModelProvider`] (which must exist).
    pub fn provider(&self, name: &str) -> ModelProvider {
        let p = self.providers.get(name);
        ModelProvider {
            name: name.to_owned(),
            base_url: p.map(|p| p.base_url.clone()).unwrap_or_default(),
            env_key: p.and_then(|p| p.env_key.clone()),
            wire_api: p.map(|p| p.wire_api).unwrap_or_default(),
            extra: p.map(|p| p.extra.clone()).unwrap_or_default(),
        }
    }

    /// The provider used when a request names none.
    pub fn default_provider(&self) -> Option<ModelProvider> {
        self.default_provider.as_deref().map(|n| self.provider(n))
    }

    /// The admission rules these settings give a runner whose runner image is `runner_image`.
    pub fn admission_policy(&self, runner_image: &str) -> AdmissionPolicy {
        AdmissionPolicy {
            allow_full_access: self.allow_full_access,
            default_timeout_secs: self.default_timeout_secs,
            max_timeout_secs: self.max_timeout_secs,
            default_model: self.default_model.clone(),
            runner_image: runner_image.to_string(),
            images: ImageRule::Listed(self.docker.allowed_images.clone()),
            verify_defaults: self.verify.clone(),
            max_workspace_growth_mb: self.max_workspace_growth_mb,
            budget: self.budget,
            max_attempts: self.attempts.max,
            prices: self
                .prices
                .iter()
                .map(|(m, p)| (m.clone(), p.price()))
                .collect(),
        }
    }

    /// The default runner image: `docker.image`, else the image of `codex_version`.
    pub fn runner_image(&self) -> String {
        self.docker
            .image
            .clone()
            .unwrap_or_else(|| crate::image::runner_image_tag(&self.codex_version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_and_prices_sections() {
        let text = "[attempts]\nmax = 6\norder = [\"verify\", \"tokens\"]\n\n[prices.\"gpt-5.5\"]\ninput = 1.25\ncached_input = 0.125\noutput = 10.0\n\n[prices.mini]\ninput = 0.25\noutput = 2.0\n";
        let cfg = Config::from_parts(
            Some(text),
            Path::new("/c.toml"),
            &BTreeMap::new(),
            &Default::default(),
        )
        .unwrap();
        let p = cfg.admission_policy("img");
        assert_eq!(p.max_attempts, 6);
        assert_eq!(
            cfg.attempts.judge().order,
            vec![
                codex_orchestrator_core::judge::Criterion::Verify,
                codex_orchestrator_core::judge::Criterion::Tokens
            ]
        );
        use codex_orchestrator_core::model::ModelPrice;
        assert_eq!(
            p.prices,
            BTreeMap::from([
                (
                    "gpt-5.5".to_string(),
                    ModelPrice {
                        input: 1_250_000,
                        cached_input: 125_000,
                        output: 10_000_000
                    }
                ),
                (
                    "mini".to_string(),
                    // The cached price defaults to the input price.
                    ModelPrice {
                        input: 250_000,
                        cached_input: 250_000,
                        output: 2_000_000
                    }
                ),
            ])
        );
    }

    #[test]
    fn auth_section_and_the_chatgpt_auth_file() {
        let file = r#"
            [auth]
            mode = "chatgpt"
            chatgpt_auth_file = "/home/me/.codex/auth.json"
        "#;
        let none = BTreeMap::new();
        let cfg = Config::from_parts(
            Some(file),
            Path::new("/c.toml"),
            &none,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            cfg.auth,
            AuthConfig {
                mode: AuthMode::Chatgpt,
                chatgpt_auth_file: Some("/home/me/.codex/auth.json".into()),
                chatgpt_base_url: None,
            }
        );
        assert_eq!(
            cfg.chatgpt_base_url(),
            "https://chatgpt.com/backend-api/codex"
        );
        assert_eq!(
            cfg.chatgpt_auth_file(),
            Some(PathBuf::from("/home/me/.codex/auth.json"))
        );
        assert_eq!(Config::default().chatgpt_auth_file(), None);
        // The environment overrides; a relative path or an unknown mode is refused.
        let mut env = BTreeMap::new();
        env.insert(
            "CODEX_ORCHESTRATOR_AUTH_MODE".to_string(),
            "api_key".to_string(),
        );
        let cfg = Config::from_parts(
            Some(file),
            Path::new("/c.toml"),
            &env,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.auth.mode, AuthMode::ApiKey);
        env.insert(
            "CODEX_ORCHESTRATOR_AUTH_MODE".to_string(),
            "oauth".to_string(),
        );
        let e = Config::from_parts(None, Path::new("/c.toml"), &env, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`oauth` is not `api_key` or `chatgpt`"), "{e}");
        let e = Config::from_parts(
            Some("[auth]\nchatgpt_auth_file = \"auth.json\""),
            Path::new("/c.toml"),
            &none,
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("must be an absolute path"), "{e}");
        // The backend: codex's own unless set (a gateway in front of it); only http(s).
        let mut env = BTreeMap::new();
        env.insert(
            "CODEX_ORCHESTRATOR_CHATGPT_BASE_URL".to_string(),
            "http://gw.internal/backend-api/codex".to_string(),
        );
        let cfg =
            Config::from_parts(None, Path::new("/c.toml"), &env, &Overrides::default()).unwrap();
        assert_eq!(
            cfg.chatgpt_base_url(),
            "http://gw.internal/backend-api/codex"
        );
        let e = Config::from_parts(
            Some("[auth]\nchatgpt_base_url = \"chatgpt.com\""),
            Path::new("/c.toml"),
            &none,
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`chatgpt.com` is not an http(s) URL"), "{e}");
        // Where codex keeps it.
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            resolve_chatgpt_auth_file(None, os("/ch").as_deref(), os("/h").as_deref()),
            PathBuf::from("/ch/auth.json")
        );
        assert_eq!(
            resolve_chatgpt_auth_file(None, os("").as_deref(), os("/h").as_deref()),
            PathBuf::from("/h/.codex/auth.json")
        );
        assert_eq!(
            resolve_chatgpt_auth_file(Some(Path::new("/x/a.json")), os("/ch").as_deref(), None),
            PathBuf::from("/x/a.json")
        );
    }

    #[test]
    fn file_env_flags_layering() {
        let file = r#"
            state_dir = "/var/lib/cxo"
            max_concurrent_runs = 3
            default_provider = "gw"
            [docker]
            network = "cxo-net"
            memory_mb = 2048
            [providers.gw]
            base_url = "https://gw.example/v1"
            env_key = "GW_KEY"
            extra = { request_max_retries = 1 }
        "#;
        let mut env = BTreeMap::new();
        env.insert("CODEX_ORCHESTRATOR_MAX_CONCURRENT_RUNS".into(), "5".into());
        env.insert("CODEX_ORCHESTRATOR_IMAGE".into(), "img:1".into());
        let ov = Overrides {
            max_concurrent_runs: Some(7),
            ..Default::default()
        };
        let cfg = Config::from_parts(Some(file), Path::new("/c.toml"), &env, &ov).unwrap();
        assert_eq!(cfg.state_dir, PathBuf::from("/var/lib/cxo"));
        assert_eq!(cfg.max_concurrent_runs, 7);
        assert_eq!(cfg.docker.image.as_deref(), Some("img:1"));
        assert_eq!(cfg.docker.network, "cxo-net");
        assert_eq!(cfg.docker.memory_mb, 2048);
        assert_eq!(cfg.docker.pids_limit, DockerConfig::default().pids_limit);
        let p = cfg.default_provider().unwrap();
        assert_eq!(
            p.to_toml_inline(),
            r#"{name="gw", base_url="https://gw.example/v1", wire_api="responses", env_key="GW_KEY", request_max_retries=1}"#
        );
    }

    #[test]
    fn the_environment_section_and_its_ca_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let file = format!(
            "[environment]\nallow_hosts = [\"*.corp.example\"]\nsetup_timeout_secs = 60\nca_file = \"{}\"",
            pem.display()
        );
        let cfg = Config::from_parts(
            Some(&file),
            Path::new("/c.toml"),
            &BTreeMap::new(),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            cfg.environment,
            EnvironmentConfig {
                allow_hosts: vec!["*.corp.example".into()],
                setup_timeout_secs: 60,
                network: "bridge".into(),
                ca_file: Some(pem.clone()),
            }
        );
        assert_eq!(
            cfg.environment.ca_bundle().unwrap(),
            Some(std::fs::read(&pem).unwrap())
        );
        assert_eq!(Config::default().environment.ca_bundle().unwrap(), None);
        assert!(
            Config::default()
                .environment
                .allow_hosts
                .contains(&"registry.npmjs.org".to_string())
        );
        std::fs::write(&pem, "not a certificate").unwrap();
        assert_eq!(
            cfg.environment.ca_bundle().unwrap_err().to_string(),
            format!(
                "invalid setting `environment.ca_file`: {} holds no PEM certificate",
                pem.display()
            )
        );
    }

    #[test]
    fn invalid_settings_are_named() {
        let env = BTreeMap::new();
        let ov = Overrides::default();
        let cases = [
            ("max_concurrent_runs = 0", "max_concurrent_runs"),
            ("state_dir = \"relative\"", "state_dir"),
            ("[docker]\nnetwork = \"host\"", "docker.network"),
            ("default_provider = \"nope\"", "default_provider"),
            ("[providers.x]\nbase_url = \"ftp://a\"", "providers.x"),
            ("[environment]\nallow_hosts = []", "environment.allow_hosts"),
            (
                "[environment]\nallow_hosts = [\"10.0.0.1\"]",
                "environment.allow_hosts[0]",
            ),
            (
                "[environment]\nsetup_timeout_secs = 0",
                "environment.setup_timeout_secs",
            ),
            ("[environment]\nca_file = \"ca.pem\"", "environment.ca_file"),
            ("[budget]\nmax_tokens = 0", "budget"),
            ("[budget]\nmax_cost_cents = 0", "budget"),
            ("[attempts]\nmax = 0", "attempts.max"),
            ("[attempts]\nmax = 9", "attempts.max"),
            (
                "[attempts]\norder = [\"verify\", \"tokens\", \"verify\"]",
                "attempts.order",
            ),
            (
                "[prices.\"gpt-5.5\"]\ninput = -1.0\noutput = 10.0",
                "prices.gpt-5.5",
            ),
        ];
        for (text, key) in cases {
            let e = Config::from_parts(Some(text), Path::new("/c.toml"), &env, &ov).unwrap_err();
            assert!(
                matches!(&e, ConfigError::Invalid { key: k, .. } if k == key),
                "{text}: {e}"
            );
        }
        let e = Config::from_parts(Some("bogus = 1"), Path::new("/c.toml"), &env, &ov)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config file /c.toml is invalid: "), "{e}");
        let mut env = BTreeMap::new();
        env.insert("CODEX_ORCHESTRATOR_MAX_TIMEOUT_SECS".into(), "x".into());
        let e = Config::from_parts(None, Path::new("/c.toml"), &env, &ov).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid setting `CODEX_ORCHESTRATOR_MAX_TIMEOUT_SECS`: `x` is not a whole number"
        );
    }
}
