# Image of the cluster side: `codex-orchestrator controller` and `codex-orchestrator gateway`
# (the Helm chart's `image`). Run Pods use the runner image (docker/runner.Dockerfile) instead.
#
#   docker build -f docker/orchestrator.Dockerfile -t registry.example/codex-orchestrator:0.1.0 .
#
# Multi-stage: the binary is built from this repository with the locked dependencies; the
# final stage holds only the binary, CA certificates (the Kubernetes API and model endpoints
# are reached over TLS with the system roots) and runs as an unprivileged uid, matching the
# chart's restricted-profile securityContext (runAsUser 65532, read-only root filesystem).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# A binary already built for this platform at prebuilt/codex-orchestrator in the build
# context is taken as it is (how the tests build this image offline, with both images set to
# the runner's debootstrapped base: crates/testkit/src/cluster.rs); otherwise it is built.
RUN if [ -x prebuilt/codex-orchestrator ]; then \
      install -m 0755 prebuilt/codex-orchestrator /codex-orchestrator; \
    else \
      cargo build --release --locked --bin codex-orchestrator \
      && install -m 0755 target/release/codex-orchestrator /codex-orchestrator; \
    fi

FROM ${BASE_IMAGE}
RUN if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=build /codex-orchestrator /usr/local/bin/codex-orchestrator
USER 65532:65532
ENV HOME=/tmp
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/codex-orchestrator"]
CMD ["--help"]
