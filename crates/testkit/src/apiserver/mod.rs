//! A strict in-process Kubernetes API server for the tests, behind kube's own [`Client`]
//! ([`ApiServer::client`]): the semantics the controller, the gateway's Kubernetes backend and
//! kube-runtime's watchers rely on, with the errors a real API server gives.
//!
//! What it models:
//! * **resourceVersion**: one counter for every write; an update (PUT, or a patch whose body
//!   names a resourceVersion) of a stale version is `409 Conflict`; a no-op patch changes
//!   nothing. `generation` counts spec changes.
//! * **list and watch** with `labelSelector` (every form, [`selector`]), `fieldSelector`
//!   (`metadata.name`, `metadata.namespace`), `limit`/`continue`, `resourceVersion`; a watch
//!   from a version older than the retained history gets an `ERROR` event with `410 Expired`
//!   (the client must relist; [`ApiServer::compact`] forgets history on purpose);
//!   `allowWatchBookmarks` gets `BOOKMARK`s; `timeoutSeconds` ends the watch.
//! * **create** with `generateName`, `409 AlreadyExists`, uid and timestamps; status is dropped
//!   on create for resources with a status subresource.
//! * **patches**: JSON merge (strategic merge is treated as a JSON merge), JSON patch, and
//!   **server-side apply** with field managers, conflicts (`409`) and `force` ([`ssa`]).
//! * the **status subresource**: the main resource ignores status changes, `/status` changes
//!   only the status.
//! * **delete** with preconditions, **finalizers** and `deletionTimestamp` (the object goes
//!   when its last finalizer is removed), and **ownerReference garbage collection** of
//!   dependents whose owners are all gone.
//! * **admission**: CodexRuns (any resource given a CRD) are validated against the CRD's own
//!   `openAPIV3Schema` and CEL rules ([`schema`]) → `422 Invalid`; extra admission checks per
//!   resource (the tests plug in the Pod Security **restricted** profile) → `403 Forbidden`.
//! * **Pod logs** (`pods/<name>/log`, `container`, `follow`) from per-container buffers the
//!   test (or a node agent) writes; a follow ends when the container's log is closed.
//!
//! What it does not model: authentication and RBAC; namespaces as objects (any namespace
//! exists); structural pruning of unknown fields; defaulting; strategic-merge list semantics
//! and keyed list ownership in server-side apply (lists are atomic); `managedFields` in the
//! returned objects; field selectors other than name and namespace; pagination snapshots
//! (`continue` is an offset into the current list); scheduling (the node agent binds Pods);
//! watch caches per resource version (history is one list for all resources).
//!
//! Pod deletion is graceful as on a real cluster: a Pod bound to a node (`spec.nodeName`, set
//! by the test's node agent, [`ApiServer::bind_pod`]) is marked with `deletionTimestamp` and
//! stays until the node has stopped it ([`ApiServer::finish_pod_deletion`]) unless the grace
//! period asked for is zero; an unbound Pod goes at once.

pub mod schema;
pub mod selector;
pub mod ssa;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use self::schema::CrdValidator;
use self::selector::Selector;

/// Changes kept for watches that resume from a resource version.
const HISTORY: usize = 10_000;
/// Time between bookmarks on a watch that asked for them.
const BOOKMARK_EVERY: Duration = Duration::from_millis(500);

/// A resource this server serves.
#[derive(Debug, Clone)]
struct Kind {
    plural: &'static str,
    kind: &'static str,
    api_version: &'static str,
    status_subresource: bool,
}

const KINDS: &[Kind] = &[
    Kind {
        plural: "pods",
        kind: "Pod",
        api_version: "v1",
        status_subresource: true,
    },
    Kind {
        plural: "configmaps",
        kind: "ConfigMap",
        api_version: "v1",
        status_subresource: false,
    },
    Kind {
        plural: "secrets",
        kind: "Secret",
        api_version: "v1",
        status_subresource: false,
    },
    Kind {
        plural: "persistentvolumeclaims",
        kind: "PersistentVolumeClaim",
        api_version: "v1",
        status_subresource: true,
    },
    Kind {
        plural: "events",
        kind: "Event",
        api_version: "events.k8s.io/v1",
        status_subresource: false,
    },
    Kind {
        plural: "codexruns",
        kind: "CodexRun",
        api_version: "codex-orchestrator.dev/v1alpha1",
        status_subresource: true,
    },
];

fn kind_of(group_version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| {
        k.plural == plural
            && (k.api_version == group_version || (plural == "events" && group_version == "v1"))
    })
}

/// A check a create or update must pass (the tests plug in Pod Security): `Err` is the
/// message of a `403 Forbidden`.
pub type Admission = Arc<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;

type Key = (String, String, String);

struct Stored {
    value: Value,
    owners: ssa::Owners,
}

#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    plural: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct LogBuf {
    text: String,
    closed: bool,
}

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<Key, Stored>,
    history: VecDeque<Change>,
    /// Watches from before this version get 410.
    compacted: u64,
    logs: HashMap<(String, String, String), LogBuf>,
    requests: Vec<String>,
}

