#!/usr/bin/env bash
# LocalStack (S3, SQS, SNS) in host mode, without Docker, for tests and local runs of the SQS event source.
#
#   localstack/run.sh install          create or refresh the venv (.venv-localstack, Python >= 3.13); exit 3
#                                      with the reason on stderr when no Python 3.13 can be found or installed
#   localstack/run.sh start PORT DIR   run LocalStack in the foreground on 127.0.0.1:PORT, its state and
#                                      temporary files under DIR, with the init hooks of localstack/init
#
# The hooks create the buckets, the queue and the S3 → SQS notifications (see init/ready.d); wait for
# GET /_localstack/init/ready to answer "completed": true. LocalStack ignores SIGTERM for 25 s and more:
# start it in its own session (setsid) and stop it by killing that process group.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="${CINESCALE_LOCALSTACK_VENV:-$ROOT/.venv-localstack}"
REQUIREMENTS="$HERE/requirements.txt"

usage() {
    echo "usage: $0 install | start PORT DIR" >&2
    exit 2
}

is_python313() {
    "$1" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 13) else 1)' >/dev/null 2>&1
}

# Prints a Python >= 3.13 interpreter, installing Debian's python3.13 when apt has one; fails otherwise.
find_python() {
    local candidate
    for candidate in "${CINESCALE_PYTHON313:-}" "$(command -v python3.13 2>/dev/null || true)" \
        /usr/bin/python3.13 /usr/local/bin/python3.13 \
        "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[3-9]*/bin/python3; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && is_python313 "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    # Debian 13 and later ship python3.13; Debian 12 does not (there, pyenv's build is used above).
    if command -v apt-get >/dev/null 2>&1; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        if ! apt-cache show python3.13 >/dev/null 2>&1; then
            $sudo apt-get update -qq >/dev/null 2>&1 || true
        fi
        if apt-cache show python3.13 >/dev/null 2>&1 && apt-cache show python3.13-venv >/dev/null 2>&1; then
            echo "installing Debian's python3.13 for LocalStack" >&2
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
                python3.13 python3.13-venv >/dev/null 2>&1 || true
            if is_python313 /usr/bin/python3.13; then
                echo /usr/bin/python3.13
                return 0
            fi
        fi
    fi
    return 1
}

install() {
    local want stamp="$VENV/.requirements.sha256"
    want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    local python
    if ! python="$(find_python)"; then
        echo "LocalStack needs Python >= 3.13: none found (python3.13, pyenv's versions/3.13*, \$CINESCALE_PYTHON313) and apt has no python3.13" >&2
        exit 3
    fi
    echo "creating the LocalStack venv ($VENV) with $python" >&2
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want" > "$stamp"
}

start() {
    local port="$1" dir
    dir="$(mkdir -p "$2" && cd "$2" && pwd)"
    case "$port" in '' | *[!0-9]*) echo "PORT must be a number, got '$port'" >&2; exit 2 ;; esac
    install
    mkdir -p "$dir/fs/etc/localstack/init/ready.d" "$dir/tmp"
    cp "$HERE"/init/ready.d/*.sh "$dir/fs/etc/localstack/init/ready.d/"
    export PATH="$VENV/bin:$PATH"
    export CINESCALE_LOCALSTACK_ENDPOINT="http://127.0.0.1:$port"
    export OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$dir/fs" TMPDIR="$dir/tmp"
    # hypercorn binds exactly the address given; the default server would bind 0.0.0.0.
    export GATEWAY_LISTEN="127.0.0.1:$port" GATEWAY_SERVER=hypercorn SERVICES=s3,sqs,sns
    export DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 S3_SKIP_SIGNATURE_VALIDATION=0 DISABLE_EVENTS=1
    # Queue URLs as http://127.0.0.1:PORT/ACCOUNT/NAME (the default names a *.localstack.cloud host).
    export LOCALSTACK_HOST="127.0.0.1:$port" SQS_ENDPOINT_STRATEGY=off
    exec "$VENV/bin/python" -m localstack.runtime.main
}

case "${1:-}" in
    install) [ $# -eq 1 ] || usage; install ;;
    start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
    *) usage ;;
esac
