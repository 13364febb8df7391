//! Project environments: what a project's sandbox holds besides the runner image — Debian
//! packages, a setup script, non-secret variables, cache directories, the verify commands and
//! the hosts its setup may reach — declared in the workspace at [`FILE`]. Parsing and every
//! check are here, pure; nothing is built or run from a declaration that fails a check, and the
//! error names the field.
//!
//! The content key ([`Environment::image_key`]) names what an environment image holds: the same
//! runner image and the same packages give the same key, whatever else the file says (setup,
//! variables and verify commands do not change the image).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a workspace declares its environment.
pub const FILE: &str = ".codex-orchestrator/environment.toml";

/// Most packages one environment may add.
pub const MAX_PACKAGES: usize = 64;
/// Most hosts a setup may be allowed to reach.
pub const MAX_HOSTS: usize = 64;
/// Most cache directories.
pub const MAX_CACHES: usize = 16;
/// Most variables.
pub const MAX_VARS: usize = 64;
/// Largest setup script, in bytes.
pub const MAX_SETUP_BYTES: usize = 64 * 1024;
/// Largest variable value or verify command, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;

/// A project's environment, as declared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Debian (bookworm) packages added to the runner image, e.g. `cargo`, `golang-go`,
    /// `nodejs`, `npm`, `build-essential`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// A shell script run in the workspace before the agent, with network access limited to
    /// the allowed hosts (e.g. `cargo fetch`, `npm ci`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    /// Environment variables for the setup, codex and the verify commands. Not for secrets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Absolute directories kept between runs of this environment (e.g.
    /// `/home/codex/.cargo/registry`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<String>,
    /// Hosts the setup may reach besides the defaults (`*.example.com` allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
    /// The verify commands (each replaces the detected ones of its kind).
    #[serde(default, skip_serializing_if = "EnvironmentVerify::is_empty")]
    pub verify: EnvironmentVerify,
}

/// Verify commands an environment names (shell command lines run in the workspace).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentVerify {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
}

impl EnvironmentVerify {
    pub fn is_empty(&self) -> bool {
        self.build.is_none() && self.lint.is_none() && self.test.is_none()
    }
}

/// Why a declaration is refused: the field (`packages[2]`, `env.PATH`, …) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    #[error("{FILE} is not valid TOML for an environment: {0}")]
    Syntax(String),
    #[error("{FILE}: `{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> EnvironmentError {
    EnvironmentError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Variables the sandbox sets itself; an environment may not replace them.
const RESERVED_VARS: &[&str] = &[
    "HOME",
    "PATH",
    "USER",
    "SHELL",
    "PWD",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CARGO_HTTP_CAINFO",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "GIT_SSL_CAINFO",
    "CURL_CA_BUNDLE",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
];
/// Prefixes of variables the sandbox and codex own.
const RESERVED_PREFIXES: &[&str] = &["CODEX_", "LD_", "GIT_CONFIG_"];
/// Words in a variable's name that mark a secret (refused: secrets never go in a workspace
/// file).
const SECRET_WORDS: &[&str] = &["TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY"];
/// Directories a cache may not be (or be inside of, for the first group).
const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib/dpkg",
    "/workspace",
];

impl Environment {
    /// Parses and checks a declaration.
    pub fn parse(text: &str) -> Result<Environment, EnvironmentError> {
        let env: Environment =
            toml::from_str(text).map_err(|e| EnvironmentError::Syntax(e.message().to_owned()))?;
        env.check()?;
        Ok(env)
    }

