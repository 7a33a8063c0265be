"""The daemon's Hub is the composition root's own: no module of the product imports it, so
every command module depends only on the Protocol of what it uses (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the entry points that start a daemon (they see the hub a started daemon hands them)
STARTERS = {"gateway/cli/daemon_cmds.py", "gateway/demo/show.py"}


def imports_daemon(node: ast.AST) -> bool:
    """Return whether ``node`` is an import of ``gateway.daemon`` (in any spelling)."""
    if isinstance(node, ast.Import):
        return any(alias.name == "gateway.daemon" for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.module == "gateway.daemon" or (
            node.module == "gateway" and any(alias.name == "daemon" for alias in node.names)
        )
    return False


def daemon_importers() -> set[str]:
    """Return the product modules (besides the daemon) that import ``gateway.daemon``."""
    found = set()
    for package in ("gateway", "drivers"):
        for path in sorted((REPO / package).rglob("*.py")):
            name = path.relative_to(REPO).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), name)
            if any(imports_daemon(node) for node in ast.walk(tree)):
                found.add(name)
    return found - {"gateway/daemon.py"}


def test_only_the_entry_points_that_start_a_daemon_import_it() -> None:
    assert daemon_importers() == STARTERS
