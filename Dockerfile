# syntax=docker/dockerfile:1
# The fanout worker image. Two stages: `builder` installs the runtime dependencies pinned with hashes in
# requirements.lock (`make lock` writes it from pyproject.toml; never the dev extras) into /opt/venv, then
# the project's wheel without dependencies; the runtime stage copies that venv into a clean slim image
# with no compiler, no pip cache, no source tree, and runs as a non-root user.
#
# The base is pinned by tag and digest (the multi-platform index). To move to a newer patch release,
# change both, e.g. with `docker buildx imagetools inspect python:3.11-slim-bookworm`.
# tests/deploy/test_image.py builds and installs the wheel exactly as the builder stage does.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY src ./src

# Build the wheel; install the locked dependencies into a self-contained venv, every file checked against
# its hash, then the wheel alone. Binary wheels only: every dependency ships manylinux wheels, so no
# compiler is needed anywhere.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock \
 && /opt/venv/bin/pip install --no-deps /wheels/fanout-*.whl \
 && /opt/venv/bin/pip uninstall --yes pip \
 && /opt/venv/bin/fanout --help > /dev/null


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="fanout" \
      org.opencontainers.image.description="Queue-driven fan-out of real-time events to API Gateway WebSocket connections"

# Production settings: no local-stack defaults; metrics and health listen on every interface so the
# container's own health check and a Prometheus scraper in the VPC can reach them.
ENV FANOUT_ENV=production \
    FANOUT_METRICS_HOST=0.0.0.0 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system --gid 10001 fanout \
 && useradd --system --uid 10001 --gid fanout --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin fanout

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /tmp

EXPOSE 9400

# /healthz answers 200 while the worker's event loop is responsive. The slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9400/healthz', timeout=4)"]

# The worker drains in-flight events on SIGTERM within FANOUT_SHUTDOWN_BUDGET_S.
STOPSIGNAL SIGTERM

ENTRYPOINT ["fanout"]
CMD ["worker"]
