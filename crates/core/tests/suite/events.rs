//! The decoder and fold against every real transcript of both supported codex versions in
//! crates/testkit/fixtures/codex-exec-0.147/ and crates/testkit/fixtures/codex-exec-0.163/
//! (the per-transcript cases use 0.147's), plus synthetic agent streams and hostile input.
//!
//! Over 600 lines because it walks every real transcript and the hostile-input cases through one
//! decoder and fold.

use std::fs;
use std::path::{Path, PathBuf};

use codex_orchestrator_core::events::{
    self, AttemptKind, CodexOutcome, Completion, DEFAULT_MAX_LINE, Decoded, LineDecoder,
    OrchestratorEvent, RunFold, Summary, SummaryStatus,
};
use codex_orchestrator_core::model::{
    CommandRecord, FileChange, FileChangeKind, PatchInfo, Progress, RunId, RunPhase, RunResult,
    SecurityMode, TerminalReason, TokenUsage, UsageReport,
};

use codex_orchestrator_testkit::{codex_fixture_sets, codex_fixtures};

const ROOT: &str = "<WORKSPACE>";

struct Scenario {
    /// `a-plain-answer` or `j-resume/2-resume-by-id`.
    name: String,
    dir: PathBuf,
}

impl Scenario {
    fn events(&self) -> Vec<u8> {
        read(&self.dir.join("events.jsonl"))
    }

    fn exit_code(&self) -> i64 {
        let s = String::from_utf8(read(&self.dir.join("exit_code"))).unwrap();
        s.trim().parse().unwrap()
    }

    /// The `-o` file, or `None` when codex did not create it.
    fn last_message(&self) -> Option<String> {
        if self.dir.join("last_message.MISSING").exists() {
            return None;
        }
        Some(String::from_utf8(read(&self.dir.join("last_message.txt"))).unwrap())
    }
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every folder (or step folder) holding an `events.jsonl`, of every codex version (names
/// `0.163.0/a-plain-answer`).
fn scenarios() -> Vec<Scenario> {
    codex_fixture_sets()
        .into_iter()
        .flat_map(|(version, root)| {
            scenarios_in(&root).into_iter().map(move |s| Scenario {
                name: format!("{version}/{}", s.name),
                dir: s.dir,
            })
        })
        .collect()
}

/// Every folder (or step folder) under `root` holding an `events.jsonl`.
fn scenarios_in(root: &Path) -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        if dir.join("events.jsonl").exists() {
            out.push(dir);
            continue;
        }
        let mut steps: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("events.jsonl").exists())
            .collect();
        steps.sort();
        assert!(!steps.is_empty(), "{} has no events", dir.display());
        out.extend(steps);
    }
    out.into_iter()
        .map(|dir| Scenario {
            name: dir
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            dir,
        })
        .collect()
}

fn scenario(name: &str) -> Scenario {
    let dir = codex_fixtures().join(name);
    assert!(dir.join("events.jsonl").exists(), "no fixture {name}");
    Scenario {
        name: name.to_owned(),
        dir,
    }
}

/// Decoder + fold over `bytes` cut into `chunk`-byte pieces.
fn fold_chunked(bytes: &[u8], chunk: usize) -> RunFold {
    let mut fold = RunFold::new().with_workspace_root(ROOT);
    let mut dec = LineDecoder::new(DEFAULT_MAX_LINE);
    for c in bytes.chunks(chunk) {
        dec.push(c, |d| fold.feed(d));
    }
    dec.finish(|d| fold.feed(d));
    fold
}

/// The reference: split on '\n' by hand and feed whole lines.
fn fold_lines(bytes: &[u8]) -> RunFold {
    let mut fold = RunFold::new().with_workspace_root(ROOT);
    for line in bytes.split(|b| *b == b'\n') {
        if !line.is_empty() {
            fold.feed_line(line);
        }
    }
    fold
}

/// Everything observable about a fold.
#[derive(Debug, PartialEq)]
struct Snapshot {
    summary: Summary,
    result: RunResult,
    phase: RunPhase,
    attempt: u32,
    thread_id: Option<String>,
    outcome: CodexOutcome,
    answer: Option<String>,
    completion: Option<Completion>,
}

fn snapshot(f: &RunFold, exit_code: Option<i64>) -> Snapshot {
    Snapshot {
        summary: f.summary(exit_code),
        result: f.result(),
        phase: f.phase(),
        attempt: f.attempt(),
        thread_id: f.thread_id().map(str::to_owned),
        outcome: f.codex_outcome(),
        answer: f.final_answer().map(str::to_owned),
        completion: f.completed().cloned(),
    }
}

fn usage(input: u64, cached: u64, output: u64, reasoning: u64) -> TokenUsage {
    TokenUsage {
        input_tokens: input,
        cached_input_tokens: cached,
        cache_write_input_tokens: 0,
        output_tokens: output,
        reasoning_output_tokens: reasoning,
    }
}

fn cmd(command: &str, exit_code: Option<i64>, status: &str, attempt: u32) -> CommandRecord {
    CommandRecord {
        command: command.to_owned(),
        exit_code,
        status: status.to_owned(),
        attempt,
    }
}

fn change(path: &str, kind: FileChangeKind) -> FileChange {
    FileChange {
        path: path.to_owned(),
        kind,
    }
}

fn summarize_fixture(name: &str) -> Summary {
    let s = scenario(name);
    fold_lines(&s.events()).summary(Some(s.exit_code()))
}

/// The summary of a plain codex log that ended with `turn.completed` and exit 0.
fn succeeded(thread: &str, progress: Progress, result: RunResult) -> Summary {
    Summary {
        status: SummaryStatus {
            phase: RunPhase::Succeeded,
            reason: Some(TerminalReason::Completed),
            message: None,
            attempt: 0,
            attempts: 1,
            codex_outcome: CodexOutcome::TurnCompleted,
            exit_code: Some(0),
            thread_id: Some(thread.to_owned()),
            progress,
        },
        result: RunResult {
            phase: RunPhase::Succeeded,
            reason: Some(TerminalReason::Completed),
            thread_id: Some(thread.to_owned()),
            attempts: 1,
            codex_exit_code: Some(0),
            ..result
        },
    }
}