/// The server. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ApiServer {
    state: Arc<Mutex<State>>,
    changes: broadcast::Sender<Change>,
    logs_changed: Arc<tokio::sync::watch::Sender<u64>>,
    /// Bumped by [`ApiServer::compact`]: open watches end.
    epoch: Arc<tokio::sync::watch::Sender<u64>>,
    crds: Arc<HashMap<String, CrdValidator>>,
    admission: Arc<HashMap<String, Vec<Admission>>>,
}

impl Default for ApiServer {
    fn default() -> Self {
        ApiServer::new()
    }
}

type RespBody = BoxBody<Bytes, Infallible>;

fn full(v: impl Into<Bytes>) -> RespBody {
    Full::new(v.into()).boxed()
}

fn respond(code: u16, v: &Value) -> Response<RespBody> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap_or_default()
}

/// A `Status` failure.
fn failure(code: u16, reason: &str, message: &str) -> Response<RespBody> {
    respond(code, &status_object(code, reason, message))
}

fn status_object(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

/// The time as the API server writes timestamps.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(uri: &http::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect()
}

fn random_suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| CHARS[usize::from(*b) % CHARS.len()] as char)
        .collect()
}

/// What a request addressed.
struct Target {
    kind: &'static Kind,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn route(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ((*v).to_owned(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        [plural] => (None, *plural, None, None),
        _ => return None,
    };
    Some(Target {
        kind: kind_of(&gv, plural)?,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        sub: sub.map(str::to_owned),
    })
}

/// Builds an [`ApiServer`] with its CRDs and admission checks.
#[derive(Default)]
pub struct Builder {
    crds: HashMap<String, CrdValidator>,
    admission: HashMap<String, Vec<Admission>>,
}

impl Builder {
    /// Validates objects of `plural` against `crd` (version `version`).
    pub fn crd(mut self, plural: &str, crd: &Value, version: &str) -> Self {
        let v = CrdValidator::from_crd(crd, version)
            .unwrap_or_else(|e| panic!("the CRD of {plural} is refused: {e}"));
        self.crds.insert(plural.to_owned(), v);
        self
    }

    /// Adds an admission check for objects of `plural`.
    pub fn admit(mut self, plural: &str, check: Admission) -> Self {
        self.admission
            .entry(plural.to_owned())
            .or_default()
            .push(check);
        self
    }

    pub fn build(self) -> ApiServer {
        ApiServer {
            state: Arc::default(),
            changes: broadcast::channel(4096).0,
            logs_changed: Arc::new(tokio::sync::watch::channel(0).0),
            epoch: Arc::new(tokio::sync::watch::channel(0).0),
            crds: Arc::new(self.crds),
            admission: Arc::new(self.admission),
        }
    }
}

