//! Tenants: who a gateway request acts for. A tenant's reach is its own configured roots, run
//! store, labels or namespace — decided by the server from the token, never by the client.

use std::path::PathBuf;

use super::roots::ClientRootsPolicy;

/// A tenant name: a DNS label (1-63 lowercase letters, digits and `-`, not at either end).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(String);

impl Tenant {
    pub fn parse(s: &str) -> Result<Tenant, String> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Tenant(s.to_string()))
        } else {
            Err(format!(
                "tenant `{}` must be a DNS label (1-63 lowercase letters, digits and `-`, not at either end)",
                s.escape_debug()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant's own settings, from the options after `<token> <tenant>` in the gateway's tokens:
/// `root=/abs/dir` (repeatable: the directories the tenant's workspaces must lie in, instead of
/// the gateway's `--allowed-root`s) and `client_roots=ignore|narrow` (what the roots its MCP
/// client declares may do; default `ignore`; `narrow` lets them only narrow the tenant's
/// roots; a tenant's client can never widen them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantSettings {
    pub roots: Vec<PathBuf>,
    pub client_roots: TenantClientRoots,
    /// `max_concurrent_runs=N`, `max_tokens_per_day=N` (see [`super::quota`]).
    pub quota: super::quota::TenantQuota,
}

/// [`TenantSettings::client_roots`]: the two policies a gateway tenant may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TenantClientRoots {
    #[default]
    Ignore,
    Narrow,
}

impl From<TenantClientRoots> for ClientRootsPolicy {
    fn from(t: TenantClientRoots) -> Self {
        match t {
            TenantClientRoots::Ignore => ClientRootsPolicy::Ignore,
            TenantClientRoots::Narrow => ClientRootsPolicy::Narrow,
        }
    }
}

impl TenantSettings {
    /// Parses the option fields of one tokens line. Pure.
    pub fn parse_options(fields: &[&str]) -> Result<TenantSettings, String> {
        let mut out = TenantSettings::default();
        let mut client_roots_seen = false;
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                return Err(format!(
                    "`{}` is not an option (`root=/abs/dir` or `client_roots=ignore|narrow`)",
                    field.escape_debug()
                ));
            };
            match key {
                "root" => {
                    let p = PathBuf::from(value);
                    if !p.is_absolute() {
                        return Err(format!(
                            "root `{}` must be an absolute path",
                            value.escape_debug()
                        ));
                    }
                    if !out.roots.contains(&p) {
                        out.roots.push(p);
                    }
                }
                "client_roots" => {
                    if client_roots_seen {
                        return Err("`client_roots` is given twice".into());
                    }
                    client_roots_seen = true;
                    out.client_roots = match value {
                        "ignore" => TenantClientRoots::Ignore,
                        "narrow" => TenantClientRoots::Narrow,
                        "widen" => {
                            return Err(
                                "`client_roots=widen` is not allowed for a gateway tenant: a client could reach any directory; use `narrow`"
                                    .into(),
                            );
                        }
                        other => {
                            return Err(format!(
                                "`client_roots={}`: expected ignore or narrow",
                                other.escape_debug()
                            ));
                        }
                    };
                }
                "max_concurrent_runs" => {
                    let n = positive(key, value)?;
                    out.quota.max_concurrent_runs = Some(
                        u32::try_from(n).map_err(|_| format!("`{key}={value}` is too large"))?,
                    );
                }
                "max_tokens_per_day" => {
                    out.quota.max_tokens_per_day = Some(positive(key, value)?);
                }
                other => {
                    return Err(format!(
                        "unknown option `{}` (known: root, client_roots, max_concurrent_runs, max_tokens_per_day)",
                        other.escape_debug()
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// A quota option's value: a whole number of at least 1.
fn positive(key: &str, value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "`{key}={}`: expected a whole number of at least 1",
            value.escape_debug()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_options_give_roots_and_a_client_roots_policy() {
        assert_eq!(
            TenantSettings::parse_options(&[]),
            Ok(TenantSettings::default())
        );
        assert_eq!(
            TenantSettings::parse_options(&[
                "root=/srv/a",
                "client_roots=narrow",
                "root=/srv/b",
                "root=/srv/a",
                "max_concurrent_runs=3",
                "max_tokens_per_day=2000000"
            ]),
            Ok(TenantSettings {
                roots: vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")],
                client_roots: TenantClientRoots::Narrow,
                quota: super::super::quota::TenantQuota {
                    max_concurrent_runs: Some(3),
                    max_tokens_per_day: Some(2_000_000),
                },
            })
        );
        let e = |f: &[&str]| TenantSettings::parse_options(f).unwrap_err();
        assert_eq!(e(&["root=rel"]), "root `rel` must be an absolute path");
        assert_eq!(
            e(&["/srv/a"]),
            "`/srv/a` is not an option (`root=/abs/dir` or `client_roots=ignore|narrow`)"
        );
        assert!(e(&["client_roots=widen"]).contains("not allowed for a gateway tenant"));
        assert_eq!(
            e(&["client_roots=all"]),
            "`client_roots=all`: expected ignore or narrow"
        );
        assert_eq!(
            e(&["client_roots=narrow", "client_roots=ignore"]),
            "`client_roots` is given twice"
        );
        assert_eq!(
            e(&["roots=/x"]),
            "unknown option `roots` (known: root, client_roots, max_concurrent_runs, max_tokens_per_day)"
        );
        assert_eq!(
            e(&["max_concurrent_runs=0"]),
            "`max_concurrent_runs=0`: expected a whole number of at least 1"
        );
        assert_eq!(
            e(&["max_tokens_per_day=lots"]),
            "`max_tokens_per_day=lots`: expected a whole number of at least 1"
        );
        assert_eq!(
            ClientRootsPolicy::from(TenantClientRoots::default()),
            ClientRootsPolicy::Ignore
        );
    }

    #[test]
    fn tenants_are_dns_labels() {
        for ok in ["a", "team-a", "x1", &"a".repeat(63)] {
            assert_eq!(Tenant::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a b", &"a".repeat(64)] {
            let e = Tenant::parse(bad).unwrap_err();
            assert!(e.contains("must be a DNS label"), "{bad}: {e}");
        }
    }
}
