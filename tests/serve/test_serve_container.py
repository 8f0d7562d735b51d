"""The container recipe (``Containerfile``), checked with what runs without a container engine: its
instructions parsed (a non-root user, no PyTorch: onnxruntime with the shipped ONNX models, a health
check on ``/livez``, the port exposed where the server listens, a drain that fits ``docker stop``'s
10 s), its command's options known to ``dbnet serve``, its health check valid Python, and the build
context limited to what the image needs."""

from __future__ import annotations

import json
import re

from generated_files import runner
from serve_client import ROOT

from dbcli.cli import app

CONTAINERFILE = ROOT / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def test_containerfile_runs_as_a_user_with_a_health_check_and_no_torch():
    rows = instructions()
    words = [w for w, _ in rows]
    assert words[0] == "FROM" and words.count("CMD") == 1 and words.count("HEALTHCHECK") == 1
    users = [arg for w, arg in rows if w == "USER"]
    assert users and users[-1] not in ("root", "0") and words.index("USER") < words.index("CMD")
    installs = [arg for w, arg in rows if w == "RUN" and "pip install" in arg]
    assert installs and not any("torch" in a.split("&&")[0] for a in installs)  # no PyTorch installed
    assert any("find_spec('torch') is None" in a for a in installs)  # and the build proves it
    cmd = json.loads(dict(rows)["CMD"])
    assert cmd[:2] == ["dbnet", "serve"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    port = cmd[cmd.index("--port") + 1]
    assert dict(rows)["EXPOSE"] == port
    assert float(cmd[cmd.index("--drain-timeout") + 1]) + 1 < 10  # inside docker stop's default 10 s
    health = dict(rows)["HEALTHCHECK"]
    probe = json.loads(health.split("CMD", 1)[1])
    assert probe[:2] == ["python", "-c"] and f"127.0.0.1:{port}/livez" in probe[2]
    compile(probe[2], "HEALTHCHECK", "exec")
    assert dict(rows).get("STOPSIGNAL") == "SIGTERM"


def test_containerfile_command_uses_options_dbnet_serve_knows():
    cmd = json.loads(dict(instructions())["CMD"])
    help_text = runner.invoke(app, ["serve", "--help"], terminal_width=200).output
    for option in [a for a in cmd if a.startswith("--")]:
        assert option in help_text, option
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:][:3] == ["!pyproject.toml", "!README.md", "!dbcli/"]
    assert {"!setup.py", "!weights/", "weights/dbnet_resnet18_icdar15.pt"} <= set(ignore)  # the wheel's weights
    copied = " ".join(arg for w, arg in instructions() if w == "COPY")
    assert all(name in copied for name in ("dbcli", "pyproject.toml", "setup.py", "weights"))
