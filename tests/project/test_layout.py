"""The package's layering (scripts/check_imports.py): no import circle between dbcli's modules or its
packages (imports inside functions included), no module over 400 lines; and the checker itself
proven on small planted packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import check_imports  # noqa: E402


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    """A package ``pkg`` under ``tmp_path`` holding ``files`` (relative path -> source)."""
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_dbcli_has_no_import_circle():
    modules, packages = check_imports.build_graphs(ROOT / "dbcli")
    assert "dbcli.engine.pipeline" in modules.edges and "dbcli.engine" in packages.edges  # the walk saw it
    assert "dbcli.postprocess" in packages.edges["dbcli.engine"]  # and its imports
    assert check_imports.describe_cycles(packages, "package") == []
    assert check_imports.describe_cycles(modules, "module") == []


def test_no_dbcli_module_is_over_400_lines():
    assert check_imports.long_modules(ROOT / "dbcli", check_imports.MAX_LINES) == []


def test_the_script_passes_on_dbcli_and_names_what_it_checked():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_imports.py")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no import circle" in done.stdout


def test_a_circle_made_inside_a_function_is_found(tmp_path):
    root = _package(tmp_path, {
        "a/__init__.py": "", "a/one.py": "from pkg.b.two import f\n",
        "b/__init__.py": "", "b/two.py": "def f():\n    from pkg.a import one\n    return one\n",
    })
    problems = check_imports.check(root)
    assert any(p.startswith("package import circle: pkg.a -> pkg.b -> pkg.a") for p in problems), problems
    assert any("module import circle" in p and "pkg/b/two.py:2" in p for p in problems), problems


def test_a_circle_between_packages_without_one_between_modules(tmp_path):
    root = _package(tmp_path, {
        "a/__init__.py": "", "a/low.py": "", "a/high.py": "import pkg.b.mid\n",
        "b/__init__.py": "", "b/mid.py": "from pkg.a import low\n",
    })
    problems = check_imports.check(root)
    assert len(problems) == 1 and problems[0].startswith("package import circle: pkg.a -> pkg.b -> pkg.a")


def test_relative_imports_and_the_package_root_count(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "from pkg.core.api import run\n",
        "core/__init__.py": "", "core/api.py": "from .. import version_of_root\n",
    })
    problems = check_imports.check(root)
    assert any(p.startswith("package import circle: pkg -> pkg.core -> pkg") for p in problems), problems


def test_a_clean_package_passes_and_a_long_module_fails(tmp_path):
    root = _package(tmp_path, {"low.py": "import os\n", "high.py": "from pkg import low\nfrom . import low\n"})
    assert check_imports.check(root) == []
    (root / "long.py").write_text("x = 1\n" * 401)
    assert check_imports.check(root) == ["pkg/long.py: 401 lines (at most 400)"]
    assert check_imports.check(root, max_lines=401) == []


@pytest.mark.parametrize("args, code", [([], 0), (["--max-lines", "1"], 1)])
def test_the_exit_status(tmp_path, args, code):
    root = _package(tmp_path, {"a.py": "import os\nimport sys\n"})
    assert check_imports.main([str(root), *args]) == code
