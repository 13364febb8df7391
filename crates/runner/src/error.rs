//! Error types at module boundaries. Each layer has its own enum; messages are written for the
//! person who will read them (what went wrong, and what to do about it).

use std::path::PathBuf;

use codex_orchestrator_core::model::{RunId, RunIdError};

/// Errors of the on-disk run store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run `{0}` not found")]
    NotFound(RunId),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    BadId(#[from] RunIdError),
}

impl StoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StoreError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Errors of the server configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// Errors a [`crate::Runner`] returns. `InvalidRequest` means nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("run `{0}` not found")]
    NotFound(RunId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("docker: {0}")]
    Docker(String),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error("{0}")]
    Other(String),
}

impl From<bollard::errors::Error> for RunnerError {
    fn from(e: bollard::errors::Error) -> Self {
        RunnerError::Docker(e.to_string())
    }
}

impl From<codex_orchestrator_core::policy::admission::Refusal> for RunnerError {
    fn from(r: codex_orchestrator_core::policy::admission::Refusal) -> Self {
        RunnerError::InvalidRequest(r.to_string())
    }
}
