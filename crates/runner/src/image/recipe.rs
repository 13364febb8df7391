//! The pure part of the image recipe: names, cache keys, content hashes, labels, the Dockerfile
//! text and the in-memory build context. No I/O except reading the agent binary into the context.

use std::collections::BTreeMap;
use std::io::Write;

use sha2::{Digest, Sha256};

use codex_orchestrator_core::model::VERSION;

/// Repository of the runner images; the tag names our version and the codex version
/// (`codex-orchestrator-runner:0.1.0-codex0.163.0`).
pub use codex_orchestrator_core::contract::RUNNER_REPO;
/// Repository of the offline-built base image; the tag is [`base_key`] of the recipe.
pub const BASE_REPO: &str = "codex-orchestrator-base";

/// Label keys (all images we build carry them).
pub use codex_orchestrator_core::contract::labels::{
    BASE_KEY as LABEL_BASE_KEY, CODEX_SHA256 as LABEL_CODEX_SHA256,
    CODEX_VERSION as LABEL_CODEX_VERSION, CONTENT_HASH as LABEL_CONTENT_HASH, KIND as LABEL_KIND,
    VERSION as LABEL_VERSION,
};

/// The runner Dockerfile, shipped for users as `docker/runner.Dockerfile` and used verbatim by
/// `image build`.
pub const RUNNER_DOCKERFILE: &str = include_str!("../../../../docker/runner.Dockerfile");

/// Names of our binaries inside the build context (the Dockerfile copies them to
/// `codex_orchestrator_core::contract::{AGENT_BIN, EGRESS_BIN}`).
pub const AGENT_FILE_NAME: &str = "codex-orchestrator-agent";
pub const EGRESS_FILE_NAME: &str = "codex-orchestrator-egress";
/// The directory of the build context holding the codex release's files (the Dockerfile
/// copies its contents to `/usr/local/bin`).
pub const CODEX_CONTEXT_DIR: &str = "codex";
/// Where the codex binary lives inside the image.
pub const CODEX_PATH_IN_IMAGE: &str = "/usr/local/bin/codex";
/// Mount points the runner uses, with their modes. The mode matters: Docker gives a tmpfs
/// mounted over an existing image directory that directory's mode (a `mode=` option is
/// ignored), so HOME and the scratch dir are world-writable with the sticky bit, like /tmp, for
/// whatever unprivileged uid the container runs as. /workspace is always a bind mount.
pub const MOUNT_POINTS: [(&str, u32); 3] = [
    ("workspace", 0o755),
    ("scratch", 0o1777),
    ("home/codex", 0o1777),
];

/// Everything that decides the contents of the offline base image. Its [`base_key`] is the
/// base image's tag, so a cached base is reused exactly when nothing here changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseRecipe {
    /// Bump when the way the rootfs is assembled changes in a way the fields below miss.
    pub recipe_version: u32,
    pub suite: &'static str,
    pub variant: &'static str,
    pub packages: &'static [&'static str],
    /// Extra files written into the rootfs: (path relative to the root, contents, mode).
    pub files: &'static [(&'static str, &'static str, u32)],
    /// Paths (relative to the root) emptied to keep the image small.
    pub emptied_dirs: &'static [&'static str],
    /// Image config applied at import (`docker import --change`).
    pub env: &'static [&'static str],
    pub workdir: &'static str,
}

/// The one recipe we build.
pub const BASE_RECIPE: BaseRecipe = BaseRecipe {
    // 2: the labels moved to the `codex-orchestrator.dev/` prefix. 3: codex moved out of the
    // base into the runner image (one base for every codex version).
    recipe_version: 3,
    suite: "bookworm",
    variant: "minbase",
    packages: &[
        "ca-certificates",
        "git",
        "python3",
        "python3-pytest",
        "make",
        "procps",
    ],
    // The container user is the workspace owner's uid, which may not own every directory the
    // model's `git` touches (scratch copies, CI workspaces owned by root): trust them all. The
    // container is the sandbox.
    files: &[("etc/gitconfig", "[safe]\n\tdirectory = *\n", 0o644)],
    emptied_dirs: &[
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
    ],
    env: &[
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
    ],
    workdir: "/workspace",
};

