# Footfall: self-hosted web analytics appliance, one process serving HTTP on port 8000,
# storing everything (LMDB store, plugin state) under the /data volume.
#
#   docker build -t footfall .
#   docker run -d -p 8000:8000 -v footfall-data:/data footfall
#
# Settings come from FOOTFALL_* environment variables (see config.example.toml), e.g.
#   docker run -e FOOTFALL_SERVER_PUBLIC_URL=https://stats.example.com ...
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Shared libraries and a font for weasyprint (PDF reports). Versions are not pinned:
# bookworm's security updates should be picked up on every rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 \
        libpangoft2-1.0-0 \
        libharfbuzz0b \
        fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .
RUN pip install --no-cache-dir . \
    && groupadd --system --gid 10001 footfall \
    && useradd --system --uid 10001 --gid footfall --no-log-init \
        --home-dir /data --shell /usr/sbin/nologin footfall \
    && mkdir -p /data \
    && chown footfall:footfall /data

ENV FOOTFALL_DATA_DIR=/data
VOLUME /data
WORKDIR /data
# Numeric, so runtimes can verify it is not root (runAsNonRoot) without reading /etc/passwd.
USER 10001:10001

EXPOSE 8000

# The slim image has no curl: probe the health endpoint with the image's own Python.
# urlopen raises (exit 1) on a refused connection, a timeout or a non-2xx status.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=3)"]

CMD ["footfall", "serve", "--host", "0.0.0.0", "--port", "8000", "--data", "/data"]
