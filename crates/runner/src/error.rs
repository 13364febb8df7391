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

/// The backend a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The Docker engine (containers, networks, the runner image).
    Docker,
    /// The Kubernetes API server.
    Kubernetes,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Docker => "docker",
            Backend::Kubernetes => "kubernetes",
        })
    }
}

/// Errors a [`crate::Runner`] returns, the same for every backend. `InvalidRequest` means
/// nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("run `{0}` not found")]
    NotFound(RunId),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The backend failed: what it was asked to do, and its answer.
    #[error("{backend}: {message}")]
    Backend { backend: Backend, message: String },
    /// The backend cannot be used at all (yet): not running, not reachable, not set up.
    #[error("{0}")]
    Unavailable(String),
    /// Stored data of a run that cannot be read back.
    #[error("{0}")]
    Corrupt(String),
    /// A quota of the caller (a gateway tenant) refuses the request; nothing was started.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// A task of the runner itself failed (a bug, or a panic in a blocking task).
    #[error("internal error: {0}")]
    Internal(String),
}

impl RunnerError {
    /// A failure of the Docker engine.
    pub fn docker(message: impl Into<String>) -> Self {
        RunnerError::Backend {
            backend: Backend::Docker,
            message: message.into(),
        }
    }

    /// A failure of the Kubernetes API server.
    pub fn kubernetes(message: impl Into<String>) -> Self {
        RunnerError::Backend {
            backend: Backend::Kubernetes,
            message: message.into(),
        }
    }
}

impl From<bollard::errors::Error> for RunnerError {
    fn from(e: bollard::errors::Error) -> Self {
        RunnerError::docker(e.to_string())
    }
}

impl From<crate::image::ImageError> for RunnerError {
    fn from(e: crate::image::ImageError) -> Self {
        RunnerError::Unavailable(e.to_string())
    }
}

impl From<codex_orchestrator_core::policy::admission::Refusal> for RunnerError {
    fn from(r: codex_orchestrator_core::policy::admission::Refusal) -> Self {
        RunnerError::InvalidRequest(r.to_string())
    }
}
