#!/usr/bin/env bash
# Coverage-guided fuzzing of the JPEG walker (native_preproc/native_dcsig.c) with
# libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer: builds
# tests/fuzz/dcsig_fuzz.c with clang, writes seeds (synthetic frames, and the
# photos in PHOTOS shrunk as camera frames when set), then runs libFuzzer on them
# and the committed corpus with the given arguments. Findings are written to
# WORK/ (crash-*, leak-*, ...); keep each in tests/fuzz/dcsig_crashes/, where
# tests/fuzz/test_dcsig_corpus.py replays it.
#
#   PHOTOS=path/to/photos WORK=/tmp/dcsig-fuzz bash tests/fuzz/dcsig_fuzz.sh -runs=10000000
#
# Needs clang with libFuzzer (Debian: clang-14 libclang-rt-14-dev), libjpeg's
# headers and a Python with numpy and Pillow (PYTHON, default python3).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$(dirname "$HERE")")
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/dcsig_fuzz.XXXXXX")}
PYTHON=${PYTHON:-python3}
CC=${CC:-$(command -v clang || command -v clang-14)}

mkdir -p "$WORK/corpus" "$WORK/seeds"
"$CC" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -O1 -g -ffp-contract=off \
    "$HERE/dcsig_fuzz.c" -o "$WORK/dcsig_fuzz" -ljpeg -lpthread -lm
(cd "$REPO" && "$PYTHON" -m tests.fuzz.dcsig_seeds "$WORK/seeds" ${PHOTOS:+--photos "$PHOTOS"})

# New inputs go to WORK/corpus; the seeds and the committed corpus are read only.
cd "$WORK"
exec ./dcsig_fuzz -max_len=8192 -print_final_stats=1 -artifact_prefix="$WORK/" \
    "$@" corpus seeds "$HERE/dcsig_corpus"