impl BaseRecipe {
    /// A canonical text of the recipe; [`base_key`] hashes it.
    pub fn canonical(&self) -> String {
        let mut s = format!(
            "recipe={}\nsuite={}\nvariant={}\npackages={}\nworkdir={}\n",
            self.recipe_version,
            self.suite,
            self.variant,
            self.packages.join(","),
            self.workdir
        );
        for (path, contents, mode) in self.files {
            s.push_str(&format!(
                "file={path}:{mode:o}:{}\n",
                hex_sha256(contents.as_bytes())
            ));
        }
        for d in self.emptied_dirs {
            s.push_str(&format!("emptied={d}\n"));
        }
        for e in self.env {
            s.push_str(&format!("env={e}\n"));
        }
        for (m, mode) in MOUNT_POINTS {
            s.push_str(&format!("dir={m}:{mode:o}\n"));
        }
        s
    }

    /// `docker import --change` instructions: env, workdir and the base labels.
    pub fn import_changes(&self) -> Vec<String> {
        let mut changes: Vec<String> = self.env.iter().map(|e| format!("ENV {e}")).collect();
        changes.push(format!("WORKDIR {}", self.workdir));
        for (k, v) in base_labels(self) {
            changes.push(format!("LABEL {k}=\"{v}\""));
        }
        changes
    }
}

/// Short content key of a recipe (the base image tag).
pub fn base_key(recipe: &BaseRecipe) -> String {
    hex_sha256(recipe.canonical().as_bytes())[..16].to_string()
}

/// `codex-orchestrator-base:<key>`.
pub fn base_tag(recipe: &BaseRecipe) -> String {
    format!("{BASE_REPO}:{}", base_key(recipe))
}

/// The runner image of the default codex version:
/// `codex-orchestrator-runner:<our version>-codex<default codex version>`.
pub fn default_runner_tag() -> String {
    codex_orchestrator_core::contract::default_runner_image()
}

/// Labels of the base image.
pub fn base_labels(recipe: &BaseRecipe) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_KIND.to_string(), "base".to_string()),
        (LABEL_BASE_KEY.to_string(), base_key(recipe)),
    ])
}

/// What the runner image is made of; [`ContentInputs::hash`] is its content-hash label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentInputs<'a> {
    /// sha256 of our agent binary as given (before any stripping).
    pub agent_sha256: &'a str,
    /// sha256 of our egress proxy binary as given.
    pub egress_sha256: &'a str,
    /// [`codex_files_sha256`] of the codex release's files.
    pub codex_sha256: &'a str,
    pub dockerfile: &'a str,
    /// The base image id (`sha256:…`).
    pub base_id: &'a str,
}

impl ContentInputs<'_> {
    /// sha256 over every input, each length-prefixed so no two input sets collide by
    /// concatenation.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            "codex-orchestrator-runner/3",
            VERSION,
            self.agent_sha256,
            self.egress_sha256,
            self.codex_sha256,
            self.dockerfile,
            self.base_id,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// One sha256 over a codex release's files: each file's name and sha256, in order,
/// length-prefixed.
pub fn codex_files_sha256(files: &[(&str, &str)]) -> String {
    let mut h = Sha256::new();
    for (name, sha) in files {
        for part in [*name, *sha] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// Build args for [`RUNNER_DOCKERFILE`].
pub fn runner_build_args(
    base_image: &str,
    codex_version: &str,
    content_hash: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("BASE_IMAGE".to_string(), base_image.to_string()),
        ("VERSION".to_string(), VERSION.to_string()),
        ("CODEX_VERSION".to_string(), codex_version.to_string()),
        ("CONTENT_HASH".to_string(), content_hash.to_string()),
    ])
}