fn one_attempt(u: TokenUsage) -> UsageReport {
    UsageReport {
        per_attempt: vec![u],
        total: u,
    }
}

// --- every fixture ----------------------------------------------------------------------------

#[test]
fn every_fixture_folds_the_same_whatever_the_chunking() {
    for (version, root) in codex_fixture_sets() {
        let n = scenarios_in(&root).len();
        assert!(n >= 60, "only {n} scenarios of codex {version} found");
    }
    let all = scenarios();
    for s in &all {
        let bytes = s.events();
        let exit = Some(s.exit_code());
        let reference = snapshot(&fold_lines(&bytes), exit);
        for chunk in [1, 7, 4096] {
            assert_eq!(
                snapshot(&fold_chunked(&bytes, chunk), exit),
                reference,
                "{} in {chunk}-byte chunks",
                s.name
            );
        }
        let mut via_reader = RunFold::new().with_workspace_root(ROOT);
        events::fold_reader(&bytes[..], &mut via_reader).unwrap();
        assert_eq!(
            snapshot(&via_reader, exit),
            reference,
            "{} via fold_reader",
            s.name
        );

        let lines = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64;
        let p = &reference.summary.status.progress;
        assert_eq!(
            (p.events_seen, p.malformed_lines, p.oversized_lines),
            (lines, 0, 0),
            "{}: every line is an event",
            s.name
        );
    }
}

#[test]
fn every_fixture_final_answer_matches_the_o_file() {
    for s in scenarios() {
        let fold = fold_lines(&s.events());
        match s.last_message() {
            // codex writes the last agent_message of the completed turn ("" when none, n3).
            Some(text) => assert_eq!(
                fold.final_answer().unwrap_or(""),
                text,
                "{}: final answer",
                s.name
            ),
            None => assert_eq!(fold.final_answer(), None, "{}: no -o file", s.name),
        }
        assert_eq!(fold.result().summary.as_deref(), fold.final_answer());
    }
}

#[test]
fn every_fixture_concludes_succeeded_exactly_when_codex_exited_0() {
    for s in scenarios() {
        let exit = s.exit_code();
        let sum = fold_lines(&s.events()).summary(Some(exit));
        assert_eq!(
            sum.status.phase == RunPhase::Succeeded,
            exit == 0,
            "{}: {:?}",
            s.name,
            sum.status
        );
        assert_eq!(sum.status.phase, sum.result.phase);
        assert!(sum.status.phase.is_terminal(), "{}", s.name);
        assert_eq!(sum.result.codex_exit_code, Some(exit));
        // The summary serializes (what `events summarize` prints).
        serde_json::to_string(&sum).unwrap();
    }
}

// --- specific transcripts ---------------------------------------------------------------------

#[test]
fn a_plain_answer() {
    let u = usage(1200, 200, 12, 4);
    assert_eq!(
        summarize_fixture("a-plain-answer"),
        succeeded(
            "01a20bad-3798-7563-90b3-51537c638b51",
            Progress {
                events_seen: 4,
                last_item: Some("answered".into()),
                tokens: u,
                ..Progress::default()
            },
            RunResult {
                summary: Some("Hello! (mock final answer)".into()),
                usage: one_attempt(u),
                ..RunResult::empty(RunPhase::Succeeded)
            },
        )
    );
}

#[test]
fn a0_error_item_before_turn_started_is_not_fatal() {
    let u = usage(1200, 0, 12, 0);
    let msg = "Code Mode is unavailable because failed to spawn code-mode host <CODEX_BIN_DIR>/codex-code-mode-host: host executable was not found. Code mode will fail closed; enable `features.code_mode_host` and install `codex-code-mode-host`.";
    assert_eq!(
        summarize_fixture("a0-default-model-defaults"),
        succeeded(
            "01a20ba8-8676-7010-be3f-6fe64b8e63a5",
            Progress {
                events_seen: 5,
                errors_seen: 1,
                last_item: Some("answered".into()),
                tokens: u,
                ..Progress::default()
            },
            RunResult {
                summary: Some("Hello! (mock final answer)".into()),
                errors: vec![msg.into()],
                usage: one_attempt(u),
                ..RunResult::empty(RunPhase::Succeeded)
            },
        )
    );
}

#[test]
fn b_shell_command() {
    let u = usage(2100, 900, 60, 8);
    assert_eq!(
        summarize_fixture("b-shell-command"),
        succeeded(
            "01a20ba8-8b10-78a1-b162-75f6ac213b8f",
            Progress {
                events_seen: 6,
                commands_run: 1,
                last_item: Some("answered".into()),
                tokens: u,
                ..Progress::default()
            },
            RunResult {
                summary: Some("The repo has a calc package with add().".into()),
                commands: vec![cmd(
                    "/bin/bash -lc 'ls && cat calc/ops.py'",
                    Some(0),
                    "completed",
                    0
                )],
                usage: one_attempt(u),
                ..RunResult::empty(RunPhase::Succeeded)
            },
        )
    );
}

