# syntax=docker/dockerfile:1
# The analyzer-bridge image. Build from the repository root (the uv workspace):
#   docker build -f deploy/docker/analyzer-bridge.Dockerfile -t audiopipe/analyzer-bridge .

# Stage 1: resolve the locked environment of this one workspace member with uv.
FROM python:3.11-slim-bookworm AS builder
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
# Bytecode compiled at build time (the runtime filesystem may be read-only); copies, not
# links, because the cache mount is gone after the build; the image's Python, never a download.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# Third-party dependencies first: this layer is rebuilt only when the lock changes.
# uv needs every workspace member's pyproject.toml to read the workspace.
COPY uv.lock pyproject.toml ./
COPY contracts/pyproject.toml contracts/
COPY libs/servicekit/pyproject.toml libs/servicekit/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/uploader/pyproject.toml services/uploader/
COPY services/analyzer-bridge/pyproject.toml services/analyzer-bridge/
COPY services/notifier/pyproject.toml services/notifier/
COPY reference-analyzer/pyproject.toml reference-analyzer/
COPY deploy/local/pyproject.toml deploy/local/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package analyzer-bridge

# Then the workspace packages this one needs, installed into the venv (not editable),
# so that the runtime stage needs the venv alone.
COPY contracts/ contracts/
COPY libs/servicekit/ libs/servicekit/
COPY services/analyzer-bridge/ services/analyzer-bridge/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package analyzer-bridge

# Stage 2: the venv on a slim Python, run as an unprivileged user.
FROM python:3.11-slim-bookworm
# A numeric user, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 audiopipe \
    && useradd --system --uid 10001 --gid audiopipe --no-create-home --shell /usr/sbin/nologin audiopipe
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8103
WORKDIR /app
USER 10001:10001
EXPOSE 8103
# The slim image has no curl; the venv's Python asks /healthz (liveness) itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"HTTP_PORT\"]}/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["python", "-m", "analyzer_bridge"]
