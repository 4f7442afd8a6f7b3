"""The package ships every module and the schemas (a non-editable install must work)."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ reads TOML without a dependency


def test_every_engine_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "engine").rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert config["package-dir"]["engine.schemas"] == "schemas"
    assert {"*.json", "providers/*.json"} <= set(config["package-data"]["engine.schemas"])
