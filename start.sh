#!/usr/bin/env bash
# Vectra's one entry point. The first run sets up everything Vectra needs (a virtual environment with
# the project, the browser page's npm packages, Chromium, tmux and nats-server when missing); later
# runs skip what is done. Then:
#   ./start.sh [ARGS...]               runs `vectra ARGS...` (no ARGS: the operator console)
#   ./start.sh test [PYTEST ARGS...]   runs the test suite
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PY=${PYTHON:-python3}
log() { printf 'start.sh: %s\n' "$*" >&2; }

setup_python() {
    local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    [ -f "$stamp" ] && return
    log "setting up the Python environment in $VENV (first run)"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]'
    rm -f "$VENV"/.installed-*
    touch "$stamp"
}

setup_npm() {
    [ -f package.json ] || return 0
    local stamp="node_modules/.installed-$(sha256sum package-lock.json 2>/dev/null | cut -c1-16)"
    [ -f "$stamp" ] && return
    if ! command -v npm >/dev/null; then
        log "npm not found: the simulator's browser page will not work (install Node.js)"
        return 0
    fi
    log "installing the browser page's npm packages"
    npm ci --silent --no-audit --no-fund
    touch "$stamp"
}

setup_system() {
    local missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    command -v tmux >/dev/null || missing+=(tmux)
    command -v nats-server >/dev/null || missing+=(nats-server)
    [ ${#missing[@]} -eq 0 ] && return
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then sudo="sudo"; else
            log "missing ${missing[*]} and not root: install them with apt-get for the browser and NATS tests"
            return 0
        fi
    fi
    log "installing ${missing[*]} (Debian packages)"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup_python
setup_npm
if [ "${1:-}" = "test" ]; then
    shift
    setup_system
    exec "$VENV/bin/python" -m pytest "$@"
fi
exec "$VENV/bin/vectra" "$@"