impl ApiServer {
    /// A server with no CRD validation and no admission checks.
    pub fn new() -> ApiServer {
        Builder::default().build()
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A kube client of this server, with `namespace` as its default namespace.
    pub fn client(&self, namespace: &str) -> kube::Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.handle(req).await) }
        });
        kube::Client::new(svc, namespace)
    }

    /// Serves this server over HTTP/1.1 on a new unix socket at `path` (mode 0666, so that a
    /// container's relay of any uid can connect), until the returned task is aborted: how a
    /// controller or gateway in a container reaches it (crates/testkit/src/cluster.rs).
    pub fn serve_unix(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use std::os::unix::fs::PermissionsExt;
        let listener = tokio::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let me = self.clone();
        Ok(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let me = me.clone();
                            async move { Ok::<_, Infallible>(me.handle(req).await) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request so far as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// The stored object, if any.
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(plural.into(), namespace.into(), name.into()))
            .map(|s| s.value.clone())
    }

    /// Every stored object of `plural`, in key order.
    pub fn list(&self, plural: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((p, _, _), _)| p == plural)
            .map(|(_, s)| s.value.clone())
            .collect()
    }

    /// Forgets the change history up to and including the current version and ends every
    /// open watch (as a restarted API server whose storage was compacted): a watch resuming
    /// from any version seen so far gets `410 Expired`, and the client must list again.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.compacted = st.rv + 1;
        drop(st);
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Changes a stored object as another component would (a kubelet, the scheduler, a
    /// controller the test plays): one write like any other — a new resource version, a watch
    /// event — after the same schema and admission checks as a request. `Err` is the refusal's
    /// message; `Ok(false)` means there is no such object.
    pub fn edit(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<bool, String> {
        let key: Key = (plural.into(), namespace.into(), name.into());
        // One lock from the read to the write: no concurrent write is lost in between.
        let mut st = self.lock();
        let Some(mut v) = st.objects.get(&key).map(|s| s.value.clone()) else {
            return Ok(false);
        };
        let before = v.clone();
        change(&mut v);
        v["metadata"]["generation"] = json!(next_generation(&before, &v));
        if let Err(s) = self.admission_status(plural, &v) {
            return Err(s["message"].as_str().unwrap_or_default().to_owned());
        }
        self.store(&mut st, key, v, "MODIFIED");
        Ok(true)
    }

    /// Creates `v` in `namespace` as a POST of it would (the same checks; its apiVersion
    /// and kind choose the resource): the stored object, or the refusal's message.
    pub fn insert(&self, namespace: &str, v: Value) -> Result<Value, String> {
        let kind = KINDS
            .iter()
            .find(|k| v["apiVersion"] == k.api_version && v["kind"] == k.kind)
            .ok_or_else(|| format!("no resource for {}/{}", v["apiVersion"], v["kind"]))?;
        let t = Target {
            kind,
            namespace: Some(namespace.to_owned()),
            name: None,
            sub: None,
        };
        self.create_value(&t, v)
            .map_err(|s| s["message"].as_str().unwrap_or_default().to_owned())
    }

    /// Deletes an object as another component would (finalizers and garbage collection as for
    /// a request; a Pod goes at once, as with a zero grace period).
    pub fn delete_object(&self, plural: &str, namespace: &str, name: &str) -> bool {
        let mut st = self.lock();
        let key: Key = (plural.into(), namespace.into(), name.into());
        self.delete_key(&mut st, &key).is_some()
    }

    /// Sets a Pod's status (as a kubelet does), a write like any other.
    pub fn set_pod_status(&self, namespace: &str, name: &str, status: Value) -> bool {
        self.edit("pods", namespace, name, |v| v["status"] = status)
            .unwrap_or_else(|e| panic!("the Pod's status is refused: {e}"))
    }

    /// Binds a Pod to a node (`spec.nodeName`), as the scheduler does: from then on its deletion
    /// is graceful (the Pod stays, marked, until the node finishes it).
    pub fn bind_pod(&self, namespace: &str, name: &str, node: &str) -> bool {
        self.edit("pods", namespace, name, |v| {
            v["spec"]["nodeName"] = json!(node)
        })
        .unwrap_or_else(|e| panic!("the binding is refused: {e}"))
    }

    /// The node's last word on a Pod being deleted: its containers have stopped, the Pod goes.
    pub fn finish_pod_deletion(&self, namespace: &str, name: &str) {
        let mut st = self.lock();
        let key: Key = ("pods".into(), namespace.into(), name.into());
        let marked = st
            .objects
            .get(&key)
            .is_some_and(|s| !s.value["metadata"]["deletionTimestamp"].is_null());
        if marked {
            self.remove(&mut st, &key);
        }
    }

    /// Appends to a container's log.
    pub fn append_log(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        self.lock()
            .logs
            .entry((namespace.into(), pod.into(), container.into()))
            .or_default()
            .text
            .push_str(text);
        self.logs_changed.send_modify(|n| *n += 1);
    }

    /// A container's log as written so far (also after its Pod is gone).
    pub fn log_text(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        self.lock()
            .logs
            .get(&(namespace.into(), pod.into(), container.into()))
            .map(|l| l.text.clone())
    }

    /// Ends a container's log (its container has exited): followers see the end.
    pub fn close_log(&self, namespace: &str, pod: &str, container: &str) {
        self.lock()
            .logs
            .entry((namespace.into(), pod.into(), container.into()))
            .or_default()
            .closed = true;
        self.logs_changed.send_modify(|n| *n += 1);
    }

    /// Stores `v` under `key` with a new resource version and records the change.
    fn store(&self, st: &mut State, key: Key, mut v: Value, change: &'static str) -> Value {
        st.rv += 1;
        let rv = st.rv;
        v["metadata"]["resourceVersion"] = json!(rv.to_string());
        let owners = st
            .objects
            .remove(&key)
            .map(|s| s.owners)
            .unwrap_or_default();
        st.objects.insert(
            key.clone(),
            Stored {
                value: v.clone(),
                owners,
            },
        );
        self.record(st, &key, change, v.clone());
        v
    }

    fn record(&self, st: &mut State, key: &Key, kind: &'static str, object: Value) {
        let c = Change {
            rv: st.rv,
            plural: key.0.clone(),
            namespace: key.1.clone(),
            kind,
            object,
        };
        st.history.push_back(c.clone());
        while st.history.len() > HISTORY {
            if let Some(old) = st.history.pop_front() {
                st.compacted = old.rv;
            }
        }
        let _ = self.changes.send(c);
    }

    /// Removes `key` (no finalizers left), then collects its dependents.
    fn remove(&self, st: &mut State, key: &Key) -> Option<Value> {
        let gone = st.objects.remove(key)?;
        st.rv += 1;
        let mut v = gone.value;
        v["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        self.record(st, key, "DELETED", v.clone());
        // Garbage collection: dependents whose owners are all gone.
        loop {
            let uids: std::collections::HashSet<String> = st
                .objects
                .values()
                .filter_map(|s| s.value["metadata"]["uid"].as_str().map(str::to_owned))
                .collect();
            let orphans: Vec<Key> = st
                .objects
                .iter()
                .filter(|(_, s)| {
                    let refs = s.value["metadata"]["ownerReferences"].as_array();
                    refs.is_some_and(|r| {
                        !r.is_empty()
                            && r.iter()
                                .all(|o| !o["uid"].as_str().is_some_and(|u| uids.contains(u)))
                    }) && s.value["metadata"]["deletionTimestamp"].is_null()
                })
                .map(|(k, _)| k.clone())
                .collect();
            if orphans.is_empty() {
                break;
            }
            for k in orphans {
                self.delete_key(st, &k);
            }
        }
        Some(v)
    }

    /// Deletes `key`: marks it when it has finalizers, removes it otherwise.
    fn delete_key(&self, st: &mut State, key: &Key) -> Option<Value> {
        let v = st.objects.get(key)?.value.clone();
        let has_finalizers = v["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if v["metadata"]["deletionTimestamp"].is_null() {
                let mut v = v;
                v["metadata"]["deletionTimestamp"] = json!(now());
                return Some(self.store(st, key.clone(), v, "MODIFIED"));
            }
            return Some(v);
        }
        self.remove(st, key)
    }

    fn admit(&self, plural: &str, v: &Value) -> Result<(), Box<Response<RespBody>>> {
        self.admission_status(plural, v)
            .map_err(|s| Box::new(respond(s["code"].as_u64().map_or(500, |c| c as u16), &s)))
    }

    /// The `Status` refusing `v`, if the schema or an admission check refuses it.
    fn admission_status(&self, plural: &str, v: &Value) -> Result<(), Value> {
        let name = v["metadata"]["name"].as_str().unwrap_or("");
        if let Some(crd) = self.crds.get(plural) {
            let errs = crd.violations(v);
            if !errs.is_empty() {
                let kind = kind_of_plural(plural);
                let causes: Vec<Value> = errs.iter().map(|m| json!({"message": m})).collect();
                let mut s = status_object(
                    422,
                    "Invalid",
                    &format!(
                        "{kind}.{} \"{name}\" is invalid: {}",
                        group_of(plural),
                        errs.join(", ")
                    ),
                );
                s["details"] = json!({"name": name, "kind": plural, "causes": causes});
                return Err(s);
            }
        }
        for check in self.admission.get(plural).into_iter().flatten() {
            if let Err(m) = check(v) {
                return Err(status_object(
                    403,
                    "Forbidden",
                    &format!("{plural} \"{name}\" is forbidden: {m}"),
                ));
            }
        }
        Ok(())
    }

    async fn handle<B: http_body::Body>(&self, req: Request<B>) -> Response<RespBody> {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let q = query(&parts.uri);
        self.lock().requests.push(format!(
            "{} {}",
            parts.method,
            parts.uri.path_and_query().map_or("", |p| p.as_str())
        ));
        let Some(t) = route(parts.uri.path()) else {
            return failure(
                404,
                "NotFound",
                &format!(
                    "the server could not find the requested resource ({})",
                    parts.uri.path()
                ),
            );
        };
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => return failure(400, "BadRequest", &format!("the body is not JSON: {e}")),
            }
        };
        let content_type = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        match (&parts.method, &t.name, t.sub.as_deref()) {
            (&Method::GET, None, None)
                if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) =>
            {
                self.watch(&t, &q)
            }
            (&Method::GET, None, None) => self.list_resp(&t, &q),
            (&Method::POST, None, None) => self.create(&t, body),
            (&Method::GET, Some(name), None | Some("status")) => {
                match self.get(t.kind.plural, t.namespace.as_deref().unwrap_or(""), name) {
                    Some(v) => respond(200, &v),
                    None => not_found(&t, name),
                }
            }
            (&Method::GET, Some(name), Some("log")) if t.kind.plural == "pods" => {
                self.log(&t, name, &q).await
            }
            (&Method::PUT, Some(name), sub @ (None | Some("status"))) => {
                self.replace(&t, name, body, sub == Some("status"))
            }
            (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
                self.patch(&t, name, body, &content_type, &q, sub == Some("status"))
            }
            (&Method::DELETE, Some(name), None) => self.delete(&t, name, &body),
            _ => failure(
                405,
                "MethodNotAllowed",
                &format!("{} is not supported here", parts.method),
            ),
        }
    }

    fn list_resp(&self, t: &Target, q: &HashMap<String, String>) -> Response<RespBody> {
        let (items, rv) = match self.select(t, q) {
            Ok(x) => x,
            Err(r) => return *r,
        };
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let start = q
            .get("continue")
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0);
        let end = limit.map_or(items.len(), |l| (start + l).min(items.len()));
        let page: Vec<Value> = items
            .get(start..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if end < items.len() {
            meta["continue"] = json!(end.to_string());
            meta["remainingItemCount"] = json!(items.len() - end);
        }
        respond(
            200,
            &json!({"kind": format!("{}List", t.kind.kind), "apiVersion": t.kind.api_version,
                "metadata": meta, "items": page}),
        )
    }

    /// The objects a list or watch selects, and the current version.
    fn select(
        &self,
        t: &Target,
        q: &HashMap<String, String>,
    ) -> Result<(Vec<Value>, u64), Box<Response<RespBody>>> {
        let filter = Filter::from_query(t, q)?;
        let st = self.lock();
        let items = st
            .objects
            .iter()
            .filter(|((p, ns, _), s)| p == t.kind.plural && filter.matches(ns, &s.value))
            .map(|(_, s)| s.value.clone())
            .collect();
        Ok((items, st.rv))
    }

    fn create(&self, t: &Target, v: Value) -> Response<RespBody> {
        match self.create_value(t, v) {
            Ok(v) => respond(201, &v),
            Err(s) => respond(s["code"].as_u64().map_or(500, |c| c as u16), &s),
        }
    }

    /// Creates `v` as a POST of it would; `Err` is the refusing `Status`.
    fn create_value(&self, t: &Target, mut v: Value) -> Result<Value, Value> {
        let Some(ns) = t.namespace.clone() else {
            return Err(status_object(
                405,
                "MethodNotAllowed",
                "create needs a namespace",
            ));
        };
        if v["apiVersion"] != t.kind.api_version || v["kind"] != t.kind.kind {
            return Err(status_object(
                400,
                "BadRequest",
                &format!(
                    "the API version/kind in the data ({}/{}) does not match the expected {}/{}",
                    v["apiVersion"], v["kind"], t.kind.api_version, t.kind.kind
                ),
            ));
        }
        if let Some(n) = v["metadata"]["namespace"].as_str()
            && n != ns
        {
            return Err(status_object(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let name = match (
            v["metadata"]["name"].as_str(),
            v["metadata"]["generateName"].as_str(),
        ) {
            (Some(n), _) if !n.is_empty() => n.to_owned(),
            (_, Some(g)) if !g.is_empty() => format!("{g}{}", random_suffix()),
            _ => {
                return Err(status_object(
                    422,
                    "Invalid",
                    &format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        t.kind.kind
                    ),
                ));
            }
        };
        v["metadata"]["name"] = json!(name);
        v["metadata"]["namespace"] = json!(ns);
        if t.kind.status_subresource
            && let Some(o) = v.as_object_mut()
        {
            o.remove("status");
        }
        self.admission_status(t.kind.plural, &v)?;
        let mut st = self.lock();
        let key: Key = (t.kind.plural.into(), ns, name.clone());
        if st.objects.contains_key(&key) {
            return Err(status_object(
                409,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", t.kind.plural),
            ));
        }
        v["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        v["metadata"]["creationTimestamp"] = json!(now());
        v["metadata"]["generation"] = json!(1);
        Ok(self.store(&mut st, key, v, "ADDED"))
    }

    /// Writes `new` over the current object (already admitted), checking the version the
    /// writer read and the status rule; removes an object whose deletion waited for
    /// finalizers that are now gone.
    fn write(
        &self,
        st: &mut State,
        t: &Target,
        key: Key,
        mut new: Value,
        status_only: bool,
    ) -> Response<RespBody> {
        let Some(cur) = st.objects.get(&key).map(|s| s.value.clone()) else {
            return not_found(t, &key.2);
        };
        if let Some(rv) = new["metadata"]["resourceVersion"].as_str()
            && Some(rv) != cur["metadata"]["resourceVersion"].as_str()
        {
            return failure(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                    t.kind.plural, key.2
                ),
            );
        }
        if new["metadata"]["name"] != cur["metadata"]["name"] {
            return failure(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            );
        }
        // What the writer may not change.
        for k in ["uid", "creationTimestamp", "namespace", "deletionTimestamp"] {
            new["metadata"][k] = cur["metadata"][k].clone();
            if new["metadata"][k].is_null()
                && let Some(m) = new["metadata"].as_object_mut()
            {
                m.remove(k);
            }
        }
        if status_only {
            let status = new["status"].clone();
            new = cur.clone();
            new["status"] = status;
        } else if t.kind.status_subresource {
            new["status"] = cur["status"].clone();
            if new["status"].is_null()
                && let Some(o) = new.as_object_mut()
            {
                o.remove("status");
            }
        }
        new["metadata"]["generation"] = json!(next_generation(&cur, &new));
        new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
        if new == cur {
            return respond(200, &cur);
        }
        if let Err(r) = self.admit(t.kind.plural, &new) {
            return *r;
        }
        let deleting = !new["metadata"]["deletionTimestamp"].is_null();
        let no_finalizers = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        let v = self.store(st, key.clone(), new, "MODIFIED");
        if deleting && no_finalizers {
            self.remove(st, &key);
        }
        respond(200, &v)
    }

    fn replace(
        &self,
        t: &Target,
        name: &str,
        body: Value,
        status_only: bool,
    ) -> Response<RespBody> {
        let key: Key = (
            t.kind.plural.into(),
            t.namespace.clone().unwrap_or_default(),
            name.into(),
        );
        let mut st = self.lock();
        self.write(&mut st, t, key, body, status_only)
    }

    fn patch(
        &self,
        t: &Target,
        name: &str,
        body: Value,
        content_type: &str,
        q: &HashMap<String, String>,
        status_only: bool,
    ) -> Response<RespBody> {
        let ns = t.namespace.clone().unwrap_or_default();
        let key: Key = (t.kind.plural.into(), ns.clone(), name.into());
        let mut st = self.lock();
        let current = st.objects.get(&key).map(|s| s.value.clone());
        let ct = content_type.split(';').next().unwrap_or("").trim();
        match ct {
            "application/apply-patch+yaml" => {
                let Some(manager) = q.get("fieldManager").filter(|m| !m.is_empty()) else {
                    return failure(
                        422,
                        "Invalid",
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    );
                };
                if body["apiVersion"] != t.kind.api_version || body["kind"] != t.kind.kind {
                    return failure(
                        400,
                        "BadRequest",
                        "apply patches must name apiVersion and kind",
                    );
                }
                let force = q.get("force").is_some_and(|f| f == "true");
                let scope = |v: &Value| -> Value {
                    if status_only {
                        json!({"status": v["status"].clone()})
                    } else {
                        let mut v = v.clone();
                        if let Some(o) = v.as_object_mut() {
                            if t.kind.status_subresource {
                                o.remove("status");
                            }
                            o.remove("apiVersion");
                            o.remove("kind");
                        }
                        if let Some(m) = v["metadata"].as_object_mut() {
                            for k in [
                                "resourceVersion",
                                "uid",
                                "creationTimestamp",
                                "generation",
                                "managedFields",
                            ] {
                                m.remove(k);
                            }
                        }
                        v
                    }
                };
                let applied = scope(&body);
                let Some(cur) = current else {
                    if status_only {
                        return not_found(t, name);
                    }
                    drop(st);
                    let mut v = applied;
                    v["apiVersion"] = json!(t.kind.api_version);
                    v["kind"] = json!(t.kind.kind);
                    v["metadata"]["name"] = json!(name);
                    let created = self.create(t, v);
                    if created.status() == StatusCode::CREATED {
                        let mut st = self.lock();
                        if let Some(s) = st.objects.get_mut(&key) {
                            let mut fields = std::collections::BTreeSet::new();
                            ssa::leaves(&scope(&s.value), "", &mut fields);
                            s.owners.insert(manager.clone(), fields);
                        }
                    }
                    return created;
                };
                let mut owners = st
                    .objects
                    .get(&key)
                    .map(|s| s.owners.clone())
                    .unwrap_or_default();
                let mut base = scope(&cur);
                if status_only {
                    base = json!({"status": cur["status"].clone()});
                }
                let merged = match ssa::apply(&base, &applied, manager, force, &mut owners) {
                    Ok(m) => m,
                    Err(conflicts) => {
                        let list: Vec<String> = conflicts
                            .iter()
                            .map(|c| format!("conflict with \"{}\": {}", c.owner, c.path))
                            .collect();
                        return failure(
                            409,
                            "Conflict",
                            &format!(
                                "Apply failed with {} conflict(s): {}",
                                list.len(),
                                list.join("; ")
                            ),
                        );
                    }
                };
                let mut new = cur.clone();
                if status_only {
                    new["status"] = merged["status"].clone();
                } else {
                    let status = cur["status"].clone();
                    new = merged;
                    new["apiVersion"] = cur["apiVersion"].clone();
                    new["kind"] = cur["kind"].clone();
                    for k in [
                        "resourceVersion",
                        "uid",
                        "creationTimestamp",
                        "generation",
                        "name",
                        "namespace",
                    ] {
                        new["metadata"][k] = cur["metadata"][k].clone();
                    }
                    if t.kind.status_subresource && !status.is_null() {
                        new["status"] = status;
                    }
                }
                let resp = self.write(&mut st, t, key.clone(), new, status_only);
                if resp.status() == StatusCode::OK
                    && let Some(s) = st.objects.get_mut(&key)
                {
                    s.owners = owners;
                }
                resp
            }
            "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
            | "application/json-patch+json" => {
                let Some(cur) = current else {
                    return not_found(t, name);
                };
                let mut new = cur.clone();
                let names_version = !body["metadata"]["resourceVersion"].is_null();
                if ct == "application/json-patch+json" {
                    let p: json_patch::Patch = match serde_json::from_value(body) {
                        Ok(p) => p,
                        Err(e) => {
                            return failure(400, "BadRequest", &format!("invalid JSON patch: {e}"));
                        }
                    };
                    if let Err(e) = json_patch::patch(&mut new, &p) {
                        return failure(
                            422,
                            "Invalid",
                            &format!("the JSON patch does not apply: {e}"),
                        );
                    }
                } else {
                    merge_patch(&mut new, &body);
                }
                if !names_version {
                    new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
                }
                self.write(&mut st, t, key, new, status_only)
            }
            other => failure(
                415,
                "UnsupportedMediaType",
                &format!("the body of the request was in an unknown format: {other}"),
            ),
        }
    }

    fn delete(&self, t: &Target, name: &str, opts: &Value) -> Response<RespBody> {
        let key: Key = (
            t.kind.plural.into(),
            t.namespace.clone().unwrap_or_default(),
            name.into(),
        );
        let mut st = self.lock();
        let Some(cur) = st.objects.get(&key).map(|s| s.value.clone()) else {
            return not_found(t, name);
        };
        let pre = &opts["preconditions"];
        for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(want) = pre[field].as_str()
                && cur["metadata"][field].as_str() != Some(want)
            {
                return failure(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {what} in precondition: {want}, {what} in object meta: {}",
                        t.kind.plural,
                        cur["metadata"][field].as_str().unwrap_or("")
                    ),
                );
            }
        }
        // A Pod bound to a node ends gracefully: marked now, gone when the node has stopped
        // it (unless the grace period asked for is zero).
        let bound = t.kind.plural == "pods"
            && cur["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
        let grace = opts["gracePeriodSeconds"]
            .as_i64()
            .or(cur["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        if bound && grace > 0 {
            if cur["metadata"]["deletionTimestamp"].is_null() {
                let mut v = cur;
                v["metadata"]["deletionTimestamp"] = json!(now());
                v["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                let v = self.store(&mut st, key, v, "MODIFIED");
                return respond(200, &v);
            }
            return respond(200, &cur);
        }
        match self.delete_key(&mut st, &key) {
            Some(v) => respond(200, &v),
            None => not_found(t, name),
        }
    }

    fn watch(&self, t: &Target, q: &HashMap<String, String>) -> Response<RespBody> {
        let filter = match Filter::from_query(t, q) {
            Ok(f) => f,
            Err(r) => return *r,
        };
        let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(Duration::from_secs(300), Duration::from_secs);
        let from = q
            .get("resourceVersion")
            .filter(|s| !s.is_empty() && *s != "0");
        let rx = self.changes.subscribe();
        let (initial, last_rv) = {
            let st = self.lock();
            match from {
                Some(rv) => {
                    let Ok(rv) = rv.parse::<u64>() else {
                        return failure(
                            400,
                            "BadRequest",
                            &format!("invalid resourceVersion {rv}"),
                        );
                    };
                    if rv < st.compacted {
                        let e = json!({"type": "ERROR", "object": status_object(410, "Expired", &format!("too old resource version: {rv} ({})", st.compacted))});
                        return stream_lines(vec![e], None);
                    }
                    let evs: Vec<Value> = st
                        .history
                        .iter()
                        .filter(|c| {
                            c.rv > rv
                                && c.plural == t.kind.plural
                                && filter.matches(&c.namespace, &c.object)
                        })
                        .map(|c| json!({"type": c.kind, "object": c.object}))
                        .collect();
                    (evs, st.rv)
                }
                None => {
                    let evs: Vec<Value> = st
                        .objects
                        .iter()
                        .filter(|((p, ns, _), s)| {
                            p == t.kind.plural && filter.matches(ns, &s.value)
                        })
                        .map(|(_, s)| json!({"type": "ADDED", "object": s.value}))
                        .collect();
                    (evs, st.rv)
                }
            }
        };
        let kind = t.kind;
        let live = Live {
            rx,
            filter,
            plural: kind.plural,
            seen: last_rv,
            bookmarks,
            deadline: tokio::time::Instant::now() + timeout,
            state: self.state.clone(),
            kind,
            epoch: self.epoch.subscribe(),
        };
        stream_lines(initial, Some(live))
    }

    async fn log(&self, t: &Target, name: &str, q: &HashMap<String, String>) -> Response<RespBody> {
        let ns = t.namespace.clone().unwrap_or_default();
        let Some(pod) = self.get("pods", &ns, name) else {
            return not_found(t, name);
        };
        let containers: Vec<String> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(
                pod["spec"]["initContainers"]
                    .as_array()
                    .into_iter()
                    .flatten(),
            )
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
        let container = match q.get("container") {
            Some(c) if containers.contains(c) => c.clone(),
            Some(c) => {
                return failure(
                    400,
                    "BadRequest",
                    &format!("container {c} is not valid for pod {name}"),
                );
            }
            None if pod["spec"]["containers"]
                .as_array()
                .is_some_and(|c| c.len() == 1) =>
            {
                pod["spec"]["containers"][0]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            }
            None => {
                return failure(
                    400,
                    "BadRequest",
                    &format!(
                        "a container name must be specified for pod {name}, choose one of: {containers:?}"
                    ),
                );
            }
        };
        let key = (ns, name.to_owned(), container.clone());
        if !self.lock().logs.contains_key(&key) {
            return failure(
                400,
                "BadRequest",
                &format!(
                    "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
                ),
            );
        }
        let follow = q.get("follow").is_some_and(|f| f == "true");
        if !follow {
            let text = self
                .lock()
                .logs
                .get(&key)
                .map(|l| l.text.clone())
                .unwrap_or_default();
            return Response::new(full(text));
        }
        let state = self.state.clone();
        let changed = self.logs_changed.subscribe();
        let stream = futures::stream::unfold((0usize, changed), move |(offset, mut changed)| {
            let state = state.clone();
            let key = key.clone();
            async move {
                loop {
                    changed.borrow_and_update();
                    let (chunk, closed) = {
                        let st = state.lock().unwrap_or_else(|e| e.into_inner());
                        let l = st.logs.get(&key)?;
                        (l.text.get(offset..).unwrap_or("").to_owned(), l.closed)
                    };
                    if !chunk.is_empty() {
                        let n = chunk.len();
                        let frame = Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(chunk)));
                        return Some((frame, (offset + n, changed)));
                    }
                    if closed {
                        return None;
                    }
                    if changed.changed().await.is_err() {
                        return None;
                    }
                }
            }
        });
        Response::new(BodyExt::boxed(StreamBody::new(stream)))
    }
}

