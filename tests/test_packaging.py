"""What pyproject.toml declares is what the version matrix (noxfile.py) runs."""

from __future__ import annotations

import ast
import re
import sys
from typing import Any

from tests.support.processes import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomllib arrived in 3.11; pytest brings tomli before it.
    import tomli as tomllib


def _project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _matrix(name: str) -> Any:
    """A constant of noxfile.py, read without importing nox (not installed in matrix sessions)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"noxfile.py has no {name}")


def _bounds(requirement: str) -> tuple[str, str]:
    """The ``>=`` and ``<`` versions of a ``name>=a,<b`` requirement."""
    lower = re.search(r">=\s*([\d.]+)", requirement)
    upper = re.search(r"<\s*([\d.]+)", requirement)
    assert lower and upper, f"{requirement!r} should name both bounds"
    return lower[1], upper[1]


def _dependency(name: str) -> str:
    project = _project()
    everything = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    (found,) = [d for d in everything if re.match(rf"{re.escape(name)}\s*[<>=!~]", d, re.IGNORECASE)]
    return found


def _classifiers(prefix: str) -> set[str]:
    return {
        c.removeprefix(prefix) for c in _project()["classifiers"] if re.fullmatch(rf"{prefix}\d+\.\d+", c)
    }


def test_the_pythons_declared_are_the_pythons_tested() -> None:
    tested = {python for pythons in _matrix("DJANGO_PYTHONS").values() for python in pythons}
    assert _classifiers("Programming Language :: Python :: ") == tested
    oldest = min(tested, key=lambda v: tuple(map(int, v.split("."))))
    assert _project()["requires-python"] == f">={oldest}"


def test_the_djangos_declared_are_the_djangos_tested() -> None:
    tested = set(_matrix("DJANGO_PYTHONS"))
    assert _classifiers("Framework :: Django :: ") == tested
    lower, upper = _bounds(_dependency("Django"))
    series = sorted(tested, key=lambda v: tuple(map(int, v.split("."))))
    assert lower == series[0]
    newest_major, newest_minor = map(int, series[-1].split("."))
    assert upper == f"{newest_major}.{newest_minor + 1}"


def test_the_oldest_celery_and_channels_tested_are_the_lower_bounds() -> None:
    for name, version in _matrix("OLDEST").items():
        lower, _ = _bounds(_dependency(name))
        assert version.removesuffix(".0") == lower, name