#[test]
fn b2_failing_commands_are_counted_not_fatal() {
    let u = usage(2800, 100, 130, 0);
    assert_eq!(
        summarize_fixture("b2-shell-command-failing"),
        succeeded(
            "01a20ba8-8c70-73d2-8d51-545cce789771",
            Progress {
                events_seen: 8,
                commands_run: 2,
                commands_failed: 2,
                last_item: Some("answered".into()),
                tokens: u,
                ..Progress::default()
            },
            RunResult {
                summary: Some("Both commands failed.".into()),
                commands: vec![
                    cmd(
                        "/bin/bash -lc \"echo to-stderr >&2; python3 -c 'import sys; sys.exit(3)'\"",
                        Some(3),
                        "failed",
                        0
                    ),
                    cmd(
                        "/bin/bash -lc 'definitely-not-a-command --flag'",
                        Some(127),
                        "failed",
                        0
                    ),
                ],
                usage: one_attempt(u),
                ..RunResult::empty(RunPhase::Succeeded)
            },
        )
    );
}

#[test]
fn b2_progress_while_live() {
    let bytes = scenario("b2-shell-command-failing").events();
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let mut fold = RunFold::new();
    for line in &lines[..3] {
        fold.feed_line(line);
    }
    assert_eq!(
        fold.progress().current_command.as_deref(),
        Some("echo to-stderr >&2; python3 -c 'import sys; sys.exit(3)'")
    );
    assert_eq!(fold.phase(), RunPhase::Running);
    assert_eq!(fold.codex_outcome(), CodexOutcome::NoTerminal);
    fold.feed_line(lines[3]);
    assert_eq!(fold.progress().current_command, None);
    assert_eq!(
        fold.progress().last_item.as_deref(),
        Some("ran `echo to-stderr >&2; python3 -c 'import sys; sys.exit(3)'` (exit 3)")
    );
}

#[test]
fn c_apply_patch_paths_become_relative() {
    let u = usage(3500, 2200, 175, 0);
    assert_eq!(
        summarize_fixture("c-apply-patch"),
        succeeded(
            "01a20ba8-95db-7311-8533-79902eda6237",
            Progress {
                events_seen: 8,
                commands_run: 1,
                files_changed: 2,
                last_item: Some("answered".into()),
                tokens: u,
                ..Progress::default()
            },
            RunResult {
                summary: Some("Added sub() in calc/ops.py and NOTES.md; tests pass.".into()),
                changed_files: vec![
                    change("NOTES.md", FileChangeKind::Add),
                    change("calc/ops.py", FileChangeKind::Update),
                ],
                commands: vec![cmd(
                    "/bin/bash -lc 'python3 -m unittest -q'",
                    Some(0),
                    "completed",
                    0
                )],
                usage: one_attempt(u),
                ..RunResult::empty(RunPhase::Succeeded)
            },
        )
    );
    // Without a root, paths stay as codex reported them.
    let mut fold = RunFold::new();
    events::fold_reader(&scenario("c-apply-patch").events()[..], &mut fold).unwrap();
    assert_eq!(
        fold.result().changed_files,
        vec![
            change("<WORKSPACE>/NOTES.md", FileChangeKind::Add),
            change("<WORKSPACE>/calc/ops.py", FileChangeKind::Update),
        ]
    );
}

#[test]
fn d_output_schema_answer_is_the_json_string() {
    let s = scenario("d-output-schema-valid");
    let sum = fold_lines(&s.events()).summary(Some(0));
    let answer = s.last_message().unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&answer).is_ok());
    let u = usage(3300, 1000, 180, 0);
    assert_eq!(
        sum,
        succeeded(
            "01a20ba8-9cea-7472-9159-d4cc5a9204f6",
            Progress {
                events_seen: 8,
                commands_run: 1,
                files_changed: 2,
                last_item: Some("answered".into()),
                tokens: u,
                ..Progress::default()
            },
            RunResult {
                summary: Some(answer),
                changed_files: vec![
                    change("NOTES.md", FileChangeKind::Add),
                    change("calc/ops.py", FileChangeKind::Update),
                ],
                commands: vec![cmd(
                    "/bin/bash -lc 'python3 -m unittest -q'",
                    Some(0),
                    "completed",
                    0
                )],
                usage: one_attempt(u),
                ..RunResult::empty(RunPhase::Succeeded)
            },
        )
    );
}

#[test]
fn f2_http_401_turn_failed_message() {
    let msg = "unexpected status 401 Unauthorized: Incorrect API key provided: sk-mock***., url: http://127.0.0.1:<PORT>/v1/responses";
    let retry = format!("Reconnecting... 1/1 ({msg})");
    let thread = "01a20ba8-a561-72b1-b1f2-24ff29e3b8c9";
    assert_eq!(
        summarize_fixture("f2-http-401"),
        retried_then_failed(thread, &retry, msg)
    );
}

/// The summary of a one-turn stream of five events: `error` (`retry`), `error` (`msg`), then
/// `turn.failed` with `msg`, codex exiting 1. The last `error` repeats turn.failed's message:
/// it is listed once.
fn retried_then_failed(thread: &str, retry: &str, msg: &str) -> Summary {
    Summary {
        status: SummaryStatus {
            phase: RunPhase::Failed,
            reason: Some(TerminalReason::CodexFailed),
            message: Some(msg.into()),
            attempt: 0,
            attempts: 1,
            codex_outcome: CodexOutcome::TurnFailed {
                message: msg.into(),
            },
            exit_code: Some(1),
            thread_id: Some(thread.into()),
            progress: Progress {
                events_seen: 5,
                errors_seen: 2,
                last_item: Some(format!("error: {msg}")),
                ..Progress::default()
            },
        },
        result: RunResult {
            reason: Some(TerminalReason::CodexFailed),
            message: Some(msg.into()),
            thread_id: Some(thread.into()),
            errors: vec![retry.into(), msg.into()],
            usage: one_attempt(TokenUsage::default()),
            attempts: 1,
            codex_exit_code: Some(1),
            ..RunResult::empty(RunPhase::Failed)
        },
    }
}

