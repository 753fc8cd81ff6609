"""Draw the package's import layers from the code, and say what breaks them.

``python tools/architecture.py`` prints ``docs/architecture.md``: the layers below, bottom
up, each unit (a top-level module or a subpackage) with its modules and the units it
imports. ``python tools/architecture.py --check`` lists what breaks the layering (an
import pointing up, a circle, a module no layer holds) and exits 1 if anything does;
``tests/test_architecture.py`` runs both.

Every import counts: at module level, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "koyeb_analytics"

# Bottom up. A unit may import units before it, in its own layer or in lower ones; never
# one after it. Within a subpackage, modules import each other without a circle and never
# their own package's __init__; outside it, they import its modules, not its __init__
# (the __init__ is the face for users, as the package's own __init__ is).
LAYERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("contract", "what every stage agrees on: exceptions, column schemas, redaction, "
     "time windows, display names", ("_version", "errors", "schema", "timewindow",
                                     "redact", "textsafe", "labels")),
    ("api", "one request path to Koyeb: HTTP, websocket, paging, argument checks",
     ("api",)),
    ("analysis", "frames in, figures out; no I/O", ("analysis",)),
    ("presentation", "figures to charts and documents", ("plots", "report")),
    ("reading", "the API to frames (listings) and to runs (exec)", ("load", "execute")),
    ("keeping and serving", "what was read, kept; the API, simulated",
     ("store", "simulator")),
    ("sources", "one window from any source; what is new since the last poll",
     ("sources", "poller")),
    ("faces", "what people use: widgets, the command, the package's own face",
     ("widgets", "cli", "__init__", "__main__")),
)
MAX_LAYERS = 8
MAX_TOP_LEVEL = 12


@dataclass
class Module:
    """One module of the package: its dotted name, file and the package modules it
    imports (``name -> first line``)."""

    name: str
    path: Path
    is_package: bool
    imports: dict[str, int] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        """The top-level module or subpackage this module belongs to."""
        parts = self.name.split(".")
        if len(parts) == 1:
            return "__init__"
        return parts[1]


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _targets(node: ast.Import | ast.ImportFrom, module: Module,
             known: dict[str, Module]) -> list[str]:
    """The package modules an import statement loads (a name that is a submodule
    counts as that submodule; any other name as the module it comes from)."""
    package = module.name.split(".")[0]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == package]
    if node.level:
        base = module.name.split(".")
        if not module.is_package:
            base = base[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
        if source.split(".")[0] != package:
            return []
    out = []
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        out.append(sub if sub in known else source)
    return out


def read_package(root: Path | None = None) -> dict[str, Module]:
    """Every module under ``root`` (default: the package), with its imports."""
    root = root or ROOT / PACKAGE
    modules = {}
    for path in sorted(root.rglob("*.py")):
        name, is_package = _module_name(path, root)
        modules[name] = Module(name, path, is_package)
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(node, module, modules):
                    if target in modules and target != module.name:
                        module.imports.setdefault(target, node.lineno)
    return modules


def _order(layers: tuple[tuple[str, str, tuple[str, ...]], ...]) -> dict[str, tuple[int, int]]:
    """``unit -> (layer, position)``: the order imports must follow."""
    return {unit: (i, j) for i, (_, _, units) in enumerate(layers)
            for j, unit in enumerate(units)}


def circles(modules: dict[str, Module]) -> list[list[str]]:
    """The modules that import each other, directly or around a loop (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(modules[v].imports):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(modules):
        if name not in index:
            visit(name)
    return sorted(found)


def problems(modules: dict[str, Module] | None = None,
             layers: tuple[tuple[str, str, tuple[str, ...]], ...] = LAYERS) -> list[str]:
    """Everything that breaks the layering, one sentence each (empty when none)."""
    modules = read_package() if modules is None else modules
    order = _order(layers)
    out = []
    for module in sorted(modules.values(), key=lambda m: m.name):
        if module.unit not in order:
            out.append(f"{module.name}: in no layer")
            continue
        for target, line in sorted(modules[module.name].imports.items()):
            where = f"{module.path.name}:{line}" if not module.is_package else \
                f"{module.name.replace('.', '/')}/__init__.py:{line}"
            other = modules[target]
            if other.unit not in order:
                continue
            if order[other.unit] > order[module.unit]:
                out.append(f"{module.name} imports {target}, above it ({where})")
            elif module.name.startswith(target + ".") and other.is_package:
                out.append(f"{module.name} imports its own package's __init__ ({where})")
            elif other.is_package and not module.is_package:
                out.append(f"{module.name} imports {target}'s __init__, the users' face; "
                           f"import the module that defines the name ({where})")
    out += [f"circle: {' <-> '.join(c)}" for c in circles(modules)]
    if len(layers) > MAX_LAYERS:
        out.append(f"{len(layers)} layers, more than {MAX_LAYERS}")
    top = top_level(modules)
    if len(top) > MAX_TOP_LEVEL:
        out.append(f"{len(top)} modules at the top level, more than {MAX_TOP_LEVEL}: "
                   f"{', '.join(top)}")
    return out


def top_level(modules: dict[str, Module]) -> list[str]:
    """The package's top-level modules (its ``__init__`` and ``__main__`` aside)."""
    return sorted(m.name.split(".")[1] for m in modules.values()
                  if m.name.count(".") == 1 and not m.is_package
                  and m.name.split(".")[1] != "__main__")


def floors(modules: dict[str, Module]) -> int:
    """The longest chain of imports between units (the package's face aside)."""
    units: dict[str, set[str]] = {}
    for m in modules.values():
        units.setdefault(m.unit, set()).update(
            modules[t].unit for t in m.imports if modules[t].unit != m.unit)
    depth: dict[str, int] = {}

    def height(unit: str, seen: tuple[str, ...] = ()) -> int:
        if unit not in depth:
            below = [height(u, (*seen, unit)) for u in units.get(unit, ())
                     if u not in seen and u not in ("__init__", "__main__")]
            depth[unit] = 1 + max(below, default=0)
        return depth[unit]

    return max(height(u) for u in units if u not in ("__init__", "__main__"))


def _summary(module: Module) -> str:
    """The first sentence of the module's docstring, its reST markup made Markdown."""
    doc = ast.get_docstring(ast.parse(module.path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.split("\n\n")[0].split()).split(". ")[0].rstrip(".")
    first = re.sub(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`", r"`\1`", first)
    return first.replace("``", "`")


def _label(unit: str, modules: dict[str, Module]) -> str:
    """``api/`` for a subpackage, ``cli.py`` for a module."""
    if unit == "__init__":
        return "__init__.py"
    package = any(m.unit == unit and m.is_package for m in modules.values())
    return f"{unit}/" if package else f"{unit}.py"


def render(modules: dict[str, Module] | None = None) -> str:
    """The architecture page, as Markdown."""
    modules = read_package() if modules is None else modules
    order = _order(LAYERS)
    lines = [
        "# Architecture: the import layers",
        "",
        "Drawn from the code by `python tools/architecture.py > docs/architecture.md`;",
        "`tests/test_architecture.py` fails when this page and the code differ. Bottom up:",
        "a unit imports only the units listed before it (in its own layer or below), never",
        "its own package's `__init__`, and no two modules import each other around a loop.",
        "Every import counts, inside functions too. Modules behind a subpackage's",
        "`__init__` are private (underscore names); `import koyeb_analytics as ka` is the",
        "everyday face.",
        "",
        f"{len(modules)} modules, {len(top_level(modules))} at the top level, "
        f"{len(LAYERS)} layers, {floors(modules)} floors (the longest chain of imports "
        "between units).",
        "",
        "```",
        *(f"{number}  {name:20} " + " ".join(_label(unit, modules) for unit in units)
          for number, (name, _, units) in reversed(list(enumerate(LAYERS, 1)))),
        "```",
        "",
    ]
    for number, (name, job, units) in enumerate(LAYERS, 1):
        lines += [f"## {number}. {name}", "", f"{job[0].upper()}{job[1:]}.", ""]
        for unit in units:
            members = sorted((m for m in modules.values() if m.unit == unit),
                             key=lambda m: (not m.is_package, m.name))
            if not members:
                continue
            head = members[0]
            label = f"`{_label(unit, modules)}`"
            below = sorted({modules[t].unit for m in members for t in m.imports
                            if modules[t].unit != unit},
                           key=lambda u: order.get(u, (99, 0)))
            lines.append(f"- {label}: {_summary(head)}.")
            if head.is_package and unit != "__init__":
                inner = ", ".join(f"`{m.name.split('.')[-1]}`" for m in members[1:])
                lines.append(f"  Modules: {inner}.")
            lines.append("  Imports: " + (", ".join(f"`{u}`" for u in below) or "nothing "
                                          "of the package") + ".")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="list what breaks the layering; exit 1 if anything does")
    args = parser.parse_args(argv)
    if args.check:
        found = problems()
        print("\n".join(found) or "layers hold: no import points up, no circle")
        return 1 if found else 0
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
