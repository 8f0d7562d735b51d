"""Every writer goes through ``dbcli.outputs.paths`` / ``dbcli.outputs.atomic`` (issue 25): an output never replaces
an input, a weights file or someone else's file (1); devices, FIFOs, ``/proc`` links and symlinks are
written into, ``-`` is stdout (2); undecodable and 241-255-byte file names, and a full disk, lose no
result and give one line (5). Inputs are small generated files; the detector is the planted model."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from generated_files import invoke, write_rgb
from planted_model import planted_files

from dbcli.outputs.atomic import atomic_write_bytes, fit_name, json_text, lock_path, temp_prefix
from dbcli.outputs.writers import partial_path

REPO = Path(__file__).resolve().parents[2]
RECT = (30, 40, 160, 75)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


def detect(model_files, *args):
    return invoke("detect", *args, "--weights", model_files["onnx"])


def error_line(result) -> str:
    """The one ``error:`` line of a failed command (and no traceback)."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.output and len(lines) >= 1, result.output
    assert lines[-1].startswith("error: "), result.stderr
    return lines[-1]


def snapshot(*paths: Path) -> dict:
    return {p: p.read_bytes() for p in paths}


# --- 1. never an input, a weights file or someone else's file --------------------------------------
@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_detect_out_naming_an_input_is_refused(model_files, tmp_path, fmt):
    a = write_rgb(tmp_path / "a.jpg")
    folder = tmp_path / "imgs"
    folder.mkdir()
    x = write_rgb(folder / "x.png")
    (tmp_path / "link.json").symlink_to(a)
    os.link(x, tmp_path / "hard.json")
    before = snapshot(a, x)
    for inputs, out in (([a], a), ([folder], x), ([a], tmp_path / "link.json"), ([folder], tmp_path / "hard.json")):
        line = error_line(detect(model_files, *inputs, "--out", out, "--format", fmt))
        assert str(out) in line and "would replace the input" in line, line
        assert (str(a) if inputs == [a] else str(x)) in line  # both paths named
        assert not partial_path(Path(out)).exists() and not lock_path(out).exists()
    assert snapshot(a, x) == before
    assert (tmp_path / "link.json").is_symlink()


def test_detect_out_naming_the_weights_or_a_shipped_file_is_refused(model_files, tmp_path):
    from dbcli.weights import weights_dir

    a = write_rgb(tmp_path / "a.jpg")
    weights = Path(model_files["onnx"])
    before = weights.read_bytes()
    line = error_line(detect(model_files, a, "--out", weights))
    assert f"the weights file {weights}" in line
    assert weights.read_bytes() == before
    shipped = weights_dir() / "dbnet_mobilenetv3_icdar15.pt"
    line = error_line(detect(model_files, a, "--out", shipped, "--format", "jsonl", "--overwrite"))
    assert "shipped weights" in line


def test_detect_replaces_its_own_output_but_not_a_foreign_file(model_files, tmp_path):
    a = write_rgb(tmp_path / "a.jpg")
    out = tmp_path / "p.json"
    assert detect(model_files, a, "--out", out).exit_code == 0
    assert detect(model_files, a, "--out", out).exit_code == 0  # its own earlier output: normal use
    lines = tmp_path / "p.jsonl"
    assert detect(model_files, a, "--out", lines).exit_code == 0
    assert detect(model_files, a, "--out", lines).exit_code == 0
    for name, data in (("notes.txt", b"my notes\n"), ("photo.jpg", (tmp_path / "a.jpg").read_bytes()),
                       ("other.json", b'{"key": 1}\n'), ("list.jsonl", b'{"id": 3}\n')):
        foreign = tmp_path / name
        foreign.write_bytes(data)
        fmt = "jsonl" if name.endswith("jsonl") else "json"
        line = error_line(detect(model_files, a, "--out", foreign, "--format", fmt))
        assert str(foreign) in line and "--overwrite" in line
        assert foreign.read_bytes() == data
        assert detect(model_files, a, "--out", foreign, "--format", fmt, "--overwrite").exit_code == 0
        assert "a.jpg" in foreign.read_text()


