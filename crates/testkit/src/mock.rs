//! The scripted mock model, served in-process on 127.0.0.1 for tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::mockmodel::{self, MockHandle, MockScript};
use codex_orchestrator_core::model::{ModelProvider, WireApi};
use serde_json::Value;

/// The API key the tests give codex (through `MOCK_API_KEY`).
pub const MOCK_KEY: &str = "sk-mock-0123456789abcdef";
pub const MOCK_KEY_ENV: &str = "MOCK_API_KEY";

pub struct Mock {
    handle: MockHandle,
    log: Arc<Mutex<Vec<Value>>>,
}

impl Mock {
    /// Serves `script` on an ephemeral 127.0.0.1 port (expecting [`MOCK_KEY`]).
    pub async fn start(mut script: MockScript) -> Mock {
        script.expected_api_key = Some(MOCK_KEY.to_string());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let handle = mockmodel::spawn(listener, script, move |entry| {
            sink.lock().unwrap().push(entry.clone());
        })
        .unwrap();
        Mock { handle, log }
    }

    /// The requests logged so far.
    pub fn requests(&self) -> Vec<Value> {
        self.log.lock().unwrap().clone()
    }

    pub fn base_url(&self) -> String {
        self.handle.base_url()
    }

    /// A provider pointing codex at this mock, with retries off (`request_max_retries=0`,
    /// `stream_max_retries=0`) so failure scenarios end quickly.
    pub fn provider(&self) -> ModelProvider {
        let mut extra = BTreeMap::new();
        extra.insert("request_max_retries".to_string(), Value::from(0));
        extra.insert("stream_max_retries".to_string(), Value::from(0));
        ModelProvider {
            name: "mock".into(),
            base_url: self.base_url(),
            env_key: Some(MOCK_KEY_ENV.into()),
            wire_api: WireApi::Responses,
            extra,
        }
    }

    pub async fn shutdown(self) {
        self.handle.shutdown().await.unwrap();
    }
}
