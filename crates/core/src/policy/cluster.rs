//! What a CodexRun may reference in its namespace: Secrets only from an allowlist, and a
//! PersistentVolumeClaim only if it belongs to the run's tenant. Pure functions of plain data;
//! the Kubernetes controller and the gateway's Kubernetes runner (crates/kube) gather the
//! facts (the CodexRun's references, the claim's labels) and call them, and the Helm chart's
//! ValidatingAdmissionPolicy (charts/codex-orchestrator/templates/admissionpolicy.yaml)
//! states the same rules for CodexRuns written with `kubectl`.
//!
//! Decisions:
//! * **Secrets.** A CodexRun can make the controller mount any Secret of its namespace into a
//!   Pod that a model drives (`source.git.credentialsSecret` in the fetch step,
//!   `authSecretRef` in the agent when the model proxy is off). So only Secrets the operator
//!   listed ([`SecretRule::Listed`], the controller's and gateway's `--allowed-secret`) may be
//!   named; an empty list allows none. [`SecretRule::Any`] is the old behaviour, for code that
//!   embeds the library without a list; the binaries always pass a list.
//! * **Claims.** A gateway tenant may mount only a claim labelled
//!   `codex-orchestrator.dev/tenant=<tenant>`, or any claim of its own namespace when each
//!   tenant has one (`--namespace-per-tenant`). A run without a tenant (written with
//!   `kubectl` by someone with RBAC on the namespace) is not restricted: RBAC already decides
//!   what that person can read.

use std::collections::{BTreeMap, BTreeSet};

use crate::contract::labels::TENANT;

/// Which Secrets CodexRuns may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRule {
    /// Any Secret of the namespace (no allowlist configured).
    Any,
    /// Only these names; empty allows none.
    Listed(BTreeSet<String>),
}

impl SecretRule {
    /// A rule allowing exactly `names`.
    pub fn listed<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        SecretRule::Listed(names.into_iter().map(Into::into).collect())
    }
}

/// Where a CodexRun names a Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUse {
    /// `spec.source.git.credentialsSecret` (the gateway's request label
    /// `git-credentials-secret`).
    GitCredentials,
    /// `spec.authSecretRef` (used only when the model proxy is off).
    Auth,
}

impl SecretUse {
    /// The field of the CodexRun.
    pub fn field(self) -> &'static str {
        match self {
            SecretUse::GitCredentials => "spec.source.git.credentialsSecret",
            SecretUse::Auth => "spec.authSecretRef",
        }
    }
}

/// A refused reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefRefusal {
    #[error(
        "{field} names Secret `{name}`, which is not on the allowlist of Secrets runs may use ({allowed}); refused: a run may only read Secrets the operator allowed (controller and gateway flag --allowed-secret, chart value allowedSecrets)"
    )]
    SecretNotAllowed {
        field: &'static str,
        name: String,
        allowed: String,
    },
    #[error(
        "PersistentVolumeClaim `{claim}` does not exist in namespace `{namespace}`; refused: tenant `{tenant}` can only mount its own claims"
    )]
    ClaimNotFound {
        claim: String,
        namespace: String,
        tenant: String,
    },
    #[error(
        "PersistentVolumeClaim `{claim}` does not belong to tenant `{tenant}` (its label {TENANT} is {found}); refused: a tenant can only mount claims labelled {TENANT}={tenant}"
    )]
    ClaimNotTenants {
        claim: String,
        tenant: String,
        found: String,
    },
}

