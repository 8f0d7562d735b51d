"""dbcli.cpu: the malloc tuning that the CLI's inference commands apply (measured in bench/README.md),
checked by its effect: page faults when large buffers are freed and allocated again."""

from __future__ import annotations

import subprocess
import sys

import pytest

FAULTS = r"""
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from dbcli.cpu import tune_malloc
    tune_malloc()
def faults_of_one_round():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        buf = np.ones(8 << 20, np.float64)  # 64 MiB, written: every page touched
        del buf
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_round()  # warm-up: the first round maps the memory in either case
print(faults_of_one_round())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_tune_malloc_keeps_large_buffers_mapped():
    def faults(mode: str) -> int:
        proc = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.split()[-1])

    default, tuned = faults("default"), faults("tuned")
    # glibc maps a 64 MiB block fresh every time and faults it in again (16k 4-KiB pages each time, or
    # fewer where the kernel maps larger folios); tuned, the heap keeps the block and reuses it
    assert default > 50  # (5 x 32 with 2 MiB transparent huge pages)
    assert tuned < default / 20


def test_inference_commands_tune_malloc(monkeypatch, tmp_path):
    from generated_files import runner

    import dbcli.cpu
    from dbcli.cli import app

    calls = []
    monkeypatch.setattr(dbcli.cpu, "tune_malloc", lambda: calls.append(1))
    for command in (["detect", str(tmp_path / "missing.png")], ["visualize", str(tmp_path / "missing.png"),
                                                                "--out", str(tmp_path / "vis")],
                    ["eval", "--data-root", str(tmp_path / "nothing")]):
        calls.clear()
        result = runner.invoke(app, command)
        assert result.exit_code == 1  # (nothing to work on) but the process was tuned first
        assert calls == [1], command
