"""Run dbnet in a subprocess where ``import torch`` fails (a meta-path finder refuses it), as in an
install without the ``train`` extra: ``run_cli`` for a command, ``run_code`` for Python code. Both say on
stderr which torch modules got loaded (``TORCH_MODULES=``: none, when the blocker held)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = r"""
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test: " + name)

sys.meta_path.insert(0, BlockTorch())

def report(code):
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    print("TORCH_MODULES=" + ",".join(loaded), file=sys.stderr)
    sys.exit(1 if loaded else code)
"""

CLI = BLOCKER + r"""
sys.argv = ["dbnet"] + sys.argv[1:]
from dbcli.cli import app
try:
    app()
except SystemExit as exc:
    report(exc.code)
report(0)
"""

CODE = BLOCKER + r"""
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"))
report(0)
"""


def _env(cache: Path | None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if cache is not None:
        env["DBNET_CACHE"] = str(cache)
    return env


def run_cli(args: list[str], cwd: Path, cache: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``dbnet ARGS`` with torch blocked, in ``cwd`` (the ONNX cache in ``cache`` when given)."""
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, cwd=cwd,
                          env=_env(cache), timeout=timeout)


def run_code(code: str, cwd: Path, cache: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The Python ``code`` (written to ``cwd/snippet.py``) with torch blocked."""
    (cwd / "snippet.py").write_text(code)
    return subprocess.run([sys.executable, "-c", CODE, "snippet.py"], capture_output=True, text=True, cwd=cwd,
                          env=_env(cache), timeout=timeout)


def torch_stayed_out(proc: subprocess.CompletedProcess) -> bool:
    """Whether the run loaded no torch module (the blocker's closing line)."""
    return proc.stderr.rstrip().endswith("TORCH_MODULES=")


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The run's one ``error:`` line (asserting it failed with exactly one line and no traceback)."""
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("TORCH_MODULES=")]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]