    /// Every rule; the first broken one is the error.
    pub fn check(&self) -> Result<(), EnvironmentError> {
        if self.packages.len() > MAX_PACKAGES {
            return Err(invalid(
                "packages",
                format!("{} packages; at most {MAX_PACKAGES}", self.packages.len()),
            ));
        }
        for (i, p) in self.packages.iter().enumerate() {
            check_package(p).map_err(|m| invalid(format!("packages[{i}]"), m))?;
            if self.packages[..i].contains(p) {
                return Err(invalid(
                    format!("packages[{i}]"),
                    format!("`{p}` is listed twice"),
                ));
            }
        }
        if let Some(s) = &self.setup {
            if s.trim().is_empty() {
                return Err(invalid("setup", "empty; leave it out instead"));
            }
            if s.len() > MAX_SETUP_BYTES {
                return Err(invalid(
                    "setup",
                    format!("{} bytes; at most {MAX_SETUP_BYTES}", s.len()),
                ));
            }
            if s.contains('\0') {
                return Err(invalid("setup", "contains a NUL byte"));
            }
        }
        if self.env.len() > MAX_VARS {
            return Err(invalid(
                "env",
                format!("{} variables; at most {MAX_VARS}", self.env.len()),
            ));
        }
        for (k, v) in &self.env {
            check_var(k, v).map_err(|m| invalid(format!("env.{k}"), m))?;
        }
        if self.caches.len() > MAX_CACHES {
            return Err(invalid(
                "caches",
                format!("{} directories; at most {MAX_CACHES}", self.caches.len()),
            ));
        }
        for (i, c) in self.caches.iter().enumerate() {
            check_cache(c).map_err(|m| invalid(format!("caches[{i}]"), m))?;
            if self.caches[..i].contains(c) {
                return Err(invalid(
                    format!("caches[{i}]"),
                    format!("`{c}` is listed twice"),
                ));
            }
        }
        if self.allow_hosts.len() > MAX_HOSTS {
            return Err(invalid(
                "allow_hosts",
                format!("{} hosts; at most {MAX_HOSTS}", self.allow_hosts.len()),
            ));
        }
        for (i, h) in self.allow_hosts.iter().enumerate() {
            check_host(h).map_err(|m| invalid(format!("allow_hosts[{i}]"), m))?;
        }
        for (kind, cmd) in [
            ("build", &self.verify.build),
            ("lint", &self.verify.lint),
            ("test", &self.verify.test),
        ] {
            if let Some(c) = cmd {
                check_command(c).map_err(|m| invalid(format!("verify.{kind}"), m))?;
            }
        }
        Ok(())
    }

    /// The content key of the environment image built from `runner_image_id` (the runner
    /// image's id, `sha256:…`) with these packages: hex SHA-256 of both, packages sorted.
    pub fn image_key(&self, runner_image_id: &str) -> String {
        let mut packages: Vec<&str> = self.packages.iter().map(String::as_str).collect();
        packages.sort_unstable();
        let mut h = Sha256::new();
        h.update(b"codex-orchestrator environment image v1\n");
        h.update(runner_image_id.as_bytes());
        for p in packages {
            h.update(b"\n");
            h.update(p.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// Hosts a setup may reach when the server's configuration names none: the package
/// registries of Rust, Python, Node and Go (downloads included), nothing that takes uploads
/// from an anonymous client.
pub const DEFAULT_SETUP_HOSTS: &[&str] = &[
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "proxy.golang.org",
    "sum.golang.org",
];

/// Files at the workspace's root whose content decides what a setup installs: when none of
/// them (and nothing else of the setup's inputs) changed, an earlier setup's result is reused.
pub const SETUP_INPUT_FILES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain.toml",
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "go.mod",
    "go.sum",
    "pyproject.toml",
    "requirements.txt",
    "requirements-dev.txt",
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "Gemfile.lock",
    "composer.lock",
];

/// The setup's entry script, run with `bash -c` and the environment's script as `$1` (the same
/// on both backends): runs the script with `bash -eo pipefail`, then refuses a setup that
/// changed what git tracks or would track (exit [`EXIT_UNIGNORED_CHANGES`]): those changes
/// would end up in the run's patch.
pub const SETUP_WRAPPER: &str = r#"snap() { if git -C /workspace rev-parse --is-inside-work-tree >/dev/null 2>&1; then git -C /workspace --no-optional-locks status --porcelain=v1 --untracked-files=all; fi; }
before=$(snap)
bash --noprofile --norc -eo pipefail -c "$1"
rc=$?
if [ "$rc" -ne 0 ]; then echo "codex-orchestrator: the setup script exited with code $rc" >&2; exit "$rc"; fi
after=$(snap)
if [ "$before" != "$after" ]; then
  echo "codex-orchestrator: the setup changed files that are not git-ignored (they would end up in the run's patch); write dependencies to ignored paths or caches:" >&2
  diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") | grep '^>' | head -n 20 >&2
  exit 97
fi"#;

/// Exit code of [`SETUP_WRAPPER`] when the script changed files that are not git-ignored.
pub const EXIT_UNIGNORED_CHANGES: i64 = 97;

/// The variables of a setup whose way out is the proxy at `proxy_url` (`None`: no proxy, so
/// no network), besides the environment's own: every tool pointed at the proxy, git allowed
/// in a workspace another uid owns, non-interactive. Pure.
pub fn setup_env(proxy_url: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    if let Some(url) = proxy_url {
        for k in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            out.push((k.into(), url.into()));
        }
        out.push(("NO_PROXY".into(), String::new()));
        out.push(("no_proxy".into(), String::new()));
    }
    for (k, v) in [
        ("GIT_CONFIG_COUNT", "1"),
        ("GIT_CONFIG_KEY_0", "safe.directory"),
        ("GIT_CONFIG_VALUE_0", "*"),
        ("CI", "true"),
    ] {
        out.push((k.into(), v.into()));
    }
    out
}

/// The sub-directory of a cache claim that holds cache `path` (Kubernetes; pure): stable,
/// one per path.
pub fn cache_sub_path(path: &str) -> String {
    let h = Sha256::digest(path.as_bytes());
    format!("cache-{}", &hex::encode(h)[..16])
}

/// Whether `host` (a name from a CONNECT request) matches `pattern`: the same name, or for
/// `*.example.com` any name below `example.com` (not `example.com` itself). Case does not
/// matter; a trailing dot is ignored. Pure.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
        None => host == pattern,
    }
}

