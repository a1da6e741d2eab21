# Footfall: self-hosted web analytics appliance, one process serving HTTP on port 8000,
# storing everything (LMDB store, plugin state, single-file plugins) under the /data volume.
#
#   docker build -t footfall .
#   docker run -d --name footfall -p 8000:8000 -v footfall-data:/data footfall
#   docker logs footfall            # the first admin's password; how to add a site
#
# Settings come from FOOTFALL_* environment variables (see config.example.toml), e.g.
#   docker run -e FOOTFALL_SERVER_PUBLIC_URL=https://stats.example.com ...
# With podman or buildah, build with --format docker: the OCI format drops HEALTHCHECK.

# -- build: Footfall as a wheel; the source tree stays in this stage -----------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# -- the image: Python, the wheel and its dependencies, nothing else -----------------------
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Shared libraries and a font for weasyprint (PDF exports; harfbuzz-subset embeds the font
# subsets, without it weasyprint falls back to a slower fontTools path), and tini as PID 1: it forwards
# SIGTERM to footfall from the first instant (a PID 1 without a handler ignores it) and
# reaps zombies. Versions are not pinned: bookworm's security updates should be picked up
# on every rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 \
        libpangoft2-1.0-0 \
        libharfbuzz0b \
        libharfbuzz-subset0 \
        fonts-dejavu-core \
        tini \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 footfall \
    && useradd --system --uid 10001 --gid footfall --no-log-init \
        --home-dir /data --shell /usr/sbin/nologin footfall \
    && mkdir -p /data \
    && chown footfall:footfall /data

# The server's address and port are settings, not command-line options, so `footfall health`
# (the HEALTHCHECK) probes what `footfall serve` listens on, and -e FOOTFALL_SERVER_PORT=...
# or the TLS settings change both. FOOTFALL_DEMO stays off (the default): a production
# install starts with the first admin and no sites.
ENV FOOTFALL_DATA_DIR=/data \
    FOOTFALL_SERVER_HOST=0.0.0.0 \
    FOOTFALL_SERVER_PORT=8000
VOLUME /data
WORKDIR /data
# Numeric, so runtimes can verify it is not root (runAsNonRoot) without reading /etc/passwd.
USER 10001:10001

EXPOSE 8000

# `footfall health` reads the settings (http or https, the port), asks the readiness probe
# /ready (storage writable, last commit fine) and exits 1 unless it answers 200 with status
# "ok" (a degraded server answers 503). Liveness alone is /api/v1/health/live.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["footfall", "health"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["footfall", "serve"]
