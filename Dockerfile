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

ARG PYTHON_IMAGE=python:3.11-slim
ARG UV_VERSION=0.13

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

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

# 8080: receiver (webhooks, /healthz, /readyz, /metrics). 9191: worker metrics and /healthz.
EXPOSE 8080 9191

ENTRYPOINT ["calendly-brevo"]
CMD ["receiver"]
