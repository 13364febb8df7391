//! A node agent for the tests (a kubelet stand-in): it runs the Pods of an [`ApiServer`] on the
//! real Docker engine and reports them back as a kubelet does.
//!
//! For each Pod it sees: the volumes are made (`emptyDir` as a host directory owned by the
//! Pod's `fsGroup` with the setgid bit, as the kubelet prepares it; `emptyDir` with
//! `medium: Memory` as a tmpfs Docker volume shared by the Pod's containers, sized to its
//! `sizeLimit` (writes past it fail with ENOSPC, as on a node); a PersistentVolumeClaim as
//! the host directory the test maps the claim to; `secret`, `configMap` and `projected` volumes
//! as read-only files), the init containers run one after another, then the main container,
//! each with the Pod's image, command, args, env (`value`, `secretKeyRef`, `configMapKeyRef`),
//! working directory, volume mounts (`readOnly` honoured) and security context (`runAsUser`,
//! `runAsGroup`, `fsGroup` and supplemental groups, `readOnlyRootFilesystem`, capabilities,
//! `allowPrivilegeEscalation: false` as no-new-privileges) and limits (memory, CPU), on the
//! test's Docker network with the Pod's name as its host name. Each container's output becomes
//! the Pod's log for that container (what `pods/<name>/log` serves).
//!
//! Status as a kubelet reports it: `Pending` while init containers run (their states), then
//! `Running` with the main container's `startedAt`, then `Succeeded`/`Failed` with exit code
//! and reason (`Completed`, `Error`, `OOMKilled`); an image that does not exist leaves the
//! container waiting with `ErrImagePull`; a missing Secret or key leaves it waiting with
//! `CreateContainerConfigError`; a missing claim mapping with `ContainerCreating` and a
//! `FailedMount` message. A Pod deleted from the API server has its container stopped (with
//! its grace period) and removed.
//!
//! Scheduling is one check: a Pod requesting more memory than the node's allocatable
//! ([`NodeOptions::allocatable_memory`]) stays `Unschedulable`.
//!
//! Not modelled: the `sizeLimit` of a disk-backed `emptyDir` (a kubelet evicts a Pod that
//! exceeds it; here the directory just grows), `subPath` into a Memory `emptyDir`, restarts (`restartPolicy` is taken as `Never`), probes, sidecars, more than one main
//! container, `activeDeadlineSeconds`, host ports, DNS of Services (the test gives containers
//! network aliases instead), NetworkPolicy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::apiserver::ApiServer;
use crate::docker::TEST_LABEL;

/// How often the agent looks for new Pods.
const POLL: Duration = Duration::from_millis(100);

/// The node agent. [`NodeAgent::stop`] removes every container and directory it made.
pub struct NodeAgent {
    docker: Docker,
    label: String,
    root: tempfile::TempDir,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What the agent needs besides the API server.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// The Docker network Pods join.
    pub network: String,
    /// PersistentVolumeClaim name → the host directory that is its volume.
    pub claims: HashMap<String, PathBuf>,
    /// The node's allocatable memory (bytes; `None`: unlimited). A Pod requesting more is
    /// not scheduled: `PodScheduled` false, reason `Unschedulable`, as the scheduler reports.
    pub allocatable_memory: Option<i64>,
}

/// Where a Pod's volume is.
enum Vol {
    /// A host directory, bind-mounted.
    Dir(PathBuf),
    /// A tmpfs Docker volume (an `emptyDir` with `medium: Memory`).
    Memory(String),
}

struct Ctx {
    /// Pods (uid) whose containers this agent is running.
    active: Mutex<HashSet<String>>,
    api: ApiServer,
    docker: Docker,
    label: String,
    root: PathBuf,
    opts: NodeOptions,
    stop: CancellationToken,
}

