//! Where a local workspace may be: inside the allowed roots (the server's, or a gateway
//! tenant's own), widened or narrowed by the roots an MCP client declares only as the server
//! allows, and never at, in or around a directory that holds the orchestrator's own data.
//!
//! Pure functions of canonical paths; [`resolve_path`] makes a path comparable when it does
//! not exist yet (a configuration directory a model could create).

use std::path::{Component, Path, PathBuf};

/// What the roots an MCP client declares (`roots/list`) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientRootsPolicy {
    /// They add to the configured roots: the single-user `mcp` server, whose client is the
    /// user's own editor running as the same user.
    #[default]
    Widen,
    /// They can only narrow: a workspace must lie inside a client root that itself lies inside
    /// a configured root (a gateway tenant allowed `client_roots=narrow`). A client that
    /// declares no roots gets the configured ones.
    Narrow,
    /// They are ignored (a gateway tenant, by default).
    Ignore,
}

impl std::str::FromStr for ClientRootsPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "widen" => Ok(ClientRootsPolicy::Widen),
            "narrow" => Ok(ClientRootsPolicy::Narrow),
            "ignore" => Ok(ClientRootsPolicy::Ignore),
            other => Err(format!(
                "client roots policy `{}` is not one of widen, narrow, ignore",
                other.escape_debug()
            )),
        }
    }
}

/// The roots that count for `policy`: what a workspace must lie in.
pub fn effective_roots(
    configured: &[PathBuf],
    client: &[PathBuf],
    policy: ClientRootsPolicy,
) -> Vec<PathBuf> {
    match policy {
        ClientRootsPolicy::Ignore => configured.to_vec(),
        ClientRootsPolicy::Widen => {
            let mut out = configured.to_vec();
            for c in client {
                if !out.contains(c) {
                    out.push(c.clone());
                }
            }
            out
        }
        ClientRootsPolicy::Narrow if client.is_empty() => configured.to_vec(),
        ClientRootsPolicy::Narrow => client
            .iter()
            .filter(|c| configured.iter().any(|r| c.starts_with(r)))
            .cloned()
            .collect(),
    }
}

/// Whether `path` (canonical) lies inside one of `roots` (a root itself counts).
pub fn inside(roots: &[PathBuf], path: &Path) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

/// A directory no workspace may be, lie in or contain: the state directory (other runs'
/// artifacts and the audit logs), the configuration directory (a model that could write it
/// could give the next server start a provider of its choosing), the gateway's tokens, and
/// other tenants' roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// Comparable form: see [`resolve_path`].
    pub path: PathBuf,
    /// What it is, for the refusal ("the orchestrator's state directory").
    pub what: String,
    /// Whether the refusal may show the path (not for another tenant's directory).
    pub show_path: bool,
}

impl Protected {
    pub fn new(path: &Path, what: impl Into<String>) -> Protected {
        Protected {
            path: resolve_path(path),
            what: what.into(),
            show_path: true,
        }
    }

    /// A protected directory whose path is not shown in refusals.
    pub fn hidden(path: &Path, what: impl Into<String>) -> Protected {
        Protected {
            show_path: false,
            ..Protected::new(path, what)
        }
    }

    fn shown(&self) -> String {
        if self.show_path {
            format!("{} (`{}`)", self.what, self.path.display())
        } else {
            self.what.clone()
        }
    }
}

/// Why a workspace (canonical) is refused for touching a protected directory: it is one, lies
/// in one, or contains one (mounting a parent mounts the child too).
pub fn protected_refusal(canonical: &Path, protected: &[Protected]) -> Option<String> {
    let shown = canonical.display();
    for p in protected {
        let rel = if canonical == p.path {
            "is"
        } else if canonical.starts_with(&p.path) {
            "lies in"
        } else if p.path.starts_with(canonical) {
            "contains"
        } else {
            continue;
        };
        return Some(format!(
            "workspace `{shown}` {rel} {}; a sandbox could read or change it, so it is never a workspace (or part of one). Use a project directory that does not hold the orchestrator's data",
            p.shown()
        ));
    }
    None
}

/// `p` made absolute-comparable: `p` itself canonical when it exists; otherwise, with `.` and
/// `..` resolved lexically, the canonical form of its longest existing ancestor followed by the
/// rest. A relative `p` is taken as given (lexically normalised).
pub fn resolve_path(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let mut existing = normalize(p);
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&existing) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return normalize(&out);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return normalize(p),
        }
    }
}

