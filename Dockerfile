# syntax=docker/dockerfile:1
# Production image: gunicorn with the production profile, as a non-root user. Build stage installs the pinned
# dependencies and the service (the release build: its request path compiled with mypyc) into a virtual environment;
# the final stage copies only that environment (no pip cache, no sources, no build tools).

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 CDS_SERVICE_MYPYC=1
WORKDIR /src
# A C compiler for the request path's modules, which setup.py compiles with mypyc (build stage only).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY cds_service ./cds_service
COPY cards ./cards
RUN /opt/venv/bin/pip install --constraint constraints.txt . \
 && /opt/venv/bin/pip uninstall --yes pip

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CDS_PROFILE=production \
    CDS_HOST=0.0.0.0 \
    CDS_PORT=8080 \
    CDS_INSTANCE_PATH=/var/lib/cds-service
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin cds \
 && mkdir -p /var/lib/cds-service \
 && chown cds:cds /var/lib/cds-service
COPY --from=build /opt/venv /opt/venv
USER cds
WORKDIR /var/lib/cds-service
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CDS_PORT', '8080') + '/healthz', timeout=2)"]
CMD ["cds-service", "serve"]
