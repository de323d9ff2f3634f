#!/usr/bin/env bash
# `docker compose up` of deploy/compose.yaml on a Docker engine, as a user on a plain Docker host runs it, timed.
#
# What differs from a plain Docker host, because no container registry is reachable from the CI machines: the Docker
# engine and Compose come from Debian's packages (Compose v2 from Debian 13's package: Debian 12 has only v1), the
# engine runs without iptables (containers reach each other and the published port, not the internet) on the vfs
# storage driver; the base image is the one .ci/image.sh made with debootstrap; PostgreSQL and nginx are stand-ins
# built from Debian's packages (.ci/standins/) named through the compose file's POSTGRES_IMAGE and NGINX_IMAGE; and
# the service's image is built with `docker build` (the legacy builder, on the host network for apt and pip) before
# `docker compose up`, which uses it. Then: the migration has run once and exited 0, three instances serve behind
# nginx, discovery and a patient-view call answer through nginx, and the cards are in PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
say() { echo "compose: $*"; }

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  say "SKIPPED (needs root and apt-get to install a Docker engine here)"
  exit 0
fi
if ! command -v dockerd >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! docker compose version >/dev/null 2>&1; then
  deb=$(mktemp -d)
  curl -fsS -m 120 -o "$deb/compose.deb" \
    http://deb.debian.org/debian/pool/main/d/docker-compose/docker-compose_2.26.1-4_amd64.deb
  dpkg-deb -x "$deb/compose.deb" "$deb/x"
  mkdir -p /usr/local/lib/docker/cli-plugins
  install -m 755 "$deb/x/usr/libexec/docker/cli-plugins/docker-compose" /usr/local/lib/docker/cli-plugins/
  rm -rf "$deb"
fi

started_engine=""
if ! docker info >/dev/null 2>&1; then
  dockerd --iptables=false --ip6tables=false --storage-driver=vfs >/tmp/cds-ci-dockerd.log 2>&1 &
  started_engine=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /tmp/cds-ci-dockerd.log; say "the Docker engine did not start"; exit 1; }
fi

project=cds-ci-compose
cleanup() {
  (cd deploy && docker compose -p "$project" down -v --remove-orphans >/dev/null 2>&1) || true
  if [ -n "$started_engine" ]; then kill "$started_engine" 2>/dev/null || true; wait "$started_engine" 2>/dev/null || true; fi
}
trap cleanup EXIT

BASE=localhost/debian:bookworm-slim
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  podman save "$BASE" | docker load >/dev/null  # made by .ci/image.sh
fi
say "engine and base ready after ${SECONDS} s"

CA=/etc/ssl/certs/ca-certificates.crt
build() {  # tag, context, extra args...
  local tag=$1 context=$2
  shift 2
  DOCKER_BUILDKIT=0 docker build --quiet --network host --build-arg BASE="$BASE" "$@" -t "$tag" "$context" >/dev/null
}
build localhost/cds-ci-postgres .ci/standins/postgres
build localhost/cds-ci-nginx .ci/standins/nginx
# pip inside the build trusts the host's CA bundle (a TLS-inspecting proxy's CA, if any): the legacy builder mounts
# nothing, so the bundle goes into a copy of the build context.
context=$(mktemp -d)
git ls-files -z | xargs -0 cp --parents -t "$context"
cp "$CA" "$context/build-ca.crt"
build localhost/cds-service:compose "$context" --build-arg PIP_CERT=/src/build-ca.crt
rm -rf "$context"
say "images built with docker build after ${SECONDS} s"

port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export CDS_IMAGE=localhost/cds-service:compose POSTGRES_IMAGE=localhost/cds-ci-postgres \
  NGINX_IMAGE=localhost/cds-ci-nginx CDS_HTTP_PORT=$port
(cd deploy && docker compose -p "$project" up -d --quiet-pull --no-build >/dev/null 2>&1) || {
  (cd deploy && docker compose -p "$project" logs --tail 40); say "docker compose up failed"; exit 1; }
say "docker compose up after ${SECONDS} s"

if ! .venv/bin/python .ci/probe_compose.py "http://127.0.0.1:$port" "$project"; then
  (cd deploy && docker compose -p "$project" ps -a && docker compose -p "$project" logs --tail 30)
  exit 1
fi
say "served with PostgreSQL behind nginx, probed in ${SECONDS} s"
