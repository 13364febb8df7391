//! What this server keeps on the Docker engine between runs (`image list`, `image prune`):
//! its images (base, runner, environment: everything with our kind label) and the cache
//! volumes of environments, with their sizes, ages and what uses them. Building the listing
//! from Docker's answers is pure ([`images_of`], [`caches_of`]); only reading and removing
//! touch the engine.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerSummary, ImageSummary, Volume};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveImageOptionsBuilder, RemoveVolumeOptions,
};
use codex_orchestrator_core::contract::labels as label;
use serde::Serialize;

use super::ImageError;
use super::environment::{LABEL_FROM, LABEL_PACKAGES};

/// Label of a cache volume: the directory it holds.
pub const LABEL_CACHE_PATH: &str = "codex-orchestrator.dev/cache-path";

/// One image of ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageEntry {
    pub id: String,
    pub tags: Vec<String>,
    /// `base`, `runner` or `environment`.
    pub kind: String,
    pub size_bytes: i64,
    /// Seconds since it was built.
    pub age_secs: i64,
    /// Environment images: the packages added, and the runner image it was built from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Containers (any state) made from it, by name.
    pub used_by: Vec<String>,
}

/// One cache volume of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheEntry {
    pub name: String,
    /// The directory it holds in setups and sandboxes.
    pub path: String,
    /// The run store (server) it belongs to.
    pub store: String,
    /// Bytes used, when the engine reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// Containers (any state) mounting it, by name.
    pub used_by: Vec<String>,
}

/// Containers using `image_id` (by name, without Docker's leading `/`).
fn users_of_image(containers: &[ContainerSummary], image_id: &str) -> Vec<String> {
    let mut out: Vec<String> = containers
        .iter()
        .filter(|c| c.image_id.as_deref() == Some(image_id))
        .filter_map(|c| c.names.as_ref()?.first().cloned())
        .map(|n| n.trim_start_matches('/').to_owned())
        .collect();
    out.sort();
    out
}

/// Our images, newest first (pure): those with our kind label.
pub fn images_of(
    images: &[ImageSummary],
    containers: &[ContainerSummary],
    now_secs: i64,
) -> Vec<ImageEntry> {
    let mut out: Vec<ImageEntry> = images
        .iter()
        .filter_map(|i| {
            let kind = i.labels.get(label::KIND)?.clone();
            Some(ImageEntry {
                id: i.id.clone(),
                tags: i
                    .repo_tags
                    .iter()
                    .filter(|t| t.as_str() != "<none>:<none>")
                    .cloned()
                    .collect(),
                kind,
                size_bytes: i.size,
                age_secs: (now_secs - i.created).max(0),
                packages: i
                    .labels
                    .get(LABEL_PACKAGES)
                    .map(|p| p.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default(),
                from: i.labels.get(LABEL_FROM).cloned(),
                used_by: users_of_image(containers, &i.id),
            })
        })
        .collect();
    out.sort_by(|a, b| a.age_secs.cmp(&b.age_secs).then(a.id.cmp(&b.id)));
    out
}

/// Our cache volumes, by name (pure).
pub fn caches_of(volumes: &[Volume], containers: &[ContainerSummary]) -> Vec<CacheEntry> {
    let mut out: Vec<CacheEntry> = volumes
        .iter()
        .filter(|v| v.labels.get(label::KIND).map(String::as_str) == Some("cache"))
        .map(|v| {
            let mut used_by: Vec<String> = containers
                .iter()
                .filter(|c| {
                    c.mounts.as_ref().is_some_and(|ms| {
                        ms.iter()
                            .any(|m| m.name.as_deref() == Some(v.name.as_str()))
                    })
                })
                .filter_map(|c| c.names.as_ref()?.first().cloned())
                .map(|n| n.trim_start_matches('/').to_owned())
                .collect();
            used_by.sort();
            CacheEntry {
                name: v.name.clone(),
                path: v.labels.get(LABEL_CACHE_PATH).cloned().unwrap_or_default(),
                store: v.labels.get(label::STORE).cloned().unwrap_or_default(),
                size_bytes: v.usage_data.as_ref().map(|u| u.size).filter(|s| *s >= 0),
                used_by,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Everything of ours on the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub images: Vec<ImageEntry>,
    pub caches: Vec<CacheEntry>,
}

/// Reads the inventory from the engine (volume sizes from its disk-usage report).
pub async fn inventory(docker: &Docker) -> Result<Inventory, ImageError> {
    let images = docker
        .list_images(Some(
            ListImagesOptionsBuilder::default()
                .filters(&HashMap::from([("label", vec![label::KIND])]))
                .build(),
        ))
        .await
        .map_err(|e| ImageError::docker("list images", e))?;
    let containers = docker
        .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
        .await
        .map_err(|e| ImageError::docker("list containers", e))?;
    let kind_cache = format!("{}=cache", label::KIND);
    let mut volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new()
                .filters(&HashMap::from([("label", vec![kind_cache.as_str()])]))
                .build(),
        ))
        .await
        .map_err(|e| ImageError::docker("list volumes", e))?
        .volumes
        .unwrap_or_default();
    // Sizes come only with the disk-usage report (its volume items, where the engine's API
    // version gives them); without it they stay unknown.
    if let Ok(df) = docker
        .df(None::<bollard::query_parameters::DataUsageOptions>)
        .await
    {
        let sized: HashMap<String, Volume> = df
            .volume_usage
            .and_then(|u| u.items)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Volume>(v).ok())
            .map(|v| (v.name.clone(), v))
            .collect();
        for v in &mut volumes {
            if let Some(s) = sized.get(&v.name) {
                v.usage_data = s.usage_data.clone();
            }
        }
    }
    let now = jiff::Timestamp::now().as_second();
    Ok(Inventory {
        images: images_of(&images, &containers, now),
        caches: caches_of(&volumes, &containers),
    })
}

/// What [`prune`] removed, and what it kept because something uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub removed_images: Vec<String>,
    pub removed_caches: Vec<String>,
    pub kept_in_use: Vec<String>,
}

