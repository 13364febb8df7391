//! MCP client roots: directories the client (an IDE, a desktop app) says the user is working
//! in. When the client declares the `roots` capability, the server asks for them
//! (`roots/list`) after `initialize`, again on `notifications/roots/list_changed`, and — so a
//! tool call never races the first answer — before the first tool call that needs them. What
//! they may do is the server's [`McpConfig::client_roots`](super::McpConfig::client_roots)
//! policy (`codex_orchestrator_core::policy::roots`): widen the configured roots (`mcp`), only
//! narrow them, or nothing (a gateway tenant, unless its settings say `narrow`).
//!
//! Only `file://` URIs naming an existing directory count; each is canonicalised (symlinks and
//! `..` resolved) and the filesystem root `/` is ignored, as it is for configured roots.
//!
//! The state is per session: [`ClientRoots`] lives in the server value that serves one client.

use std::path::{Path, PathBuf};

use rmcp::RoleServer;
use rmcp::service::Peer;
use tracing::{debug, warn};

/// The local path a root URI names: `file:///abs/path` or `file://localhost/abs/path`, with
/// percent-escapes decoded. Anything else (other schemes, other hosts, relative or undecodable
/// paths) gives `None`.
pub fn uri_to_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://").or_else(|| {
        uri.get(..7)
            .filter(|p| p.eq_ignore_ascii_case("file://"))
            .map(|_| &uri[7..])
    })?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return None;
    }
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let decoded = percent_decode(rest)?;
    let s = String::from_utf8(decoded).ok()?;
    Some(PathBuf::from(s))
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Client root URIs → canonical directories (unusable entries are skipped with a log line).
pub fn resolve_uris<'a>(uris: impl IntoIterator<Item = &'a str>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for uri in uris {
        let Some(p) = uri_to_path(uri) else {
            warn!(%uri, "ignoring a client root that is not a local file:// URI");
            continue;
        };
        match std::fs::canonicalize(&p) {
            Ok(c) if c.is_dir() && c != Path::new("/") => {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            Ok(c) => {
                warn!(root = %c.display(), "ignoring a client root that is not a usable directory")
            }
            Err(e) => {
                warn!(root = %p.display(), error = %e, "ignoring a client root that cannot be resolved")
            }
        }
    }
    out
}

/// Longest wait for a `roots/list` answer (a tool call waits for the first one).
pub const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The roots one client declared (see the module docs).
#[derive(Debug, Default)]
pub struct ClientRoots {
    /// `None` until fetched once; serialises fetches.
    fetched: tokio::sync::Mutex<Option<Vec<PathBuf>>>,
    /// The current list, readable without waiting.
    current: std::sync::RwLock<Vec<PathBuf>>,
}

impl ClientRoots {
    /// The client's roots as last fetched (empty if none or not fetched).
    pub fn current(&self) -> Vec<PathBuf> {
        self.current.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// Fetches the roots once, if the client declared the capability and they have not been
    /// fetched yet.
    pub async fn ensure(&self, peer: &Peer<RoleServer>) {
        if !declares_roots(peer) {
            return;
        }
        let mut g = self.fetched.lock().await;
        if g.is_none() {
            let roots = fetch(peer).await;
            self.set(&roots);
            *g = Some(roots);
        }
    }

    /// Fetches the roots again (after `notifications/roots/list_changed`).
    pub async fn refresh(&self, peer: &Peer<RoleServer>) {
        if !declares_roots(peer) {
            return;
        }
        let mut g = self.fetched.lock().await;
        let roots = fetch(peer).await;
        self.set(&roots);
        *g = Some(roots);
    }

    fn set(&self, roots: &[PathBuf]) {
        if let Ok(mut c) = self.current.write() {
            *c = roots.to_vec();
        }
    }
}

fn declares_roots(peer: &Peer<RoleServer>) -> bool {
    peer.peer_info()
        .is_some_and(|i| i.capabilities.roots.is_some())
}

// Roots are deprecated by a future protocol revision (SEP-2577); clients still send them.
#[allow(deprecated)]
async fn fetch(peer: &Peer<RoleServer>) -> Vec<PathBuf> {
    let res = match tokio::time::timeout(FETCH_TIMEOUT, peer.list_roots()).await {
        Ok(r) => r,
        Err(_) => {
            warn!(
                "the client did not answer roots/list within {}s; using the configured roots only",
                FETCH_TIMEOUT.as_secs()
            );
            return Vec::new();
        }
    };
    match res {
        Ok(r) => {
            let roots = resolve_uris(r.roots.iter().map(|r| r.uri.as_str()));
            debug!(?roots, "client roots");
            roots
        }
        Err(e) => {
            warn!(error = %e, "cannot list the client's roots; using the configured roots only");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            uri_to_path("file:///home/me/src"),
            Some("/home/me/src".into())
        );
        assert_eq!(
            uri_to_path("file://localhost/home/me/my%20project"),
            Some("/home/me/my project".into())
        );
        assert_eq!(uri_to_path("FILE:///x"), Some("/x".into()));
        assert_eq!(uri_to_path("file:///a%2"), None);
        assert_eq!(uri_to_path("file://server/share"), None);
        assert_eq!(uri_to_path("https://example.com/x"), None);
        assert_eq!(uri_to_path("/home/me"), None);
        assert_eq!(uri_to_path("file:///%ff"), None);
    }

    #[test]
    fn resolving_skips_unusable_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(tmp.path().join("f"), "x").unwrap();
        let canon = std::fs::canonicalize(&dir).unwrap();
        let uri = |p: &Path| format!("file://{}", p.display());
        let got = resolve_uris(
            [
                uri(&dir),
                uri(&dir.join("../d")),
                uri(&tmp.path().join("f")),
                uri(&tmp.path().join("missing")),
                "file:///".to_owned(),
                "https://x/y".to_owned(),
            ]
            .iter()
            .map(String::as_str),
        );
        assert_eq!(got, vec![canon]);
    }
}