#[test]
fn f3b_repeated_agent_message_is_not_an_answer_until_the_turn_completes() {
    let bytes = scenario("f3b-stream-cut-after-items").events();
    let fold = fold_lines(&bytes);
    assert_eq!(fold.final_answer(), None, "the turn failed");
    assert_eq!(
        fold.codex_outcome(),
        CodexOutcome::TurnFailed {
            message:
                "stream disconnected before completion: stream closed before response.completed"
                    .into()
        }
    );
    // The same retry, had the turn then completed (f7): the repeated message counts once.
    let mut lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    lines.truncate(5);
    let completed = br#"{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"cache_write_input_tokens":0,"output_tokens":2,"reasoning_output_tokens":0}}"#;
    lines.push(completed);
    let mut fold = RunFold::new();
    for l in lines {
        fold.feed_line(l);
    }
    assert_eq!(fold.final_answer(), Some("Message before the cut."));
    assert_eq!(fold.codex_outcome(), CodexOutcome::TurnCompleted);
    assert_eq!(fold.progress().errors_seen, 1);
}

#[test]
fn i1_sigterm_leaves_the_command_in_progress() {
    let thread = "01a20ba9-3e3e-7161-9a7e-445e7ed2b3c2";
    let msg = "codex exited with code 143 (SIGTERM) without a terminal turn event";
    let fold = fold_lines(&scenario("i1-sigterm-during-command").events());
    assert_eq!(fold.codex_outcome(), CodexOutcome::NoTerminal);
    assert_eq!(fold.phase(), RunPhase::Running, "live until concluded");
    assert_eq!(
        fold.summary(Some(143)),
        Summary {
            status: SummaryStatus {
                phase: RunPhase::Failed,
                reason: Some(TerminalReason::CodexExited),
                message: Some(msg.into()),
                attempt: 0,
                attempts: 1,
                codex_outcome: CodexOutcome::NoTerminal,
                exit_code: Some(143),
                thread_id: Some(thread.into()),
                progress: Progress {
                    events_seen: 3,
                    current_command: Some("sleep 30".into()),
                    last_item: Some("running `sleep 30`".into()),
                    ..Progress::default()
                },
            },
            result: RunResult {
                reason: Some(TerminalReason::CodexExited),
                message: Some(msg.into()),
                thread_id: Some(thread.into()),
                commands: vec![cmd("/bin/bash -lc 'sleep 30'", None, "in_progress", 0)],
                usage: one_attempt(TokenUsage::default()),
                attempts: 1,
                codex_exit_code: Some(143),
                ..RunResult::empty(RunPhase::Failed)
            },
        }
    );
    // Without an exit code the message says what is known.
    assert_eq!(
        fold.conclude(None).message.as_deref(),
        Some(
            "the stream ended without a terminal turn event (codex was killed, or the log is incomplete)"
        )
    );
}

#[test]
fn empty_stream_of_an_early_failure() {
    let s = scenario("o1-unknown-flag");
    assert!(s.events().is_empty());
    let sum = fold_lines(&s.events()).summary(Some(2));
    assert_eq!(sum.status.phase, RunPhase::Failed);
    assert_eq!(sum.status.reason, Some(TerminalReason::CodexExited));
    assert_eq!(sum.result.attempts, 0);
    assert_eq!(sum.result.usage, UsageReport::default());
}

/// j-resume: steps 1–3 resume one thread (cumulative usage 3500 → 9600 → 13100 input
/// tokens); step 4 is a fresh (ephemeral) thread; step 5 printed nothing.
#[test]
fn j_resume_usage_is_split_per_attempt() {
    let mut log = Vec::new();
    for step in [
        "1-initial",
        "2-resume-by-id",
        "3-resume-last",
        "4-ephemeral-run",
        "5-resume-ephemeral-id",
    ] {
        log.extend(scenario(&format!("j-resume/{step}")).events());
    }
    let per_attempt = vec![
        usage(3500, 2200, 175, 0),
        usage(6100, 5500, 110, 0),
        usage(3500, 3000, 15, 0),
        usage(1000, 100, 50, 0),
    ];
    let total = usage(14100, 10800, 350, 0);
    let fold = fold_chunked(&log, 7);
    assert_eq!(fold.attempt(), 3);
    assert_eq!(
        fold.result(),
        RunResult {
            summary: Some("Hello from an ephemeral run.".into()),
            thread_id: Some("01a20ba9-8805-7d50-8558-a647ee45be76".into()),
            changed_files: vec![
                change("NOTES.md", FileChangeKind::Add),
                change("calc/ops.py", FileChangeKind::Update),
            ],
            commands: vec![cmd(
                "/bin/bash -lc 'python3 -m unittest -q'",
                Some(0),
                "completed",
                0
            )],
            usage: UsageReport { per_attempt, total },
            attempts: 4,
            ..RunResult::empty(RunPhase::Running)
        }
    );
    assert_eq!(fold.progress().tokens, total);
    assert_eq!(fold.progress().files_changed, 2);

    // Steps 1–3 alone: the total is the last cumulative figure.
    let mut log = Vec::new();
    for step in ["1-initial", "2-resume-by-id", "3-resume-last"] {
        log.extend(scenario(&format!("j-resume/{step}")).events());
    }
    let fold = fold_lines(&log);
    assert_eq!(fold.usage().total, usage(13100, 10700, 300, 0));
    assert_eq!(fold.final_answer(), Some("I added sub() and mul()."));
    assert_eq!(fold.attempts(), 3);
}

#[test]
fn k_token_usage_is_the_turn_sum() {
    let u = usage(600, 160, 90, 15);
    assert_eq!(
        summarize_fixture("k-token-usage"),
        succeeded(
            "01a20ba9-8c05-73d2-b85b-473d04c369a0",
            Progress {
                events_seen: 8,
                commands_run: 2,
                last_item: Some("answered".into()),
                tokens: u,
                ..Progress::default()
            },
            RunResult {
                summary: Some("Done.".into()),
                commands: vec![
                    cmd("/bin/bash -lc 'echo first'", Some(0), "completed", 0),
                    cmd("/bin/bash -lc 'echo second'", Some(0), "completed", 0),
                ],
                usage: one_attempt(u),
                ..RunResult::empty(RunPhase::Succeeded)
            },
        )
    );
}

