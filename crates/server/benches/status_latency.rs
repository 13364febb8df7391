//! Latency of `codex_run_status` over the real binary's stdio while the server carries load
//!
//!
//! Setup (real Docker, real store, real server; no model): a temp state dir holding 20 runs in
//! phase `running`, each with a live container (`sleep` in the runner image) carrying the
//! labels the Docker runner puts on its sandboxes, so the server re-attaches to all 20 at
//! start exactly as after a restart; plus one finished run whose `events.jsonl` is 500 MB.
//! Then `N` `codex_run_status` calls round-robin over the 21 runs through an rmcp
//! child-process client, each timed from request to response.
//!
//! Needs Docker and the runner image (`CODEX_ORCHESTRATOR_IMAGE`, default
//! `codex-orchestrator-runner:<version>`). Every container it starts is removed on exit.
//! Env: `STATUS_BENCH_N` (default 2000), `STATUS_BENCH_LOG_MB` (default 500).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use codex_orchestrator_core::model::{
    RunId, RunPhase, RunRequest, RunStatus, SecurityMode, TerminalReason,
};
use codex_orchestrator_runner::docker::{
    LABEL_MANAGED, LABEL_MODE, LABEL_RUN_ID, LABEL_STORE, container_name, store_key,
};
use codex_orchestrator_runner::store::{self, RunStore};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::json;

const IN_FLIGHT: usize = 20;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Removes the containers on drop (also on panic or error).
struct Containers {
    names: Vec<String>,
}

impl Drop for Containers {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.names);
        if names.is_empty() {
            return;
        }
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(docker) = codex_orchestrator_runner::image::connect_docker().await else {
                    return;
                };
                for n in names {
                    let _ = docker
                        .remove_container(
                            &n,
                            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                        )
                        .await;
                }
            });
        })
        .join();
    }
}

fn request(ws: &Path) -> RunRequest {
    RunRequest {
        codex_version: None,
        prompt: "status latency bench".into(),
        workspace: ws.to_path_buf(),
        mode: SecurityMode::Readonly,
        model: None,
        provider: None,
        timeout_secs: Some(3600),
        output_schema: None,
        schema_retry: false,
        verify: None,
        image: None,
        labels: Default::default(),
        confirm_full_access: false,
        workspace_growth_limit_mb: None,
        budget: None,
        attempts: None,
        stop_on_first_pass: false,
        tokens_left: None,
    }
}

async fn start_sleeper(
    docker: &Docker,
    image: &str,
    id: &RunId,
    key: &str,
    guard: &mut Containers,
) -> Result<(), BoxError> {
    let name = container_name(id);
    let labels = HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_RUN_ID.to_string(), id.to_string()),
        (LABEL_STORE.to_string(), key.to_string()),
        (LABEL_MODE.to_string(), "readonly".to_string()),
    ]);
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec!["sleep".into(), "3600".into()]),
        cmd: Some(vec![]),
        labels: Some(labels),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            body,
        )
        .await?;
    guard.names.push(name.clone());
    docker.start_container(&name, None).await?;
    Ok(())
}

/// Writes about `mb` MB of plausible event lines.
fn write_big_log(path: &Path, mb: usize) -> Result<u64, BoxError> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let out = "x".repeat(900);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < (mb as u64) << 20 {
        let line = format!(
            "{}\n",
            json!({"type": "item.completed", "item": {"id": format!("item_{i}"), "type": "command_execution", "command": "bash -lc 'cat big.txt'", "aggregated_output": out, "exit_code": 0, "status": "completed"}})
        );
        f.write_all(line.as_bytes())?;
        written += line.len() as u64;
        i += 1;
    }
    f.flush()?;
    Ok(written)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn row(name: &str, mut d: Vec<Duration>) -> String {
    d.sort();
    let ms = |x: Duration| format!("{:.3}", x.as_secs_f64() * 1000.0);
    format!(
        "| {name:<22} | {:>5} | {:>8} | {:>8} | {:>8} | {:>8} |",
        d.len(),
        ms(pct(&d, 0.5)),
        ms(pct(&d, 0.9)),
        ms(pct(&d, 0.99)),
        ms(*d.last().unwrap_or(&Duration::ZERO)),
    )
}

