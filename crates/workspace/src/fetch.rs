//! Cloning a git source: the Pod's init step (`fetch`). Clones a git repository into the
//! workspace volume and checks out the requested revision (detached), with libgit2 (git2) —
//! so the runner image needs no git binary and no shell.
//!
//! * Revision: a branch, a tag or a commit id (full or abbreviated); absent = the remote's
//!   default branch. Branches are looked up as `origin/<name>` too.
//! * Credentials (HTTP): `CODEX_ORCHESTRATOR_GIT_USERNAME` (optional, default
//!   `x-access-token`) and `CODEX_ORCHESTRATOR_GIT_PASSWORD` (a password or token), which the Pod
//!   takes from the `credentialsSecret`. They are never logged.
//! * Transports: `file://`, `git://`, `http://` and `https://` (libgit2 with OpenSSL and the
//!   system's CA certificates; the runner image has ca-certificates).
//! * The destination must be empty or absent (an emptyDir is empty).

use std::path::{Path, PathBuf};

use git2::build::RepoBuilder;
use git2::{Cred, FetchOptions, RemoteCallbacks, Repository};

/// Environment variables with the HTTP user name and the password or token.
pub use codex_orchestrator_core::contract::{
    GIT_PASSWORD_ENV as PASSWORD_ENV, GIT_USERNAME_ENV as USERNAME_ENV,
};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("destination {0} is not empty")]
    DestNotEmpty(PathBuf),
    #[error("cannot read destination {path}: {source}")]
    Dest {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot clone {url}: {source}")]
    Clone {
        url: String,
        #[source]
        source: git2::Error,
    },
    #[error("revision `{rev}` not found in {url}: {source}")]
    Revision {
        rev: String,
        url: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot check out `{rev}`: {source}")]
    Checkout {
        rev: String,
        #[source]
        source: git2::Error,
    },
    #[error("the clone task failed: {0}")]
    Join(String),
}

/// HTTP credentials for the clone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// From [`USERNAME_ENV`] / [`PASSWORD_ENV`]; `None` without a password.
    pub fn from_env() -> Option<Credentials> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        get(PASSWORD_ENV).map(|password| Credentials {
            username: get(USERNAME_ENV),
            password,
        })
    }
}

/// What was checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The commit id checked out.
    pub commit: String,
}

/// Clones `url` into `dest` and checks out `revision` (blocking; run it off the async runtime).
pub fn fetch(
    url: &str,
    revision: Option<&str>,
    dest: &Path,
    creds: Option<&Credentials>,
) -> Result<Fetched, FetchError> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(FetchError::DestNotEmpty(dest.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(FetchError::Dest {
                path: dest.to_path_buf(),
                source,
            });
        }
    }
    let mut callbacks = RemoteCallbacks::new();
    if let Some(c) = creds.cloned() {
        let mut tries = 0u32;
        callbacks.credentials(move |_url, user_from_url, _allowed| {
            // libgit2 asks again after a rejected credential: give up instead of looping.
            tries += 1;
            if tries > 1 {
                return Err(git2::Error::from_str("the credentials were rejected"));
            }
            let user = c
                .username
                .as_deref()
                .or(user_from_url)
                .unwrap_or("x-access-token");
            Cred::userpass_plaintext(user, &c.password)
        });
    }
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks);
    let repo = RepoBuilder::new()
        .fetch_options(fo)
        .clone(url, dest)
        .map_err(|source| FetchError::Clone {
            url: redact_url(url),
            source,
        })?;
    let commit = match revision {
        None => repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(|source| FetchError::Revision {
                rev: "HEAD".into(),
                url: redact_url(url),
                source,
            })?,
        Some(rev) => checkout(&repo, rev, url)?,
    };
    Ok(Fetched {
        commit: commit.id().to_string(),
    })
}

fn checkout<'r>(
    repo: &'r Repository,
    rev: &str,
    url: &str,
) -> Result<git2::Commit<'r>, FetchError> {
    let obj = repo
        .revparse_single(rev)
        .or_else(|_| repo.revparse_single(&format!("origin/{rev}")))
        .map_err(|source| FetchError::Revision {
            rev: rev.to_string(),
            url: redact_url(url),
            source,
        })?;
    let commit = obj
        .peel_to_commit()
        .map_err(|source| FetchError::Revision {
            rev: rev.to_string(),
            url: redact_url(url),
            source,
        })?;
    let err = |source| FetchError::Checkout {
        rev: rev.to_string(),
        source,
    };
    let mut co = git2::build::CheckoutBuilder::new();
    co.force();
    repo.checkout_tree(commit.as_object(), Some(&mut co))
        .map_err(err)?;
    repo.set_head_detached(commit.id()).map_err(err)?;
    Ok(commit)
}

/// `url` without a `user:password@` part, for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && !userinfo.contains('/')
    {
        return format!("{scheme}://<redacted>@{host}");
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_a_supported_transport() {
        // Nothing listens on the discard port: the error must be the connection, not an
        // unsupported protocol.
        let dest = tempfile::tempdir().unwrap();
        let e = fetch(
            "https://127.0.0.1:9/repo.git",
            None,
            &dest.path().join("ws"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("unsupported URL protocol"), "{e}");
        assert!(e.to_lowercase().contains("connect"), "{e}");
    }

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            redact_url("https://user:tok@example.com/a/b.git"),
            "https://<redacted>@example.com/a/b.git"
        );
        assert_eq!(
            redact_url("https://example.com/a@b"),
            "https://example.com/a@b"
        );
        assert_eq!(redact_url("file:///tmp/x"), "file:///tmp/x");
        let c = Credentials {
            username: None,
            password: "s3cret".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
