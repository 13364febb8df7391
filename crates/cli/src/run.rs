//! `codex-orchestrator run`: one task in a sandbox with a live progress line on stderr and a
//! summary (or JSON) on stdout; Ctrl-C cancels.

use codex_orchestrator_runner::audit::{Action, Actor, ServerEntry};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use codex_orchestrator_core::model::{
    ModelProvider, RunId, RunPhase, RunRequest, RunStatus, SecurityMode, WireApi,
};
use codex_orchestrator_runner::Runner;
use codex_orchestrator_runner::config::Overrides;
use codex_orchestrator_runner::docker::DockerRunner;

use crate::cli::{Cli, CliError, load_config, print_json};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workspace directory (default: the current directory).
    #[arg(long, short = 'w')]
    pub workspace: Option<PathBuf>,
    /// readonly | workspace_write | full_access
    #[arg(long, default_value = "workspace_write")]
    pub mode: SecurityMode,
    /// Model name (default from config: gpt-5.5).
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Custom model provider base URL (e.g. an Azure or gateway endpoint ending in /v1).
    #[arg(long)]
    pub provider_base_url: Option<String>,
    /// Environment variable holding the custom provider's API key.
    #[arg(long, requires = "provider_base_url")]
    pub provider_env_key: Option<String>,
    /// Name of the custom provider.
    #[arg(long, default_value = "custom", requires = "provider_base_url")]
    pub provider_name: String,
    /// Run deadline in seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Output contract for the final answer: a bundled schema name (default_output,
    /// code_change, analysis_report, test_results) or a JSON Schema file (strict-mode
    /// compatible). The parsed answer is in result.output.
    #[arg(long, value_name = "NAME|FILE")]
    pub output_schema: Option<String>,
    /// When the final answer breaks --output-schema, resume codex once with the errors.
    #[arg(long, requires = "output_schema")]
    pub schema_retry: bool,
    /// Run the verify loop (default: on in workspace_write and full_access, off in readonly).
    #[arg(long, conflicts_with = "no_verify")]
    pub verify: bool,
    /// Skip the verify loop.
    #[arg(long)]
    pub no_verify: bool,
    /// Verify lint command (replaces the detected ones); implies --verify.
    #[arg(long, value_name = "CMD")]
    pub verify_lint: Option<String>,
    /// Verify build command (replaces the detected ones); implies --verify.
    #[arg(long, value_name = "CMD")]
    pub verify_build: Option<String>,
    /// Verify test command (replaces the detected ones); implies --verify.
    #[arg(long, value_name = "CMD")]
    pub verify_test: Option<String>,
    /// Only run the verify commands given with --verify-lint/--verify-build/--verify-test.
    #[arg(long)]
    pub no_auto_detect: bool,
    /// Fix attempts after failing checks (default 2).
    #[arg(long, value_name = "N")]
    pub max_fix_attempts: Option<u32>,
    /// Seconds each verify command may run (default 300).
    #[arg(long, value_name = "SECS")]
    pub verify_timeout: Option<u64>,
    /// Docker network the sandbox joins (default from config: bridge).
    #[arg(long)]
    pub network: Option<String>,
    /// Runner image (default: the image of the codex version, built on first use).
    #[arg(long)]
    pub image: Option<String>,
    /// Codex CLI version to run (0.147.0 or 0.163.0; default from config: the newest).
    #[arg(long, value_name = "VERSION")]
    pub codex_version: Option<String>,
    /// Allow `--mode full_access`.
    #[arg(long)]
    pub allow_full_access: bool,
    /// Confirm that this run should get `full_access` (needed in addition to
    /// --allow-full-access; every command of the run is written to its audit log).
    #[arg(long)]
    pub confirm_full_access: bool,
    /// How much the workspace may grow, in MiB, before the run is stopped (write modes;
    /// default and maximum: `max_workspace_growth_mb` of the config, 2048 unless set).
    #[arg(long, value_name = "MIB")]
    pub workspace_growth_limit_mb: Option<u64>,
    /// Most tokens (input + output) the run may use; the egress proxy refuses the model
    /// request that would pass it (the run ends failed/budget_exhausted).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tokens: Option<u64>,
    /// Most model requests the run may make.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_model_requests: Option<u64>,
    /// Most money the run's model requests may cost, in US cents, at the configuration's
    /// price of the run's model (`[prices."<model>"]`).
    #[arg(long, value_name = "CENTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_cost_cents: Option<u64>,
    /// Most seconds the run may take; at the limit it is stopped and ends
    /// failed/budget_exhausted, its partial patch kept.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_wall_secs: Option<u64>,
    /// Best of N: run N attempts side by side, each on its own copy of the workspace; the
    /// project's own checks pick the winner (`[attempts]` of the config: at most 4 unless
    /// set), which is applied in workspace_write when it succeeded.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=8))]
    pub attempts: Option<u32>,
    /// With --attempts: stop the others once one passes with a perfect score.
    #[arg(long)]
    pub stop_on_first_pass: bool,
    /// Print the final status and result as JSON instead of a human summary.
    #[arg(long)]
    pub json: bool,
    /// Submit and print the run id without waiting.
    #[arg(long)]
    pub detach: bool,
    /// The task for Codex.
    pub prompt: String,
}

