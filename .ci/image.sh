#!/usr/bin/env bash
# Build, run and probe the production image (Dockerfile) as CI's last step, timed.
#
# No container registry is reachable from the CI machines, so the base image (debian:bookworm-slim) is made here with
# debootstrap from Debian's own packages and imported; the image is built with buildah (--format docker keeps the
# HEALTHCHECK) and run with podman on runc (crun fails on these machines' hybrid cgroups) with ulimits within the
# host's. The probe (.ci/probe_image.py) calls /healthz, /readyz, discovery and one patient-view as an EHR would, with
# signed client JWTs, in the production profile. Skips, saying why, only where the tools cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0

if ! command -v buildah >/dev/null || ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman debootstrap runc >/dev/null
  else
    echo "image: SKIPPED (buildah, podman and debootstrap are not installed and cannot be installed here)"
    exit 0
  fi
fi

BASE=localhost/debian:bookworm-slim
if ! podman image exists "$BASE"; then
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import - "$BASE" >/dev/null
  rm -rf "$rootfs"
fi
echo "image: base ready after ${SECONDS} s"

# The host's CA bundle (a TLS-inspecting proxy's CA, if any) for pip inside the build.
CA=/etc/ssl/certs/ca-certificates.crt
buildah bud --quiet --format docker --build-arg BASE="$BASE" \
  --volume "$CA:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt \
  -t localhost/cds-service:ci . >/dev/null
echo "image: built after ${SECONDS} s ($(podman image inspect localhost/cds-service:ci --format '{{.Size}}') bytes)"

work=$(mktemp -d)
chmod 755 "$work"
.venv/bin/python .ci/probe_image.py - "$work/issuers.json" "$work/client.pem" --write-issuers
chmod 644 "$work/issuers.json"
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name="cds-service-ci-$$"
cleanup() { podman rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
# ulimits within the host's (runc may not raise them; podman's defaults are higher); no systemd for healthchecks
podman --runtime runc run -d --name "$name" --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --no-healthcheck \
  -p "127.0.0.1:$port:8080" \
  -v "$work/issuers.json:/etc/cds/issuers.json:ro" \
  -e CDS_PUBLIC_BASE_URL=https://cds.example.org -e CDS_TRUSTED_ISSUERS=/etc/cds/issuers.json \
  -e CDS_PATIENT_HASH_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" -e CDS_WORKERS=2 \
  localhost/cds-service:ci >/dev/null
if ! .venv/bin/python .ci/probe_image.py "http://127.0.0.1:$port" "$work/issuers.json" "$work/client.pem"; then
  podman logs "$name" 2>&1 | tail -40
  exit 1
fi
health=$(podman image inspect localhost/cds-service:ci --format '{{.HealthCheck.Test}}')
echo "image: HEALTHCHECK kept: $health"
echo "image: built, run and probed in ${SECONDS} s"
