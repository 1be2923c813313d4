# Shared helpers for the project's scripts: idempotent installs of what the project needs.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }

# apt_ensure PKG...: installs the Debian packages that are not installed yet.
apt_ensure() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ ! -f /tmp/.cinescale-apt-updated ]; then
        $sudo apt-get update -qq && touch /tmp/.cinescale-apt-updated
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# build_deps_ensure: the C libraries the package links (FFmpeg 5.1 from Debian, found through pkg-config)
# and the ffmpeg/ffprobe CLI the tests use as an oracle.
build_deps_ensure() {
    apt_ensure pkg-config libavformat-dev libavcodec-dev libavfilter-dev libswscale-dev libswresample-dev libavutil-dev ffmpeg
}

# venv_ensure: a project-local Python venv with the pinned test clients (IntegrationTests/requirements.txt).
venv_ensure() {
    local req="$ROOT/IntegrationTests/requirements.txt"
    local stamp="$VENV/.requirements.sha256"
    local want
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    if ! python3 -m venv --help >/dev/null 2>&1; then
        apt_ensure python3 python3-venv
    fi
    log "creating Python venv with test clients (aws-cli, boto3, pytest)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
}

# swift_build [ARGS...]: builds the package (debug unless told otherwise).
swift_build() {
    (cd "$ROOT" && swift build "$@")
}