/// The labels a runner image with `codex_version` built from inputs hashing to
/// `content_hash` must carry.
pub fn runner_labels(codex_version: &str, content_hash: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_KIND.to_string(), "runner".to_string()),
        (LABEL_VERSION.to_string(), VERSION.to_string()),
        (LABEL_CODEX_VERSION.to_string(), codex_version.to_string()),
        (LABEL_CONTENT_HASH.to_string(), content_hash.to_string()),
    ])
}

/// Writes the tar build context to `out`: `Dockerfile`, the codex release's files under
/// [`CODEX_CONTEXT_DIR`] (each `(name, size, contents)`, streamed: they are hundreds of MB) and
/// our two binaries (all binaries mode 0755). Equal inputs give equal bytes.
pub fn write_build_context<W: Write, R: std::io::Read>(
    out: W,
    dockerfile: &str,
    agent_binary: &[u8],
    egress_binary: &[u8],
    codex_files: Vec<(&str, u64, R)>,
) -> std::io::Result<W> {
    let mut builder = tar::Builder::new(out);
    append_file(&mut builder, "Dockerfile", dockerfile.as_bytes(), 0o644)?;
    for (name, size, contents) in codex_files {
        let mut header = file_header(size, 0o755);
        builder.append_data(&mut header, format!("{CODEX_CONTEXT_DIR}/{name}"), contents)?;
    }
    append_file(&mut builder, AGENT_FILE_NAME, agent_binary, 0o755)?;
    append_file(&mut builder, EGRESS_FILE_NAME, egress_binary, 0o755)?;
    builder.into_inner()
}

/// A regular file's tar header with fixed metadata.
fn file_header(size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// Append one regular file with fixed metadata (so equal inputs give equal contexts).
pub fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut header = file_header(data.len() as u64, mode);
    builder.append_data(&mut header, name, data)
}