impl NodeAgent {
    /// Starts the agent for the Pods of `api`.
    pub async fn start(api: ApiServer, docker: Docker, opts: NodeOptions) -> NodeAgent {
        let label = crate::docker::unique("node");
        let root = tempfile::Builder::new()
            .prefix("nodeagent-")
            .tempdir()
            .expect("node agent directory");
        let stop = CancellationToken::new();
        let ctx = Arc::new(Ctx {
            active: Mutex::default(),
            api,
            docker: docker.clone(),
            label: label.clone(),
            root: root.path().to_path_buf(),
            opts,
            stop: stop.clone(),
        });
        let task = tokio::spawn(async move {
            let started: Arc<Mutex<HashSet<String>>> = Arc::default();
            while !ctx.stop.is_cancelled() {
                for pod in ctx.api.list("pods") {
                    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_owned();
                    if started
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(uid)
                    {
                        let ctx = ctx.clone();
                        tokio::spawn(async move { run_pod(ctx, pod).await });
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = ctx.stop.cancelled() => {}
                }
            }
        });
        NodeAgent {
            docker,
            label,
            root,
            stop,
            task: Some(task),
        }
    }

    /// Stops the agent: every container it made is removed.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let filters: HashMap<String, Vec<String>> = [(
            "label".to_string(),
            vec![format!("{TEST_LABEL}={}", self.label)],
        )]
        .into();
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap_or_default();
        for c in list {
            if let Some(id) = c.id {
                let _ = self
                    .docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                    )
                    .await;
            }
        }
        let volumes = self
            .docker
            .list_volumes(Some(
                bollard::query_parameters::ListVolumesOptionsBuilder::new()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .ok()
            .and_then(|l| l.volumes)
            .unwrap_or_default();
        for v in volumes {
            let _ = self
                .docker
                .remove_volume(
                    &v.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await;
        }
        let _ = std::process::Command::new("rm")
            .arg("-rf")
            .arg(self.root.path())
            .status();
    }
}

/// A Kubernetes quantity in bytes (memory) or nano-CPUs (`cpu`).
fn bytes_of(q: &str) -> Option<i64> {
    let units = [
        ("Ki", 1i64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (u, m) in units {
        if let Some(n) = q.strip_suffix(u) {
            return n.parse::<i64>().ok().map(|n| n * m);
        }
    }
    q.parse().ok()
}

fn nano_cpus(q: &str) -> Option<i64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse::<i64>().ok().map(|m| m * 1_000_000),
        None => q.parse::<f64>().ok().map(|c| (c * 1e9) as i64),
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Why a container cannot be made yet (a kubelet's waiting reason and message).
struct Waiting(&'static str, String);

impl Ctx {
    fn set_status(&self, pod: &Value, status: Value) -> bool {
        let (ns, name) = (
            pod["metadata"]["namespace"].as_str().unwrap_or(""),
            pod["metadata"]["name"].as_str().unwrap_or(""),
        );
        // The same Pod (uid), not a new one of the same name.
        match self.api.get("pods", ns, name) {
            Some(p) if p["metadata"]["uid"] == pod["metadata"]["uid"] => {
                self.api.set_pod_status(ns, name, status)
            }
            _ => false,
        }
    }

    fn gone(&self, pod: &Value) -> bool {
        let (ns, name) = (
            pod["metadata"]["namespace"].as_str().unwrap_or(""),
            pod["metadata"]["name"].as_str().unwrap_or(""),
        );
        self.api.get("pods", ns, name).is_none_or(|p| {
            p["metadata"]["uid"] != pod["metadata"]["uid"]
                || !p["metadata"]["deletionTimestamp"].is_null()
        })
    }

    /// The value of `key` in Secret or ConfigMap `name`.
    fn key_of(&self, ns: &str, plural: &str, name: &str, key: &str) -> Option<String> {
        let obj = self.api.get(plural, ns, name)?;
        if plural == "secrets" {
            obj["data"][key]
                .as_str()
                .and_then(b64)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .or_else(|| obj["stringData"][key].as_str().map(str::to_owned))
        } else {
            obj["data"][key].as_str().map(str::to_owned)
        }
    }

    fn env(&self, ns: &str, c: &Value) -> Result<Vec<String>, Waiting> {
        let mut out = Vec::new();
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or("");
            if let Some(v) = e["value"].as_str() {
                out.push(format!("{name}={v}"));
                continue;
            }
            let from = &e["valueFrom"];
            let (plural, r) = if from["secretKeyRef"].is_object() {
                ("secrets", &from["secretKeyRef"])
            } else if from["configMapKeyRef"].is_object() {
                ("configmaps", &from["configMapKeyRef"])
            } else {
                return Err(Waiting(
                    "CreateContainerConfigError",
                    format!("env {name}: unsupported valueFrom"),
                ));
            };
            let (obj, key) = (
                r["name"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
            );
            match self.key_of(ns, plural, obj, key) {
                Some(v) => out.push(format!("{name}={v}")),
                None if r["optional"] == true => {}
                None => {
                    let what = if plural == "secrets" {
                        "secret"
                    } else {
                        "configmap"
                    };
                    return Err(Waiting(
                        "CreateContainerConfigError",
                        format!("couldn't find key {key} in {what} {ns}/{obj}"),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Makes the Pod's volumes; name → where it is.
    async fn volumes(&self, pod: &Value) -> Result<HashMap<String, Vol>, Waiting> {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("x");
        let fs_group = pod["spec"]["securityContext"]["fsGroup"]
            .as_u64()
            .map(|g| g as u32);
        let base = self.root.join(uid);
        let mut out = HashMap::new();
        for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap_or("").to_owned();
            let dir = base.join(&name);
            if v["emptyDir"]["medium"] == "Memory" {
                let volume = format!("{}-{uid}-{name}", self.label);
                let mut o = match fs_group {
                    Some(g) => format!("mode=2777,gid={g}"),
                    None => "mode=1777".to_owned(),
                };
                if let Some(limit) = v["emptyDir"]["sizeLimit"].as_str() {
                    let bytes = bytes_of(limit).ok_or_else(|| {
                        Waiting(
                            "ContainerCreating",
                            format!("volume {name}: sizeLimit {limit:?} is not a quantity"),
                        )
                    })?;
                    o.push_str(&format!(",size={bytes}"));
                }
                let opts = HashMap::from([
                    ("type".to_owned(), "tmpfs".to_owned()),
                    ("device".to_owned(), "tmpfs".to_owned()),
                    ("o".to_owned(), o),
                ]);
                self.docker
                    .create_volume(bollard::models::VolumeCreateRequest {
                        name: Some(volume.clone()),
                        driver: Some("local".into()),
                        driver_opts: Some(opts),
                        labels: Some(HashMap::from([(
                            TEST_LABEL.to_string(),
                            self.label.clone(),
                        )])),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| Waiting("ContainerCreating", format!("volume {name}: {e}")))?;
                out.insert(name, Vol::Memory(volume));
            } else if v["emptyDir"].is_object() {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Waiting("ContainerCreating", e.to_string()))?;
                if let Some(g) = fs_group {
                    let _ = std::os::unix::fs::chown(&dir, Some(0), Some(g));
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2777));
                } else {
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
                }
                out.insert(name, Vol::Dir(dir));
            } else if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
                if self.api.get("persistentvolumeclaims", ns, claim).is_none() {
                    return Err(Waiting(
                        "ContainerCreating",
                        format!("FailedMount: persistentvolumeclaim \"{claim}\" not found"),
                    ));
                }
                let Some(host) = self.opts.claims.get(claim) else {
                    return Err(Waiting(
                        "ContainerCreating",
                        format!(
                            "FailedMount: claim \"{claim}\" is bound to no volume on this node"
                        ),
                    ));
                };
                out.insert(name, Vol::Dir(host.clone()));
            } else if v["secret"].is_object()
                || v["configMap"].is_object()
                || v["projected"].is_object()
            {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Waiting("ContainerCreating", e.to_string()))?;
                let mut sources = Vec::new();
                if v["secret"].is_object() {
                    sources.push(json!({"secret": v["secret"]}));
                }
                if v["configMap"].is_object() {
                    sources.push(json!({"configMap": v["configMap"]}));
                }
                sources.extend(
                    v["projected"]["sources"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
                for s in sources {
                    let (plural, r, obj_name) = if s["secret"].is_object() {
                        (
                            "secrets",
                            &s["secret"],
                            s["secret"]["secretName"]
                                .as_str()
                                .or(s["secret"]["name"].as_str()),
                        )
                    } else if s["configMap"].is_object() {
                        (
                            "configmaps",
                            &s["configMap"],
                            s["configMap"]["name"].as_str(),
                        )
                    } else {
                        continue;
                    };
                    let obj_name = obj_name.unwrap_or("");
                    let Some(obj) = self.api.get(plural, ns, obj_name) else {
                        if r["optional"] == true {
                            continue;
                        }
                        return Err(Waiting(
                            "ContainerCreating",
                            format!("FailedMount: {plural} \"{obj_name}\" not found"),
                        ));
                    };
                    let data: BTreeMap<String, Vec<u8>> = obj["data"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter_map(|(k, v)| {
                            let s = v.as_str()?;
                            let bytes = if plural == "secrets" {
                                b64(s)?
                            } else {
                                s.as_bytes().to_vec()
                            };
                            Some((k.clone(), bytes))
                        })
                        .collect();
                    let items: Vec<(String, String)> = match r["items"].as_array() {
                        Some(items) => items
                            .iter()
                            .map(|i| {
                                (
                                    i["key"].as_str().unwrap_or("").to_owned(),
                                    i["path"].as_str().unwrap_or("").to_owned(),
                                )
                            })
                            .collect(),
                        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
                    };
                    for (key, path) in items {
                        let Some(bytes) = data.get(&key) else {
                            return Err(Waiting(
                                "ContainerCreating",
                                format!("FailedMount: key {key} not found in {plural} {obj_name}"),
                            ));
                        };
                        let file = dir.join(&path);
                        if let Some(p) = file.parent() {
                            let _ = std::fs::create_dir_all(p);
                        }
                        std::fs::write(&file, bytes)
                            .map_err(|e| Waiting("ContainerCreating", e.to_string()))?;
                        let mode = r["defaultMode"].as_u64().unwrap_or(0o644) as u32;
                        let _ =
                            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode));
                        if let Some(g) = fs_group {
                            let _ = std::os::unix::fs::chown(&file, Some(0), Some(g));
                        }
                    }
                }
                out.insert(name, Vol::Dir(dir));
            } else {
                return Err(Waiting(
                    "ContainerCreating",
                    format!("volume {name}: unsupported volume type"),
                ));
            }
        }
        Ok(out)
    }

    /// Starts the Pod's sandbox holding its Memory volumes (`None`: it has none): a container
    /// of the Pod's first image that only sleeps, with no network and no capabilities.
    async fn hold(
        &self,
        pod: &Value,
        vols: &HashMap<String, Vol>,
    ) -> Result<Option<String>, Waiting> {
        let mounts: Vec<Mount> = vols
            .iter()
            .filter_map(|(name, v)| match v {
                Vol::Memory(volume) => Some(Mount {
                    target: Some(format!("/held/{name}")),
                    source: Some(volume.clone()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(true),
                    ..Default::default()
                }),
                Vol::Dir(_) => None,
            })
            .collect();
        if mounts.is_empty() {
            return Ok(None);
        }
        let first = pod["spec"]["initContainers"][0]["image"]
            .as_str()
            .or(pod["spec"]["containers"][0]["image"].as_str())
            .unwrap_or("");
        let name = format!(
            "{}-{}-sandbox",
            self.label,
            pod["metadata"]["name"].as_str().unwrap_or("pod")
        );
        let body = ContainerCreateBody {
            image: Some(first.to_owned()),
            entrypoint: Some(vec!["sleep".into(), "2147483647".into()]),
            user: Some("65534:65534".into()),
            labels: Some(HashMap::from([(
                TEST_LABEL.to_string(),
                self.label.clone(),
            )])),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                mounts: Some(mounts),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let fail = |e: bollard::errors::Error| {
            Waiting("ContainerCreating", format!("the Pod sandbox: {e}"))
        };
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(fail)?;
        self.docker
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(fail)?;
        Ok(Some(name))
    }

    /// The Docker container for `c` (created, not started), or why not.
    async fn create(
        &self,
        pod: &Value,
        c: &Value,
        vols: &HashMap<String, Vol>,
    ) -> Result<String, Waiting> {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
        let image = c["image"].as_str().unwrap_or("");
        if self.docker.inspect_image(image).await.is_err() {
            return Err(Waiting(
                "ErrImagePull",
                format!("failed to pull and unpack image \"{image}\": not found"),
            ));
        }
        let env = self.env(ns, c)?;
        let psc = &pod["spec"]["securityContext"];
        let sc = &c["securityContext"];
        let pick = |k: &str| sc[k].as_i64().or(psc[k].as_i64());
        let user = match (pick("runAsUser"), pick("runAsGroup")) {
            (Some(u), Some(g)) => Some(format!("{u}:{g}")),
            (Some(u), None) => Some(u.to_string()),
            _ => None,
        };
        let mut groups: Vec<String> = psc["supplementalGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_i64().map(|g| g.to_string()))
            .collect();
        if let Some(g) = psc["fsGroup"].as_i64() {
            groups.push(g.to_string());
        }
        let mut mounts = Vec::new();
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let vname = m["name"].as_str().unwrap_or("");
            let sub = m["subPath"].as_str().filter(|s| !s.is_empty());
            let (source, typ) = match (vols.get(vname), sub) {
                (None, _) => {
                    return Err(Waiting(
                        "CreateContainerConfigError",
                        format!("volume mount {vname}: no such volume"),
                    ));
                }
                (Some(Vol::Memory(_)), Some(_)) => {
                    return Err(Waiting(
                        "CreateContainerConfigError",
                        format!(
                            "volume mount {vname}: subPath into a Memory emptyDir is not modelled"
                        ),
                    ));
                }
                (Some(Vol::Memory(volume)), None) => (volume.clone(), MountType::VOLUME),
                (Some(Vol::Dir(host)), sub) => {
                    let mut source = host.clone();
                    if let Some(sub) = sub {
                        source = source.join(sub);
                        let _ = std::fs::create_dir_all(&source);
                    }
                    (source.to_string_lossy().into_owned(), MountType::BIND)
                }
            };
            mounts.push(Mount {
                target: m["mountPath"].as_str().map(str::to_owned),
                source: Some(source),
                typ: Some(typ),
                read_only: Some(m["readOnly"] == true),
                ..Default::default()
            });
        }
        let limits = &c["resources"]["limits"];
        let strings = |v: &Value| -> Option<Vec<String>> {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
        };
        let mut labels = HashMap::new();
        labels.insert(TEST_LABEL.to_string(), self.label.clone());
        let name = format!(
            "{}-{}-{}",
            self.label,
            pod["metadata"]["name"].as_str().unwrap_or("pod"),
            c["name"].as_str().unwrap_or("c")
        );
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: strings(&c["command"]),
            cmd: strings(&c["args"]),
            env: Some(env),
            working_dir: c["workingDir"].as_str().map(str::to_owned),
            user,
            hostname: pod["metadata"]["name"].as_str().map(str::to_owned),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(self.opts.network.clone()),
                mounts: Some(mounts),
                readonly_rootfs: Some(sc["readOnlyRootFilesystem"] == true),
                cap_drop: strings(&sc["capabilities"]["drop"]),
                cap_add: strings(&sc["capabilities"]["add"]),
                security_opt: (sc["allowPrivilegeEscalation"] == false)
                    .then(|| vec!["no-new-privileges".to_string()]),
                group_add: (!groups.is_empty()).then_some(groups),
                memory: limits["memory"].as_str().and_then(bytes_of),
                nano_cpus: limits["cpu"].as_str().and_then(nano_cpus),
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| Waiting("CreateContainerError", e.to_string()))?;
        Ok(name)
    }

    /// Runs container `id` to its end, its output into the Pod's log of `container`; stops
    /// it when the Pod is deleted. Returns (exit code, reason).
    async fn run(&self, pod: &Value, container: &str, id: &str) -> (i64, String) {
        let (ns, name) = (
            pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            pod["metadata"]["name"].as_str().unwrap_or("").to_owned(),
        );
        if let Err(e) = self.docker.start_container(id, None).await {
            self.api
                .append_log(&ns, &name, container, &format!("{e}\n"));
            self.api.close_log(&ns, &name, container);
            return (128, "StartError".into());
        }
        self.api.append_log(&ns, &name, container, "");
        let logs = {
            let (api, docker, id, ns, name, container) = (
                self.api.clone(),
                self.docker.clone(),
                id.to_owned(),
                ns.clone(),
                name.clone(),
                container.to_owned(),
            );
            tokio::spawn(async move {
                let mut s = docker.logs(
                    &id,
                    Some(
                        LogsOptionsBuilder::new()
                            .follow(true)
                            .stdout(true)
                            .stderr(true)
                            .build(),
                    ),
                );
                while let Some(Ok(chunk)) = s.next().await {
                    api.append_log(
                        &ns,
                        &name,
                        &container,
                        &String::from_utf8_lossy(&chunk.into_bytes()),
                    );
                }
            })
        };
        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        let mut stopped = false;
        loop {
            let st = self
                .docker
                .inspect_container(id, None)
                .await
                .ok()
                .and_then(|i| i.state);
            if st.as_ref().is_none_or(|s| s.running != Some(true)) {
                break;
            }
            if !stopped && (self.gone(pod) || self.stop.is_cancelled()) {
                stopped = true;
                let _ = self
                    .docker
                    .stop_container(
                        id,
                        Some(StopContainerOptionsBuilder::new().t(grace as i32).build()),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), logs).await;
        self.api.close_log(&ns, &name, container);
        let st = self
            .docker
            .inspect_container(id, None)
            .await
            .ok()
            .and_then(|i| i.state);
        let code = st.as_ref().and_then(|s| s.exit_code).unwrap_or(137);
        let reason = if st.as_ref().and_then(|s| s.oom_killed) == Some(true) {
            "OOMKilled"
        } else if code == 0 {
            "Completed"
        } else {
            "Error"
        };
        (code, reason.into())
    }
}

fn waiting(name: &str, image: &str, w: &Waiting) -> Value {
    json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": w.0, "message": w.1}}})
}

/// A container's name and image.
fn name_image(c: &Value) -> (String, String) {
    (
        c["name"].as_str().unwrap_or("").to_owned(),
        c["image"].as_str().unwrap_or("").to_owned(),
    )
}

/// A Pending Pod's status: scheduled, with these container states.
fn pending(init_statuses: Vec<Value>, main_statuses: Vec<Value>) -> Value {
    json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
        "initContainerStatuses": init_statuses, "containerStatuses": main_statuses})
}

fn terminated(
    name: &str,
    image: &str,
    code: i64,
    reason: &str,
    started: &str,
    message: Option<String>,
) -> Value {
    let mut t = json!({"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": crate::apiserver::now()});
    if let Some(m) = message {
        t["message"] = json!(m);
    }
    json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": t}})
}

/// A failed container's termination message as a kubelet makes it with
/// `terminationMessagePolicy: FallbackToLogsOnError`: the last 80 lines of its log, at most
/// 2048 bytes (no container here writes `/dev/termination-log`).
async fn fallback_message(ctx: &Ctx, c: &Value, id: &str, code: i64) -> Option<String> {
    if code == 0 || c["terminationMessagePolicy"] != "FallbackToLogsOnError" {
        return None;
    }
    let mut s = ctx.docker.logs(
        id,
        Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
    );
    let mut text = String::new();
    while let Some(Ok(chunk)) = s.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    Some(codex_orchestrator_core::text::last_lines(&text, 80, 2048))
}

/// The memory a Pod requests: its main containers together, or its largest init container.
fn requested_memory(pod: &Value) -> i64 {
    let req = |c: &Value| {
        c["resources"]["requests"]["memory"]
            .as_str()
            .and_then(bytes_of)
            .unwrap_or(0)
    };
    let mains: i64 = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(req)
        .sum();
    let init = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(req)
        .max()
        .unwrap_or(0);
    mains.max(init)
}

async fn run_pod(ctx: Arc<Ctx>, pod: Value) {
    if let Some(cap) = ctx.opts.allocatable_memory
        && requested_memory(&pod) > cap
    {
        ctx.set_status(
            &pod,
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient memory."}]}),
        );
        return;
    }
    let inits: Vec<Value> = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mains: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The Pod sandbox holds the Memory volumes mounted while the containers come and go (a
    // tmpfs volume lives while some container mounts it).
    let prepared = async {
        let vols = ctx.volumes(&pod).await?;
        let holder = ctx.hold(&pod, &vols).await?;
        Ok::<_, Waiting>((vols, holder))
    };
    let (vols, holder) = match prepared.await {
        Ok(v) => v,
        Err(w) => {
            let st: Vec<Value> = mains
                .iter()
                .map(|c| {
                    let (n, i) = name_image(c);
                    waiting(&n, &i, &w)
                })
                .collect();
            ctx.set_status(&pod, pending(vec![], st));
            return;
        }
    };
    run_containers(&ctx, &pod, &vols, &inits, &mains).await;
    if let Some(h) = holder {
        let _ = ctx
            .docker
            .remove_container(
                &h,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
    }
}

/// Runs the init containers in order, then the main container, reporting each step.
async fn run_containers(
    ctx: &Ctx,
    pod: &Value,
    vols: &HashMap<String, Vol>,
    inits: &[Value],
    mains: &[Value],
) {
    let pod = pod.clone();
    let mut init_done = Vec::new();
    for c in inits {
        let (n, i) = name_image(c);
        let id = match ctx.create(&pod, c, vols).await {
            Ok(id) => id,
            Err(w) => {
                let mut st = init_done.clone();
                st.push(waiting(&n, &i, &w));
                ctx.set_status(&pod, pending(st, vec![]));
                return;
            }
        };
        let started = crate::apiserver::now();
        let mut st = init_done.clone();
        st.push(json!({"name": n, "image": i, "imageID": "", "ready": false, "restartCount": 0, "state": {"running": {"startedAt": started}}}));
        ctx.set_status(&pod, pending(st, vec![]));
        let (code, reason) = ctx.run(&pod, &n, &id).await;
        let message = fallback_message(ctx, c, &id, code).await;
        init_done.push(terminated(&n, &i, code, &reason, &started, message));
        if code != 0 {
            ctx.set_status(&pod, json!({"phase": "Failed", "initContainerStatuses": init_done, "containerStatuses": []}));
            return;
        }
    }
    let Some(c) = mains.first() else {
        return;
    };
    let (n, i) = name_image(c);
    let id = match ctx.create(&pod, c, vols).await {
        Ok(id) => id,
        Err(w) => {
            ctx.set_status(&pod, pending(init_done, vec![waiting(&n, &i, &w)]));
            return;
        }
    };
    let started = crate::apiserver::now();
    ctx.set_status(
        &pod,
        json!({"phase": "Running", "startTime": started, "initContainerStatuses": init_done,
            "containerStatuses": [{"name": n, "image": i, "imageID": "", "ready": true, "restartCount": 0,
                "started": true, "state": {"running": {"startedAt": started}}}]}),
    );
    let (code, reason) = ctx.run(&pod, &n, &id).await;
    let message = fallback_message(ctx, c, &id, code).await;
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    ctx.set_status(
        &pod,
        json!({"phase": phase, "startTime": started, "initContainerStatuses": init_done,
            "containerStatuses": [terminated(&n, &i, code, &reason, &started, message)]}),
    );
}