/// What a prune would remove (pure): the environment images nothing uses that are at least
/// `environments_older_than` seconds old (none without it), and with `caches` the cache
/// volumes nothing uses; what is in use is listed as kept. Runner and base images are left
/// alone (rebuilding them takes minutes).
pub fn prune_plan(inv: &Inventory, environments_older_than: Option<i64>, caches: bool) -> Pruned {
    let mut out = Pruned::default();
    if let Some(min_age) = environments_older_than {
        for image in inv.images.iter().filter(|i| i.kind == "environment") {
            let name = image.tags.first().cloned().unwrap_or(image.id.clone());
            if !image.used_by.is_empty() {
                out.kept_in_use.push(name);
            } else if image.age_secs >= min_age {
                out.removed_images.push(name);
            }
        }
    }
    if caches {
        for cache in &inv.caches {
            if cache.used_by.is_empty() {
                out.removed_caches.push(cache.name.clone());
            } else {
                out.kept_in_use.push(cache.name.clone());
            }
        }
    }
    out
}

/// Removes what `plan` names (images by tag or id, untagging every tag; cache volumes by
/// name); returns it.
pub async fn remove(docker: &Docker, plan: Pruned) -> Result<Pruned, ImageError> {
    for image in &plan.removed_images {
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        docker
            .remove_image(image, Some(options), None)
            .await
            .map_err(|e| ImageError::docker(format!("remove image {image}"), e))?;
    }
    for cache in &plan.removed_caches {
        docker
            .remove_volume(cache, None::<RemoveVolumeOptions>)
            .await
            .map_err(|e| ImageError::docker(format!("remove volume {cache}"), e))?;
    }
    Ok(plan)
}