/// Lowercase hex sha256 of some bytes.
pub fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_key_is_stable_and_tracks_every_field() {
        let k = base_key(&BASE_RECIPE);
        assert_eq!(k.len(), 16);
        assert_eq!(k, base_key(&BASE_RECIPE.clone()));
        let variants = [
            BaseRecipe {
                recipe_version: BASE_RECIPE.recipe_version + 1,
                ..BASE_RECIPE
            },
            BaseRecipe {
                suite: "trixie",
                ..BASE_RECIPE
            },
            BaseRecipe {
                packages: &["git"],
                ..BASE_RECIPE
            },
            BaseRecipe {
                files: &[],
                ..BASE_RECIPE
            },
            BaseRecipe {
                env: &[],
                ..BASE_RECIPE
            },
            BaseRecipe {
                workdir: "/",
                ..BASE_RECIPE
            },
        ];
        for v in variants {
            assert_ne!(base_key(&v), k, "{v:?}");
        }
        assert_eq!(
            base_tag(&BASE_RECIPE),
            format!("codex-orchestrator-base:{k}")
        );
    }

    #[test]
    fn runner_tag_carries_our_version_and_the_codex_version() {
        assert_eq!(
            default_runner_tag(),
            format!("codex-orchestrator-runner:{VERSION}-codex0.163.0")
        );
    }

    #[test]
    fn codex_files_hash_tracks_names_and_contents() {
        let h = codex_files_sha256(&[("codex", "a"), ("rg", "b")]);
        assert_eq!(h.len(), 64);
        for other in [
            codex_files_sha256(&[("codex", "a")]),
            codex_files_sha256(&[("codex", "a"), ("rg", "c")]),
            codex_files_sha256(&[("codex", "a"), ("rh", "b")]),
            codex_files_sha256(&[("codexa", ""), ("rg", "b")]),
        ] {
            assert_ne!(other, h);
        }
    }

    #[test]
    fn content_hash_changes_with_each_input() {
        let base = ContentInputs {
            agent_sha256: "a",
            egress_sha256: "e",
            codex_sha256: "c",
            dockerfile: RUNNER_DOCKERFILE,
            base_id: "sha256:b",
        };
        let h = base.hash();
        assert_eq!(h.len(), 64);
        assert_eq!(h, base.clone().hash());
        let others = [
            ContentInputs {
                agent_sha256: "a2",
                ..base.clone()
            },
            ContentInputs {
                egress_sha256: "e2",
                ..base.clone()
            },
            ContentInputs {
                codex_sha256: "c2",
                ..base.clone()
            },
            ContentInputs {
                dockerfile: "FROM x",
                ..base.clone()
            },
            ContentInputs {
                base_id: "sha256:b2",
                ..base.clone()
            },
            // Concatenation must not collide.
            ContentInputs {
                agent_sha256: "ae",
                egress_sha256: "",
                ..base.clone()
            },
        ];
        for o in others {
            assert_ne!(o.hash(), h, "{o:?}");
        }
    }

    #[test]
    fn import_changes_set_env_workdir_and_labels() {
        let changes = BASE_RECIPE.import_changes();
        let key = base_key(&BASE_RECIPE);
        assert_eq!(
            changes,
            vec![
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
                "ENV LANG=C.UTF-8".to_string(),
                "WORKDIR /workspace".to_string(),
                format!("LABEL codex-orchestrator.dev/base-key=\"{key}\""),
                "LABEL codex-orchestrator.dev/kind=\"base\"".to_string(),
            ]
        );
    }

    #[test]
    fn runner_dockerfile_uses_every_build_arg_and_label() {
        for arg in runner_build_args("b", "0.163.0", "h").keys() {
            assert!(RUNNER_DOCKERFILE.contains(&format!("ARG {arg}")), "{arg}");
        }
        assert!(
            RUNNER_DOCKERFILE.contains(&format!("COPY {CODEX_CONTEXT_DIR}/ /usr/local/bin/\n"))
        );
        for label in runner_labels("0.163.0", "h").keys() {
            assert!(RUNNER_DOCKERFILE.contains(label.as_str()), "{label}");
        }
        use codex_orchestrator_core::contract::{AGENT_BIN, EGRESS_BIN};
        assert!(RUNNER_DOCKERFILE.contains(&format!(r#"ENTRYPOINT ["{AGENT_BIN}", "agent"]"#)));
        assert!(RUNNER_DOCKERFILE.contains(&format!("COPY {AGENT_FILE_NAME} {AGENT_BIN}\n")));
        assert!(RUNNER_DOCKERFILE.contains(&format!("COPY {EGRESS_FILE_NAME} {EGRESS_BIN}\n")));
    }

    #[test]
    fn build_context_holds_dockerfile_and_executable_binaries() {
        let build = || {
            let files: [(&str, &[u8]); 2] = [("codex", b"\x7fELF-codex"), ("rg", b"\x7fELF-rg")];
            let codex: Vec<(&str, u64, &[u8])> = files
                .iter()
                .map(|(n, b)| (*n, b.len() as u64, *b))
                .collect();
            write_build_context(
                Vec::new(),
                "FROM scratch\n",
                b"\x7fELF-ish",
                b"\x7fELF-egress",
                codex,
            )
            .unwrap()
        };
        let bytes = build();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, u32, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mode = e.header().mode().unwrap();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (name, mode, data)
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("Dockerfile".to_string(), 0o644, b"FROM scratch\n".to_vec()),
                ("codex/codex".to_string(), 0o755, b"\x7fELF-codex".to_vec()),
                ("codex/rg".to_string(), 0o755, b"\x7fELF-rg".to_vec()),
                (
                    "codex-orchestrator-agent".to_string(),
                    0o755,
                    b"\x7fELF-ish".to_vec()
                ),
                (
                    "codex-orchestrator-egress".to_string(),
                    0o755,
                    b"\x7fELF-egress".to_vec()
                ),
            ]
        );
        assert_eq!(bytes, build());
    }
}
