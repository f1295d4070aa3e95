"""Package structure: no module imports another module's private names (a private name is private
to its module), the test oracles live in deepinv_energy.testing, models/ does not import problems.py."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            yield node


def test_no_private_name_imported_from_another_module():
    bad = []
    for p in sorted((ROOT / "deepinv_energy").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")):
        for node in _imports(p):
            inside = node.level > 0 or (node.module or "").startswith("deepinv_energy") or p.parent.name == "benchmarks"
            for a in node.names:
                if inside and a.name.startswith("_") and not a.name.startswith("__"):
                    bad.append(f"{p.relative_to(ROOT)}: from {'.' * node.level}{node.module or ''} import {a.name}")
    assert not bad, "\n".join(bad)


def test_models_do_not_import_problems_and_oracles_live_in_testing():
    for p in sorted((ROOT / "deepinv_energy" / "models").glob("*.py")):
        for node in _imports(p):
            assert "problems" not in (node.module or ""), f"{p.name} imports {node.module}"
    assert not (ROOT / "deepinv_energy" / "exactness.py").exists()
    import deepinv_energy.testing as t

    assert callable(t.measurement_posterior) and callable(t.random_mixture)


def test_api_page_documents_every_top_level_public_name():
    import re

    import deepinv_energy

    api = (ROOT / "docs" / "api.rst").read_text()
    missing = [n for n in deepinv_energy.__all__ if n != "__version__" and not re.search(rf"\b{re.escape(n)}\b", api)]
    assert not missing, f"docs/api.rst does not list {missing}"
    assert set(deepinv_energy.__all__) == {"__version__", *deepinv_energy._ORIGIN}  # one list, _SOURCES
