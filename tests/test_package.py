"""The package as a maintainer reads it: the public API is exactly ``__all__``, every
exception lives in ``errors``, no module imports another's private names, and
``import koyeb_analytics`` stays cheap."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import koyeb_analytics as ka
from koyeb_analytics import errors

PACKAGE = Path(ka.__file__).parent


def test_all_is_exactly_the_public_api():
    assert ka.__all__ == sorted(ka.__all__) and len(set(ka.__all__)) == len(ka.__all__)
    for name in ka.__all__:
        assert getattr(ka, name) is not None
    public = {n for n in vars(ka) if not n.startswith("_") and not inspect.ismodule(
        getattr(ka, n))} - {"annotations", "Any"}
    assert public <= set(ka.__all__), public - set(ka.__all__)


def test_every_exception_and_warning_is_defined_in_errors():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                assert not bases & {"Exception", "KoyebError", "TransportError", "APIError",
                                    "UserWarning", "BadRequestError"}, \
                    f"{path.name}: {node.name} belongs in errors.py"
    exported = [getattr(ka, n) for n in ka.__all__]
    for obj in exported:
        if inspect.isclass(obj) and issubclass(obj, BaseException | Warning):
            assert obj.__module__ == errors.__name__, obj


def test_no_private_name_is_imported_across_modules():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                private = [a.name for a in node.names
                           if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, f"{path.relative_to(PACKAGE)} imports {private}"


def test_import_is_cheap():
    code = ("import sys, koyeb_analytics; "
            "print(sorted(m for m in ('matplotlib', 'ipywidgets', 'aiohttp', 'plotly', 'jc') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_every_exported_function_and_class_has_a_numpydoc_docstring():
    lacking = {}
    for name in ka.__all__:
        obj = getattr(ka, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or (
                inspect.isclass(obj) and issubclass(obj, BaseException | Warning)):
            continue
        doc = inspect.getdoc(obj) or ""
        wanted = ("Parameters", "Examples") if inspect.isclass(obj) else \
            ("Parameters", "Returns", "Examples")
        if inspect.isfunction(obj) and not inspect.signature(obj).parameters:
            wanted = tuple(w for w in wanted if w != "Parameters")
        missing = [section for section in wanted if section not in doc]
        if missing:
            lacking[name] = missing
    assert not lacking


def test_modules_say_their_job_and_long_ones_say_why():
    for path in PACKAGE.rglob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc, f"{path.relative_to(PACKAGE)} has no module docstring"
        lines = path.read_text().count("\n")
        if lines > 450:
            assert "Long because" in doc, \
                f"{path.relative_to(PACKAGE)}: {lines} lines and no reason stated"
