//! The Pod Security Standards **restricted** profile as a check ([`restricted_violations`]):
//! the tests apply it to every Pod the builder makes, and the in-memory API server of the tests
//! rejects a Pod that fails it, as admission would.

use k8s_openapi::api::core::v1::{Pod, VolumeMount};

use codex_orchestrator_core::contract::WORKSPACE_MOUNT;

use super::AGENT_CONTAINER;

/// Violations of the Pod Security Standards **restricted** profile (which includes
/// baseline), plus our own rules (read-only root filesystem, no service account token).
/// Empty = the Pod passes. Pure; used by the tests on every Pod the builder makes.
pub fn restricted_violations(pod: &Pod) -> Vec<String> {
    let mut v = Vec::new();
    let Some(spec) = &pod.spec else {
        return vec!["pod has no spec".into()];
    };
    if spec.host_network == Some(true) {
        v.push("hostNetwork".into());
    }
    if spec.host_pid == Some(true) {
        v.push("hostPID".into());
    }
    if spec.host_ipc == Some(true) {
        v.push("hostIPC".into());
    }
    if spec.automount_service_account_token != Some(false) {
        v.push("automountServiceAccountToken is not false".into());
    }
    for vol in spec.volumes.iter().flatten() {
        let allowed = vol.config_map.is_some()
            || vol.csi.is_some()
            || vol.downward_api.is_some()
            || vol.empty_dir.is_some()
            || vol.ephemeral.is_some()
            || vol.persistent_volume_claim.is_some()
            || vol.projected.is_some()
            || vol.secret.is_some();
        if !allowed {
            v.push(format!(
                "volume {} has a type the profile forbids",
                vol.name
            ));
        }
    }
    let psc = spec.security_context.clone().unwrap_or_default();
    let pod_seccomp_ok = psc
        .seccomp_profile
        .as_ref()
        .is_some_and(|p| p.type_ == "RuntimeDefault" || p.type_ == "Localhost");
    if psc.run_as_user == Some(0) {
        v.push("pod runAsUser is 0".into());
    }
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        v.push("ephemeral containers are not checked: none expected".into());
    }
    for c in all {
        let n = &c.name;
        let sc = c.security_context.clone().unwrap_or_default();
        if sc.privileged == Some(true) {
            v.push(format!("{n}: privileged"));
        }
        if sc.allow_privilege_escalation != Some(false) {
            v.push(format!("{n}: allowPrivilegeEscalation is not false"));
        }
        let caps = sc.capabilities.clone().unwrap_or_default();
        if !caps.drop.iter().flatten().any(|d| d == "ALL") {
            v.push(format!("{n}: capabilities do not drop ALL"));
        }
        if caps.add.iter().flatten().any(|a| a != "NET_BIND_SERVICE") {
            v.push(format!(
                "{n}: adds capabilities other than NET_BIND_SERVICE"
            ));
        }
        let non_root = sc.run_as_non_root.or(psc.run_as_non_root);
        if non_root != Some(true) {
            v.push(format!("{n}: runAsNonRoot is not true"));
        }
        if sc.run_as_user.or(psc.run_as_user) == Some(0) {
            v.push(format!("{n}: runAsUser is 0"));
        }
        let seccomp_ok = match &sc.seccomp_profile {
            Some(p) => p.type_ == "RuntimeDefault" || p.type_ == "Localhost",
            None => pod_seccomp_ok,
        };
        if !seccomp_ok {
            v.push(format!(
                "{n}: seccompProfile is not RuntimeDefault/Localhost"
            ));
        }
        if sc.read_only_root_filesystem != Some(true) {
            v.push(format!("{n}: readOnlyRootFilesystem is not true"));
        }
        if c.ports.iter().flatten().any(|p| p.host_port.is_some()) {
            v.push(format!("{n}: hostPort"));
        }
    }
    v
}

/// The workspace mount of the agent container.
pub fn workspace_mount(pod: &Pod) -> Option<&VolumeMount> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == AGENT_CONTAINER)?
        .volume_mounts
        .as_ref()?
        .iter()
        .find(|m| m.mount_path == WORKSPACE_MOUNT)
}
