"""The layers of docs/architecture.md, checked on the source (every import, module level or inside a
function, read with ``ast``): the pure core imports no I/O library, no adapter and no service; adapters
import no service; services import no command line and no local stack; no service imports the
stream processor or the gateway but itself. A change that breaks a layer fails here with the line."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A layer is a folder: the core is rehab/'s own modules and rehab/scoring/; each adapter folder wraps one
# technology; rehab/ops/ are operations over both stores (replay, erasure); the command line (with its
# Python client) and the local stack sit on top.
CORE = ("rehab.coco", "rehab.records", "rehab.reference", "rehab.recordings", "rehab.settings", "rehab.topics",
        "rehab.scoring")
ADAPTERS = ("rehab.adapters", "rehab.ops")
SERVICES = ("gateway", "edge", "stream_processor")
TOP = ("rehab.cli", "rehab.stack")
# what the pure core may import besides the standard library and itself
CORE_THIRD_PARTY = {"numpy", "numba", "orjson"}


def _in(module: str, group: tuple[str, ...]) -> bool:
    return any(module == g or module.startswith(g + ".") for g in group)


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("rehab", *SERVICES):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module a file imports, absolute, with its line (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.append((base, node.lineno))
    return out


MODULES = _modules()


def _violations(source_group: tuple[str, ...], allowed) -> list[str]:
    bad = []
    for name, path in sorted(MODULES.items()):
        if not _in(name, source_group):
            continue
        for imported, line in _imports(path):
            if imported != "__future__" and not allowed(name, imported):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return bad


def test_the_layer_lists_cover_every_module():
    """A new module must be given a layer here (and in docs/architecture.md)."""
    loose = [m for m in MODULES if m not in ("rehab",) and not _in(m, CORE + ADAPTERS + SERVICES + TOP)]
    assert loose == [], f"modules in no layer: {loose}"


def test_the_core_is_the_modules_at_the_top_of_rehab_and_the_scorer():
    """Layers are folders: a module put at the top of rehab/ is core and must stay pure."""
    top_level = {m for m in MODULES if m.count(".") == 1 and m.startswith("rehab.") and not (ROOT / "rehab" / m.split(".")[1]).is_dir()}
    assert top_level == {c for c in CORE if c != "rehab.scoring"}


def test_the_core_imports_no_io_library_no_adapter_and_no_service():
    import sys

    stdlib = set(sys.stdlib_module_names)

    def allowed(_, imported: str) -> bool:
        root = imported.split(".")[0]
        return root in stdlib or root in CORE_THIRD_PARTY or _in(imported, CORE)

    assert _violations(CORE, allowed) == []


def test_adapters_import_no_service_and_no_command_line():
    assert _violations(ADAPTERS, lambda _, imp: not _in(imp, SERVICES + TOP)) == []


def test_services_import_no_command_line_no_local_stack_and_not_each_other():
    """The gateway may use the pose library of edge/ (it extracts uploaded guide videos itself); nothing
    else crosses between services."""
    def allowed(name: str, imp: str) -> bool:
        if _in(imp, TOP):
            return False
        own = name.split(".")[0]
        if _in(imp, SERVICES) and imp.split(".")[0] != own:
            return own == "gateway" and imp.split(".")[0] == "edge" and not _in(imp, ("edge.worker",))
        return True

    assert _violations(SERVICES, allowed) == []

