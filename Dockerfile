# syntax=docker/dockerfile:1
# The Gatekeeper external data provider (atcr-verify-provider).
#   docker build -t atcr-verify-provider:0.1.0 .
# Runs as uid/gid 65532 on a read-only root filesystem: nothing is written at run time
# (bytecode is compiled at build time; PYTHONDONTWRITEBYTECODE stops any attempt).
# Pin the base image by digest in production: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# .dockerignore keeps tests, caches, node_modules and the Kubernetes artifacts out.
COPY . .
RUN /opt/venv/bin/pip install --no-cache-dir --no-compile '.[provider]' \
 && /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/venv/lib \
 && /opt/venv/bin/atcr-verify-provider --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="atcr-verify-provider" \
      org.opencontainers.image.description="Gatekeeper external data provider: admit only images signed by trusted ATProto DIDs" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home \
      --shell /usr/sbin/nologin nonroot
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/nonroot
WORKDIR /home/nonroot
USER 65532:65532
EXPOSE 8443 8080
# Arguments come from the Deployment (manifests/provider/deployment.yaml, the Helm chart).
ENTRYPOINT ["atcr-verify-provider"]
