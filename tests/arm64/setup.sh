#!/usr/bin/env bash
# Build (once) and refresh a cached, emulated aarch64 (Cortex-A72) Python 3.11
# environment for running the plugin under qemu-user.
#
# Usage: bash tests/arm64/setup.sh <requirements.txt> [<native_preproc source dir>]
#
# Cache: ${PYAI_ARM64_ROOT:-$HOME/.cache/pyai-arm64} (the emulated root itself;
# <root>/site holds the unpacked aarch64 wheels and the cross-built extension).
# Every step is skipped when its stamp says it is up to date.
set -euo pipefail

PROG="setup.sh"
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*"; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: bash tests/arm64/setup.sh <requirements.txt> [<native_preproc source dir>]"
REQ="$1"
NATIVE_DIR="${2:-}"
[ -f "$REQ" ] || die "requirements file not found: $REQ"
REQ="$(cd "$(dirname "$REQ")" && pwd)/$(basename "$REQ")"

ROOT="${PYAI_ARM64_ROOT:-$HOME/.cache/pyai-arm64}"
SUITE="${PYAI_ARM64_SUITE:-bookworm}"
MIRROR="${PYAI_ARM64_MIRROR:-http://deb.debian.org/debian}"
HOST_PYTHON="${PYAI_ARM64_HOST_PYTHON:-python3}"
# Packages pulled into the emulated root (with their dependencies).
# libpython3.11-dev and libc6-dev bring the arm64 headers, pyconfig.h and crt
# files: the root is the sysroot for cross-compiling; libjpeg62-turbo-dev the
# headers and library native_jpeg is built against (and loads at run time).
ROOT_PKGS="python3,libatomic1,libpython3.11-dev,libc6-dev,libjpeg62-turbo-dev"
ROOT_VERSION="1:$SUITE:$ROOT_PKGS"     # bump to force a rebuild of the root
MARKER="$ROOT/.pyai-arm64-root"         # written first: this dir is ours
ROOT_STAMP="$ROOT/.stamp-root"
SITE="$ROOT/site"
SITE_STAMP="$ROOT/.stamp-site"
EXT_NAME="native_preproc.cpython-311-aarch64-linux-gnu.so"
JPEG_EXT_NAME="native_jpeg.cpython-311-aarch64-linux-gnu.so"
DCSIG_EXT_NAME="native_dcsig.cpython-311-aarch64-linux-gnu.so"
EXT_STAMP="$ROOT/.stamp-native"
T0=$(date +%s)

sha() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

# ---------------------------------------------------------------- host tools
need_pkgs=()
command -v qemu-aarch64-static >/dev/null 2>&1 || need_pkgs+=(qemu-user-static)
command -v debootstrap        >/dev/null 2>&1 || need_pkgs+=(debootstrap)
if [ -n "$NATIVE_DIR" ] && [ -f "$NATIVE_DIR/native_preproc.c" ]; then
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_pkgs+=(gcc-aarch64-linux-gnu)
fi
command -v sha256sum >/dev/null 2>&1 || need_pkgs+=(coreutils)
command -v flock     >/dev/null 2>&1 || need_pkgs+=(util-linux)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need_pkgs+=(debian-archive-keyring)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install ${need_pkgs[*]}"
        SUDO="sudo -n"
    fi
    log "installing host packages: ${need_pkgs[*]}"
    # apt-get update may complain about unrelated, unreachable sources: not fatal.
    $SUDO apt-get update -qq >/dev/null 2>&1 || log "warning: apt-get update reported errors (continuing)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${need_pkgs[@]}" >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
fi
"$HOST_PYTHON" -m pip --version >/dev/null 2>&1 || die "host python '$HOST_PYTHON' has no pip (set PYAI_ARM64_HOST_PYTHON)"

# ------------------------------------------------------------- lock the cache
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock" || die "cannot create lock file $ROOT.lock"
flock 9 || die "cannot lock $ROOT.lock"

