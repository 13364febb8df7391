//! (placeholder until the image module lands)
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Default, Clone)]
pub struct ImageOptions {
    pub agent_binary: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {}

pub fn default_runner_tag() -> String {
    format!("codex-orchestrator-runner:{}", crate::model::VERSION)
}

pub async fn ensure_runner_image(
    _d: &bollard::Docker,
    _o: &ImageOptions,
) -> Result<String, ImageError> {
    Err(ImageError::Other("not yet".into()))
}

pub async fn check_runner_image(_d: &bollard::Docker, _t: &str) -> Result<String, ImageError> {
    Err(ImageError::Other("not yet".into()))
}

pub async fn run_cli(_a: &ImageArgs) -> Result<(), ImageError> {
    Err(ImageError::Other("not yet".into()))
}
