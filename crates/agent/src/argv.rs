//! The codex command line (the facts it follows: crates/testkit/fixtures/codex-exec-0.147/README.md §1). Pure: unit-tested with whole-argv assertions.

use std::ffi::OsString;
use std::path::Path;

use codex_orchestrator_core::model::ModelProvider;

/// Everything that varies between codex invocations.
#[derive(Debug, Clone, Copy)]
pub struct CodexInvocation<'a> {
    /// The directory codex works in (`-C`).
    pub workdir: &'a Path,
    /// Where codex writes its last message (`-o`).
    pub last_message_file: &'a Path,
    /// JSON schema file for the final answer (`--output-schema`).
    pub output_schema_file: Option<&'a Path>,
    pub model: Option<&'a str>,
    pub provider: Option<&'a ModelProvider>,
    pub prompt: &'a str,
    /// `Some(thread_id)` for a fix attempt: `codex exec [flags] resume <thread_id> <prompt>`.
    pub resume_thread: Option<&'a str>,
    /// Features switched off (`--disable <name>` each): the running codex version's list
    /// (`codex_orchestrator_core::codex::disabled_features`), so no name it lacks is passed.
    pub disabled_features: &'a [&'a str],
}

/// The arguments after the codex binary:
///
/// `exec --json -C <workdir> -o <file> [--output-schema <file>] [-m <model>]
/// [-c model_provider=<name> -c model_providers.<name>=<table>] [--disable <feature>]…
/// -c analytics.enabled=false --dangerously-bypass-approvals-and-sandbox --skip-git-repo-check
/// [resume <thread_id>] -- <prompt>`
///
/// Every exec-level flag comes before `resume` (codex rejects `-C` after it). The prompt
/// follows `--` so that a prompt starting with `-` is never taken for a flag.
pub fn codex_args(inv: &CodexInvocation<'_>) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::with_capacity(24);
    let mut push = |s: &str| a.push(OsString::from(s));
    push("exec");
    push("--json");
    push("-C");
    a.push(inv.workdir.as_os_str().to_owned());
    a.push("-o".into());
    a.push(inv.last_message_file.as_os_str().to_owned());
    if let Some(schema) = inv.output_schema_file {
        a.push("--output-schema".into());
        a.push(schema.as_os_str().to_owned());
    }
    if let Some(m) = inv.model {
        a.push("-m".into());
        a.push(m.into());
    }
    if let Some(p) = inv.provider {
        a.push("-c".into());
        a.push(format!("model_provider={}", p.name).into());
        a.push("-c".into());
        a.push(format!("model_providers.{}={}", p.name, p.to_toml_inline()).into());
    }
    for f in inv.disabled_features {
        a.push("--disable".into());
        a.push(OsString::from(*f));
    }
    for s in [
        "-c",
        "analytics.enabled=false",
        "--dangerously-bypass-approvals-and-sandbox",
        "--skip-git-repo-check",
    ] {
        a.push(s.into());
    }
    if let Some(thread) = inv.resume_thread {
        a.push("resume".into());
        a.push(thread.into());
    }
    a.push("--".into());
    a.push(inv.prompt.into());
    a
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use codex_orchestrator_core::model::WireApi;

    fn strs(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn initial_minimal() {
        let ws = PathBuf::from("/workspace");
        let o = PathBuf::from("/tmp/run/last_message.txt");
        let inv = CodexInvocation {
            workdir: &ws,
            last_message_file: &o,
            output_schema_file: None,
            model: None,
            provider: None,
            prompt: "Say hello.",
            resume_thread: None,
            disabled_features: &["plugins", "daemon_auto_start"],
        };
        assert_eq!(
            strs(codex_args(&inv)),
            [
                "exec",
                "--json",
                "-C",
                "/workspace",
                "-o",
                "/tmp/run/last_message.txt",
                "--disable",
                "plugins",
                "--disable",
                "daemon_auto_start",
                "-c",
                "analytics.enabled=false",
                "--dangerously-bypass-approvals-and-sandbox",
                "--skip-git-repo-check",
                "--",
                "Say hello.",
            ]
        );
    }

    #[test]
    fn initial_with_everything_and_resume() {
        let ws = PathBuf::from("/scratch");
        let o = PathBuf::from("/tmp/r/last.txt");
        let schema = PathBuf::from("/tmp/r/schema.json");
        let mut extra = BTreeMap::new();
        extra.insert("stream_max_retries".to_string(), 1.into());
        let provider = ModelProvider {
            name: "mock".into(),
            base_url: "http://mock:8080/v1".into(),
            env_key: Some("MOCK_API_KEY".into()),
            wire_api: WireApi::Responses,
            extra,
        };
        let mut inv = CodexInvocation {
            workdir: &ws,
            last_message_file: &o,
            output_schema_file: Some(&schema),
            model: Some("gpt-5.5"),
            provider: Some(&provider),
            prompt: "-starts with a dash",
            resume_thread: None,
            disabled_features: &["plugins"],
        };
        let common = [
            "exec",
            "--json",
            "-C",
            "/scratch",
            "-o",
            "/tmp/r/last.txt",
            "--output-schema",
            "/tmp/r/schema.json",
            "-m",
            "gpt-5.5",
            "-c",
            "model_provider=mock",
            "-c",
            r#"model_providers.mock={name="mock", base_url="http://mock:8080/v1", wire_api="responses", env_key="MOCK_API_KEY", stream_max_retries=1}"#,
            "--disable",
            "plugins",
            "-c",
            "analytics.enabled=false",
            "--dangerously-bypass-approvals-and-sandbox",
            "--skip-git-repo-check",
        ];
        let mut want: Vec<&str> = common.to_vec();
        want.extend(["--", "-starts with a dash"]);
        assert_eq!(strs(codex_args(&inv)), want);

        inv.resume_thread = Some("01a20bad-3798-7563-90b3-51537c638b51");
        inv.prompt = "Fix the failing tests.";
        let mut want: Vec<&str> = common.to_vec();
        want.extend([
            "resume",
            "01a20bad-3798-7563-90b3-51537c638b51",
            "--",
            "Fix the failing tests.",
        ]);
        assert_eq!(strs(codex_args(&inv)), want);
    }
}