/// Whether any of `patterns` lets a setup reach `host`.
pub fn host_allowed<S: AsRef<str>>(patterns: &[S], host: &str) -> bool {
    patterns.iter().any(|p| host_matches(p.as_ref(), host))
}

/// Whether `declared` (a host or `*.` pattern) asks for nothing beyond `server`'s patterns.
fn host_covered<S: AsRef<str>>(server: &[S], declared: &str) -> bool {
    match declared.strip_prefix("*.") {
        None => host_allowed(server, declared),
        Some(suffix) => server.iter().any(|p| {
            p.as_ref()
                .strip_prefix("*.")
                .is_some_and(|s| suffix == s || suffix.ends_with(&format!(".{s}")))
        }),
    }
}

impl Environment {
    /// The hosts this environment's setup may reach on a server allowing `server`: the
    /// declared ones when it declares any (each must lie within the server's list: a
    /// workspace file can narrow what its setup reaches, never widen it), else the server's.
    pub fn setup_hosts<S: AsRef<str>>(
        &self,
        server: &[S],
    ) -> Result<Vec<String>, EnvironmentError> {
        if self.allow_hosts.is_empty() {
            return Ok(server.iter().map(|s| s.as_ref().to_owned()).collect());
        }
        for (i, h) in self.allow_hosts.iter().enumerate() {
            if !host_covered(server, h) {
                return Err(invalid(
                    format!("allow_hosts[{i}]"),
                    format!(
                        "`{h}` is not on this server's setup allowlist ([environment] allow_hosts); a workspace may only narrow it"
                    ),
                ));
            }
        }
        Ok(self.allow_hosts.clone())
    }

    /// The key of one setup's result: the image it runs in, the script, variables, caches and
    /// hosts, the extra CA bundle, the workspace and the content of its
    /// [`SETUP_INPUT_FILES`] (`inputs`: name and content of those present). Pure.
    pub fn setup_key(
        &self,
        image: &str,
        hosts: &[String],
        ca: Option<&[u8]>,
        workspace: &str,
        inputs: &[(String, Vec<u8>)],
    ) -> String {
        let mut h = Sha256::new();
        let mut field = |name: &str, value: &[u8]| {
            h.update(name.as_bytes());
            h.update((value.len() as u64).to_le_bytes());
            h.update(value);
        };
        field("v", b"codex-orchestrator setup v1");
        field("image", image.as_bytes());
        field(
            "setup",
            self.setup.as_deref().unwrap_or_default().as_bytes(),
        );
        for (k, v) in &self.env {
            field("env", k.as_bytes());
            field("value", v.as_bytes());
        }
        for c in &self.caches {
            field("cache", c.as_bytes());
        }
        for host in hosts {
            field("host", host.as_bytes());
        }
        field("ca", ca.unwrap_or_default());
        field("workspace", workspace.as_bytes());
        for (name, content) in inputs {
            field("file", name.as_bytes());
            field("content", content);
        }
        hex::encode(h.finalize())
    }
}

