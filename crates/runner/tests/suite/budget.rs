//! Budgets on the Docker backend (issue 17): the run's egress proxy refuses the model request
//! that would pass the run's token budget, before it reaches the model; the run ends
//! `failed`/`budget_exhausted` with the figures, its partial patch kept. Real engine, real
//! agent and codex; only the model is mocked.

use std::time::Duration;

use codex_orchestrator_core::model::{RunBudget, RunPhase, SecurityMode, TerminalReason};
use codex_orchestrator_runner::Runner;
use codex_orchestrator_testkit::docker::DockerEnv;
use serde_json::json;

/// Runs `req` to its end and checks it ended `failed`/`budget_exhausted` with `message`, the
/// model having seen one request, the partial patch kept; returns its result.
async fn ends_exhausted(
    env: &DockerEnv,
    runner: &codex_orchestrator_runner::docker::DockerRunner,
    req: codex_orchestrator_core::model::RunRequest,
    message: &str,
) -> codex_orchestrator_core::model::RunResult {
    let id = runner.submit(req).await.unwrap();
    let st = runner.wait(&id, Duration::from_secs(300)).await.unwrap();
    let art = runner.artifacts(&id).await.unwrap();
    let r = art.result.clone().expect("result");
    assert_eq!(
        (st.phase, st.reason, st.message.as_deref()),
        (
            RunPhase::Failed,
            Some(TerminalReason::BudgetExhausted),
            Some(message)
        ),
        "{r:#?}"
    );
    let served = env
        .mock_requests()
        .await
        .iter()
        .filter(|q| q["path"] == "/v1/responses")
        .count();
    assert_eq!(served, 1);
    let p = art.patch.unwrap_or_default();
    assert!(p.contains("+first step done"), "{p}");
    r
}

/// A mock model whose first answer writes NOTES.md and reports 1000 input and 100 output
/// tokens; its second answer is never to be served.
async fn first_step_env() -> DockerEnv {
    let patch = "*** Begin Patch\n*** Add File: NOTES.md\n+first step done\n*** End Patch\n";
    let usage = json!({"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100});
    DockerEnv::start(json!([
        {"output": [{"apply_patch": patch}], "usage": usage},
        {"output": [{"message": "never served"}], "usage": usage}
    ]))
    .await
}

/// "Write the notes." in `ws`, workspace_write, no verify loop.
fn notes_request(ws: &std::path::Path) -> codex_orchestrator_core::model::RunRequest {
    let mut req = codex_orchestrator_testkit::docker::request(
        ws,
        SecurityMode::WorkspaceWrite,
        "Write the notes.",
    );
    req.verify = Some(codex_orchestrator_core::model::VerifyOptions {
        enabled: Some(false),
        ..Default::default()
    });
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_budget_stops_the_run_at_the_request_that_would_pass_it() {
    let mut env = first_step_env().await;
    let runner = env.runner().await;
    let ws = codex_orchestrator_testkit::docker::workspace_of(&[("README.md", "# app\n")]);
    let mut req = notes_request(ws.path());
    req.budget = Some(RunBudget {
        max_tokens: Some(1500),
        max_model_requests: None,
        max_wall_secs: None,
        max_cost_cents: None,
    });
    let r = ends_exhausted(
        &env,
        &runner,
        req,
        "budget exhausted: 1100 of 1500 tokens used, and the next request would take at least 1000 more",
    )
    .await;
    // At or under the budget.
    assert!(r.usage.total.total() <= 1500, "{:?}", r.usage);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_time_budget_stops_the_run_and_keeps_its_partial_patch() {
    let patch = "*** Begin Patch\n*** Add File: NOTES.md\n+first step done\n*** End Patch\n";
    // The second model request never answers: only the wall-time budget ends the run.
    let mut env = DockerEnv::start(json!([
        {"output": [{"apply_patch": patch}]},
        {"hang": true}
    ]))
    .await;
    let runner = env.runner().await;
    let ws = codex_orchestrator_testkit::docker::workspace_of(&[("README.md", "# app\n")]);
    let mut req = notes_request(ws.path());
    req.timeout_secs = Some(120);
    req.budget = Some(RunBudget {
        max_wall_secs: Some(8),
        ..Default::default()
    });
    let id = runner.submit(req).await.unwrap();
    let st = runner.wait(&id, Duration::from_secs(120)).await.unwrap();
    let art = runner.artifacts(&id).await.unwrap();
    let r = art.result.clone().expect("result");
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Failed, Some(TerminalReason::BudgetExhausted)),
        "{r:#?}"
    );
    let message = st.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("budget exhausted: the wall time of 8 s was used up ("),
        "{message}"
    );
    assert_eq!((r.phase, r.reason), (st.phase, st.reason));
    let p = art.patch.unwrap_or_default();
    assert!(p.contains("+first step done"), "{p}");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("NOTES.md")).unwrap(),
        "first step done\n"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cost_budget_stops_the_run_before_the_request_that_could_pass_it() {
    let mut env = first_step_env().await;
    let mut cfg = env.config();
    // $10 per million input tokens, $100 per million output tokens: one answer is $0.02.
    cfg.default_model = Some("gpt-5.5".into());
    cfg.prices.insert(
        "gpt-5.5".into(),
        codex_orchestrator_runner::config::PriceConfig {
            input: 10.0,
            cached_input: None,
            output: 100.0,
        },
    );
    let runner = env.runner_with(cfg).await;
    let ws = codex_orchestrator_testkit::docker::workspace_of(&[("README.md", "# app\n")]);
    let mut req = notes_request(ws.path());
    req.budget = Some(RunBudget {
        max_cost_cents: Some(2),
        ..Default::default()
    });
    ends_exhausted(
        &env,
        &runner,
        req,
        "budget exhausted: $0.0200 of $0.0200 spent, and the next request would cost up to $0.0100 more",
    )
    .await;
    // A model without a price cannot have a budget in money.
    let mut priceless = notes_request(ws.path());
    priceless.model = Some("gpt-4.1".into());
    priceless.budget = Some(RunBudget {
        max_cost_cents: Some(2),
        ..Default::default()
    });
    assert_eq!(
        runner.submit(priceless).await.unwrap_err().to_string(),
        "invalid request: budget.max_cost_cents needs the price of the run's model, and this server has no price for `gpt-4.1` (it has for: gpt-5.5); name a model this server has a price for, or leave max_cost_cents out"
    );
    env.cleanup().await;
}
