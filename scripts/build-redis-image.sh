#!/usr/bin/env bash
# Builds a small Redis image with no registry: Debian's redis-server binary and the libraries it
# links, imported into Docker as an image of its own. Usage: build-redis-image.sh [image]
# WITH_SHELL=1 adds busybox as /bin/sh and /bin/cp (docker-compose.ha.yml's sentinels copy their
# configuration before they start).
set -euo pipefail
image=${1:-task-service-test/redis:local}

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing Debian's redis-server (for its binary)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server >/dev/null
fi
binary=$(readlink -f "$(command -v redis-server)")

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/etc" "$root/data"
chmod 1777 "$root/tmp"
# Keep the name redis-server: the binary picks its mode from argv[0].
cp -L "$binary" "$root/usr/local/bin/redis-server"
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  cp --parents -L "$lib" "$root"
done
if [ "${WITH_SHELL:-0}" = 1 ]; then
  command -v busybox >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >/dev/null
  mkdir -p "$root/bin"
  cp -L "$(command -v busybox)" "$root/bin/busybox"
  ln -s busybox "$root/bin/sh"
  ln -s busybox "$root/bin/cp"
fi
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"

tar -C "$root" -c . | docker import \
  --change 'EXPOSE 6379' \
  --change 'ENV PATH=/usr/local/bin:/bin' \
  --change 'WORKDIR /data' \
  --change 'CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no"]' \
  - "$image" >/dev/null
echo "built $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)" >&2
