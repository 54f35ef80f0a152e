# Video Gateway: one image for all four roles; the command picks the role (the entry point is `video-gateway`):
#   docker run IMAGE              the API (`serve`, the default), on 0.0.0.0:${VG_API__PORT:-8000}
#   docker run IMAGE worker       an archive worker (any number of them)
#   docker run IMAGE migrate      upgrade the schema; run it once per release, before the API and workers
#   docker run IMAGE simulator    the upstream simulator (local and test use only)
#
# tests/integration/packaging/test_dockerfile.py lints this file with hadolint and, as there is no Docker daemon
# in CI, replays the build stage (its WORKDIR/ENV/COPY/RUN lines, verbatim but for paths) into a fresh venv under
# a temporary directory, lays out the final stage's files the same way and runs `migrate`, `serve` and the
# HEALTHCHECK from there. Keep the build stage to those four instructions and `pip install` non-editable.

# ---- build: install the locked dependencies, then the package, into a venv (wheels only; nothing to compile) ----
FROM python:3.11.15-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The locked dependencies first (their layer is reused while requirements.lock is unchanged), each checked
# against its hash; then the project itself, without resolving anything again.
COPY requirements.lock pyproject.toml ./
COPY app ./app
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps .

# ---- runtime: the venv, the migrations and a non-root user; no compilers, no pip cache, no sources ----
FROM python:3.11.15-slim-bookworm
# Numeric IDs, so Kubernetes' runAsNonRoot can check them (the Helm chart runs as 10001:10001).
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --no-log-init --uid 10001 --gid gateway --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin gateway
# The venv must keep its build path: its scripts' shebangs point at /opt/venv/bin/python.
COPY --from=build /opt/venv /opt/venv
# app/migrate.py looks for alembic.ini and migrations/ in the working directory of a non-editable install.
# Root-owned and read-only for the gateway user; the root filesystem may be mounted read-only.
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
COPY docker/healthcheck.py /opt/video-gateway/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VG_API__HOST=0.0.0.0 \
    VG_API__PORT=8000
USER 10001:10001
EXPOSE 8000
# GET /healthz when the container runs `serve`; the other roles have no HTTP port and report healthy while their
# process lives (see docker/healthcheck.py), so the one image needs no per-role override. Kubernetes ignores
# this and uses the chart's probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/opt/video-gateway/healthcheck.py"]
ENTRYPOINT ["video-gateway"]
CMD ["serve"]
