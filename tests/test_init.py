"""`nndoctor init DATA`: as a user runs it, in subprocesses. Each written file must run with `python FILE`
(its last line: the validation metric against the simplest baseline, which it must beat) and pass the
playbook with no error finding. The default run keeps one tabular case and the error paths; the other
data kinds and the frameworks are marked slow (each trains a model twice)."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ENV = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}  # one thread: the test machine is shared
VAL_LINE = re.compile(r"^val (\S+) (-?[\d.]+) \(baseline, (.+): (-?[\d.]+)\)$", re.M)


def run(*args: str, cwd, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=ENV)


def init(cwd, *args: str) -> subprocess.CompletedProcess:
    return run("-m", "nndoctor", "init", *args, cwd=cwd)


def assert_trains_past_baseline(cwd, file: str, margin: float) -> tuple[str, float, float]:
    """Run the written file as a script; its val metric beats the baseline it prints by ``margin``."""
    proc = run(file, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = VAL_LINE.findall(proc.stdout)
    assert found, proc.stdout[-2000:]
    metric, value, _name, baseline = found[-1]
    assert float(value) > float(baseline) + margin, proc.stdout[-2000:]
    return metric, float(value), float(baseline)


def assert_no_errors(json_path) -> dict:
    report = json.loads(open(json_path).read())
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert not errors, [(f["code"], f["message"]) for f in errors]
    return report


def written_ok(cwd, file: str, *init_args: str, margin: float = 0.2) -> dict:
    """init with its playbook run (exit 0, no error finding), then the file trains past its baseline."""
    proc = init(cwd, *init_args, "-o", file, "--json", "report.json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Next steps" in proc.stdout and f"nndoctor check {file}" in proc.stdout
    report = assert_no_errors(cwd / "report.json")
    assert_trains_past_baseline(cwd, file, margin)
    return report


# ----- data, written to tmp_path ----------------------------------------------------------------------
def wine_csv(path, missing: bool = True) -> None:
    """sklearn's wine as a CSV with text labels, a text feature column and one empty cell."""
    from sklearn.datasets import load_wine

    data = load_wine()
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow([*data.feature_names, "shelf", "cultivar"])
        for i, (x, y) in enumerate(zip(data.data, data.target)):
            cells = [f"{v:g}" for v in x]
            if missing and i == 5:
                cells[3] = ""
            out.writerow([*cells, ["top", "bottom"][i % 2], ["barolo", "grignolino", "barbera"][y]])


def digits(n: int = 600):
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images[:n], data.target[:n]