def test_crops_never_land_on_an_input(model_files, tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    inputs = [write_rgb(folder / n) for n in ("x.png", "x_001.png", "sub/y.png", "sub/y_002.png")]
    before = snapshot(*inputs)
    line = error_line(detect(model_files, folder, "--crops", folder))
    assert "--crops" in line and "would replace the input" in line and ("x_001.png" in line or "y_002.png" in line)
    assert snapshot(*inputs) == before
    assert sorted(p.name for p in folder.rglob("*")) == sorted(["sub", *(p.name for p in inputs)])
    # an input file given by name in the --crops folder
    line = error_line(detect(model_files, folder / "sub" / "y.png", folder / "sub" / "y_002.png",
                             "--crops", folder / "sub"))
    assert "y_002.png" in line
    assert snapshot(*inputs) == before
    # crops into a folder holding no input of that name are fine
    result = detect(model_files, folder / "x.png", "--crops", folder / "crops")
    assert result.exit_code == 0 and (folder / "crops" / "x_001.png").is_file()


def test_visualize_never_draws_over_an_input_or_the_predictions(model_files, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    photo = write_rgb(folder / "photo.png")
    other = write_rgb(folder / "other.jpg")
    before = snapshot(photo, other)
    for args in ((folder, "--out", folder), (photo, "--out", folder), (other, "--out", folder / "..", "--maps")):
        result = invoke("visualize", *args, "--weights", model_files["pt"])
        if args[0] == other:  # other.jpg draws other.png: no clash
            assert result.exit_code == 0, result.output
            continue
        line = error_line(result)
        assert "the drawing" in line and f"the input {photo}" in line
    assert snapshot(photo, other) == before
    pred = tmp_path / "p.json"
    assert detect(model_files, other, "--out", pred).exit_code == 0
    as_png = tmp_path / "other.png"
    as_png.write_bytes(pred.read_bytes())
    line = error_line(invoke("visualize", other, "--pred", as_png, "--out", tmp_path))
    assert "the predictions file" in line and json.loads(as_png.read_text())["images"]


def custom_dataset(root: Path, names: list[str], rect=RECT) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    x0, y0, x1, y1 = rect
    lines = []
    for name in names:
        if not (root / name).exists():
            write_rgb(root / name)
        lines.append(json_text({"image": name, "polygons": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]]}))
    (root / "test.jsonl").write_text("\n".join(lines) + "\n")
    return root


def run_eval(root: Path, *args):
    return invoke("eval", "--dataset", "custom", "--data-root", root, *args)


def test_eval_json_never_replaces_the_dataset_predictions_or_weights(model_files, tmp_path):
    root = custom_dataset(tmp_path / "data", ["a.png", "b.png"])
    gt = root / "test.jsonl"
    before = snapshot(gt, root / "a.png")
    weights = ("--weights", model_files["onnx"])
    for data_root, target in ((root, gt), (gt, gt), (root, root / "a.png"), (root, root / "notes.json")):
        if target.name == "notes.json":
            target.write_text('{"dataset": "custom"}')  # even a report-looking file in the dataset
        line = error_line(run_eval(data_root, *weights, "--json", target, "--overwrite"))
        assert str(target) in line and ("dataset" in line or "ground-truth" in line), line
    assert snapshot(gt, root / "a.png") == before
    pred = tmp_path / "pred.jsonl"
    assert detect(model_files, root, "--out", pred).exit_code == 0
    kept = pred.read_bytes()
    line = error_line(run_eval(root, "--pred", pred, "--json", pred))
    assert f"the predictions file {pred}" in line and pred.read_bytes() == kept
    line = error_line(run_eval(root, *weights, "--json", model_files["onnx"]))
    assert "weights file" in line


def test_eval_json_folder_stdout_and_foreign_files(model_files, tmp_path):
    root = custom_dataset(tmp_path / "data", ["a.png"])
    weights = ("--weights", model_files["onnx"])
    for folder in (f"{tmp_path / 'results'}/", tmp_path):  # ends in / (new), or an existing folder
        result = run_eval(root, *weights, "--json", folder)
        assert result.exit_code == 0, result.output
        assert json.loads((Path(folder) / "eval.json").read_text())["dataset"] == "custom"
    assert not (tmp_path / "results").is_file()
    result = run_eval(root, *weights, "--json", tmp_path / "eval.json")  # its own report: replaced
    assert result.exit_code == 0
    result = run_eval(root, *weights, "--json", "-")
    assert result.exit_code == 0 and json.loads(result.stdout)["dataset"] == "custom"
    assert "hmean" in result.stderr  # the tables moved to stderr
    foreign = tmp_path / "config.json"
    foreign.write_text('{"lr": 0.007}')
    line = error_line(run_eval(root, *weights, "--json", foreign))
    assert "--overwrite" in line and foreign.read_text() == '{"lr": 0.007}'
    assert run_eval(root, *weights, "--json", foreign, "--overwrite").exit_code == 0
    assert json.loads(foreign.read_text())["dataset"] == "custom"


