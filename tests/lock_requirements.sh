#!/usr/bin/env bash
# Re-pin the plugin's runtime dependencies: compiles pyai/plugin/files/requirements.in
# into requirements.txt (exact versions, markers per Python, sha256 of every file,
# for install.sh's `pip --require-hashes`) and constraints.txt (the same pins without
# hashes, for the tox environments), then checks that every pin resolves to wheels
# alone for Python 3.9-3.13 on x86_64 and aarch64 manylinux_2_28.
# Needs uv (`pip install uv`). Usage: bash tests/lock_requirements.sh [--upgrade]
set -euo pipefail
cd "$(dirname "$0")/../pyai/plugin/files"
UV="${UV:-uv}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$UV" pip compile --universal --generate-hashes --python-version 3.9 --no-header --no-annotate -q \
    ${1:+"$1"} requirements.in -o "$tmp/lock.txt"
{
    printf '%s\n' \
        "# The runtime dependencies of the pyai plugin, exact versions with the sha256 of" \
        "# every file PyPI has for them (install.sh: pip --require-hashes): an install on" \
        "# an edge box gets the packages that were tested, or fails. Python 3.9-3.13 on" \
        "# x86_64 and aarch64 Linux (manylinux wheels). Compiled from requirements.in by" \
        "# tests/lock_requirements.sh; constraints.txt is this file without the hashes," \
        "# for the tox environments." ""
    cat "$tmp/lock.txt"
} > requirements.txt
{
    echo "# requirements.txt without its hashes (tox installs these pins; see tests/lock_requirements.sh)."
    grep -v '^ *--hash' "$tmp/lock.txt" | sed 's/ *\\$//'
} > constraints.txt
for py in 3.9 3.10 3.11 3.12 3.13; do
    for plat in x86_64-manylinux_2_28 aarch64-manylinux_2_28; do
        "$UV" pip compile requirements.txt --python-platform "$plat" --python-version "$py" \
            --only-binary :all: --no-header -q -o "$tmp/check.txt" \
            || { echo "lock: no wheels for Python $py on $plat" >&2; exit 1; }
        echo "lock: Python $py $plat: $(grep -c '==' "$tmp/check.txt") packages, wheels only"
    done
done
