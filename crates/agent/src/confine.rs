//! Confining what codex and the commands it starts can reach of the agent, with Landlock
//! (unprivileged, so on Docker and in a Pod of the restricted profile alike): the agent
//! starts them through `codex-orchestrator-agent confine --hide DIR -- PROGRAM ARGS…`, which
//! restricts itself and then becomes PROGRAM (`exec`: same pid, same process group).
//!
//! The ruleset (`confine_self`) handles every filesystem right the kernel knows and grants them
//! all on every directory entry except the hidden paths: for each hidden path, every sibling
//! along the way gets every right, its ancestors get only `READ_DIR` (so the hidden directory
//! can be listed, not read, written or executed). Scoped (Landlock ABI 6, Linux 6.12): signals
//! and abstract UNIX sockets stay inside the confined processes, so they cannot signal the
//! agent. Landlock also denies ptrace of a less confined process.
//!
//! On a kernel without Landlock (or with an older ABI) the restriction is best effort:
//! `confine` says on stderr what was not enforced, and `result.agent_isolation` says it too
//! (see [`probe`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

/// The newest ABI whose rights the ruleset asks for (best effort below it).
const ABI_WANTED: ABI = ABI::V6;

/// `codex-orchestrator-agent confine`: restrict this process with Landlock, then exec.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfineArgs {
    /// A directory the program must not reach (repeatable).
    #[arg(long = "hide", value_name = "DIR", required = true)]
    pub hide: Vec<PathBuf>,
    /// The program and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

/// Errors of `confine` (then nothing is executed).
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("cannot build the Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {}: {source}", program.to_string_lossy())]
    Exec {
        program: OsString,
        #[source]
        source: std::io::Error,
    },
    #[error("no program given")]
    NoProgram,
}

/// How far a restriction took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforced {
    Fully,
    Partially,
    Not,
}

/// The rules for hiding `hidden` (absolute paths): (path, whether it gets every right or only
/// `READ_DIR`). Every entry of every ancestor directory of a hidden path is listed, except the
/// hidden paths and the ancestors themselves. Reads directories only.
pub fn rules(hidden: &[PathBuf]) -> std::io::Result<Vec<(PathBuf, bool)>> {
    let hidden: Vec<PathBuf> = hidden
        .iter()
        .map(|p| codex_orchestrator_core::policy::roots::normalize(p))
        .collect();
    let mut ancestors: Vec<PathBuf> = Vec::new();
    for h in &hidden {
        let mut a = h.parent();
        while let Some(p) = a {
            if !ancestors.contains(&p.to_path_buf()) {
                ancestors.push(p.to_path_buf());
            }
            a = p.parent();
        }
    }
    ancestors.sort();
    let mut out: Vec<(PathBuf, bool)> = ancestors.iter().map(|a| (a.clone(), false)).collect();
    for a in &ancestors {
        for e in std::fs::read_dir(a)? {
            let p = e?.path();
            if hidden.contains(&p) || ancestors.contains(&p) {
                continue;
            }
            out.push((p, true));
        }
    }
    Ok(out)
}

/// Restricts the calling thread (and what it executes) to everything but `hidden`.
pub fn confine_self(hidden: &[PathBuf]) -> Result<Enforced, ConfineError> {
    let all = AccessFs::from_all(ABI_WANTED);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .scope(Scope::from_all(ABI_WANTED))?
        .create()?;
    let listed = rules(hidden).map_err(|source| ConfineError::Read {
        path: hidden.first().cloned().unwrap_or_default(),
        source,
    })?;
    for (path, full) in listed {
        // An entry that vanished meanwhile, or cannot be opened, gets no rule (stays denied).
        let Ok(fd) = PathFd::new(&path) else { continue };
        let access: BitFlags<AccessFs> = if !full {
            AccessFs::ReadDir.into()
        } else if path.is_dir() {
            all
        } else {
            all & AccessFs::from_file(ABI_WANTED)
        };
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
    }
    let status = ruleset.restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Enforced::Fully,
        RulesetStatus::PartiallyEnforced => Enforced::Partially,
        RulesetStatus::NotEnforced => Enforced::Not,
    })
}