def token_sequences(n: int = 600, steps: int = 12, seed: int = 0):
    """Class c draws most of its tokens from its own third of a 90-word vocabulary."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    own = rng.integers(0, 30, (n, steps)) + 30 * y[:, None]
    noise = rng.integers(0, 90, (n, steps))
    x = np.where(rng.random((n, steps)) < 0.6, own, noise)
    return x.astype(np.int64), y


# ----- the default run --------------------------------------------------------------------------------
def test_tabular_csv_classification(tmp_path):
    wine_csv(tmp_path / "wine.csv")
    proc = init(tmp_path, "wine.csv", "--target", "cultivar", "-o", "wine_setup.py", "--no-check")
    assert proc.returncode == 0, proc.stderr
    assert "classification, 3 classes" in proc.stdout
    text = (tmp_path / "wine_setup.py").read_text()
    # Reads like a careful first model: held-out split, training-only statistics, standard parts, a seed.
    for piece in ("def load_data", "def setup", 'if __name__ == "__main__"', "Standardize", ".fit(x[train])",
                  "stratify=True", "nn.Linear", "torch.optim.Adam", "SEED = 0", "os.path.abspath(__file__)"):
        assert piece in text, piece
    for absent in ("Dropout", "weight_decay=", "BatchNorm"):
        assert absent not in text
    metric, value, baseline = assert_trains_past_baseline(tmp_path, "wine_setup.py", margin=0.3)
    assert metric == "accuracy"
    check = run("-m", "nndoctor", "check", "wine_setup.py", "--json", "report.json", "--budget", "30", cwd=tmp_path)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert_no_errors(tmp_path / "report.json")


@pytest.mark.parametrize("args, words", [
    (["no_such.csv"], "not found"),
    (["data.csv", "--target", "colour"], "no column 'colour'"),
    (["data.bin"], "cannot read data.bin"),
    (["data.npz"], "expected arrays named x and y"),
    (["data.csv", "-o", "taken.py"], "exists"),
])
def test_errors_are_one_line_exit_2(tmp_path, args, words):
    (tmp_path / "data.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(30)))
    (tmp_path / "data.bin").write_bytes(b"\x00\x01")
    np.savez(tmp_path / "data.npz", inputs=np.zeros((20, 2)))
    (tmp_path / "taken.py").write_text("# mine\n")
    proc = init(tmp_path, *args, "--no-check")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert (tmp_path / "taken.py").read_text() == "# mine\n"


def test_infers_the_task_from_the_data(tmp_path):
    from nndoctor.scaffold import infer_profile, open_source

    x, y = digits(200)
    cases = {
        "images.npz": (dict(x=x[:, None], y=y), None, ("image", "classification")),
        "rows.npz": (dict(x=x, y=y), "sequence", ("sequence", "classification")),
        "flat.npz": (dict(x=x.reshape(200, -1), y=(y % 2 == 0)), None, ("tabular", "binary")),
        "tokens.npz": (dict(zip("xy", token_sequences(200))), None, ("tokens", "classification")),
        "labels.npz": (dict(x=x.reshape(200, -1), y=np.stack([y % 2, y > 4], 1).astype(int)), None,
                       ("tabular", "multilabel")),
        "values.npz": (dict(x=x.reshape(200, -1), y=x.sum((1, 2)) / 7.0), None, ("tabular", "regression")),
    }
    for name, (arrays, task, expected) in cases.items():
        np.savez(tmp_path / name, **arrays)
        profile = infer_profile(open_source(str(tmp_path / name)), task)
        assert (profile.inputs, profile.task) == expected, name


# ----- slow: the other data kinds and the frameworks ----------------------------------------------------
@pytest.mark.slow
def test_regression_npz(tmp_path):
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    np.savez(tmp_path / "diabetes.npz", x=data.data, y=data.target)
    written_ok(tmp_path, "diabetes_setup.py", "diabetes.npz")
    assert "nn.MSELoss()" in (tmp_path / "diabetes_setup.py").read_text()


@pytest.mark.slow
def test_images_npz(tmp_path):
    x, y = digits()
    np.savez(tmp_path / "digits.npz", x=x[:, None].astype(np.float32), y=y)
    written_ok(tmp_path, "digits_setup.py", "digits.npz", margin=0.5)
    text = (tmp_path / "digits_setup.py").read_text()
    assert "nn.Conv2d" in text and "axes=(0, 2, 3)" in text  # per-channel statistics


@pytest.mark.slow
def test_image_folder(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    x, y = digits(360)
    for i, (image, label) in enumerate(zip(x, y)):
        if label < 3:
            folder = tmp_path / "pictures" / f"digit{label}"
            folder.mkdir(parents=True, exist_ok=True)
            pil.fromarray((image * 15).astype(np.uint8)).resize((16, 16)).save(folder / f"{i}.png")
    written_ok(tmp_path, "pictures_setup.py", "pictures", margin=0.4)


@pytest.mark.slow
def test_token_sequences(tmp_path):
    x, y = token_sequences()
    np.savez(tmp_path / "tokens.npz", x=x, y=y)
    written_ok(tmp_path, "tokens_setup.py", "tokens.npz", margin=0.3)
    assert "nn.Embedding(VOCAB_SIZE" in (tmp_path / "tokens_setup.py").read_text()


@pytest.mark.slow
def test_float_sequences(tmp_path):
    x, y = digits()
    np.savez(tmp_path / "rows.npz", x=x, y=y)
    written_ok(tmp_path, "rows_setup.py", "rows.npz", "--task", "sequence", margin=0.4)
    assert "nn.GRU(FEATURES" in (tmp_path / "rows_setup.py").read_text()


@pytest.mark.slow
def test_multilabel_from_a_function(tmp_path):
    (tmp_path / "my_data.py").write_text(
        "import numpy as np\nfrom sklearn.datasets import load_digits\n\n\n"
        "def load():\n    d = load_digits()\n    x, y = d.data[:800], d.target[:800]\n"
        "    return x, np.stack([y % 2 == 0, y > 4, np.isin(y, (0, 6, 8, 9))], 1).astype(int)\n")
    written_ok(tmp_path, "labels_setup.py", "my_data.py:load", margin=0.2)
    assert "nn.BCEWithLogitsLoss()" in (tmp_path / "labels_setup.py").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["lightning", "keras"])
def test_frameworks(tmp_path, framework):
    import importlib.util

    if importlib.util.find_spec(framework) is None:  # not imported here: keras would pick its default backend
        pytest.skip(f"{framework} is not installed")
    wine_csv(tmp_path / "wine.csv", missing=False)
    written_ok(tmp_path, f"wine_{framework}.py", "wine.csv", "--framework", framework, margin=0.3)
    assert "NNDoctorCallback()" in (tmp_path / f"wine_{framework}.py").read_text()


# ----- every template, fast: written, importable, setup() gives a loss --------------------------------
def _arrays(kind: str):
    x, y = digits(120)
    return {"tabular-classification": (x.reshape(120, -1), y),
            "tabular-regression": (x.reshape(120, -1), x.sum((1, 2)) / 7.0),
            "tabular-multilabel": (x.reshape(120, -1), np.stack([y % 2, y > 4], 1).astype(int)),
            "image-binary": (x[:, None], y % 2),
            "tokens-classification": token_sequences(120),
            "sequence-regression": (x, x.sum((1, 2)) / 7.0)}[kind]


@pytest.mark.parametrize("framework", ["torch", "lightning", "keras"])
@pytest.mark.parametrize("kind", ["tabular-classification", "tabular-regression", "tabular-multilabel",
                                  "image-binary", "tokens-classification", "sequence-regression"])
def test_every_template_is_valid_python_with_a_working_setup(tmp_path, kind, framework):
    import importlib.util

    from nndoctor.scaffold import infer_profile, open_source, write_setup_file

    x, y = _arrays(kind)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    source = open_source(str(tmp_path / "data.npz"))
    profile = infer_profile(source, "sequence" if kind.startswith("sequence") else None)
    assert f"{profile.inputs}-{profile.task}" == kind
    written = write_setup_file(str(tmp_path / "setup_file.py"), source, profile, framework)  # compiles it
    if framework == "keras" or importlib.util.find_spec(framework if framework != "torch" else "torch") is None:
        return  # keras picks its backend once per process: the keras file runs in test_frameworks
    spec = importlib.util.spec_from_file_location(f"written_{kind}_{framework}".replace("-", "_"), written.path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    setup = module.setup()
    inputs, targets = setup.train_data
    loss = setup.loss_fn(setup.model(inputs[:4]), targets[:4])
    assert loss.ndim == 0 and bool(loss.isfinite())