#[test]
fn m1_todo_list_completes_after_the_answer() {
    let u = usage(2800, 100, 130, 0);
    assert_eq!(
        summarize_fixture("m1-update-plan-todo-list"),
        succeeded(
            "01a20baa-29af-7b63-a819-7486253ae78d",
            Progress {
                events_seen: 7,
                last_item: Some("todo 1/2 done".into()),
                tokens: u,
                ..Progress::default()
            },
            RunResult {
                summary: Some("Plan done.".into()),
                usage: one_attempt(u),
                ..RunResult::empty(RunPhase::Succeeded)
            },
        )
    );
}

#[test]
fn n3_turn_without_agent_message() {
    assert_eq!(
        summarize_fixture("n3-deltas-only-no-output-item"),
        succeeded(
            "01a20ba8-b108-71c0-a308-74b318d327b2",
            Progress {
                events_seen: 3,
                ..Progress::default()
            },
            RunResult {
                usage: one_attempt(TokenUsage::default()),
                ..RunResult::empty(RunPhase::Succeeded)
            },
        )
    );
}

/// m2 (web_search) is a withheld transcript; this line is exactly the shape of crates/testkit/fixtures/codex-exec-0.147/README.md §3.3
/// shows: two `"id"` keys in one item.
#[test]
fn web_search_item_with_duplicate_id() {
    let lines = [
        r#"{"type":"thread.started","thread_id":"t-web"}"#,
        r#"{"type":"turn.started"}"#,
        r#"{"type":"item.started","item":{"id":"item_0","type":"web_search","id":"resp_mock_1_item_0","query":"","action":{"type":"other"}}}"#,
        r#"{"type":"item.completed","item":{"id":"item_0","type":"web_search","id":"resp_mock_1_item_0","query":"codex exec json","action":{"type":"search","query":"codex exec json"}}}"#,
    ];
    let mut fold = RunFold::new();
    for l in lines {
        fold.feed_line(l.as_bytes());
    }
    assert_eq!(
        fold.progress(),
        &Progress {
            events_seen: 4,
            web_searches: 1,
            last_item: Some("searched `codex exec json`".into()),
            ..Progress::default()
        }
    );
    assert_eq!(
        fold.result().web_searches,
        vec![codex_orchestrator_core::model::WebSearchRecord {
            query: "codex exec json".into(),
            attempt: 0,
        }]
    );
    fold.feed_line(br#"{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"Found it."}}"#);
    fold.feed_line(br#"{"type":"turn.completed","usage":{"input_tokens":5}}"#);
    assert_eq!(fold.final_answer(), Some("Found it."));
    assert_eq!(fold.progress().malformed_lines, 0);
}

#[test]
fn failed_file_change_is_noted_as_an_error_not_a_change() {
    // c5 (withheld): a patch that passed verification and failed while writing.
    let lines = [
        r#"{"type":"thread.started","thread_id":"t-c5"}"#,
        r#"{"type":"turn.started"}"#,
        r#"{"type":"item.started","item":{"id":"item_0","type":"file_change","changes":[{"path":"<WORKSPACE>/calc/ops.py/child.txt","kind":"add"}],"status":"in_progress"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_0","type":"file_change","changes":[{"path":"<WORKSPACE>/calc/ops.py/child.txt","kind":"add"}],"status":"failed"}}"#,
    ];
    let mut fold = RunFold::new().with_workspace_root(ROOT);
    for l in lines {
        fold.feed_line(l.as_bytes());
    }
    let r = fold.result();
    assert_eq!(r.changed_files, vec![]);
    assert_eq!(
        r.errors,
        vec!["file change failed: calc/ops.py/child.txt".to_owned()]
    );
    assert_eq!(fold.progress().files_changed, 0);
    assert_eq!(
        fold.progress().last_item.as_deref(),
        Some("failed to edit calc/ops.py/child.txt")
    );
}

#[test]
fn i5_turn_ends_with_a_background_command_still_in_progress() {
    // i5 (withheld): item.started with no item.completed, then the turn completes.
    let lines = [
        r#"{"type":"thread.started","thread_id":"t-i5"}"#,
        r#"{"type":"turn.started"}"#,
        r#"{"type":"item.started","item":{"id":"item_0","type":"command_execution","command":"/bin/bash -lc 'sleep 30'","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"Left it running."}}"#,
        r#"{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":0,"cache_write_input_tokens":0,"output_tokens":5,"reasoning_output_tokens":0}}"#,
    ];
    let mut fold = RunFold::new();
    for l in lines {
        fold.feed_line(l.as_bytes());
    }
    assert_eq!(
        fold.result().commands,
        vec![cmd("/bin/bash -lc 'sleep 30'", None, "in_progress", 0)]
    );
    assert_eq!(fold.progress().commands_run, 0);
    assert_eq!(fold.progress().current_command, None, "the turn is over");
    assert_eq!(fold.summary(Some(0)).status.phase, RunPhase::Succeeded);
}

// --- the agent's stream -----------------------------------------------------------------------

fn orch(ev: &OrchestratorEvent) -> Vec<u8> {
    let mut l = ev.to_line().into_bytes();
    l.push(b'\n');
    l
}

/// An agent stream: run.started, attempt 0 (j-resume step 1), a fix attempt 1 (step 2,
/// resuming the same thread), and run.completed with the agent's own result.
fn agent_stream(with_completion: bool) -> (Vec<u8>, RunResult) {
    let run_id = RunId::parse("20261124040000-0123abcd").unwrap();
    let mut s = orch(&OrchestratorEvent::RunStarted {
        stream_version: codex_orchestrator_core::model::STREAM_VERSION,
        orchestrator_version: codex_orchestrator_core::model::VERSION.into(),
        run_id,
        mode: SecurityMode::WorkspaceWrite,
        codex_version: Some("0.163.0".into()),
        model: Some("gpt-5.5".into()),
        workdir: PathBuf::from(ROOT),
        started_at: "2026-11-24T04:00:00Z".parse().unwrap(),
        deadline_secs: 600,
    });
    s.extend(orch(&OrchestratorEvent::AttemptStarted {
        attempt: 0,
        kind: AttemptKind::Initial,
    }));
    s.extend(scenario("j-resume/1-initial").events());
    s.extend(orch(&OrchestratorEvent::AttemptCompleted {
        attempt: 0,
        exit_code: Some(0),
        signal: None,
        usage: usage(3500, 2200, 175, 0),
    }));
    s.extend(orch(&OrchestratorEvent::Warning {
        message: "tests failed; asking codex to fix them".into(),
    }));
    s.extend(orch(&OrchestratorEvent::AttemptStarted {
        attempt: 1,
        kind: AttemptKind::Fix,
    }));
    s.extend(scenario("j-resume/2-resume-by-id").events());
    // The agent's own figure for attempt 1 wins over the fold's difference (6100 input).
    s.extend(orch(&OrchestratorEvent::AttemptCompleted {
        attempt: 1,
        exit_code: Some(0),
        signal: None,
        usage: usage(6000, 5500, 110, 0),
    }));
    let agent_result = RunResult {
        reason: Some(TerminalReason::Completed),
        summary: Some("Added mul() too.".into()),
        thread_id: Some("01a20ba9-84e2-7341-9d65-4a5fcb032ac2".into()),
        changed_files: vec![
            change("NOTES.md", FileChangeKind::Add),
            change("calc/ops.py", FileChangeKind::Update),
        ],
        commands: vec![cmd(
            "/bin/bash -lc 'python3 -m unittest -q'",
            Some(0),
            "completed",
            0,
        )],
        usage: UsageReport {
            per_attempt: vec![usage(3500, 2200, 175, 0), usage(6000, 5500, 110, 0)],
            total: usage(9500, 7700, 285, 0),
        },
        attempts: 2,
        patch: Some(PatchInfo {
            bytes: 42,
            sha256: Some("ab".repeat(32)),
            files: vec!["NOTES.md".into(), "calc/ops.py".into()],
            insertions: 7,
            deletions: 0,
            truncated: false,
        }),
        codex_exit_code: Some(0),
        codex_version: Some("0.163.0".into()),
        ..RunResult::empty(RunPhase::Succeeded)
    };
    if with_completion {
        s.extend(orch(&OrchestratorEvent::RunCompleted {
            phase: RunPhase::Succeeded,
            reason: Some(TerminalReason::Completed),
            message: None,
            result: Box::new(agent_result.clone()),
            patch: Some("diff --git a/NOTES.md b/NOTES.md\n".into()),
            last_message: Some("Added mul() too.".into()),
        }));
    }
    (s, agent_result)
}

#[test]
fn agent_stream_yields_the_agents_completion() {
    let (stream, agent_result) = agent_stream(true);
    let fold = fold_chunked(&stream, 4096);
    assert_eq!(
        fold.completed(),
        Some(&Completion {
            phase: RunPhase::Succeeded,
            reason: Some(TerminalReason::Completed),
            message: None,
            result: agent_result.clone(),
            patch: Some("diff --git a/NOTES.md b/NOTES.md\n".into()),
            last_message: Some("Added mul() too.".into()),
        })
    );
    assert_eq!(fold.phase(), RunPhase::Succeeded);
    assert_eq!(fold.result(), agent_result);
    assert_eq!(fold.attempt(), 1);
    let sum = fold.summary(Some(0));
    assert_eq!(sum.result, agent_result);
    assert_eq!(
        (sum.status.phase, sum.status.reason, sum.status.message),
        (RunPhase::Succeeded, Some(TerminalReason::Completed), None)
    );
    // Chunking does not matter for agent streams either.
    assert_eq!(
        snapshot(&fold_chunked(&stream, 1), Some(0)),
        snapshot(&fold, Some(0))
    );
}

#[test]
fn agent_stream_before_completion_is_folded_provisionally() {
    let (stream, agent_result) = agent_stream(false);
    // No explicit root: the workdir of run.started is used.
    let mut fold = RunFold::new();
    events::fold_reader(&stream[..], &mut fold).unwrap();
    assert_eq!(fold.completed(), None);
    assert_eq!(fold.phase(), RunPhase::Fixing, "attempt 1 is a fix");
    let r = fold.result();
    assert_eq!(
        r,
        RunResult {
            phase: RunPhase::Fixing,
            reason: None,
            patch: None,
            ..agent_result
        },
        "the fold alone reaches the agent's figures (usage from attempt.completed, not \
         double-counted)"
    );
    assert_eq!(fold.progress().tokens, usage(9500, 7700, 285, 0));
    let c = fold.conclude(Some(1));
    assert_eq!(
        (c.phase, c.reason),
        (RunPhase::Failed, Some(TerminalReason::AgentError))
    );
}

// --- hostile input ----------------------------------------------------------------------------

#[test]
fn malformed_and_oversized_lines_are_counted_and_the_run_still_folds() {
    let clean = scenario("c-apply-patch").events();
    let huge = format!(
        "{{\"type\":\"item.completed\",\"item\":{{\"id\":\"x\",\"type\":\"agent_message\",\"text\":\"{}\"}}}}",
        "A".repeat(3 << 20)
    );
    let mut dirty = Vec::new();
    dirty.extend_from_slice(b"Reading additional input from stdin...\n");
    for (i, line) in clean.split(|b| *b == b'\n').enumerate() {
        dirty.extend_from_slice(line);
        dirty.extend_from_slice(b"\r\n");
        match i {
            1 => dirty.extend_from_slice(huge.as_bytes()),
            2 => dirty.extend_from_slice(b"{\"no_type\":1}"),
            3 => dirty.extend_from_slice(b"\xff\xfe binary \x00 junk"),
            4 => dirty.extend_from_slice(b"[1,2,3]"),
            5 => dirty.extend_from_slice(b"{\"type\":\"item.completed\",\"item\":{\"id\""),
            _ => continue,
        }
        dirty.push(b'\n');
    }
    let fold_with = |bytes: &[u8], chunk: usize| {
        let mut fold = RunFold::new().with_workspace_root(ROOT);
        let mut dec = LineDecoder::new(1 << 20);
        for c in bytes.chunks(chunk) {
            dec.push(c, |d| fold.feed(d));
        }
        dec.finish(|d| fold.feed(d));
        fold
    };
    let reference = fold_with(&clean, 4096);
    for chunk in [7, 4096, 1 << 16] {
        let fold = fold_with(&dirty, chunk);
        let p = fold.progress();
        assert_eq!(
            (p.malformed_lines, p.oversized_lines),
            (5, 1),
            "chunk {chunk}"
        );
        assert_eq!(
            Progress {
                malformed_lines: 0,
                oversized_lines: 0,
                ..p.clone()
            },
            reference.progress().clone()
        );
        assert_eq!(fold.result(), reference.result());
        assert_eq!(fold.summary(Some(0)).status.phase, RunPhase::Succeeded);
    }
}

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn exercise(fold: &RunFold) {
    let _ = fold.result();
    let _ = fold.codex_outcome();
    let _ = fold.final_answer();
    let _ = fold.usage();
    serde_json::to_string(&fold.summary(None)).unwrap();
    serde_json::to_string(&fold.summary(Some(143))).unwrap();
}

#[test]
fn never_panics_on_random_bytes_and_json_fragments() {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\n",
        "\r\n",
        " ",
        "null",
        "true",
        "-1",
        "3.5e300",
        "18446744073709551616",
        "\"type\"",
        "\"item\"",
        "\"id\"",
        "\"usage\"",
        "\"error\"",
        "\"message\"",
        "\"thread.started\"",
        "\"turn.completed\"",
        "\"turn.failed\"",
        "\"item.started\"",
        "\"item.completed\"",
        "\"command_execution\"",
        "\"file_change\"",
        "\"changes\"",
        "\"path\"",
        "\"kind\"",
        "\"exit_code\"",
        "\"status\"",
        "\"todo_list\"",
        "\"items\"",
        "\"orchestrator.attempt.started\"",
        "\"attempt\"",
        "4294967295",
        "\"orchestrator.run.completed\"",
        "\"\\ud800\"",
        "\"é\"",
        "\u{7f}",
        "\u{0}",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let mut buf = Vec::new();
        for _ in 0..rng.below(400) {
            if rng.below(8) == 0 {
                buf.push(rng.next() as u8);
            } else {
                buf.extend_from_slice(TOKENS[rng.below(TOKENS.len())].as_bytes());
            }
        }
        let mut fold = RunFold::new().with_workspace_root(ROOT);
        let mut dec = LineDecoder::new(1 + rng.below(512));
        let mut rest = &buf[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(64));
            dec.push(&rest[..n], |d| fold.feed(d));
            rest = &rest[n..];
        }
        dec.finish(|d| fold.feed(d));
        exercise(&fold);
    }
}

