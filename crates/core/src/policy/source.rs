//! Remote sources: on the Kubernetes backend a run's `workspace` names where the code comes
//! from — a git URL or a PersistentVolumeClaim — because a path on the client's machine cannot
//! exist in the cluster. [`parse_source`] and [`source_text`] are inverse pure functions.

/// A source in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A git repository (`https://`, `http://`, `git://`, `file://`), optionally at a branch,
    /// tag or commit.
    Git {
        url: String,
        revision: Option<String>,
    },
    /// A PersistentVolumeClaim of the run's namespace, optionally a relative sub path of it.
    Pvc {
        claim: String,
        sub_path: Option<String>,
    },
}

/// Why a workspace text is not a usable source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error(
        "workspace is empty: on the Kubernetes backend give the source as a git URL (https://host/repo.git[#revision]) or a PersistentVolumeClaim (pvc:CLAIM[/subpath])"
    )]
    Empty,
    #[error(
        "workspace `{0}` is a local path, but runs on the Kubernetes backend cannot see files on your machine; give the source as a git URL (https://host/repo.git[#revision]) or a PersistentVolumeClaim in the run's namespace (pvc:CLAIM[/subpath])"
    )]
    LocalPath(String),
    #[error("workspace `{0}`: {1}")]
    Invalid(String, &'static str),
}

/// Parses the workspace text of a request into a CodexRun source. Pure.
///
/// * `https://host/repo.git`, `http://…`, `git://…`, `file://…` → git; a `#rev` suffix is the
///   revision (branch, tag or commit).
/// * `pvc:claim` or `pvc:claim/sub/dir` → the claim and a relative sub path (no `..`).
/// * anything else (an absolute or relative path, `C:\…`) → [`SourceError::LocalPath`].
pub fn parse_source(text: &str) -> Result<Source, SourceError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(SourceError::Empty);
    }
    let invalid = |why| SourceError::Invalid(t.to_string(), why);
    if t.chars().any(char::is_control) {
        return Err(invalid("contains a control character"));
    }
    if let Some(rest) = t.strip_prefix("pvc:") {
        let (claim, sub) = match rest.split_once('/') {
            Some((c, s)) => (c, Some(s.trim_matches('/'))),
            None => (rest, None),
        };
        let dns_ok = !claim.is_empty()
            && claim.len() <= 253
            && claim
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !claim.starts_with(['-', '.'])
            && !claim.ends_with(['-', '.']);
        if !dns_ok {
            return Err(invalid(
                "the claim name must be a Kubernetes object name (lowercase letters, digits, `-`, `.`)",
            ));
        }
        let sub = sub.filter(|s| !s.is_empty());
        if let Some(s) = sub
            && (s.split('/').any(|c| c == ".." || c == ".") || s.contains("//") || s.len() > 1024)
        {
            return Err(invalid(
                "the sub path must be relative, without `.`/`..` components",
            ));
        }
        return Ok(Source::Pvc {
            claim: claim.to_string(),
            sub_path: sub.map(str::to_string),
        });
    }
    let is_url = ["https://", "http://", "git://", "file://"]
        .iter()
        .any(|p| t.starts_with(p));
    if !is_url {
        return Err(SourceError::LocalPath(t.to_string()));
    }
    let (url, rev) = match t.split_once('#') {
        Some((u, r)) => (u, Some(r)),
        None => (t, None),
    };
    if url.len() > 2048 || url.contains(char::is_whitespace) {
        return Err(invalid("the URL is too long or contains whitespace"));
    }
    if let Some(r) = rev
        && (r.is_empty() || r.len() > 256 || r.contains(char::is_whitespace))
    {
        return Err(invalid(
            "the revision after `#` must be a branch, tag or commit (1-256 characters, no spaces)",
        ));
    }
    Ok(Source::Git {
        url: url.to_string(),
        revision: rev.map(str::to_string),
    })
}

/// The workspace text of a source: the inverse of [`parse_source`]. Pure.
pub fn source_text(s: &Source) -> String {
    match s {
        Source::Git { url, revision } => match revision {
            Some(r) => format!("{url}#{r}"),
            None => url.clone(),
        },
        Source::Pvc { claim, sub_path } => match sub_path {
            Some(sub) => format!("pvc:{claim}/{sub}"),
            None => format!("pvc:{claim}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_texts_become_sources_and_back() {
        let git = |url: &str, rev: Option<&str>| Source::Git {
            url: url.into(),
            revision: rev.map(Into::into),
        };
        let pvc = |claim: &str, sub: Option<&str>| Source::Pvc {
            claim: claim.into(),
            sub_path: sub.map(Into::into),
        };
        let cases = [
            (
                "https://git.example/r.git",
                git("https://git.example/r.git", None),
                "https://git.example/r.git",
            ),
            (
                " https://git.example/r.git#main ",
                git("https://git.example/r.git", Some("main")),
                "https://git.example/r.git#main",
            ),
            (
                "git://h/r#v1.2",
                git("git://h/r", Some("v1.2")),
                "git://h/r#v1.2",
            ),
            (
                "file:///srv/repo",
                git("file:///srv/repo", None),
                "file:///srv/repo",
            ),
            ("pvc:work", pvc("work", None), "pvc:work"),
            ("pvc:work/", pvc("work", None), "pvc:work"),
            (
                "pvc:work/team/app",
                pvc("work", Some("team/app")),
                "pvc:work/team/app",
            ),
        ];
        for (text, want, back) in cases {
            let got = parse_source(text).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(source_text(&got), back, "{text}");
            assert_eq!(parse_source(back).unwrap(), got, "{text}");
        }
    }

    #[test]
    fn local_paths_and_bad_sources_are_refused_with_the_reason() {
        let e = |s: &str| parse_source(s).unwrap_err().to_string();
        assert_eq!(
            e("/home/me/proj"),
            "workspace `/home/me/proj` is a local path, but runs on the Kubernetes backend cannot see files on your machine; give the source as a git URL (https://host/repo.git[#revision]) or a PersistentVolumeClaim in the run's namespace (pvc:CLAIM[/subpath])"
        );
        assert!(e("proj").starts_with("workspace `proj` is a local path"));
        assert!(e("C:\\Users\\me").starts_with("workspace `C:\\Users\\me` is a local path"));
        assert!(e("  ").starts_with("workspace is empty"));
        assert_eq!(
            e("pvc:Work"),
            "workspace `pvc:Work`: the claim name must be a Kubernetes object name (lowercase letters, digits, `-`, `.`)"
        );
        assert_eq!(
            e("pvc:w/../etc"),
            "workspace `pvc:w/../etc`: the sub path must be relative, without `.`/`..` components"
        );
        assert!(e("pvc:").contains("claim name"));
        assert!(e("https://h/r#").contains("revision"));
        assert!(e("https://h/r x").contains("whitespace"));
        assert_eq!(
            e("https://h/\nr"),
            "workspace `https://h/\nr`: contains a control character"
        );
    }
}
