//! Tenants: who a gateway request acts for. A tenant's reach is its own configured roots, run
//! store, labels or namespace — decided by the server from the token, never by the client.

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

#[cfg(test)]
mod tests {
    use super::*;

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
