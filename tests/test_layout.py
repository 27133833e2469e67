"""docs/architecture.md's layout names every module and folder under pyai/, native_preproc/
and bench/, and nothing that is gone: a module added without its line (or removed with
its line left behind) fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Set

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("pyai", "native_preproc", "bench")
MODULE_SUFFIXES = {".py", ".c", ".sh"}
# Build output and caches, never committed.
SKIP_DIRS = {"__pycache__", "build", "dist"}
ENTRY = re.compile(r"^- `([^`]+)` — \S")


def _skipped(path: Path) -> bool:
    return any(p in SKIP_DIRS or p.startswith(".") or p.endswith(".egg-info") for p in path.parts)


def _on_disk() -> Set[str]:
    """Every module, and every folder that holds a module, as a path from the repo root."""
    found: Set[str] = set()
    for root in ROOTS:
        for path in (REPO / root).rglob("*"):
            rel = path.relative_to(REPO)
            if _skipped(rel) or not path.is_file() or path.suffix not in MODULE_SUFFIXES:
                continue
            found.add(rel.as_posix())
            for parent in rel.parents:
                if parent != Path("."):
                    found.add(parent.as_posix() + "/")
    return found


def _listed() -> Set[str]:
    text = (REPO / "docs" / "architecture.md").read_text()
    layout = text.split("\n## Layout\n", 1)
    assert len(layout) == 2, "docs/architecture.md has no '## Layout' section"
    entries = {m.group(1) for line in layout[1].splitlines() if (m := ENTRY.match(line))}
    assert entries, "the layout section lists nothing"
    return entries


def test_every_module_and_folder_has_its_line():
    missing = sorted(_on_disk() - _listed())
    assert not missing, f"add a line with its one job to docs/architecture.md's layout for: {missing}"


def test_every_line_names_something_that_exists():
    gone = sorted(p for p in _listed() if not (REPO / p).exists())
    assert not gone, f"docs/architecture.md's layout names what no longer exists: {gone}"
