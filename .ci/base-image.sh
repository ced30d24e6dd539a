#!/usr/bin/env bash
# Build the offline sandbox base image (no registry can be reached here): a Debian minbase root with python3,
# pytest, hypothesis and git, imported into Docker. Cached: skipped when the image already exists.
set -euo pipefail
name="${1:-mendloop-base:bookworm}"
if docker image inspect "$name" >/dev/null 2>&1; then
  echo "base image $name already present"
  exit 0
fi
dir="$(mktemp -d /tmp/mendloop-rootfs.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pytest,python3-hypothesis,python-is-python3,git,procps \
  bookworm "$dir" >/tmp/mendloop-debootstrap.log 2>&1 || { tail -20 /tmp/mendloop-debootstrap.log; exit 1; }
rm -rf "$dir"/var/cache/apt/archives/*.deb
tar -C "$dir" -c . | docker import -c 'CMD ["/bin/bash"]' - "$name" >/dev/null
echo "built base image $name"