/// Checks every Secret a CodexRun names against `rule`. Pure.
pub fn check_secrets<'a>(
    refs: impl IntoIterator<Item = (SecretUse, &'a str)>,
    rule: &SecretRule,
) -> Result<(), RefRefusal> {
    let SecretRule::Listed(allowed) = rule else {
        return Ok(());
    };
    for (used, name) in refs {
        if !allowed.contains(name) {
            let allowed = if allowed.is_empty() {
                "the list is empty".to_string()
            } else {
                format!(
                    "allowed: {}",
                    allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(RefRefusal::SecretNotAllowed {
                field: used.field(),
                name: name.to_string(),
                allowed,
            });
        }
    }
    Ok(())
}

/// What is known about the claim a tenant's run wants to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimFacts<'a> {
    pub claim: &'a str,
    pub namespace: &'a str,
    /// The claim's labels; `None` when it does not exist.
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// The namespace is the tenant's own (the gateway's `--namespace-per-tenant`: a namespace
    /// named after each tenant).
    pub tenants_namespace: bool,
}

/// May `tenant` mount the claim? Pure. A claim that does not exist is refused too (with its
/// own message), so that nothing is created for it.
pub fn check_claim(tenant: &str, c: &ClaimFacts<'_>) -> Result<(), RefRefusal> {
    let Some(labels) = c.labels else {
        return Err(RefRefusal::ClaimNotFound {
            claim: c.claim.to_string(),
            namespace: c.namespace.to_string(),
            tenant: tenant.to_string(),
        });
    };
    if c.tenants_namespace && c.namespace == tenant {
        return Ok(());
    }
    match labels.get(TENANT) {
        Some(t) if t == tenant => Ok(()),
        found => Err(RefRefusal::ClaimNotTenants {
            claim: c.claim.to_string(),
            tenant: tenant.to_string(),
            found: found.map_or_else(|| "absent".to_string(), |t| format!("`{t}`")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_must_be_listed() {
        let refs = [
            (SecretUse::GitCredentials, "git-creds"),
            (SecretUse::Auth, "openai"),
        ];
        assert_eq!(check_secrets(refs, &SecretRule::Any), Ok(()));
        assert_eq!(
            check_secrets(refs, &SecretRule::listed(["openai", "git-creds"])),
            Ok(())
        );
        assert_eq!(
            check_secrets([], &SecretRule::listed(Vec::<String>::new())),
            Ok(())
        );
        let e = check_secrets(refs, &SecretRule::listed(["openai"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.source.git.credentialsSecret names Secret `git-creds`, which is not on the allowlist of Secrets runs may use (allowed: `openai`); refused: a run may only read Secrets the operator allowed (controller and gateway flag --allowed-secret, chart value allowedSecrets)"
        );
        let e = check_secrets(
            [(SecretUse::Auth, "other-teams-key")],
            &SecretRule::listed(Vec::<String>::new()),
        )
        .unwrap_err();
        assert_eq!(
            e,
            RefRefusal::SecretNotAllowed {
                field: "spec.authSecretRef",
                name: "other-teams-key".into(),
                allowed: "the list is empty".into(),
            }
        );
    }

    #[test]
    fn a_claim_must_belong_to_the_tenant() {
        let mine = BTreeMap::from([(TENANT.to_string(), "alpha".to_string())]);
        let theirs = BTreeMap::from([(TENANT.to_string(), "beta".to_string())]);
        let none = BTreeMap::new();
        let facts = |labels, tenants_namespace, namespace| ClaimFacts {
            claim: "data",
            namespace,
            labels,
            tenants_namespace,
        };
        assert_eq!(
            check_claim("alpha", &facts(Some(&mine), false, "runs")),
            Ok(())
        );
        assert_eq!(
            check_claim("alpha", &facts(Some(&theirs), false, "runs"))
                .unwrap_err()
                .to_string(),
            "PersistentVolumeClaim `data` does not belong to tenant `alpha` (its label codex-orchestrator.dev/tenant is `beta`); refused: a tenant can only mount claims labelled codex-orchestrator.dev/tenant=alpha"
        );
        assert_eq!(
            check_claim("alpha", &facts(Some(&none), false, "runs")),
            Err(RefRefusal::ClaimNotTenants {
                claim: "data".into(),
                tenant: "alpha".into(),
                found: "absent".into(),
            })
        );
        // The tenant's own namespace: any claim in it.
        assert_eq!(
            check_claim("alpha", &facts(Some(&none), true, "alpha")),
            Ok(())
        );
        // Namespace per tenant, but the claim is not in the tenant's namespace: the label
        // still decides.
        assert!(check_claim("alpha", &facts(Some(&none), true, "beta")).is_err());
        assert_eq!(
            check_claim("alpha", &facts(None, true, "alpha"))
                .unwrap_err()
                .to_string(),
            "PersistentVolumeClaim `data` does not exist in namespace `alpha`; refused: tenant `alpha` can only mount its own claims"
        );
    }
}