/// Lexical `.`/`..` resolution.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Why two tenants' roots are refused: one contains the other (a tenant's roots must not reach
/// another tenant's). `roots` is (tenant name, canonical root) pairs.
pub fn overlapping_tenant_roots(roots: &[(String, PathBuf)]) -> Option<String> {
    for (i, (ta, a)) in roots.iter().enumerate() {
        for (tb, b) in &roots[i + 1..] {
            if ta != tb && (a.starts_with(b) || b.starts_with(a)) {
                return Some(format!(
                    "tenants `{ta}` and `{tb}` have overlapping roots (`{}` and `{}`); a tenant's roots must not reach into another tenant's",
                    a.display(),
                    b.display()
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn client_roots_widen_narrow_or_are_ignored() {
        let configured = vec![p("/srv/a")];
        let client = vec![p("/srv/a/proj"), p("/home/me")];
        assert_eq!(
            effective_roots(&configured, &client, ClientRootsPolicy::Widen),
            vec![p("/srv/a"), p("/srv/a/proj"), p("/home/me")]
        );
        assert_eq!(
            effective_roots(&configured, &client, ClientRootsPolicy::Narrow),
            vec![p("/srv/a/proj")]
        );
        assert_eq!(
            effective_roots(&configured, &[], ClientRootsPolicy::Narrow),
            configured
        );
        assert_eq!(
            effective_roots(&configured, &[p("/home/me")], ClientRootsPolicy::Narrow),
            Vec::<PathBuf>::new(),
            "a client that declares only outside roots narrows to nothing"
        );
        assert_eq!(
            effective_roots(&configured, &client, ClientRootsPolicy::Ignore),
            configured
        );
        let roots = effective_roots(&configured, &client, ClientRootsPolicy::Narrow);
        assert!(inside(&roots, Path::new("/srv/a/proj/x")));
        assert!(!inside(&roots, Path::new("/srv/a/other")));
        assert!(!inside(&roots, Path::new("/srv/a/projx")));
        for (s, want) in [
            ("widen", Ok(ClientRootsPolicy::Widen)),
            ("narrow", Ok(ClientRootsPolicy::Narrow)),
            ("ignore", Ok(ClientRootsPolicy::Ignore)),
        ] {
            assert_eq!(s.parse::<ClientRootsPolicy>(), want);
        }
        assert_eq!(
            "all".parse::<ClientRootsPolicy>(),
            Err("client roots policy `all` is not one of widen, narrow, ignore".into())
        );
    }

    #[test]
    fn protected_directories_are_never_at_in_or_under_a_workspace() {
        let prot = vec![
            Protected {
                path: p("/home/me/.local/state/codex-orchestrator"),
                what: "the orchestrator's state directory".into(),
                show_path: true,
            },
            Protected {
                path: p("/srv/tenants/b"),
                what: "another tenant's directory".into(),
                show_path: false,
            },
        ];
        let r = |s: &str| protected_refusal(Path::new(s), &prot);
        assert_eq!(
            r("/home/me").unwrap(),
            "workspace `/home/me` contains the orchestrator's state directory (`/home/me/.local/state/codex-orchestrator`); a sandbox could read or change it, so it is never a workspace (or part of one). Use a project directory that does not hold the orchestrator's data"
        );
        assert!(
            r("/home/me/.local/state/codex-orchestrator")
                .unwrap()
                .starts_with("workspace `/home/me/.local/state/codex-orchestrator` is the orchestrator's state directory")
        );
        assert!(
            r("/home/me/.local/state/codex-orchestrator/runs/x")
                .unwrap()
                .contains(" lies in the orchestrator's state directory")
        );
        let other = r("/srv/tenants/b/proj").unwrap();
        assert!(
            other.contains("lies in another tenant's directory;"),
            "{other}"
        );
        assert!(
            !other.contains("/srv/tenants/b`"),
            "the path is not shown: {other}"
        );
        assert!(
            r("/srv")
                .unwrap()
                .contains("contains another tenant's directory")
        );
        for ok in [
            "/home/me/proj",
            "/home/me/.local/state/codex-orchestrator2",
            "/srv/tenants/a",
            "/srv/tenants/bb",
        ] {
            assert_eq!(r(ok), None, "{ok}");
        }
    }

    #[test]
    fn paths_that_do_not_exist_yet_resolve_through_their_existing_ancestor() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let canon_real = std::fs::canonicalize(&real).unwrap();
        assert_eq!(
            resolve_path(&link.join("not/yet/../there")),
            canon_real.join("not/there")
        );
        assert_eq!(resolve_path(&link), canon_real);
        assert_eq!(resolve_path(Path::new("rel/./x/..")), p("rel"));
    }

    #[test]
    fn tenants_roots_must_not_overlap() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, PathBuf)> {
            v.iter().map(|(t, r)| (t.to_string(), p(r))).collect()
        };
        assert_eq!(
            overlapping_tenant_roots(&pairs(&[
                ("a", "/srv/a"),
                ("b", "/srv/b"),
                ("a", "/srv/a/x")
            ])),
            None,
            "a tenant's own roots may nest"
        );
        assert_eq!(
            overlapping_tenant_roots(&pairs(&[("a", "/srv/a"), ("b", "/srv/a/b")])).unwrap(),
            "tenants `a` and `b` have overlapping roots (`/srv/a` and `/srv/a/b`); a tenant's roots must not reach into another tenant's"
        );
        assert!(overlapping_tenant_roots(&pairs(&[("a", "/srv/x"), ("b", "/srv/x")])).is_some());
        assert_eq!(
            overlapping_tenant_roots(&pairs(&[("a", "/srv/ab"), ("b", "/srv/a")])),
            None
        );
    }
}