def test_export_and_convert_never_replace_their_source(model_files, tmp_path):
    from dbcli.weights import weights_dir

    pt = tmp_path / "w.pt"
    pt.write_bytes(Path(model_files["pt"]).read_bytes())
    onnx = Path(model_files["onnx"])
    notes = tmp_path / "notes.onnx"
    notes.write_bytes(b"not an export")
    before = snapshot(pt, onnx, notes)
    shipped = weights_dir() / "dbnet_mobilenetv3_general.pt"
    for args, expected in ((("export", "--weights", pt, "--out", pt, "--overwrite"), f"the weights file {pt}"),
                           (("export", "--weights", pt, "--out", shipped), "shipped weights"),
                           (("export", "--weights", pt, "--out", notes), "not a dbnet export"),
                           (("convert", onnx, "--out", onnx, "--overwrite"), f"the source model {onnx}"),
                           (("convert", onnx, "--out", pt), "exists"),
                           (("convert", onnx, "--out", shipped, "--overwrite"), "shipped weights")):
        line = error_line(invoke(*args))
        assert expected in line, line
    assert snapshot(pt, onnx, notes) == before
    out = tmp_path / "w.onnx"
    for _ in range(2):  # an earlier export of its own is replaced
        assert invoke("export", "--weights", pt, "--out", out).exit_code == 0
    assert invoke("export", "--weights", pt, "--out", notes, "--overwrite").exit_code == 0
    assert notes.read_bytes() == out.read_bytes()


# --- 2. devices, FIFOs, links, stdout ------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_devices_are_written_into_not_replaced(model_files, tmp_path, fmt):
    a = write_rgb(tmp_path / "a.jpg")
    result = detect(model_files, a, "--out", "/dev/null", "--format", fmt)
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not Path("/dev/null.lock").exists() and not Path("/dev/null.partial").exists()
    if Path("/dev/full").exists():
        line = error_line(detect(model_files, a, "--out", "/dev/full", "--format", fmt))
        assert "/dev/full: cannot write" in line
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    atomic_write_bytes("/dev/null", b"x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_a_fifo_gets_the_output_and_stays_a_fifo(model_files, tmp_path, fmt):
    a = write_rgb(tmp_path / "a.jpg")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = detect(model_files, a, "--out", fifo, "--format", fmt)
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    text = got[0].decode()
    entry = json.loads(text)["images"][0] if fmt == "json" else json.loads(text.splitlines()[0])
    assert entry["file"] == str(a)


def test_a_symlink_has_its_target_written(model_files, tmp_path):
    a = write_rgb(tmp_path / "a.jpg")
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "latest.json"
    for fmt, link_name in (("json", "out.json"), ("jsonl", "out.jsonl")):
        link = tmp_path / link_name
        link.symlink_to(target)
        assert detect(model_files, a, "--out", link, "--format", fmt).exit_code == 0
        assert link.is_symlink() and target.is_file()
        text = target.read_text()
        assert (json.loads(text)["images"] if fmt == "json" else [json.loads(text)])[0]["file"] == str(a)
        target.unlink()
    proc_link = tmp_path / "stdout.json"
    proc_link.symlink_to("/proc/self/fd/1")
    done = subprocess.run([sys.executable, "-m", "dbcli.cli", "detect", str(a), "--out", str(proc_link), "--weights",
                           str(model_files["onnx"])], capture_output=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["images"][0]["file"] == str(a)
    assert proc_link.is_symlink()


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_out_dash_is_stdout(model_files, tmp_path, fmt):
    a, b = write_rgb(tmp_path / "a.jpg"), write_rgb(tmp_path / "b.png")
    result = detect(model_files, a, b, "--out", "-", "--format", fmt)
    assert result.exit_code == 0, result.output
    files = ([e["file"] for e in json.loads(result.stdout)["images"]] if fmt == "json"
             else [json.loads(line)["file"] for line in result.stdout.splitlines()])
    assert files == [str(a), str(b)]
    assert "wrote stdout" in result.stderr and not (tmp_path / "-").exists()
    line = error_line(detect(model_files, a, "--out", "-", "--format", "icdar"))
    assert "stdout" in line
    line = error_line(detect(model_files, a, "--out", "-", "--format", "jsonl", "--resume"))
    assert "--resume" in line


# --- 5. names: undecodable bytes, 241-255 bytes; a full disk ----------------------------------------
def undecodable(folder: Path, raw: bytes) -> Path:
    name = os.fsdecode(raw)
    scratch = write_rgb(folder / "scratch.png")  # (OpenCV cannot take such a name itself)
    try:
        os.replace(scratch, folder / name)
    except (OSError, UnicodeError):
        pytest.skip("this file system does not take non-UTF-8 names")
    if not (folder / name).exists():
        pytest.skip("this file system does not take non-UTF-8 names")
    return folder / name


def test_undecodable_names_are_written_losslessly_and_read_back(model_files, tmp_path):
    if sys.platform == "darwin":
        pytest.skip("macOS file names are UTF-8")
    data = tmp_path / "data"
    data.mkdir()
    names = [undecodable(data, raw) for raw in (b"caf\xe9.png", b"\xff\xfe.png", b"r\xc3sum\xe9 2.png")]
    out, lines, icdar = tmp_path / "p.json", tmp_path / "p.jsonl", tmp_path / "icdar"
    assert detect(model_files, data, "--out", out, "--crops", tmp_path / "crops").exit_code == 0
    assert detect(model_files, data, "--out", lines).exit_code == 0
    assert detect(model_files, data, "--out", icdar, "--format", "icdar").exit_code == 0
    out.read_bytes().decode("utf-8")  # valid UTF-8 (strict)
    lines.read_bytes().decode("utf-8")
    files = [e["file"] for e in json.loads(out.read_text())["images"]]
    assert sorted(os.fsencode(f) for f in files) == sorted(os.fsencode(n) for n in names)  # lossless
    assert sorted(json.loads(line)["file"] for line in lines.read_text().splitlines()) == sorted(files)
    crops = [d["crop"] for e in json.loads(out.read_text())["images"] for d in e["detections"]]
    assert len(crops) == 3 and all(Path(c).is_file() for c in crops)
    assert len(list(icdar.glob("res_*.txt"))) == 3
    # dbnet's own eval --pred reads the names back and matches every image
    custom_dataset(data, [n.name for n in names])
    for pred in (out, lines):
        report = tmp_path / f"eval_{pred.suffix[1:]}.json"
        result = run_eval(data, "--pred", pred, "--json", report)
        assert result.exit_code == 0, result.output
        figures = json.loads(report.read_text())
        assert figures["num_images"] == 3 and figures["num_det"] == 3, figures
        assert figures["missing_predictions"] == [] and figures["unmatched_predictions"] == []


def test_json_text_escapes_only_lone_surrogates():
    for name in ("caf\udce9.jpg", "\udcff\udcfe", "ok é 中 😀", "a\\udce9"):
        text = json_text({"file": name})
        text.encode("utf-8")
        assert json.loads(text)["file"] == name


@pytest.mark.parametrize("length", [241, 248, 255])
def test_long_names_work_in_every_writer(model_files, tmp_path, length):
    name = "n" * (length - 4) + ".png"
    assert len(os.fsencode(name)) == length
    data = tmp_path / "data"
    data.mkdir()
    image = write_rgb(data / name)
    out_name = "o" * (length - 6) + ".jsonl"
    lines = tmp_path / out_name
    result = detect(model_files, image, "--out", lines, "--crops", tmp_path / "crops")
    assert result.exit_code == 0, result.output
    crops = [d["crop"] for d in json.loads(lines.read_text())["detections"]]
    assert len(crops) == 1 and Path(crops[0]).is_file() and len(os.fsencode(Path(crops[0]).name)) <= 255
    json_out = tmp_path / ("j" * (length - 5) + ".json")
    assert detect(model_files, image, "--out", json_out).exit_code == 0 and json_out.is_file()
    assert detect(model_files, image, "--out", tmp_path / "icdar", "--format", "icdar").exit_code == 0
    assert len(list((tmp_path / "icdar").glob("res_*.txt"))) == 1
    result = invoke("visualize", image, "--out", tmp_path / "vis", "--weights", model_files["pt"], "--maps")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "vis").glob("*.png"))) == 2
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".lock", ".partial"))]
    assert not leftovers