/// The generation after `cur` becomes `new`: one more when anything but metadata and status
/// changed.
fn next_generation(cur: &Value, new: &Value) -> i64 {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
            o.remove("metadata");
        }
        v
    };
    let generation = cur["metadata"]["generation"].as_i64().unwrap_or(1);
    if strip(new) != strip(cur) {
        generation + 1
    } else {
        generation
    }
}

/// JSON merge patch (RFC 7386): objects merge recursively, `null` removes, anything else
/// replaces.
pub fn merge_patch(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge_patch(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

fn kind_of_plural(plural: &str) -> &'static str {
    KINDS
        .iter()
        .find(|k| k.plural == plural)
        .map_or("Object", |k| k.kind)
}

fn group_of(plural: &str) -> &'static str {
    KINDS
        .iter()
        .find(|k| k.plural == plural)
        .and_then(|k| k.api_version.split_once('/'))
        .map_or("", |(g, _)| g)
}

fn not_found(t: &Target, name: &str) -> Response<RespBody> {
    failure(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", t.kind.plural),
    )
}

/// The selection of a list or watch.
struct Filter {
    namespace: Option<String>,
    labels: Selector,
    name: Option<String>,
}

impl Filter {
    fn from_query(
        t: &Target,
        q: &HashMap<String, String>,
    ) -> Result<Filter, Box<Response<RespBody>>> {
        let labels =
            Selector::parse(q.get("labelSelector").map_or("", String::as_str)).map_err(|e| {
                Box::new(failure(
                    400,
                    "BadRequest",
                    &format!("unable to parse labelSelector: {e}"),
                ))
            })?;
        let mut namespace = t.namespace.clone();
        let mut name = None;
        for part in q
            .get("fieldSelector")
            .map_or("", String::as_str)
            .split(',')
            .filter(|s| !s.is_empty())
        {
            match part
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim_start_matches('=').trim()))
            {
                Some(("metadata.name", v)) => name = Some(v.to_owned()),
                Some(("metadata.namespace", v)) => namespace = Some(v.to_owned()),
                _ => {
                    return Err(Box::new(failure(
                        400,
                        "BadRequest",
                        &format!("field label not supported: {part}"),
                    )));
                }
            }
        }
        Ok(Filter {
            namespace,
            labels,
            name,
        })
    }

    fn matches(&self, ns: &str, v: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == ns)
            && self
                .name
                .as_deref()
                .is_none_or(|n| v["metadata"]["name"] == n)
            && self.labels.matches(&labels_of(v))
    }
}

