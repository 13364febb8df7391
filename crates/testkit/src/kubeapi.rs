//! Building blocks of the in-memory Kubernetes API servers the tests put behind kube's
//! `Client` (a tower-test mock): responses, JSON merge patches, and the serving loop.

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// A `Status` failure object with `code`.
pub fn status_resp(code: u16, reason: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": reason, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

/// `200 OK` with `v`.
pub fn ok(v: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .body(Body::from(serde_json::to_vec(v).unwrap()))
        .unwrap()
}

/// JSON merge patch (RFC 7386): objects merge recursively, `null` removes, anything else
/// replaces.
pub fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// A `Client` whose every request is answered by `answer`, served by a spawned task that
/// ends with the client.
pub fn client<F, Fut>(answer: F) -> (Client, tokio::task::JoinHandle<()>)
where
    F: Fn(Request<Body>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        tokio::pin!(handle);
        while let Some((req, send)) = handle.next_request().await {
            send.send_response(answer(req).await);
        }
    });
    (Client::new(svc, "default"), server)
}