# ----------------------------------------------------------- emulated rootfs
if [ ! -f "$ROOT_STAMP" ] || [ "$(cat "$ROOT_STAMP")" != "$ROOT_VERSION" ]; then
    if [ -e "$ROOT" ]; then
        if [ -f "$MARKER" ] || [ -z "$(ls -A "$ROOT")" ]; then
            rm -rf "$ROOT"
        else
            die "$ROOT exists and was not made by this script; remove it or set PYAI_ARM64_ROOT"
        fi
    fi
    [ "$(id -u)" = 0 ] || die "building the arm64 root needs root (debootstrap); run once as root or reuse a built $ROOT"
    mkdir -p "$ROOT"
    : > "$MARKER"
    log "building arm64 $SUITE root in $ROOT (debootstrap first stage)"
    t=$(date +%s)
    debootstrap --foreign --arch=arm64 --variant=minbase --include="$ROOT_PKGS" \
        "$SUITE" "$ROOT" "$MIRROR" > "$ROOT/.debootstrap.log" 2>&1 \
        || die "debootstrap failed (see $ROOT/.debootstrap.log)"
    shopt -s nullglob
    debs=("$ROOT"/var/cache/apt/archives/*.deb)
    shopt -u nullglob
    [ ${#debs[@]} -gt 0 ] || die "debootstrap downloaded no .deb files"
    for d in "${debs[@]}"; do
        dpkg -x "$d" "$ROOT" || die "dpkg -x $(basename "$d") failed"
    done
    # not needed to run python: downloaded debs, apt lists, docs
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
        "$ROOT"/usr/share/doc "$ROOT"/usr/share/man "$ROOT"/usr/share/info
    [ -x "$ROOT/usr/bin/python3.11" ] || die "no usr/bin/python3.11 in the arm64 root"
    [ -f "$ROOT/usr/include/python3.11/Python.h" ] || die "no arm64 Python.h in the root"
    log "root built in $(( $(date +%s) - t )) s (${#debs[@]} packages)"
    rm -f "$SITE_STAMP" "$EXT_STAMP"
    echo "$ROOT_VERSION" > "$ROOT_STAMP"
fi

# ------------------------------------ fake /proc and /sys seen under qemu -L
# qemu-user looks paths up in the -L prefix first; LiteRT (cpuinfo) needs an
# ARM /proc/cpuinfo and the /sys cpu lists, or it crashes in allocate_tensors.
NCPU=2
mkdir -p "$ROOT/proc" "$ROOT/sys/devices/system/cpu"
{
    for i in $(seq 0 $((NCPU - 1))); do
        printf 'processor\t: %d\n' "$i"
        printf 'BogoMIPS\t: 108.00\n'
        printf 'Features\t: fp asimd evtstrm crc32 cpuid\n'
        printf 'CPU implementer\t: 0x41\n'
        printf 'CPU architecture: 8\n'
        printf 'CPU variant\t: 0x0\n'
        printf 'CPU part\t: 0xd08\n'
        printf 'CPU revision\t: 3\n\n'
    done
    printf 'Hardware\t: BCM2835\nModel\t\t: pyai emulated Cortex-A72\n'
} > "$ROOT/proc/cpuinfo.tmp" && mv "$ROOT/proc/cpuinfo.tmp" "$ROOT/proc/cpuinfo"
for f in possible present online; do
    echo "0-$((NCPU - 1))" > "$ROOT/sys/devices/system/cpu/$f"
done

# --------------------------------------------------------- aarch64 wheels
PIP_FLAGS="--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none
 --platform manylinux_2_36_aarch64 --platform manylinux_2_35_aarch64 --platform manylinux_2_34_aarch64
 --platform manylinux_2_31_aarch64 --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64
 --platform manylinux_2_24_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64
 --platform linux_aarch64 --platform any"
want_site="$(sha "$REQ")-$(echo "$PIP_FLAGS" | sha256sum | cut -c1-12)"
if [ ! -f "$SITE_STAMP" ] || [ "$(cat "$SITE_STAMP")" != "$want_site" ] || [ ! -d "$SITE" ]; then
    log "downloading aarch64 wheels for $REQ"
    t=$(date +%s)
    rm -rf "$ROOT/wheels" "$SITE.new"
    mkdir -p "$ROOT/wheels" "$SITE.new"
    # shellcheck disable=SC2086
    "$HOST_PYTHON" -m pip download --disable-pip-version-check -q $PIP_FLAGS \
        -d "$ROOT/wheels" -r "$REQ" > "$ROOT/.pip.log" 2>&1 \
        || die "pip download of aarch64 wheels failed (see $ROOT/.pip.log)"
    "$HOST_PYTHON" - "$ROOT/wheels" "$SITE.new" <<'PY' || die "unpacking wheels failed"
import os, shutil, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(src)):
    if not name.endswith(".whl"):
        sys.exit("not a wheel: " + name)
    with zipfile.ZipFile(os.path.join(src, name)) as z:
        z.extractall(dst)
        for info in z.infolist():          # keep exec bits of shipped binaries
            mode = info.external_attr >> 16
            if mode & 0o111:
                os.chmod(os.path.join(dst, info.filename), mode & 0o7777)
    print("  " + name)
# <dist>.data/{purelib,platlib} belong on the path itself
for d in os.listdir(dst):
    if d.endswith(".data"):
        for sub in ("purelib", "platlib"):
            p = os.path.join(dst, d, sub)
            if os.path.isdir(p):
                shutil.copytree(p, dst, dirs_exist_ok=True)
PY
    rm -rf "$SITE" "$ROOT/wheels"
    mv "$SITE.new" "$SITE"
    rm -f "$EXT_STAMP"
    echo "$want_site" > "$SITE_STAMP"
    log "wheels ready in $(( $(date +%s) - t )) s"
fi

# ------------------------------------------- cross-compiled native_preproc
if [ -n "$NATIVE_DIR" ] && [ -f "$NATIVE_DIR/native_preproc.c" ]; then
    SRC="$(cd "$NATIVE_DIR" && pwd)/native_preproc.c"
    CC="${PYAI_ARM64_CC:-aarch64-linux-gnu-gcc}"
    CFLAGS="${PYAI_ARM64_CFLAGS:--O3}"
    shopt -s nullglob
    hdrs=("$(dirname "$SRC")"/*.h)
    shopt -u nullglob
    JPEG_SRC="$(dirname "$SRC")/native_jpeg.c"
    jpeg_srcs=()
    [ -f "$JPEG_SRC" ] && jpeg_srcs=("$JPEG_SRC")
    DCSIG_SRC="$(dirname "$SRC")/native_dcsig.c"
    dcsig_srcs=()
    [ -f "$DCSIG_SRC" ] && dcsig_srcs=("$DCSIG_SRC")
    want_ext="$(sha "$SRC" "${jpeg_srcs[@]}" "${dcsig_srcs[@]}" "${hdrs[@]}")-$(echo "$CC $CFLAGS" | sha256sum | cut -c1-12)"
    if [ ! -f "$EXT_STAMP" ] || [ "$(cat "$EXT_STAMP")" != "$want_ext" ] || [ ! -f "$SITE/$EXT_NAME" ]; then
        command -v "$CC" >/dev/null 2>&1 || die "cross compiler $CC not found"
        log "cross-compiling $SRC"
        # shellcheck disable=SC2086
        # --sysroot: the arm64 root's own glibc headers and crt files
        "$CC" $CFLAGS -shared -fPIC -Wall --sysroot="$ROOT" \
            -I"$ROOT/usr/include/python3.11" \
            -o "$SITE/$EXT_NAME.tmp" "$SRC" > "$ROOT/.cc.log" 2>&1 \
            || { cat "$ROOT/.cc.log" >&2; die "cross-compiling native_preproc failed"; }
        mv "$SITE/$EXT_NAME.tmp" "$SITE/$EXT_NAME"
        rm -f "$EXT_STAMP" "$SITE/$JPEG_EXT_NAME" "$SITE/$DCSIG_EXT_NAME"
        ( cd "$ROOT" && QEMU_CPU=cortex-a72 PYTHONPATH="$SITE" PYTHONNOUSERSITE=1 \
            qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" -c 'import native_preproc' ) \
            || { rm -f "$SITE/$EXT_NAME"; die "the cross-built native_preproc does not import under the emulated python"; }
        if [ ${#jpeg_srcs[@]} -gt 0 ]; then
            log "cross-compiling $JPEG_SRC"
            # shellcheck disable=SC2086
            "$CC" $CFLAGS -shared -fPIC -Wall --sysroot="$ROOT" \
                -I"$ROOT/usr/include/python3.11" -I"$ROOT/usr/include/aarch64-linux-gnu" \
                -o "$SITE/$JPEG_EXT_NAME.tmp" "$JPEG_SRC" -ljpeg -lpthread > "$ROOT/.cc.log" 2>&1 \
                || { cat "$ROOT/.cc.log" >&2; die "cross-compiling native_jpeg failed"; }
            mv "$SITE/$JPEG_EXT_NAME.tmp" "$SITE/$JPEG_EXT_NAME"
            ( cd "$ROOT" && QEMU_CPU=cortex-a72 PYTHONPATH="$SITE" PYTHONNOUSERSITE=1 \
                qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" -c 'import native_jpeg' ) \
                || { rm -f "$SITE/$JPEG_EXT_NAME"; die "the cross-built native_jpeg does not import under the emulated python"; }
        fi
        if [ ${#dcsig_srcs[@]} -gt 0 ]; then
            log "cross-compiling $DCSIG_SRC"
            # no libjpeg: it walks the Huffman codes itself; its helper is a pthread
            # shellcheck disable=SC2086
            "$CC" $CFLAGS -shared -fPIC -Wall --sysroot="$ROOT" \
                -I"$ROOT/usr/include/python3.11" \
                -o "$SITE/$DCSIG_EXT_NAME.tmp" "$DCSIG_SRC" -lpthread > "$ROOT/.cc.log" 2>&1 \
                || { cat "$ROOT/.cc.log" >&2; die "cross-compiling native_dcsig failed"; }
            mv "$SITE/$DCSIG_EXT_NAME.tmp" "$SITE/$DCSIG_EXT_NAME"
            ( cd "$ROOT" && QEMU_CPU=cortex-a72 PYTHONPATH="$SITE" PYTHONNOUSERSITE=1 \
                qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" -c 'import native_dcsig' ) \
                || { rm -f "$SITE/$DCSIG_EXT_NAME"; die "the cross-built native_dcsig does not import under the emulated python"; }
        fi
        echo "$want_ext" > "$EXT_STAMP"
    fi
elif [ -n "$NATIVE_DIR" ]; then
    # the source dir was given but has no source (any more): drop a stale build
    log "no native_preproc.c in $NATIVE_DIR: skipping the native extension"
    rm -f "$SITE/$EXT_NAME" "$SITE/$JPEG_EXT_NAME" "$SITE/$DCSIG_EXT_NAME" "$EXT_STAMP"
fi

# ------------------------------------------------------------------- summary
QEMU_CPU=cortex-a72 PYTHONPATH="$SITE" PYTHONNOUSERSITE=1 qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" \
    -c 'import platform, sys; assert platform.machine() == "aarch64", platform.machine()' \
    || die "the emulated python does not start"
log "root:     $ROOT"
log "python:   qemu-aarch64-static -L $ROOT $ROOT/usr/bin/python3.11 (QEMU_CPU=cortex-a72)"
log "site:     $SITE"
if [ -f "$SITE/$EXT_NAME" ]; then log "native:   $SITE/$EXT_NAME"; else log "native:   (not built)"; fi
if [ -f "$SITE/$JPEG_EXT_NAME" ]; then log "jpeg:     $SITE/$JPEG_EXT_NAME"; else log "jpeg:     (not built)"; fi
if [ -f "$SITE/$DCSIG_EXT_NAME" ]; then log "dcsig:    $SITE/$DCSIG_EXT_NAME"; else log "dcsig:    (not built)"; fi
log "launcher: $(cd "$(dirname "$0")" && pwd)/python-arm64"
log "done in $(( $(date +%s) - T0 )) s"