/// Removes the environment images and cache volumes [`prune_plan`] names.
pub async fn prune(
    docker: &Docker,
    environments_older_than: Option<i64>,
    caches: bool,
) -> Result<Pruned, ImageError> {
    let inv = inventory(docker).await?;
    remove(docker, prune_plan(&inv, environments_older_than, caches)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{MountPoint, VolumeUsageData};

    fn image(id: &str, kind: Option<&str>, created: i64, extra: &[(&str, &str)]) -> ImageSummary {
        let mut labels: HashMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(k) = kind {
            labels.insert(label::KIND.into(), k.into());
        }
        ImageSummary {
            id: id.into(),
            repo_tags: vec![format!("repo:{id}")],
            created,
            size: 1000,
            labels,
            ..Default::default()
        }
    }

    fn container(name: &str, image_id: &str, volume: Option<&str>) -> ContainerSummary {
        ContainerSummary {
            names: Some(vec![format!("/{name}")]),
            image_id: Some(image_id.into()),
            mounts: volume.map(|v| {
                vec![MountPoint {
                    name: Some(v.into()),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn our_images_with_their_users_newest_first() {
        let images = [
            image("sha256:r", Some("runner"), 100, &[]),
            image(
                "sha256:e",
                Some("environment"),
                400,
                &[(LABEL_PACKAGES, "cargo rustc"), (LABEL_FROM, "sha256:r")],
            ),
            image("sha256:other", None, 500, &[]),
        ];
        let containers = [
            container("codex-run-1", "sha256:e", None),
            container("unrelated", "sha256:other", None),
        ];
        assert_eq!(
            images_of(&images, &containers, 1000),
            vec![
                ImageEntry {
                    id: "sha256:e".into(),
                    tags: vec!["repo:sha256:e".into()],
                    kind: "environment".into(),
                    size_bytes: 1000,
                    age_secs: 600,
                    packages: vec!["cargo".into(), "rustc".into()],
                    from: Some("sha256:r".into()),
                    used_by: vec!["codex-run-1".into()],
                },
                ImageEntry {
                    id: "sha256:r".into(),
                    tags: vec!["repo:sha256:r".into()],
                    kind: "runner".into(),
                    size_bytes: 1000,
                    age_secs: 900,
                    packages: vec![],
                    from: None,
                    used_by: vec![],
                },
            ]
        );
    }

    #[test]
    fn a_prune_removes_what_nothing_uses_and_keeps_the_rest() {
        let entry = |tag: &str, kind: &str, age: i64, used: bool| ImageEntry {
            id: format!("sha256:{tag}"),
            tags: vec![tag.to_string()],
            kind: kind.to_string(),
            size_bytes: 1,
            age_secs: age,
            packages: vec![],
            from: None,
            used_by: if used { vec!["c".into()] } else { vec![] },
        };
        let cache = |name: &str, used: bool| CacheEntry {
            name: name.into(),
            path: "/p".into(),
            store: "s".into(),
            size_bytes: None,
            used_by: if used { vec!["c".into()] } else { vec![] },
        };
        let inv = Inventory {
            images: vec![
                entry("env:old", "environment", 90_000, false),
                entry("env:new", "environment", 10, false),
                entry("env:used", "environment", 90_000, true),
                entry("runner:1", "runner", 90_000, false),
            ],
            caches: vec![cache("v1", false), cache("v2", true)],
        };
        assert_eq!(
            prune_plan(&inv, Some(86_400), true),
            Pruned {
                removed_images: vec!["env:old".into()],
                removed_caches: vec!["v1".into()],
                kept_in_use: vec!["env:used".into(), "v2".into()],
            }
        );
        assert_eq!(
            prune_plan(&inv, Some(0), false).removed_images,
            vec!["env:old".to_string(), "env:new".into()]
        );
        assert_eq!(prune_plan(&inv, None, false), Pruned::default());
    }

    #[test]
    fn cache_volumes_with_their_paths_sizes_and_users() {
        let mut labels = HashMap::from([
            (label::KIND.to_string(), "cache".to_string()),
            (LABEL_CACHE_PATH.to_string(), "/home/codex/.npm".to_string()),
            (label::STORE.to_string(), "s1".to_string()),
        ]);
        let cache = Volume {
            name: "codex-cache-1".into(),
            labels: labels.clone(),
            usage_data: Some(VolumeUsageData {
                size: 4096,
                ref_count: 1,
            }),
            ..Default::default()
        };
        labels.insert(label::KIND.into(), "something-else".into());
        let other = Volume {
            name: "other".into(),
            labels,
            ..Default::default()
        };
        assert_eq!(
            caches_of(
                &[cache, other],
                &[container(
                    "codex-setup-1",
                    "sha256:e",
                    Some("codex-cache-1")
                )]
            ),
            vec![CacheEntry {
                name: "codex-cache-1".into(),
                path: "/home/codex/.npm".into(),
                store: "s1".into(),
                size_bytes: Some(4096),
                used_by: vec!["codex-setup-1".into()],
            }]
        );
    }
}
