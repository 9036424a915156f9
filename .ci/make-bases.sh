#!/usr/bin/env bash
# CI on this machine only. It has no Docker daemon and no container registry, so:
#   1. installs podman, runc and mmdebstrap from Debian and writes the containers.conf this
#      machine needs (crun cannot start containers here: runc; explicit ulimits, since setting
#      RLIMIT_NOFILE/NPROC fails otherwise); prints `export CONTAINERS_CONF=...` for the caller;
#   2. makes the two base images the Dockerfile names with mmdebstrap and imports them into podman
#      under those names, so `--pull=never` builds the Dockerfile unchanged:
#        docker.io/library/debian:bookworm-slim   bookworm minbase (the runtime stage)
#        docker.io/library/rust:1-slim-bookworm   bookworm + bookworm-security with Debian's Rust
#                                                 1.96 (rustc-web, cargo-web) and gcc (the build stage)
# The build base alone also gets this machine's extra CA certificates (those its trust store adds
# in Debian's local CA folder, for the HTTPS proxy that pip and cargo go through here) and a
# pip.conf pointing at them: a property of this machine, kept out of the Dockerfile and out of the
# runtime base, hence out of the shipped image.
# Base tarballs are cached outside the clone, keyed by BASES_VERSION and the package lists.
set -euo pipefail
BASES_VERSION=3
cache=${MTT_CACHE_DIR:-$HOME/.cache/multi-task-transformer}/image-bases
say() { printf 'make-bases: %s\n' "$*" >&2; }

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null; then
  say "installing podman, runc, mmdebstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc mmdebstrap uidmap fuse-overlayfs >/dev/null
fi
mkdir -p "$cache"
conf=$cache/containers.conf
cat > "$conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$conf

mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
sources=("deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main")
runtime_pkgs=""
build_pkgs="rustc-web,cargo-web,gcc,libc6-dev,ca-certificates"

make_base() { # name tag packages [extra setup hook]
  local name=$1 tag=$2 pkgs=$3 hook=${4:-}
  local key
  key=$(printf '%s|%s|%s|%s' "$BASES_VERSION" "$pkgs" "$hook" "$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum)" | sha256sum | cut -c1-12)
  local tar=$cache/$name-$key.tar
  if [ ! -f "$tar" ]; then
    say "making $tag with mmdebstrap (cached as $tar)"
    # Like Docker Hub's -slim images: no manuals, docs (but copyrights) or translations.
    local args=(--variant=minbase --format=tar --quiet
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
      --dpkgopt='path-exclude=/usr/share/info/*'
      --customize-hook='printf "Dir::Cache::pkgcache \"\";\nDir::Cache::srcpkgcache \"\";\nAPT::Keep-Downloaded-Packages \"false\";\n" > "$1"/etc/apt/apt.conf.d/90slim-no-caches'
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin')
    [ -n "$pkgs" ] && args+=(--include="$pkgs")
    [ -n "$hook" ] && args+=(--customize-hook="$hook")
    mmdebstrap "${args[@]}" bookworm "$tar.tmp" "${sources[@]}"
    mv "$tar.tmp" "$tar"
  fi
  # Re-import when the tag holds another build of the base (a changed package list or key).
  if [ "$(podman image inspect --format '{{index .Labels "mtt.base.key"}}' "$tag" 2>/dev/null || true)" != "$key" ]; then
    podman import --change 'CMD ["/bin/bash"]' --change "LABEL mtt.base.key=$key" "$tar" "$tag" >/dev/null
  fi
  say "$tag ready"
}

make_base debian docker.io/library/debian:bookworm-slim "$runtime_pkgs"
# shellcheck disable=SC2016
ca_hook='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true; chroot "$1" update-ca-certificates >/dev/null; printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"'
make_base rust docker.io/library/rust:1-slim-bookworm "$build_pkgs" "$ca_hook"
echo "export CONTAINERS_CONF=$conf"
