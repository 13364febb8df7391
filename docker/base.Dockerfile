# Online variant of the runner base image, for machines that can pull from a registry.
# `codex-orchestrator image build` produces the same contents offline (debootstrap + import);
# see crates/runner/src/image/ for that recipe. Build with:
#
#   docker build -t codex-orchestrator-base:online -f docker/base.Dockerfile docker/
#
# then pass `--base-image codex-orchestrator-base:online` to `codex-orchestrator image build`
# (or use docker/runner.Dockerfile directly). The Codex CLI is not here: the runner image adds
# the release it is built for.
#
# git and python3 (with pytest and make) are there because the model runs the project's tests
# and git commands; procps gives `ps`/`kill` to the model's shell.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git python3 python3-pytest make procps \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /workspace /scratch /home/codex \
 && chmod 1777 /scratch /home/codex \
 && printf '[safe]\n\tdirectory = *\n' > /etc/gitconfig
ENV LANG=C.UTF-8
WORKDIR /workspace
LABEL codex-orchestrator.dev/kind="base"
