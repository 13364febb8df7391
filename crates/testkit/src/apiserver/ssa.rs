//! Server-side apply, as far as the tests need it: each field manager owns the leaf fields it
//! applied (objects are merged field by field; lists and scalars are leaves — the API server
//! merges some lists by key, this stand-in treats every list as atomic); applying a value to a
//! field another manager owns with a different value is a conflict unless forced (then the
//! field changes hands); fields a manager applied before and leaves out now are removed if no
//! one else owns them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// Field owners: manager → the paths (`/a/b`) of the leaf fields it applied.
pub type Owners = BTreeMap<String, BTreeSet<String>>;

/// Leaf paths of `v` below `prefix`. Pure.
pub fn leaves(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, child) in o {
                leaves(
                    child,
                    &format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        // An empty applied object at the root owns nothing.
        Value::Object(_) if prefix.is_empty() => {}
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

fn remove_path(v: &mut Value, path: &str) {
    let Some((parent, last)) = path.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(o)) = v.pointer_mut(parent) {
        o.remove(&last);
        // An object emptied by the removal goes too (the API server prunes empty maps it owns).
        if o.is_empty() && !parent.is_empty() {
            remove_path(v, parent);
        }
    }
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Object(Map::new())), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// A conflict: the field and the manager that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub path: String,
    pub owner: String,
}

/// Applies `applied` (the part of the object under the applied scope, e.g. the whole object
/// without `status`, or only `status`) as `manager` to `current`, updating `owners`. Pure.
pub fn apply(
    current: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
    owners: &mut Owners,
) -> Result<Value, Vec<Conflict>> {
    let mut fields = BTreeSet::new();
    leaves(applied, "", &mut fields);
    let mut conflicts = Vec::new();
    for f in &fields {
        for (other, owned) in owners.iter() {
            if other != manager && owned.contains(f) && current.pointer(f) != applied.pointer(f) {
                conflicts.push(Conflict {
                    path: f.clone(),
                    owner: other.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut out = current.clone();
    let before = owners.get(manager).cloned().unwrap_or_default();
    for gone in before.difference(&fields) {
        let shared = owners
            .iter()
            .any(|(m, owned)| m != manager && owned.contains(gone));
        if !shared {
            remove_path(&mut out, gone);
        }
    }
    merge(&mut out, applied);
    if force {
        for owned in owners.values_mut() {
            for f in &fields {
                owned.remove(f);
            }
        }
    }
    owners.insert(manager.to_owned(), fields);
    owners.retain(|_, f| !f.is_empty());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn managers_own_fields_conflict_and_force_moves_ownership() {
        let mut owners = Owners::new();
        let obj = apply(
            &json!({}),
            &json!({"a": 1, "m": {"x": 1}}),
            "one",
            false,
            &mut owners,
        )
        .unwrap();
        assert_eq!(obj, json!({"a": 1, "m": {"x": 1}}));
        // Same value from another manager: shared, no conflict.
        let obj = apply(&obj, &json!({"a": 1, "b": 2}), "two", false, &mut owners).unwrap();
        assert_eq!(obj, json!({"a": 1, "b": 2, "m": {"x": 1}}));
        // A different value: conflict; forced: it moves.
        let e = apply(&obj, &json!({"m": {"x": 9}}), "two", false, &mut owners).unwrap_err();
        assert_eq!(
            e,
            vec![Conflict {
                path: "/m/x".into(),
                owner: "one".into()
            }]
        );
        let obj = apply(&obj, &json!({"m": {"x": 9}}), "two", true, &mut owners).unwrap();
        assert_eq!(obj["m"]["x"], 9);
        assert!(!owners["one"].contains("/m/x"));
        // "one" drops `a`; "two" dropped it too (its last apply was only m.x): removed.
        let obj = apply(&obj, &json!({}), "one", false, &mut owners).unwrap();
        assert_eq!(obj, json!({"m": {"x": 9}}));
    }
}
