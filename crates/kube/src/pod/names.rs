//! Names of the objects derived from a CodexRun, and whether an object found by such a name
//! is the CodexRun's own (the controller touches no other).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::crd::CodexRun;

/// Longest object name (a DNS subdomain: Pods, ConfigMaps, Secrets).
pub const MAX_NAME: usize = 253;

/// The name of an object derived from a CodexRun named `name`: `<name>-<suffix>`. When that
/// is too long, the name is cut and a hash of the **whole** name is put before the suffix
/// (`<cut>-<10 hex digits>-<suffix>`), so two CodexRuns whose names share a long prefix never
/// derive the same name. Names that fit are unchanged (as before this rule). Pure.
pub fn derived_name(name: &str, suffix: &str) -> String {
    if name.len() + 1 + suffix.len() <= MAX_NAME {
        return format!("{name}-{suffix}");
    }
    use sha2::Digest;
    let hash = &hex::encode(sha2::Sha256::digest(name.as_bytes()))[..10];
    let keep = MAX_NAME.saturating_sub(suffix.len() + hash.len() + 2);
    let base: String = name.chars().take(keep).collect();
    format!("{}-{hash}-{suffix}", base.trim_end_matches(['-', '.']))
}

/// Name of the Pod of a `CodexRun`.
pub fn pod_name(cr: &CodexRun) -> String {
    derived_name(&cr.name_any(), "run")
}

/// Whether `meta` (an object found by a derived name) has an owner reference to the object
/// with `uid`. The controller touches (adopts, deletes, patches) only such objects. Pure.
pub fn owned_by(meta: &ObjectMeta, uid: Option<&str>) -> bool {
    let Some(uid) = uid else { return false };
    meta.owner_references.iter().flatten().any(|o| o.uid == uid)
}

/// The refusal for an object found by a derived name that another owner has. Pure.
pub fn not_owned_message(kind: &str, meta: &ObjectMeta) -> String {
    let owners: Vec<String> = meta
        .owner_references
        .iter()
        .flatten()
        .map(|o| format!("{} {} (uid {})", o.kind, o.name, o.uid))
        .collect();
    format!(
        "the {kind} `{}` exists but is not owned by this CodexRun (owners: {}); the controller does not adopt, change or delete it: remove it or give the CodexRun another name",
        meta.name.as_deref().unwrap_or_default(),
        if owners.is_empty() {
            "none".to_string()
        } else {
            owners.join(", ")
        }
    )
}
