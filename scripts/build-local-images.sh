#!/usr/bin/env bash
# Builds every image docker-compose.local.yml needs, with no registry: Redis and Prometheus from
# Debian's packages, the Task service image from this repository's release build. Each image is
# the binaries plus the libraries they link, imported with `docker import`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Copies binaries (and the libraries ldd lists) into a fresh root, then imports it as $image.
import_image() {
  local image=$1 cmd=$2 expose=$3; shift 3
  local root; root=$(mktemp -d)
  mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/etc" "$root/data/videos"
  chmod 1777 "$root/tmp"
  for binary in "$@"; do
    cp -L "$binary" "$root/usr/local/bin/$(basename "$binary")"
    for lib in $(ldd "$binary" 2>/dev/null | grep -o '/[^ ]*' || true); do
      cp --parents -L "$lib" "$root"
    done
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
  echo 'root:x:0:' > "$root/etc/group"
  local changes=(--change 'ENV PATH=/usr/local/bin' --change "CMD $cmd")
  for port in $expose; do changes+=(--change "EXPOSE $port"); done
  tar -C "$root" -c . | docker import "${changes[@]}" - "$image" >/dev/null
  rm -rf "$root"
  echo "built $image" >&2
}

WITH_SHELL=1 scripts/build-redis-image.sh task-service-local/redis:latest

cargo build --release --workspace --bins
import_image task-service-local/task-service:latest '["task-service"]' "50050 9464" \
  target/release/task-service target/release/dev-processor target/release/taskctl target/release/otlp-sink

if ! command -v prometheus >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null
fi
import_image task-service-local/prometheus:latest \
  '["prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/tmp/prometheus"]' "9090" \
  "$(readlink -f "$(command -v prometheus)")"
