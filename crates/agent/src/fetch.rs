//! `fetch`: the command-line wrapper of the workspace crate's clone (the Pod's init step).

use std::path::PathBuf;

pub use codex_orchestrator_workspace::fetch::*;

/// `codex-orchestrator fetch`.
#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// Repository URL.
    #[arg(long)]
    pub url: String,
    /// Branch, tag or commit (default: the remote's default branch).
    #[arg(long)]
    pub revision: Option<String>,
    /// Directory to clone into (empty or absent).
    #[arg(long)]
    pub dest: PathBuf,
}

/// `codex-orchestrator fetch`.
pub async fn main(a: FetchArgs) -> Result<(), FetchError> {
    let creds = Credentials::from_env();
    let url = a.url.clone();
    let shown = redact_url(&url);
    tracing::info!(url = %shown, revision = ?a.revision, dest = %a.dest.display(), "fetching the source");
    let res = tokio::task::spawn_blocking(move || {
        fetch(&a.url, a.revision.as_deref(), &a.dest, creds.as_ref())
    })
    .await
    .map_err(|e| FetchError::Join(e.to_string()))??;
    tracing::info!(commit = %res.commit, "source checked out");
    Ok(())
}