def test_fitted_names_stay_distinct_and_within_the_limit():
    long_a, long_b = "a" * 300 + "x.png", "a" * 300 + "y.png"
    fitted = {fit_name(long_a), fit_name(long_b)}
    assert len(fitted) == 2 and all(len(os.fsencode(n)) <= 255 and n.endswith(".png") for n in fitted)
    assert fit_name("short.png") == "short.png"
    for name in ("x" * 255, "é" * 127, os.fsdecode(b"\xe9" * 255)):
        assert len(os.fsencode(temp_prefix(name))) + 8 + len(".tmp") <= 255


def _limited(args: list[str], blocks: int) -> subprocess.CompletedProcess:
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (blocks * 512, blocks * 512))

    return subprocess.run([sys.executable, "-m", "dbcli.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_full_disk_while_writing_keeps_the_lines_done(model_files, tmp_path):
    pytest.importorskip("resource")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(16):
        write_rgb(data / f"img{i:02d}.png")
    out = tmp_path / "p.jsonl"
    done = _limited(["detect", str(data), "--out", str(out), "--weights", str(model_files["onnx"])], 2)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "During handling" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "cannot write" in error[0] and "kept in" in error[0], done.stderr
    partial = partial_path(out)
    kept = [json.loads(line) for line in partial.read_text().splitlines()[:-1]]
    assert kept and f"{len(kept)} images done" in error[0]
    result = detect(model_files, data, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 16 and not partial.exists()
    # JSON (written whole at the end) and the drawings say nothing was kept, in one line
    json_out = tmp_path / "p.json"
    done = _limited(["detect", str(data), "--out", str(json_out), "--weights", str(model_files["onnx"])], 2)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "nothing was written" in done.stderr.splitlines()[-1] and not json_out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".lock"))]