/// The `confine` subcommand: restrict, then become the program. Returns only on error.
pub fn main(args: ConfineArgs) -> ConfineError {
    use std::os::unix::process::CommandExt;
    match confine_self(&args.hide) {
        Ok(Enforced::Fully) => {}
        Ok(other) => eprintln!(
            "codex-orchestrator-agent confine: Landlock is {} on this kernel; the program is not fully confined",
            if other == Enforced::Not {
                "not available"
            } else {
                "only partly available"
            }
        ),
        Err(e) => return e,
    }
    let Some((program, rest)) = args.command.split_first() else {
        return ConfineError::NoProgram;
    };
    let source = std::process::Command::new(program).args(rest).exec();
    ConfineError::Exec {
        program: program.clone(),
        source,
    }
}

/// The Landlock ABI of the running kernel (0 when Landlock is unavailable).
pub fn probe() -> i32 {
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    // SAFETY: the version query reads no memory (null attribute, size 0).
    let v = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    i32::try_from(v).unwrap_or(0).max(0)
}

/// `program args…` wrapped so that it runs confined away from `hidden`: the agent's own binary
/// with `confine`.
pub fn wrap(
    agent_bin: &Path,
    hidden: &[PathBuf],
    program: OsString,
    args: Vec<OsString>,
) -> (OsString, Vec<OsString>) {
    let mut out: Vec<OsString> = vec!["confine".into()];
    for h in hidden {
        out.push("--hide".into());
        out.push(h.clone().into_os_string());
    }
    out.push("--".into());
    out.push(program);
    out.extend(args);
    (agent_bin.as_os_str().to_owned(), out)
}

/// The directories the programs the agent starts are confined away from (set once, at start).
static HIDDEN: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();

/// Confines every program the agent starts from now on away from `hidden`.
pub fn enable(hidden: Vec<PathBuf>) {
    let _ = HIDDEN.set(hidden);
}

/// What the agent's programs are confined away from (empty: not confined).
pub fn hidden() -> &'static [PathBuf] {
    HIDDEN.get().map_or(&[], Vec::as_slice)
}

/// A command for `program args…`, confined when [`enable`] was called.
pub fn command(program: OsString, args: Vec<OsString>) -> tokio::process::Command {
    let (program, args) = match HIDDEN.get() {
        Some(h) if !h.is_empty() => {
            let me = std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from(codex_orchestrator_core::contract::AGENT_BIN));
            wrap(&me, h, program, args)
        }
        _ => (program, args),
    };
    let mut c = tokio::process::Command::new(program);
    c.args(args);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_grant_every_sibling_and_only_list_the_ancestors() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for d in ["a/secret", "a/open", "b"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("a/file"), "x").unwrap();
        let mut r = rules(&[root.join("a/secret")]).unwrap();
        r.retain(|(p, _)| p.starts_with(root));
        r.sort();
        assert_eq!(
            r,
            vec![
                (root.to_path_buf(), false),
                (root.join("a"), false),
                (root.join("a/file"), true),
                (root.join("a/open"), true),
                (root.join("b"), true),
            ]
        );
    }

    #[test]
    fn wrapping_puts_the_program_after_the_hidden_directories() {
        let (p, a) = wrap(
            Path::new("/usr/local/bin/agent"),
            &[PathBuf::from("/agent")],
            "codex".into(),
            vec!["exec".into(), "--json".into()],
        );
        assert_eq!(p, OsString::from("/usr/local/bin/agent"));
        assert_eq!(
            a,
            [
                "confine", "--hide", "/agent", "--", "codex", "exec", "--json"
            ]
            .map(OsString::from)
            .to_vec()
        );
    }
}
