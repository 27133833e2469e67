"""Build eKuiper's ``kuiperd`` for one or more versions from the Go module proxy.

    python tests/ekuiper/build_kuiperd.py v2.4.0 v1.14.7

Each version is cached in ``${PYAI_KUIPERD_CACHE:-~/.cache/pyai/kuiperd}/<version>/``
as ``kuiperd`` plus a copy of the module's ``etc/`` folder; a warm cache returns at
once. A version that cannot be built leaves ``<version>/build-error.txt`` (the last
lines of the Go output) so the test suite can skip it with the exact reason; the
failure is retried on the next run, it is not cached as final.

Needs only ``go`` on PATH (and the Go module proxy): ``go mod download`` fetches
the module, which is then built from a writable copy (the module cache is
read-only and the modules ship a go.work and replace directives).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

log = logging.getLogger("build_kuiperd")

VERSIONS = ("v2.4.0", "v1.14.7")
BINARY = "kuiperd"
ERROR_FILE = "build-error.txt"


def module_path(version: str) -> str:
    """eKuiper moved to a /v2 module path at 2.0."""
    return "github.com/lf-edge/ekuiper/v2" if version.startswith("v2.") else "github.com/lf-edge/ekuiper"


def cache_root() -> Path:
    env = os.environ.get("PYAI_KUIPERD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pyai" / "kuiperd"


def version_dir(version: str) -> Path:
    return cache_root() / version


def cached_binary(version: str) -> Optional[Path]:
    binary = version_dir(version) / BINARY
    if binary.is_file() and os.access(binary, os.X_OK) and (version_dir(version) / "etc").is_dir():
        return binary
    return None


def build_error(version: str) -> Optional[str]:
    path = version_dir(version) / ERROR_FILE
    return path.read_text() if path.is_file() else None


def _go_env() -> Dict[str, str]:
    env = dict(os.environ)
    # The modules ship a go.work listing folders the proxy's zip does not hold.
    env["GOWORK"] = "off"
    env["CGO_ENABLED"] = "0"
    # GOTOOLCHAIN is left to Go: with a Go older than a go.mod asks for (v2.4.0:
    # 1.25.4), the default `auto` fetches that toolchain from the module proxy.
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def _run(cmd: List[str], cwd: Optional[Path] = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=_go_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise BuildFailed(f"`{' '.join(cmd)}` exited {proc.returncode}:\n" + "\n".join(proc.stdout.splitlines()[-30:]))
    return proc.stdout


class BuildFailed(RuntimeError):
    pass


def _download(version: str) -> Path:
    out = _run(["go", "mod", "download", "-json", f"{module_path(version)}@{version}"])
    info = json.loads(out)
    if info.get("Error"):
        raise BuildFailed(f"go mod download: {info['Error']}")
    return Path(info["Dir"])


def _prepare_source(src: Path, work: Path) -> Path:
    tree = work / "src"
    shutil.copytree(src, tree, symlinks=True)
    for p in [tree, *tree.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | 0o200)
    # v1.14.7 replaces its extensions module with ./extensions, which the module
    # zip does not contain; the required version is on the proxy.
    mod = json.loads(_run(["go", "mod", "edit", "-json"], cwd=tree))
    for rep in mod.get("Replace") or []:
        if rep["New"]["Path"].startswith("./") or rep["New"]["Path"].startswith("../"):
            old = rep["Old"]["Path"] + ("@" + rep["Old"]["Version"] if rep["Old"].get("Version") else "")
            _run(["go", "mod", "edit", f"-dropreplace={old}"], cwd=tree)
    return tree


def _ldflags(version: str) -> List[str]:
    # v1.14.7 pins parquet-go v0.21.0, which //go:linkname-s runtime.aeskeysched;
    # Go >= 1.23 refuses that at link time ("invalid reference to
    # runtime.aeskeysched") unless the check is turned off.
    return ["-ldflags=-checklinkname=0"] if version.startswith("v1.") else []


def build(version: str, force: bool = False) -> Path:
    """The cached binary for ``version``, building it first if needed."""
    binary = cached_binary(version)
    if binary and not force:
        return binary
    dest = version_dir(version)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / ERROR_FILE).unlink(missing_ok=True)
    started = time.monotonic()
    try:
        src = _download(version)
        with tempfile.TemporaryDirectory(prefix=f"kuiperd-{version}-") as tmp:
            tree = _prepare_source(src, Path(tmp))
            # -mod=mod: go.sum may miss entries once a replace is dropped; only the
            # modules kuiperd's packages import are fetched (`go mod download` of
            # all would ask the proxy for test-only modules it may not serve).
            _run(["go", "build", "-mod=mod", "-trimpath", *_ldflags(version), "-o", str(Path(tmp) / BINARY),
                  "./cmd/kuiperd"], cwd=tree)
            shutil.rmtree(dest / "etc", ignore_errors=True)
            shutil.copytree(tree / "etc", dest / "etc")
            # Moved in last so a half-built cache never looks complete.
            shutil.move(str(Path(tmp) / BINARY), str(dest / BINARY))
    except BuildFailed as exc:
        (dest / ERROR_FILE).write_text(str(exc))
        raise
    log.info("built kuiperd %s in %.1f s -> %s", version, time.monotonic() - started, dest / BINARY)
    print(f"kuiperd {version}: built in {time.monotonic() - started:.1f} s")
    return dest / BINARY


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("versions", nargs="*", default=list(VERSIONS))
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    ap.add_argument("--strict", action="store_true", help="exit non-zero if any version fails to build")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    failed = 0
    for version in args.versions:
        started = time.monotonic()
        try:
            binary = build(version, force=args.force)
        except BuildFailed as exc:
            failed += 1
            print(f"kuiperd {version}: build FAILED after {time.monotonic() - started:.1f} s "
                  f"(the suite skips it; reason in {version_dir(version) / ERROR_FILE}):\n{exc}", file=sys.stderr)
            continue
        print(f"kuiperd {version}: {binary} ({time.monotonic() - started:.2f} s)")
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