/// A Debian package name (Debian policy 5.6.7: lowercase letters, digits, `+`, `-`, `.`; at
/// least two characters, starting with a letter or digit).
fn check_package(p: &str) -> Result<(), String> {
    let ok = p.len() >= 2
        && p.len() <= 100
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{p}` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`; no versions or options)"
        ))
    }
}

fn check_var(k: &str, v: &str) -> Result<(), String> {
    let name_ok = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err(
            "not a variable name (letters, digits and `_`, not starting with a digit)".into(),
        );
    }
    if RESERVED_VARS.contains(&k) || RESERVED_PREFIXES.iter().any(|p| k.starts_with(p)) {
        return Err("set by the sandbox itself; an environment may not replace it".into());
    }
    let upper = k.to_ascii_uppercase();
    if SECRET_WORDS.iter().any(|w| upper.contains(w)) {
        return Err(
            "looks like a secret; a workspace file is no place for one (the egress proxy holds the credentials)"
                .into(),
        );
    }
    if v.len() > MAX_VALUE_BYTES {
        return Err(format!("{} bytes; at most {MAX_VALUE_BYTES}", v.len()));
    }
    if v.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    Ok(())
}

fn check_cache(c: &str) -> Result<(), String> {
    if !c.starts_with('/') {
        return Err(format!("`{c}` is not an absolute path"));
    }
    let parts: Vec<&str> = c.split('/').filter(|s| !s.is_empty()).collect();
    if parts.is_empty() {
        return Err("the root directory cannot be a cache".into());
    }
    if parts.iter().any(|p| *p == "." || *p == "..") || c.contains("//") || c.ends_with('/') {
        return Err(format!(
            "`{c}` is not a normal path (no `.`, `..`, `//` or trailing `/`)"
        ));
    }
    for d in SYSTEM_DIRS {
        let inside = c == *d || c.starts_with(&format!("{d}/"));
        let above = d.starts_with(&format!("{c}/"));
        if inside || above {
            return Err(format!(
                "`{c}` is or holds a directory the sandbox needs as it is (`{d}`); use a directory of its own, e.g. under /home/codex or /var/cache"
            ));
        }
    }
    Ok(())
}