async fn bench() -> Result<(), BoxError> {
    let n: usize = std::env::var("STATUS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let log_mb: usize = std::env::var("STATUS_BENCH_LOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let image = std::env::var("CODEX_ORCHESTRATOR_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(codex_orchestrator_runner::image::default_runner_tag);

    let tmp = tempfile::tempdir()?;
    let state = tmp.path().join("state");
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws)?;
    let ws = std::fs::canonicalize(&ws)?;
    let store = RunStore::open(&state)?;
    let key = store_key(store.root());
    let docker = codex_orchestrator_runner::image::connect_docker().await?;
    let mut guard = Containers { names: vec![] };

    // 20 runs in flight, each with a live, labelled container.
    let mut in_flight = Vec::new();
    for _ in 0..IN_FLIGHT {
        let id = RunId::generate();
        let mut st = RunStatus::new_queued(id.clone(), SecurityMode::Readonly, ws.clone());
        st.phase = RunPhase::Running;
        st.started_at = Some(jiff::Timestamp::now());
        st.backend = Some(codex_orchestrator_core::model::BackendRef::Docker {
            container_id: container_name(&id),
            container_name: container_name(&id),
        });
        store.create(&request(&ws), &st)?;
        start_sleeper(&docker, &image, &id, &key, &mut guard).await?;
        in_flight.push(id);
    }

    // One finished run with a big event log.
    let big = RunId::generate();
    let mut st = RunStatus::new_queued(big.clone(), SecurityMode::Readonly, ws.clone());
    st.phase = RunPhase::Succeeded;
    st.reason = Some(TerminalReason::Completed);
    st.started_at = Some(jiff::Timestamp::now());
    st.finished_at = Some(jiff::Timestamp::now());
    store.create(&request(&ws), &st)?;
    let t = Instant::now();
    let bytes = write_big_log(&store.path(&big, store::EVENTS), log_mb)?;
    eprintln!(
        "wrote {} MB of events for {big} in {:.1}s",
        bytes >> 20,
        t.elapsed().as_secs_f64()
    );

    // The real server over stdio.
    let cfg_path = tmp.path().join("config.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "state_dir = {:?}\nmax_concurrent_runs = {}\n[docker]\nimage = {:?}\n",
            state.display().to_string(),
            IN_FLIGHT + 4,
            image
        ),
    )?;
    let mut cmd = tokio::process::Command::new(codex_orchestrator_testkit::bins::cli());
    cmd.arg("--config")
        .arg(&cfg_path)
        .args(["mcp", "--allowed-root"])
        .arg(&ws)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    let client = ().serve(TokioChildProcess::new(cmd)?).await?;
    let status = |id: &RunId| {
        let params = CallToolRequestParams::new("codex_run_status").with_arguments(
            json!({"run_id": id})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        client.call_tool(params)
    };

    // Wait (bounded) until the backend is connected and has re-attached the runs.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = status(&in_flight[0]).await?;
        if r.is_error != Some(true) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("server not ready: {r:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..50 {
        status(&big).await?;
    }

    let mut all = Vec::with_capacity(n);
    let mut flight = Vec::new();
    let mut big_lat = Vec::new();
    let mut phases: HashMap<String, usize> = HashMap::new();
    let t = Instant::now();
    for i in 0..n {
        let id = if i % (IN_FLIGHT + 1) == IN_FLIGHT {
            &big
        } else {
            &in_flight[i % (IN_FLIGHT + 1)]
        };
        let start = Instant::now();
        let r = status(id).await?;
        let d = start.elapsed();
        if r.is_error == Some(true) {
            return Err(format!("codex_run_status failed: {r:?}").into());
        }
        let phase = r
            .structured_content
            .as_ref()
            .and_then(|v| v["phase"].as_str())
            .unwrap_or("?")
            .to_string();
        if id != &big {
            *phases.entry(phase).or_default() += 1;
            flight.push(d);
        } else {
            big_lat.push(d);
        }
        all.push(d);
    }
    let wall = t.elapsed();

    // The in-flight runs are driven by the server (re-attached), not just read from disk:
    // cancelling one stops its container and ends it in `cancelled`.
    let t_cancel = Instant::now();
    let params = CallToolRequestParams::new("codex_run_cancel").with_arguments(
        json!({"run_id": in_flight[0]})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let r = client.call_tool(params).await?;
    let outcome = r
        .structured_content
        .as_ref()
        .map(|v| v["outcome"].clone())
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let reattached = loop {
        let r = status(&in_flight[0]).await?;
        let phase = r
            .structured_content
            .as_ref()
            .and_then(|v| v["phase"].as_str().map(str::to_string));
        if phase.as_deref() == Some("cancelled") {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    client.cancel().await?;

    println!(
        "codex_run_status over stdio (release binary): {n} calls in {:.2}s, {IN_FLIGHT} runs in flight, one run with a {} MB event log",
        wall.as_secs_f64(),
        bytes >> 20
    );
    println!("phases seen for the in-flight runs: {phases:?}");
    println!("| runs                   |     n | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |");
    println!("|------------------------|-------|----------|----------|----------|----------|");
    println!("{}", row("in flight (20)", flight));
    println!(
        "{}",
        row(&format!("finished, {} MB log", bytes >> 20), big_lat)
    );
    println!("{}", row("all", all));
    println!(
        "re-attach check: codex_run_cancel on an in-flight run -> {outcome}; phase cancelled: {reattached} ({:.1}s)",
        t_cancel.elapsed().as_secs_f64()
    );
    drop(guard);
    Ok(())
}

fn main() {
    // `cargo test --benches` runs benches with `--bench`-less args; only measure on `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(bench()) {
        eprintln!("status_latency: {e}");
        std::process::exit(1);
    }
}
