"""The package's layers, as a maintainer relies on them: no import points up, no circle,
few modules at the top, at most eight layers; ``docs/architecture.md`` is what
``tools/architecture.py`` draws from the code; the notebooks and the README use only
public names."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "koyeb_analytics"


def _load_tool():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "tools" /
                                                  "architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


architecture = _load_tool()


def test_no_import_points_up_and_there_is_no_circle():
    assert architecture.problems() == []


def test_few_modules_at_the_top_and_at_most_eight_layers():
    modules = architecture.read_package()
    assert len(architecture.top_level(modules)) <= 12
    assert len(architecture.LAYERS) <= 8
    assert architecture.floors(modules) <= 8
    # every subpackage has a face that says what it exports; the modules behind it are
    # private
    for path in PACKAGE.iterdir():
        if path.is_dir() and (path / "__init__.py").exists():
            tree = ast.parse((path / "__init__.py").read_text())
            assert any(isinstance(n, ast.Assign) and any(
                getattr(t, "id", "") == "__all__" for t in n.targets) for n in tree.body), path
            behind = [p.name for p in path.glob("*.py") if p.name != "__init__.py"]
            assert all(name.startswith("_") for name in behind), (path.name, behind)


def test_the_architecture_page_is_drawn_from_the_code():
    page = (ROOT / "docs" / "architecture.md").read_text()
    assert page == architecture.render(), \
        "docs/architecture.md is stale: python tools/architecture.py > docs/architecture.md"


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": '"""Face."""\n', **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


LAYERS = (("low", "", ("sub", "low")), ("high", "", ("high", "other", "__init__")))


def _problems(tmp_path: Path, files: dict[str, str]) -> list[str]:
    return architecture.problems(architecture.read_package(_package(tmp_path, files)),
                                 LAYERS)


def test_the_walk_finds_upward_imports_wherever_they_hide(tmp_path):
    found = _problems(tmp_path, {
        "low.py": "def f():\n    from .high import x\n",         # lazy, inside a function
        "high.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import other\n",
        # (other comes after high: even a type-only import must not point up)
        "other.py": "x = 1\n",
        "sub/__init__.py": "from ._m import y\n__all__ = ['y']\n",
        "sub/_m.py": "import pkg.high\nfrom .. import __version__\ny = 1\n",
    })
    assert found == [
        "pkg.high imports pkg.other, above it (high.py:3)",
        "pkg.low imports pkg.high, above it (low.py:2)",
        "pkg.sub._m imports pkg, above it (_m.py:2)",
        "pkg.sub._m imports pkg.high, above it (_m.py:1)",
    ]


def test_the_walk_finds_circles_faces_and_strays(tmp_path):
    found = _problems(tmp_path, {
        "low.py": "from .sub import y\n",                        # another package's face
        "sub/__init__.py": "from ._a import y\n__all__ = ['y']\n",
        "sub/_a.py": "from ._b import z\ny = 1\n",
        "sub/_b.py": "from ._a import y\nfrom ..sub import y as again\nz = 2\n",
        "stray.py": "",
    })
    assert found == [
        "pkg.low imports pkg.sub's __init__, the users' face; import the module that "
        "defines the name (low.py:1)",
        "pkg.stray: in no layer",
        "pkg.sub._b imports its own package's __init__ (_b.py:2)",
        "circle: pkg.sub <-> pkg.sub._a <-> pkg.sub._b",
    ]
    assert architecture.problems(architecture.read_package(_package(tmp_path, {})),
                                 LAYERS * 5)[-1] == "10 layers, more than 8"


def paging_seam_breaches(package: Path = PACKAGE) -> list[str]:
    """Where a module outside ``api/`` reads an attribute named ``read_ahead`` (also
    through ``getattr``) or imports from ``api._paging`` what its ``__all__`` does not
    export (or the module itself): listings go through ``KoyebClient.pages``."""
    name = package.name
    tree = ast.parse((package / "api" / "_paging.py").read_text())
    exported = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                     and any(getattr(t, "id", "") == "__all__" for t in n.targets)), [])
    paging = f"{name}.api._paging"
    out: list[tuple[str, int, str]] = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.parts[0] == "api":
            continue
        parts = [name, *rel.with_suffix("").parts]
        home = parts[:-1]  # the package a relative import starts from
        where = str(rel)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "read_ahead":
                out.append((where, node.lineno, "reads read_ahead"))
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                    "getattr", "hasattr") and len(node.args) > 1 and \
                    getattr(node.args[1], "value", None) == "read_ahead":
                out.append((where, node.lineno, "reads read_ahead"))
            elif isinstance(node, ast.Import):
                out += [(where, node.lineno, f"imports {a.name}") for a in node.names
                        if a.name == paging]
            elif isinstance(node, ast.ImportFrom):
                base = home[:len(home) - node.level + 1] if node.level else []
                module = ".".join(base + (node.module.split(".") if node.module else []))
                for alias in node.names:
                    if module == paging and alias.name not in exported or \
                            f"{module}.{alias.name}" == paging:
                        out.append((where, node.lineno, f"imports {module}.{alias.name}"))
    return [f"{where}:{line} {what}" for where, line, what in sorted(out)]


def test_listings_go_through_pages_and_nothing_outside_api_reads_read_ahead():
    assert paging_seam_breaches() == []


def test_the_paging_seam_walk_finds_every_way_around(tmp_path):
    root = _package(tmp_path, {
        "api/__init__.py": "__all__ = []\n",
        "api/_paging.py": "__all__ = ['PageStats']\ndef count_pages(): ...\n",
        "api/_client.py": "def f(c):\n    return c.read_ahead\n",            # allowed
        "load/__init__.py": "__all__ = []\n",
        "load/_ok.py": "from ..api._paging import PageStats\nx = {'read_ahead': 1}\n",
        "load/_names.py": "def f(client):\n"
                          "    return getattr(client, 'read_ahead', '') == 'threads'\n",
        "load/_loaders.py": "from ..api._paging import PageStats, count_pages\n"
                            "def g(client):\n"
                            "    from ..api import _paging\n"
                            "    return client.read_ahead\n",
        "poller.py": "import pkg.api._paging\nfrom .api._paging import _in_order\n",
    })
    assert paging_seam_breaches(root) == [
        "load/_loaders.py:1 imports pkg.api._paging.count_pages",
        "load/_loaders.py:3 imports pkg.api._paging",
        "load/_loaders.py:4 reads read_ahead",
        "load/_names.py:2 reads read_ahead",
        "poller.py:1 imports pkg.api._paging",
        "poller.py:2 imports pkg.api._paging._in_order",
    ]


def _imported_names(code: str) -> list[tuple[str, str | None]]:
    """``(module, name)`` for each import of the package in ``code`` (name None for a
    plain ``import``), and ``ka.<attribute>`` chains as ``(chain, None)``."""
    code = "\n".join(line for line in code.splitlines()
                     if not line.lstrip().startswith(("%", "!")))  # notebook magics
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names
                      if a.name.split(".")[0] == "koyeb_analytics"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == \
                "koyeb_analytics":
            found += [(node.module, a.name) for a in node.names]
    found += [(f"koyeb_analytics.{m}", None) for m in re.findall(r"\bka\.(\w+(?:\.\w+)*)", code)]
    return found


def _private_uses(code: str) -> list[str]:
    """Imports of the package in ``code`` that reach past a face: a module or name with
    a leading underscore, a name its module does not export, or a module the package
    does not have."""
    out = []
    for module, name in _imported_names(code):
        dotted = module if name is None else f"{module}.{name}"
        if any(p.startswith("_") and not p.startswith("__") for p in dotted.split(".")):
            out.append(dotted)
            continue
        if name is None:
            continue
        spec = importlib.util.find_spec(module)
        if spec is None or not str(spec.origin).startswith(str(PACKAGE)):
            out.append(f"{dotted} (no such module)")
            continue
        exported = getattr(importlib.import_module(module), "__all__", None)
        if exported is not None and name not in exported:
            out.append(f"{dotted} (not in {module}.__all__)")
    return out


def test_a_private_or_stale_import_is_caught():
    assert _private_uses("from koyeb_analytics.load._loaders import load_instances\n"
                         "import koyeb_analytics as ka\nka._version\n"
                         "from koyeb_analytics.report import analyse\n"
                         "from koyeb_analytics.names import service_labels\n") == [
        "koyeb_analytics.load._loaders.load_instances",
        "koyeb_analytics.report.analyse (not in koyeb_analytics.report.__all__)",
        "koyeb_analytics.names.service_labels (no such module)",
        "koyeb_analytics._version",
    ]
    assert _private_uses("from koyeb_analytics.plots import lifecycles_figure\n"
                         "import koyeb_analytics as ka\nka.plot_lifecycles\n") == []


NOTEBOOKS = sorted(p for p in ROOT.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
                   and ".venv" not in p.parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebooks_use_only_public_names(path):
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert _private_uses(code) == []


def test_the_readme_uses_only_public_names():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    assert _private_uses("\n".join(blocks)) == []
