#!/usr/bin/env bash
# Packages the probe and transcode functions for AWS Lambda's provided.al2023 runtime (x86_64): one zip per
# function with the executable as `bootstrap` and every shared library it loads under lib/.
#
# The executables are built here (release, Swift runtime linked statically) against Debian's FFmpeg 5.1,
# whose shared libraries are not on provided.al2023 — and neither is a new enough glibc: Debian 12's FFmpeg
# and its dependencies need GLIBC_2.35/2.36, Amazon Linux 2023 has 2.34. So the zip carries the whole closure
# `ldd` resolves, glibc and its loader included, and `bootstrap` is patched (patchelf) to start with the
# bundled loader (interpreter /var/task/lib/ld-linux-x86-64.so.2) and to look in /var/task/lib first (DT_RPATH,
# which wins over the LD_LIBRARY_PATH Lambda sets, whose /lib64:/usr/lib64 come before /var/task/lib).
# Nothing from the runtime image is loaded. Before zipping, the bundled loader lists the closure with an
# empty environment and every library must resolve inside the zip.
#
# Needs: swift (unless --bin-dir), patchelf, zip, binutils (strip). Debian: apt-get install patchelf zip binutils
set -euo pipefail

usage() {
    cat <<'EOF'
usage: infra/aws/package.sh [--out DIR] [--bin-dir DIR] [--no-size-limit] [--dry-run] [FUNCTION...]

Builds FUNCTION (default: probe transcode) with
  swift build -c release --static-swift-stdlib --product FUNCTION
and writes DIR/FUNCTION.zip (default DIR: infra/aws/dist): `bootstrap` + lib/ for provided.al2023, x86_64.

  --out DIR         where the zips go
  --bin-dir DIR     package the executables already in DIR instead of building them
  --no-size-limit   skip the check of Lambda's 250 MB unzipped limit (local checks of debug builds)
  --dry-run         print the build commands and the libraries that would be bundled; build and write nothing
EOF
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/infra/aws/dist"
BIN_DIR=""
DRY_RUN=0
SIZE_LIMIT=$((250 * 1024 * 1024))
FUNCTIONS=()
# Where Lambda puts a function's code; the interpreter path has to be absolute.
TASK_ROOT=/var/task
LOADER=ld-linux-x86-64.so.2

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
        --bin-dir) BIN_DIR="${2:?--bin-dir needs a directory}"; shift 2 ;;
        --no-size-limit) SIZE_LIMIT=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
        *) FUNCTIONS+=("$1"); shift ;;
    esac
