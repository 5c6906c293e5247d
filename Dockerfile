# syntax=docker/dockerfile:1.7
#
# calendly-brevo container image.
#
#   docker build -t calendly-brevo:0.1.0 .
#   docker run --rm calendly-brevo:0.1.0 --help
#
# Two stages: the builder installs the locked dependencies and the project into /opt/venv with uv
# (never pip, never an unlocked resolve); the runtime stage is python:3.11-slim with that venv and
# nothing else: no uv, no compiler, no source tree. Both stages use the same base image, so the
# venv's interpreter symlinks point at the same /usr/local/bin/python3.11.
# tests/deploy/test_container.py checks the properties promised here.

# Base images are pinned by digest (a moved tag cannot change the build). These digests were not
# checked against the registries from the machine that wrote them (no registry access there): each
# is the digest other public repositories pin for that tag (uv 0.13.0: four, python:3.11-slim:
# two, one via the public.ecr.aws mirror of docker/library). Verify and refresh with
#   docker buildx imagetools inspect python:3.11-slim
#   docker buildx imagetools inspect ghcr.io/astral-sh/uv:0.13.0
# tests/deploy/test_pins.py fails on an unpinned FROM.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.0@sha256:cdc6093146eb3ff6a40107b38f008b789e050e77ad87865e381d9917da55a168

FROM ${UV_IMAGE} AS uv

# --- builder --------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

COPY --from=uv /uv /usr/local/bin/uv

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when the lock file changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself, installed as a wheel (--no-editable) so the venv does not point back
# at /src, which the runtime stage does not have.
COPY . /src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --- runtime --------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="calendly-brevo" \
      org.opencontainers.image.description="Calendly webhooks to Brevo, exactly once." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

# A fixed uid/gid that the Kubernetes securityContext (runAsUser 10001) and compose match.
RUN groupadd --system --gid 10001 calendly-brevo \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin calendly-brevo

COPY --from=builder --chown=root:root /opt/venv /opt/venv

# HOST: listen on all interfaces inside the container (the app's default is 127.0.0.1).
# Nothing is written to disk but /tmp and PROMETHEUS_MULTIPROC_DIR, so the root filesystem can
# be mounted read-only; bytecode was compiled in the builder.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    METRICS_PORT=9191

USER 10001:10001

# 8080: receiver public port (webhooks, OAuth callback, /healthz, /readyz). 8001: receiver admin
# port (admin API, OAuth start, /metrics), never public. 9191: worker metrics and /healthz.
EXPOSE 8080 8001 9191

ENTRYPOINT ["calendly-brevo"]
CMD ["receiver"]