/// The live part of a watch.
struct Live {
    rx: broadcast::Receiver<Change>,
    filter: Filter,
    plural: &'static str,
    seen: u64,
    bookmarks: bool,
    deadline: tokio::time::Instant,
    state: Arc<Mutex<State>>,
    kind: &'static Kind,
    epoch: tokio::sync::watch::Receiver<u64>,
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// A watch response: `initial` events, then (with `live`) changes as they happen.
fn stream_lines(initial: Vec<Value>, live: Option<Live>) -> Response<RespBody> {
    let first = futures::stream::iter(
        initial
            .into_iter()
            .map(|e| Ok::<_, Infallible>(http_body::Frame::data(line(&e))))
            .collect::<Vec<_>>(),
    );
    let rest = futures::stream::unfold(live, |live| async move {
        let mut live = live?;
        loop {
            let bookmark = tokio::time::sleep(BOOKMARK_EVERY);
            tokio::select! {
                _ = tokio::time::sleep_until(live.deadline) => return None,
                _ = live.epoch.changed() => return None,
                c = live.rx.recv() => match c {
                    Ok(c) if c.rv > live.seen => {
                        live.seen = c.rv;
                        if c.plural == live.plural && live.filter.matches(&c.namespace, &c.object) {
                            let e = json!({"type": c.kind, "object": c.object});
                            return Some((Ok(http_body::Frame::data(line(&e))), Some(live)));
                        }
                    }
                    Ok(_) => {}
                    // Fell behind: end the watch (the client resumes from what it saw).
                    Err(_) => return None,
                },
                _ = bookmark, if live.bookmarks => {
                    let rv = live.state.lock().unwrap_or_else(|e| e.into_inner()).rv.max(live.seen);
                    let e = json!({"type": "BOOKMARK", "object": {"kind": live.kind.kind, "apiVersion": live.kind.api_version,
                        "metadata": {"resourceVersion": rv.to_string()}}});
                    return Some((Ok(http_body::Frame::data(line(&e))), Some(live)));
                }
            }
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(futures::StreamExt::chain(
            first, rest,
        ))))
        .unwrap_or_default()
}