done
[ ${#FUNCTIONS[@]} -gt 0 ] || FUNCTIONS=(probe transcode)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'package.sh: %s\n' "$*" >&2; exit 1; }

if [ "$(uname -m)" != x86_64 ] || [ "$(uname -s)" != Linux ]; then
    die "build on Linux x86_64 (the functions are deployed for x86_64; this host is $(uname -s) $(uname -m))"
fi

# shared_libraries EXECUTABLE: "NAME PATH" for every library ldd resolves (the loader as ld-linux-x86-64.so.2).
shared_libraries() {
    local out
    out="$(ldd "$1")" || die "ldd failed on $1 (not a dynamic x86_64 executable?)"
    if grep -q 'not found' <<<"$out"; then
        die "unresolved libraries of $1:"$'\n'"$(grep 'not found' <<<"$out")"
    fi
    awk '
        $2 == "=>" && $3 ~ /^\// { print $1, $3; next }
        $1 ~ /\/ld-linux-x86-64\.so\.2$/ { n = split($1, parts, "/"); print parts[n], $1 }
    ' <<<"$out"
}

if [ -z "$BIN_DIR" ]; then
    for function in "${FUNCTIONS[@]}"; do
        command=(swift build -c release --static-swift-stdlib --product "$function")
        if [ "$DRY_RUN" -eq 1 ]; then
            echo "would run: (cd $ROOT && ${command[*]})"
        else
            log "building $function (release, static Swift runtime)"
            (cd "$ROOT" && "${command[@]}")
        fi
    done
    if [ "$DRY_RUN" -eq 1 ] && [ ! -d "$ROOT/.build/release" ]; then
        echo "would package from: $ROOT/.build/release (not built yet, so no library list)"
        exit 0
    fi
    BIN_DIR="$(cd "$ROOT" && swift build -c release --show-bin-path)"
fi

for tool in patchelf zip strip; do
    if [ "$DRY_RUN" -eq 0 ] && ! command -v "$tool" >/dev/null; then
        die "$tool is needed (Debian: apt-get install patchelf zip binutils)"
    fi
done

[ "$DRY_RUN" -eq 1 ] || mkdir -p "$OUT"
OUT="$(cd "$OUT" 2>/dev/null && pwd || echo "$OUT")"
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/cinescale-lambda.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

for function in "${FUNCTIONS[@]}"; do
    executable="$BIN_DIR/$function"
    [ -x "$executable" ] || die "no executable $executable"
    libraries="$(shared_libraries "$executable")"
    if [ "$DRY_RUN" -eq 1 ]; then
        echo "would package $executable as $OUT/$function.zip: bootstrap + $(wc -l <<<"$libraries") libraries:"
        sed 's/^\([^ ]*\) /  lib\/\1 <- /' <<<"$libraries"
        continue
    fi

    log "packaging $function"
    dir="$STAGE/$function"
    mkdir -p "$dir/lib"
    cp "$executable" "$dir/bootstrap"
    chmod 0755 "$dir/bootstrap"
    # Symbols too, not only debug information: a release transcode is 148 MB as linked, 100 MB without debug
    # information and 78 MB stripped, which is what keeps it (with FFmpeg's ~170 MB) under Lambda's 250 MB.
    # Crash backtraces then show addresses; keep the unstripped executable to symbolicate them.
    strip --strip-all "$dir/bootstrap"
    while read -r name path; do
        cp -L "$path" "$dir/lib/$name"
        chmod 0644 "$dir/lib/$name"
    done <<<"$libraries"
    chmod 0755 "$dir/lib/$LOADER"
    # /var/task/lib where Lambda runs it; $ORIGIN/lib for the check below (bundled loader run by hand).
    # shellcheck disable=SC2016  # $ORIGIN is for the dynamic loader, not the shell
    patchelf --set-interpreter "$TASK_ROOT/lib/$LOADER" --force-rpath --set-rpath "$TASK_ROOT/lib:"'$ORIGIN/lib' \
        "$dir/bootstrap"
    # A library with its own RUNPATH (libpulse's points into /usr/lib/.../pulseaudio) would resolve its
    # dependencies there and not through bootstrap's RPATH: point it at its own directory instead.
    for library in "$dir"/lib/*; do
        if [ -n "$(patchelf --print-rpath "$library" 2>/dev/null)" ]; then
            # shellcheck disable=SC2016
            patchelf --force-rpath --set-rpath '$ORIGIN' "$library"
        fi
    done

    # The closure as the bundled loader resolves it, with nothing from the environment: all inside lib/.
    resolved="$(env -i "$dir/lib/$LOADER" --list "$dir/bootstrap")" || die "the bundled loader cannot load $function"
    outside="$(awk '$2 == "=>" && index($3, "'"$dir"'/lib/") != 1 { print }' <<<"$resolved")"
    [ -z "$outside" ] || die "$function loads libraries from outside the zip:"$'\n'"$outside"

    size="$(du -sb "$dir" | cut -f1)"
    if [ "$SIZE_LIMIT" -gt 0 ] && [ "$size" -gt "$SIZE_LIMIT" ]; then
        die "$function is $size bytes unzipped, over Lambda's limit of $SIZE_LIMIT"
    fi
    # Same bytes in, same zip out (fixed times, sorted entries): deploy.sh names the upload by its hash.
    find "$dir" -exec touch -h -d '2000-01-01T00:00:00Z' {} +
    rm -f "$OUT/$function.zip"
    (cd "$dir" && find . -type f | LC_ALL=C sort | zip -q -X -@ "$OUT/$function.zip")
    printf '%s\t%s bytes unzipped\t%s bytes zipped\tsha256 %s\n' "$OUT/$function.zip" "$size" \
        "$(stat -c %s "$OUT/$function.zip")" "$(sha256sum "$OUT/$function.zip" | cut -d' ' -f1)"
done
