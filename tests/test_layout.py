"""The chain's stages are subpackages that import only from the stages below them."""

from __future__ import annotations

import ast
from pathlib import Path

import musyq

STAGES = ("core", "io", "ard", "timeseries", "products", "production", "portal", "cli")  # bottom to top
PACKAGE = Path(musyq.__file__).parent


def _imported(path: Path) -> set[str]:
    """The musyq subpackages a module imports (absolute imports; the package uses no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("musyq.") and n.split(".")[1] in STAGES}
    return found


def test_each_stage_imports_only_from_the_stages_below() -> None:
    checked = 0
    for stage in STAGES:
        for path in (PACKAGE / stage).rglob("*.py"):
            above = {s for s in _imported(path) if STAGES.index(s) > STAGES.index(stage)}
            assert not above, f"{path.relative_to(PACKAGE)} imports from {above}"
            checked += 1
    assert checked >= 40
    assert not [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