#[test]
fn never_panics_on_truncated_fixture_lines() {
    let mut fold = RunFold::new().with_workspace_root(ROOT);
    let mut fed = 0u64;
    for name in [
        "c-apply-patch",
        "m1-update-plan-todo-list",
        "f3b-stream-cut-after-items",
        "a0-default-model-defaults",
        "l2-openai-provider-no-auth",
        "i1-sigterm-during-command",
    ] {
        for line in scenario(name).events().split(|b| *b == b'\n') {
            for cut in 0..line.len() {
                fold.feed_line(&line[..cut]);
                fed += 1;
            }
        }
    }
    exercise(&fold);
    assert!(fold.progress().malformed_lines > 0);
    assert!(fold.progress().events_seen + fold.progress().malformed_lines <= fed);
}

#[test]
fn every_split_offset_of_fixtures_folds_the_same() {
    for name in [
        "c-apply-patch",
        "m1-update-plan-todo-list",
        "f3b-stream-cut-after-items",
        "i1-sigterm-during-command",
    ] {
        let bytes = scenario(name).events();
        let reference = snapshot(&fold_lines(&bytes), Some(0));
        for cut in 0..=bytes.len() {
            let mut fold = RunFold::new().with_workspace_root(ROOT);
            let mut dec = LineDecoder::new(DEFAULT_MAX_LINE);
            dec.push(&bytes[..cut], |d| fold.feed(d));
            dec.push(&bytes[cut..], |d| fold.feed(d));
            dec.finish(|d| fold.feed(d));
            assert_eq!(snapshot(&fold, Some(0)), reference, "{name} cut at {cut}");
        }
        // A stream cut mid-line (the writer died): the partial last line is still parsed or
        // counted, never fatal.
        for cut in 0..bytes.len() {
            let mut fold = RunFold::new();
            let mut dec = LineDecoder::new(DEFAULT_MAX_LINE);
            dec.push(&bytes[..cut], |d| fold.feed(d));
            dec.finish(|d| fold.feed(d));
            exercise(&fold);
        }
    }
}

