//! Decode + fold throughput and memory, side by side with a bare `serde_json::Value` parse.
//!
//! `cargo bench --bench fold` does, in one run:
//! 1. memory: folds a 10 MB, a 100 MB and a 1 GB stream generated on the fly (never held in memory; every
//!    repetition of the fixtures gets its own file paths, so the dedup sets really fill up) and
//!    prints the peak RSS of each (VmHWM, reset between runs through /proc/self/clear_refs);
//! 2. a quick interleaved timing of (a) `serde_json::from_slice::<Value>` per line and (b)
//!    `LineDecoder` + `RunFold` over 64 KiB chunks of the same ~12 MB, printing the ratio b/a
//!    (target ≤ 1.5);
//! 3. the same two as criterion benchmarks (group `fold`, throughput in bytes).
//!
//! Steps 1–2 run only under `cargo bench` (they are skipped in criterion's `--test` mode).

use std::borrow::Cow;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codex_orchestrator_core::events::{LineDecoder, RunFold, parse_line};
use criterion::{Criterion, Throughput};

const CHUNK: usize = 64 * 1024;

/// Every events.jsonl of the codex fixtures, concatenated (~41 KB).
fn corpus() -> Vec<u8> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "events.jsonl") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/codex-exec-0.147");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut out = Vec::new();
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            out.extend_from_slice(&bytes);
            if !out.ends_with(b"\n") && !out.is_empty() {
                out.push(b'\n');
            }
        }
    }
    assert!(
        out.len() > 10_000,
        "fixtures not found under {}",
        root.display()
    );
    out
}

/// The corpus repeated up to at least `min_len` bytes.
fn stream(corpus: &[u8], min_len: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(min_len + corpus.len());
    while s.len() < min_len {
        s.extend_from_slice(corpus);
    }
    s
}

/// (a) the floor: split lines, parse each into a `serde_json::Value`.
fn bare_parse(bytes: &[u8]) -> usize {
    let mut ok = 0;
    for line in bytes.split(|b| *b == b'\n') {
        if !line.is_empty() && serde_json::from_slice::<serde_json::Value>(line).is_ok() {
            ok += 1;
        }
    }
    ok
}

/// (c) for reference: the typed parse alone, no decoder, no fold.
fn typed_parse(bytes: &[u8]) -> usize {
    let mut ok = 0;
    for line in bytes.split(|b| *b == b'\n') {
        if !line.is_empty() && parse_line(line).is_ok() {
            ok += 1;
        }
    }
    ok
}

/// (b) what the orchestrator does: decoder + fold over 64 KiB chunks.
fn decode_fold(bytes: &[u8]) -> u64 {
    let mut fold = RunFold::new().with_workspace_root("<WORKSPACE>");
    let mut dec = LineDecoder::default();
    for chunk in bytes.chunks(CHUNK) {
        dec.push(chunk, |d| fold.feed(d));
    }
    dec.finish(|d| fold.feed(d));
    black_box(fold.result());
    fold.progress().events_seen
}

/// Folds `total` bytes made of the corpus repeated, in chunks of at most 64 KiB, generating
/// each repetition on the fly; with `unique_paths` every repetition gets its own file paths
/// (so the changed-files list fills up to its cap). Returns (bytes fed, events seen, changed
/// files listed, commands listed).
fn fold_generated(corpus: &str, total: u64, unique_paths: bool) -> (u64, u64, usize, usize) {
    let mut fold = RunFold::new();
    let mut dec = LineDecoder::default();
    let mut fed = 0u64;
    let mut rep = 0u64;
    while fed < total {
        let piece = if unique_paths {
            Cow::Owned(corpus.replace("<WORKSPACE>/", &format!("<WORKSPACE>/rep{rep}/")))
        } else {
            Cow::Borrowed(corpus)
        };
        for chunk in piece.as_bytes().chunks(CHUNK) {
            dec.push(chunk, |d| fold.feed(d));
        }
        fed += piece.len() as u64;
        rep += 1;
    }
    dec.finish(|d| fold.feed(d));
    let r = fold.result();
    (
        fed,
        fold.progress().events_seen,
        r.changed_files.len(),
        r.commands.len(),
    )
}

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak RSS (VmHWM) to the current RSS; false where the kernel does not allow it.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn memory_flatness(corpus: &[u8]) {
    let text = String::from_utf8_lossy(corpus).into_owned();
    println!("fold memory: peak RSS (VmHWM) while folding a stream generated on the fly");
    for (variant, unique, sizes) in [
        (
            "fixtures verbatim",
            false,
            &[("10 MB", 10_000_000u64), ("1 GB", 1_000_000_000)][..],
        ),
        (
            "unique paths per repetition",
            true,
            &[
                ("10 MB", 10_000_000u64),
                ("100 MB", 100_000_000),
                ("1 GB", 1_000_000_000),
            ][..],
        ),
    ] {
        println!("  {variant}:");
        for (label, total) in sizes {
            let reset = reset_peak_rss();
            let start = Instant::now();
            let (fed, events, files, commands) = fold_generated(&text, *total, unique);
            let secs = start.elapsed().as_secs_f64();
            let hwm = status_kib("VmHWM:").unwrap_or(0);
            println!(
                "    {label:>6}: {fed:>10} bytes {events:>8} events, {files:>5} files and \
                 {commands} commands listed, {:4.0} MB/s, peak RSS {hwm} KiB{}",
                fed as f64 / secs / 1e6,
                if reset { "" } else { " (peak not reset)" }
            );
        }
    }
}

fn quick_ratio(bytes: &[u8]) {
    let mut bare = Vec::new();
    let mut typed = Vec::new();
    let mut fold = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        black_box(bare_parse(black_box(bytes)));
        bare.push(t.elapsed());
        let t = Instant::now();
        black_box(typed_parse(black_box(bytes)));
        typed.push(t.elapsed());
        let t = Instant::now();
        black_box(decode_fold(black_box(bytes)));
        fold.push(t.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (b, t, f) = (median(&mut bare), median(&mut typed), median(&mut fold));
    let mbs = |d: Duration| bytes.len() as f64 / d.as_secs_f64() / 1e6;
    println!(
        "throughput on {} bytes (median of 9, interleaved):\n  \
         (a) bare Value parse per line  {:7.1} ms {:5.0} MB/s\n  \
         (c) typed parse_line per line  {:7.1} ms {:5.0} MB/s\n  \
         (b) decoder + fold, 64 KiB     {:7.1} ms {:5.0} MB/s\n  \
         ratio (b)/(a) = {:.2} (target <= 1.5)",
        bytes.len(),
        b.as_secs_f64() * 1e3,
        mbs(b),
        t.as_secs_f64() * 1e3,
        mbs(t),
        f.as_secs_f64() * 1e3,
        mbs(f),
        f.as_secs_f64() / b.as_secs_f64()
    );
}

fn main() {
    let corpus = corpus();
    let benching = std::env::args().any(|a| a == "--bench");
    if benching {
        // First, before the 12 MB test stream exists, so RSS is the fold's own.
        memory_flatness(&corpus);
    }
    let bytes = stream(&corpus, 12 * 1024 * 1024);
    assert_eq!(
        decode_fold(&bytes),
        bare_parse(&bytes) as u64,
        "both sides see every line"
    );
    if benching {
        quick_ratio(&bytes);
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("fold");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("a_serde_json_value_per_line", |b| {
            b.iter(|| bare_parse(black_box(&bytes)))
        });
        g.bench_function("b_decode_and_fold_64k_chunks", |b| {
            b.iter(|| decode_fold(black_box(&bytes)))
        });
        g.finish();
    }
    c.final_summary();
}