/// `--output-schema NAME|FILE`: an existing file is read as a JSON Schema; otherwise the
/// argument names a bundled schema.
fn load_output_schema(arg: &str) -> Result<serde_json::Value, CliError> {
    let path = std::path::Path::new(arg);
    if !path.exists()
        && let Some(s) = codex_orchestrator_core::schemas::bundled(arg)
    {
        return Ok(s);
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(
            2,
            format!(
                "--output-schema `{arg}` is neither a bundled schema name ({}) nor a readable file: {e}",
                codex_orchestrator_core::schemas::names().join(", ")
            ),
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::new(2, format!("{arg} is not valid JSON: {e}")))
}

pub(crate) async fn run_cmd(cli: &Cli, a: &RunArgs) -> Result<i32, CliError> {
    let cfg = load_config(
        cli,
        Overrides {
            image: a.image.clone(),
            codex_version: a.codex_version.clone(),
            network: a.network.clone(),
            allow_full_access: a.allow_full_access.then_some(true),
            ..Default::default()
        },
    )?;
    let workspace = match &a.workspace {
        Some(w) => std::path::absolute(w).map_err(|e| CliError::new(2, e))?,
        None => std::env::current_dir().map_err(|e| CliError::new(2, e))?,
    };
    let output_schema = a
        .output_schema
        .as_deref()
        .map(load_output_schema)
        .transpose()?;
    let provider = a.provider_base_url.as_ref().map(|url| ModelProvider {
        name: a.provider_name.clone(),
        base_url: url.clone(),
        env_key: a.provider_env_key.clone(),
        wire_api: WireApi::Responses,
        extra: Default::default(),
    });
    let explicit = a.verify_lint.is_some() || a.verify_build.is_some() || a.verify_test.is_some();
    let verify = codex_orchestrator_core::model::VerifyOptions {
        enabled: if a.no_verify {
            Some(false)
        } else if a.verify || explicit {
            Some(true)
        } else {
            None
        },
        lint: a.verify_lint.clone(),
        test: a.verify_test.clone(),
        build: a.verify_build.clone(),
        auto_detect: a.no_auto_detect.then_some(false),
        max_fix_attempts: a.max_fix_attempts,
        command_timeout_secs: a.verify_timeout,
        output_cap_bytes: None,
    };
    let req = RunRequest {
        codex_version: None,
        prompt: a.prompt.clone(),
        workspace,
        mode: a.mode,
        model: a.model.clone(),
        provider,
        timeout_secs: a.timeout,
        output_schema,
        schema_retry: a.schema_retry,
        verify: (verify != Default::default()).then_some(verify),
        image: None,
        labels: Default::default(),
        confirm_full_access: a.confirm_full_access,
        workspace_growth_limit_mb: a.workspace_growth_limit_mb,
        budget: Some(codex_orchestrator_core::model::RunBudget {
            max_tokens: a.max_tokens,
            max_model_requests: a.max_model_requests,
            max_wall_secs: a.max_wall_secs,
            max_cost_cents: a.max_cost_cents,
        })
        .filter(|b| *b != Default::default()),
        attempts: a.attempts,
        stop_on_first_pass: a.stop_on_first_pass,
        tokens_left: None,
    };
    let runner = DockerRunner::connect(cfg).await?;
    let submitted = runner.submit(req.clone()).await;
    let mut entry = match &submitted {
        Ok(id) => {
            let mut e = ServerEntry::new(Actor::cli(), Action::Submit, "accepted");
            e.run_id = Some(id.clone());
            e
        }
        Err(err) => {
            let mut e = ServerEntry::new(Actor::cli(), Action::Submit, "refused");
            e.detail = Some(err.to_string());
            e
        }
    };
    entry.request = Some(Box::new(req));
    runner.server_audit().record(&entry);
    let id = submitted?;
    if a.detach {
        println!("{id}");
        return Ok(0);
    }
    eprintln!(
        "run {id} queued (artifacts: {})",
        runner.store().run_dir(&id).display()
    );
    let status = follow_with_progress(&runner, &id).await?;
    let art = runner.artifacts(&id).await?;
    if a.json {
        print_json(&art)?;
    } else {
        print_summary(&art);
    }
    Ok(exit_code_for(status.phase))
}

/// Cancels a run and records who asked in the server's audit log.
pub(crate) async fn audited_cancel(
    runner: &DockerRunner,
    id: &RunId,
) -> Result<codex_orchestrator_runner::CancelOutcome, CliError> {
    let res = runner.cancel(id).await;
    let outcome = match &res {
        Ok(codex_orchestrator_runner::CancelOutcome::Cancelling) => "cancelling".to_string(),
        Ok(codex_orchestrator_runner::CancelOutcome::AlreadyFinished { .. }) => {
            "already_finished".into()
        }
        Err(e) => format!("error: {e}"),
    };
    let mut e = ServerEntry::new(Actor::cli(), Action::Cancel, outcome);
    e.run_id = Some(id.clone());
    runner.server_audit().record(&e);
    Ok(res?)
}

pub(crate) fn exit_code_for(phase: RunPhase) -> i32 {
    match phase {
        RunPhase::Succeeded => 0,
        RunPhase::Cancelled => 130,
        _ => 1,
    }
}

/// Polls the status and draws a progress line on stderr until the run ends. The first Ctrl-C
/// cancels the run (and keeps following it to the end); a second one leaves it running.
pub(crate) async fn follow_with_progress(
    runner: &DockerRunner,
    id: &RunId,
) -> Result<RunStatus, CliError> {
    let tty = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    let mut last_print = Instant::now() - Duration::from_secs(10);
    let mut cancels = 0u32;
    loop {
        let st = tokio::select! {
            st = runner.wait(id, Duration::from_millis(250)) => st?,
            _ = tokio::signal::ctrl_c() => {
                cancels += 1;
                if cancels >= 2 {
                    eprintln!("\nleaving run {id} running; follow it with `codex-orchestrator runs wait {id}`");
                    return runner.status(id).await.map_err(Into::into);
                }
                eprintln!("\ncancelling run {id} (Ctrl-C again to stop waiting)");
                audited_cancel(runner, id).await?;
                continue;
            }
        };
        let line = progress_line(&st);
        if tty {
            eprint!("\r\x1b[K{line}");
        } else if line != last_line && last_print.elapsed() >= Duration::from_secs(1) {
            eprintln!("{line}");
            last_print = Instant::now();
        }
        last_line = line;
        if st.phase.is_terminal() {
            if tty {
                eprintln!();
            }
            return Ok(st);
        }
    }
}

/// One line: phase, attempt, commands, files, tokens, current activity.
pub fn progress_line(st: &RunStatus) -> String {
    st.progress_line()
}

pub(crate) fn print_summary(a: &codex_orchestrator_runner::Artifacts) {
    let st = &a.status;
    let reason = st.reason.map(|r| format!(" ({r:?})")).unwrap_or_default();
    println!("run {}: {}{}", st.run_id, st.phase, reason);
    if let Some(m) = &st.message {
        println!("  {m}");
    }
    if let Some(r) = &a.result {
        if let Some(s) = &r.summary {
            println!("answer:\n{s}");
        }
        if !r.changed_files.is_empty() {
            let files: Vec<&str> = r.changed_files.iter().map(|f| f.path.as_str()).collect();
            println!("files changed: {}", files.join(", "));
        }
        let failed = r
            .commands
            .iter()
            .filter(|c| c.exit_code.is_some_and(|e| e != 0))
            .count();
        println!("commands: {} ({failed} failed)", r.commands.len());
        let t = &r.usage.total;
        println!(
            "tokens: {} in ({} cached), {} out ({} reasoning)",
            t.input_tokens, t.cached_input_tokens, t.output_tokens, t.reasoning_output_tokens
        );
        if let Some(p) = &r.patch {
            println!(
                "patch: {} file(s), +{} -{}{}",
                p.files.len(),
                p.insertions,
                p.deletions,
                if p.truncated { " (truncated)" } else { "" }
            );
        }
        if let Some(j) = &r.judgement {
            for line in judgement_lines(j) {
                println!("{line}");
            }
        }
    }
    if let Some(d) = &a.run_dir {
        println!("artifacts: {}", d.display());
    }
}

/// The ranking of a best-of-N run, one line per attempt, best first (pure).
pub(crate) fn judgement_lines(j: &codex_orchestrator_core::model::Judgement) -> Vec<String> {
    let mut out = vec![format!(
        "attempts (best first; criteria: {}):",
        j.order
            .iter()
            .map(|c| serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default())
            .collect::<Vec<_>>()
            .join(", ")
    )];
    for r in &j.ranking {
        let f = &r.ranked.facts;
        let verify = match f.verify_passed {
            Some(true) => "verify passed",
            Some(false) => "verify failed",
            None => "not verified",
        };
        out.push(format!(
            "  {}. attempt {} ({}): {}, {}, {} fix round(s), {} changed line(s), {} tokens",
            r.ranked.rank,
            f.attempt,
            r.run_id,
            if f.ended_ok {
                "succeeded"
            } else {
                "did not succeed"
            },
            verify,
            f.fix_rounds,
            f.diff_lines,
            f.tokens
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_schema_argument_is_a_bundled_name_or_a_file() {
        assert_eq!(
            load_output_schema("code_change").ok(),
            codex_orchestrator_core::schemas::bundled("code_change")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.json");
        std::fs::write(&file, r#"{"type": "object"}"#).unwrap();
        assert_eq!(
            load_output_schema(file.to_str().unwrap()).ok(),
            Some(serde_json::json!({"type": "object"}))
        );
        let e = load_output_schema("code_changes").unwrap_err();
        assert!(
            e.to_string().starts_with("--output-schema `code_changes` is neither a bundled schema name (default_output, code_change, analysis_report, test_results) nor a readable file: "),
            "{e}"
        );
        std::fs::write(&file, "{").unwrap();
        let e = load_output_schema(file.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("is not valid JSON"), "{e}");
    }
}