#[test]
fn memory_caps_hold_on_long_streams() {
    let mut fold = RunFold::new();
    fold.feed_line(br#"{"type":"thread.started","thread_id":"t"}"#);
    fold.feed_line(br#"{"type":"turn.started"}"#);
    for i in 0..3000 {
        let line = format!(
            r#"{{"type":"item.completed","item":{{"id":"item_{i}","type":"command_execution","command":"echo {i}","aggregated_output":"","exit_code":1,"status":"failed"}}}}"#
        );
        fold.feed_line(line.as_bytes());
        let err = format!(r#"{{"type":"error","message":"retry {i}"}}"#);
        fold.feed_line(err.as_bytes());
        let fc = format!(
            r#"{{"type":"item.completed","item":{{"id":"f{i}","type":"file_change","changes":[{{"path":"/w/f{i}","kind":"add"}}],"status":"completed"}}}}"#
        );
        fold.feed_line(fc.as_bytes());
        // Started and never completed: the running set stays bounded.
        let st = format!(
            r#"{{"type":"item.started","item":{{"id":"s{i}","type":"command_execution","command":"sleep {i}","status":"in_progress"}}}}"#
        );
        fold.feed_line(st.as_bytes());
    }
    let r = fold.result();
    assert_eq!(r.commands.len(), events::MAX_COMMANDS);
    assert_eq!(r.omitted_commands, 6000 - events::MAX_COMMANDS as u64);
    assert_eq!(r.errors.len(), events::MAX_ERRORS);
    assert_eq!(r.omitted_errors, 3000 - events::MAX_ERRORS as u64);
    assert_eq!(r.changed_files.len(), 3000);
    let p = fold.progress();
    assert_eq!(
        (p.commands_run, p.commands_failed, p.files_changed),
        (3000, 3000, 3000)
    );
    assert_eq!(p.errors_seen, 3000);

    // Attempt numbers from the stream never size an allocation.
    fold.feed_line(br#"{"type":"orchestrator.attempt.started","attempt":4294967295,"kind":"fix"}"#);
    fold.feed_line(br#"{"type":"turn.completed","usage":{"input_tokens":7}}"#);
    assert_eq!(fold.attempt(), u32::MAX);
    assert_eq!(fold.usage().per_attempt.len(), 1);
    assert_eq!(fold.usage().total.input_tokens, 7);
    fold.feed_line(br#"{"type":"thread.started","thread_id":"t2"}"#);
    fold.feed_line(br#"{"type":"thread.started","thread_id":"t3"}"#);
    exercise(&fold);
}

#[test]
fn oversized_decoder_output_is_counted_by_the_fold() {
    let mut fold = RunFold::new();
    fold.feed(Decoded::Oversized { len: 1 << 40 });
    fold.feed(Decoded::Line(b"   "));
    assert_eq!(
        fold.progress(),
        &Progress {
            oversized_lines: 1,
            ..Progress::default()
        }
    );
}

#[test]
fn summarize_reads_a_log() {
    let s = scenario("c-apply-patch");
    let sum = events::summarize(&s.events()[..], Some(0)).unwrap();
    assert_eq!(sum.status.phase, RunPhase::Succeeded);
    assert_eq!(
        sum.result.summary.as_deref(),
        Some("Added sub() in calc/ops.py and NOTES.md; tests pass.")
    );
    // No root is known for a plain codex log: paths stay absolute, unless one is given.
    assert_eq!(sum.result.changed_files[0].path, "<WORKSPACE>/NOTES.md");
    let rooted =
        events::summarize_with_root(&s.events()[..], Some(0), Some(Path::new(ROOT))).unwrap();
    assert_eq!(rooted.result.changed_files[0].path, "NOTES.md");
    assert_eq!(
        Summary {
            result: RunResult {
                changed_files: sum.result.changed_files.clone(),
                ..rooted.result
            },
            ..rooted
        },
        sum
    );
    let json = serde_json::to_value(&sum).unwrap();
    assert_eq!(json["status"]["phase"], "succeeded");
    assert_eq!(json["status"]["codex_outcome"]["kind"], "turn_completed");
    assert_eq!(json["result"]["usage"]["total"]["input_tokens"], 3500);
}

/// The same scenario captured with each codex version ends the same way: phase and final
/// answer agree for every scenario both sets hold (what differs is listed in the 0.163
/// README: which items appear, not how a run ends).
#[test]
fn both_codex_versions_conclude_every_shared_scenario_the_same_way() {
    let sets = codex_fixture_sets();
    let (old, new) = (&sets[0].1, &sets[1].1);
    let by_name = |root: &Path| -> std::collections::BTreeMap<String, Scenario> {
        scenarios_in(root)
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect()
    };
    let (a, b) = (by_name(old), by_name(new));
    let mut shared = 0;
    let mut differ = Vec::new();
    for (name, s_old) in &a {
        let Some(s_new) = b.get(name) else { continue };
        shared += 1;
        let end = |s: &Scenario| {
            let exit = s.exit_code();
            let sum = fold_lines(&s.events()).summary(Some(exit));
            (sum.status.phase, sum.result.reason, sum.result.summary)
        };
        if end(s_old) != end(s_new) {
            differ.push(format!("{name}: {:?} vs {:?}", end(s_old), end(s_new)));
        }
    }
    assert!(shared >= 50, "only {shared} scenarios in both sets");
    assert_eq!(differ, Vec::<String>::new());
}

/// codex 0.163 reports a 429 with two `error` events (the retry, then the failure): the retry
/// is listed, the failure once, like 0.147's 401.
#[test]
fn f5_http_429_of_codex_0_163_lists_the_retry_and_the_failure_once() {
    let root = &codex_fixture_sets()[1].1;
    let s = Scenario {
        name: "0.163.0/f5-http-429".into(),
        dir: root.join("f5-http-429"),
    };
    let msg = "exceeded retry limit, last status: 429 Too Many Requests";
    let retry = format!("Reconnecting... 1/1 ({msg})");
    let thread = "01a22705-9d54-7123-a614-91928539112e";
    assert_eq!(
        fold_lines(&s.events()).summary(Some(s.exit_code())),
        retried_then_failed(thread, &retry, msg),
        "{}",
        s.name
    );
}
