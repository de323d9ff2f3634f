# syntax=docker/dockerfile:1
# Production image: gunicorn with the production profile, as a non-root user, on Debian 12 with Debian's own Python
# (3.11). The build stage installs the pinned dependencies and the service (the release build: its request path
# compiled with mypyc) into a virtual environment; the final stage copies only that environment (no pip cache, no
# sources, no build tools). Builds the same with `docker build` and with `buildah bud --format docker` (which keeps
# the HEALTHCHECK); where no registry is reachable, `ci/image.sh` makes the base with debootstrap.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
# Behind a TLS-inspecting proxy: pass its CA bundle as PIP_CERT, either mounted for the build (buildah --volume) or
# put in the build context as `build-ca.crt` (copied below, build stage only) with PIP_CERT=/src/build-ca.crt.
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 CDS_SERVICE_MYPYC=1 DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# Python's headers and a C compiler for the modules setup.py compiles with mypyc (build stage only).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
COPY pyproject.toml setup.py constraints.txt README.md build-ca.crt* ./
COPY cds_service ./cds_service
COPY cards ./cards
RUN /opt/venv/bin/pip install --constraint constraints.txt '.[tracing]' \
 && /opt/venv/bin/pip uninstall --yes pip

FROM ${BASE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CDS_PROFILE=production \
    CDS_HOST=0.0.0.0 \
    CDS_PORT=8080 \
    CDS_INSTANCE_PATH=/var/lib/cds-service
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin cds \
 && mkdir -p /var/lib/cds-service \
 && chown cds:cds /var/lib/cds-service
COPY --from=build /opt/venv /opt/venv
USER cds
WORKDIR /var/lib/cds-service
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CDS_PORT', '8080') + '/healthz', timeout=2)"]
CMD ["cds-service", "serve"]