fn check_host(h: &str) -> Result<(), String> {
    let name = h.strip_prefix("*.").unwrap_or(h);
    let labels: Vec<&str> = name.split('.').collect();
    let ok = name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().any(|c| c.is_ascii_alphabetic()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{h}` is not a host name (e.g. `registry.npmjs.org` or `*.example.com`; no addresses, ports or schemes)"
        ))
    }
}

fn check_command(c: &str) -> Result<(), String> {
    if c.trim().is_empty() {
        return Err("empty; leave it out instead".into());
    }
    if c.len() > MAX_VALUE_BYTES {
        return Err(format!("{} bytes; at most {MAX_VALUE_BYTES}", c.len()));
    }
    if c.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_names_not_suffixes() {
        assert!(host_matches("crates.io", "crates.io"));
        assert!(host_matches("crates.io", "Crates.IO."));
        assert!(!host_matches("crates.io", "static.crates.io"));
        assert!(!host_matches("crates.io", "evilcrates.io"));
        assert!(host_matches("*.crates.io", "static.crates.io"));
        assert!(host_matches("*.crates.io", "a.b.crates.io"));
        assert!(!host_matches("*.crates.io", "crates.io"));
        assert!(!host_matches("*.crates.io", "evilcrates.io"));
        assert!(!host_matches("*.crates.io", "crates.io.evil.example"));
        assert!(host_allowed(DEFAULT_SETUP_HOSTS, "registry.npmjs.org"));
        assert!(!host_allowed(DEFAULT_SETUP_HOSTS, "example.com"));
    }

    #[test]
    fn a_workspace_can_narrow_the_setup_allowlist_but_not_widen_it() {
        let server = vec!["pypi.org".to_string(), "*.crates.io".to_string()];
        let none = Environment::default();
        assert_eq!(none.setup_hosts(&server).unwrap(), server);
        let narrow = Environment {
            allow_hosts: vec![
                "static.crates.io".into(),
                "*.crates.io".into(),
                "*.x.crates.io".into(),
            ],
            ..Default::default()
        };
        assert_eq!(narrow.setup_hosts(&server).unwrap(), narrow.allow_hosts);
        let wide = Environment {
            allow_hosts: vec!["pypi.org".into(), "evil.example".into()],
            ..Default::default()
        };
        assert_eq!(
            wide.setup_hosts(&server).unwrap_err().to_string(),
            format!(
                "{FILE}: `allow_hosts[1]`: `evil.example` is not on this server's setup allowlist ([environment] allow_hosts); a workspace may only narrow it"
            )
        );
        let wider = Environment {
            allow_hosts: vec!["*.io".into()],
            ..Default::default()
        };
        assert!(wider.setup_hosts(&server).is_err());
    }

    #[test]
    fn the_setup_key_changes_with_every_input() {
        let env = Environment::parse(RUST).unwrap();
        let hosts = vec!["*.crates.io".to_string()];
        let lock = vec![("Cargo.lock".to_string(), b"v1".to_vec())];
        let key =
            |e: &Environment,
             image: &str,
             ca: Option<&[u8]>,
             ws: &str,
             files: &[(String, Vec<u8>)]| { e.setup_key(image, &hosts, ca, ws, files) };
        let base = key(&env, "img", None, "/w", &lock);
        assert_eq!(base, key(&env, "img", None, "/w", &lock));
        let mut other = env.clone();
        other.setup = Some("cargo fetch --locked".into());
        let changed = [
            key(&env, "img2", None, "/w", &lock),
            key(&env, "img", Some(b"ca"), "/w", &lock),
            key(&env, "img", None, "/w2", &lock),
            key(
                &env,
                "img",
                None,
                "/w",
                &[("Cargo.lock".to_string(), b"v2".to_vec())],
            ),
            key(&env, "img", None, "/w", &[]),
            key(&other, "img", None, "/w", &lock),
        ];
        for k in changed {
            assert_ne!(k, base);
        }
    }

    const RUST: &str = r#"
packages = ["cargo", "rustc"]
setup = "cargo fetch"
caches = ["/home/codex/.cargo/registry"]
allow_hosts = ["crates.io", "*.crates.io"]

[env]
CARGO_TERM_COLOR = "never"

[verify]
test = "cargo test --offline"
"#;

    #[test]
    fn a_whole_declaration_parses_to_this_object() {
        assert_eq!(
            Environment::parse(RUST).unwrap(),
            Environment {
                packages: vec!["cargo".into(), "rustc".into()],
                setup: Some("cargo fetch".into()),
                env: BTreeMap::from([("CARGO_TERM_COLOR".into(), "never".into())]),
                caches: vec!["/home/codex/.cargo/registry".into()],
                allow_hosts: vec!["crates.io".into(), "*.crates.io".into()],
                verify: EnvironmentVerify {
                    build: None,
                    lint: None,
                    test: Some("cargo test --offline".into()),
                },
            }
        );
        assert_eq!(Environment::parse("").unwrap(), Environment::default());
    }

    #[test]
    fn every_bad_declaration_names_its_field() {
        let f = FILE;
        for (text, want) in [
            (
                "packages = [\"Cargo\"]",
                format!(
                    "{f}: `packages[0]`: `Cargo` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`; no versions or options)"
                ),
            ),
            (
                "packages = [\"cargo=1.0\"]",
                format!(
                    "{f}: `packages[0]`: `cargo=1.0` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`; no versions or options)"
                ),
            ),
            (
                "packages = [\"--allow-unauthenticated\"]",
                format!(
                    "{f}: `packages[0]`: `--allow-unauthenticated` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`; no versions or options)"
                ),
            ),
            (
                "packages = [\"npm\", \"npm\"]",
                format!("{f}: `packages[1]`: `npm` is listed twice"),
            ),
            (
                "setup = \"  \"",
                format!("{f}: `setup`: empty; leave it out instead"),
            ),
            (
                "[env]\nPATH = \"/evil\"",
                format!(
                    "{f}: `env.PATH`: set by the sandbox itself; an environment may not replace it"
                ),
            ),
            (
                "[env]\nCODEX_HOME = \"/x\"",
                format!(
                    "{f}: `env.CODEX_HOME`: set by the sandbox itself; an environment may not replace it"
                ),
            ),
            (
                "[env]\nNPM_TOKEN = \"x\"",
                format!(
                    "{f}: `env.NPM_TOKEN`: looks like a secret; a workspace file is no place for one (the egress proxy holds the credentials)"
                ),
            ),
            (
                "[env]\n\"1X\" = \"x\"",
                format!(
                    "{f}: `env.1X`: not a variable name (letters, digits and `_`, not starting with a digit)"
                ),
            ),
            (
                "caches = [\"cache\"]",
                format!("{f}: `caches[0]`: `cache` is not an absolute path"),
            ),
            (
                "caches = [\"/home/../etc\"]",
                format!(
                    "{f}: `caches[0]`: `/home/../etc` is not a normal path (no `.`, `..`, `//` or trailing `/`)"
                ),
            ),
            (
                "caches = [\"/usr/local\"]",
                format!(
                    "{f}: `caches[0]`: `/usr/local` is or holds a directory the sandbox needs as it is (`/usr`); use a directory of its own, e.g. under /home/codex or /var/cache"
                ),
            ),
            (
                "caches = [\"/var\"]",
                format!(
                    "{f}: `caches[0]`: `/var` is or holds a directory the sandbox needs as it is (`/var/lib/dpkg`); use a directory of its own, e.g. under /home/codex or /var/cache"
                ),
            ),
            (
                "caches = [\"/\"]",
                format!("{f}: `caches[0]`: the root directory cannot be a cache"),
            ),
            (
                "allow_hosts = [\"https://crates.io\"]",
                format!(
                    "{f}: `allow_hosts[0]`: `https://crates.io` is not a host name (e.g. `registry.npmjs.org` or `*.example.com`; no addresses, ports or schemes)"
                ),
            ),
            (
                "allow_hosts = [\"10.0.0.1\"]",
                format!(
                    "{f}: `allow_hosts[0]`: `10.0.0.1` is not a host name (e.g. `registry.npmjs.org` or `*.example.com`; no addresses, ports or schemes)"
                ),
            ),
            (
                "allow_hosts = [\"localhost\"]",
                format!(
                    "{f}: `allow_hosts[0]`: `localhost` is not a host name (e.g. `registry.npmjs.org` or `*.example.com`; no addresses, ports or schemes)"
                ),
            ),
            (
                "[verify]\ntest = \"\"",
                format!("{f}: `verify.test`: empty; leave it out instead"),
            ),
        ] {
            assert_eq!(
                Environment::parse(text).unwrap_err().to_string(),
                want,
                "{text}"
            );
        }
        let unknown = Environment::parse("package = [\"cargo\"]").unwrap_err();
        assert!(
            matches!(&unknown, EnvironmentError::Syntax(m) if m.contains("unknown field `package`")),
            "{unknown}"
        );
        let too_many = format!(
            "packages = [{}]",
            (0..65)
                .map(|i| format!("\"p{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            Environment::parse(&too_many).unwrap_err().to_string(),
            format!("{f}: `packages`: 65 packages; at most 64")
        );
    }

    #[test]
    fn the_image_key_depends_on_the_runner_image_and_the_set_of_packages_only() {
        let a = Environment::parse(RUST).unwrap();
        let mut b = a.clone();
        b.packages.reverse();
        b.setup = Some("cargo fetch --locked".into());
        b.verify.test = None;
        assert_eq!(a.image_key("sha256:1"), b.image_key("sha256:1"));
        assert_ne!(a.image_key("sha256:1"), a.image_key("sha256:2"));
        b.packages.push("golang-go".into());
        assert_ne!(a.image_key("sha256:1"), b.image_key("sha256:1"));
        assert_eq!(a.image_key("sha256:1").len(), 64);
    }
}
