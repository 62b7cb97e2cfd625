"""Bad input, case by entry point: the right error type, a message that names the problem, before any work.

Valid input that looks unusual (tensors with ``requires_grad``, ``torch.device``,
label-free rows, DataFrame labels) must be accepted by every entry point.
"""

import re
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from sknc import (
    MultilabelStratifiedKFold,
    NCWarning,
    NCAccumulator,
    PALClassifier,
    TagWiseAverageClassifier,
    UFMSolver,
    model_nc_report,
    nc1,
    nc_report,
    nc_report_scorer,
)
from sknc.cli import main

RNG = np.random.default_rng(0)
H = RNG.standard_normal((40, 5)).astype(np.float32)
Y = np.repeat(np.arange(4), 10)


def _with(row, col, value):
    out = H.copy()
    out[row, col] = value
    return out


def _pal(X, y, **params):
    return PALClassifier(hidden_sizes=(8,), max_epochs=1, device="cpu", random_state=0, **params).fit(X, y)


FEATURE_ENTRIES = {
    "nc_report": lambda X, y: nc_report(X, y),
    "nc1": lambda X, y: nc1(X, y),
    "NCAccumulator": lambda X, y: NCAccumulator().update(X, y).report(),
    "PALClassifier": _pal,
    "TagWiseAverageClassifier": lambda X, y: TagWiseAverageClassifier().fit(X, y),
}
LABEL_ENTRIES = {
    **FEATURE_ENTRIES,
    "MultilabelStratifiedKFold": lambda X, y: list(MultilabelStratifiedKFold(2).split(X, y)),
    "UFMSolver": lambda X, y: UFMSolver(max_iter=3).fit(y),
}

# case: (features, labels, exception type, message pattern)
FEATURE_CASES = {
    "NaN feature": (_with(3, 2, np.nan), Y, ValueError, r"NaN"),
    "infinite feature": (_with(0, 0, np.inf), Y, ValueError, r"inf"),
    "1-D features": (H[:, 0], Y, ValueError, r"2-D|2D"),
    "3-D features": (H.reshape(40, 5, 1), Y, ValueError, r"2-D|dim 3|takes flat rows .* X.reshape"),
    "no samples": (H[:0], Y[:0], ValueError, r"empty|0 sample"),
    "complex features": (H + 1j, Y, (TypeError, ValueError), r"[Cc]omplex"),
    "numeric strings": (H.astype(str), Y, TypeError, r"numeric"),
    "sparse features": (sparse.csr_matrix(H), Y, TypeError, r"[Ss]parse"),
    "fewer rows than labels": (H[:30], Y, ValueError, r"30.*40|40.*30|inconsistent"),
}
LABEL_CASES = {
    "ragged label lists": (H[:3], [[0, 1], [1], [0]], ValueError, r"different lengths"),
    "0 and '0' as labels": (H, [0] * 20 + ["0"] * 20, TypeError, r"mixes string and numeric"),
    "indicator holding 2": (H[:4], np.array([[1, 0], [0, 1], [2, 0], [0, 1]]), ValueError, r"0/1 indicator.*2"),
    "indicator holding -1": (H[:4], np.array([[1, 0], [0, 1], [-1, 0], [0, 1]]), ValueError, r"0/1 indicator.*-1"),
    "NaN label": (H, np.r_[Y[:-1].astype(float), np.nan], ValueError, r"NaN"),
}


@pytest.mark.parametrize("case", FEATURE_CASES)
@pytest.mark.parametrize("entry", FEATURE_ENTRIES)
def test_bad_features(entry, case):
    X, y, kind, pattern = FEATURE_CASES[case]
    with pytest.raises(kind, match=pattern):
        FEATURE_ENTRIES[entry](X, y)


@pytest.mark.parametrize("case", LABEL_CASES)
@pytest.mark.parametrize("entry", LABEL_ENTRIES)
def test_bad_labels(entry, case):
    X, y, kind, pattern = LABEL_CASES[case]
    with pytest.raises(kind, match=pattern):
        LABEL_ENTRIES[entry](X, y)


@pytest.mark.parametrize("entry", ["nc_report", "nc1", "NCAccumulator", "PALClassifier", "TagWiseAverageClassifier"])
def test_one_class_is_refused(entry):
    with pytest.raises(ValueError, match=r"one class|1 class|1 class\(es\)|at least 2"):
        FEATURE_ENTRIES[entry](H, np.zeros(40, dtype=int))


@pytest.mark.parametrize("entry", FEATURE_ENTRIES)
def test_tensors_with_requires_grad_are_accepted(entry):
    X = torch.tensor(H, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch does not converge; that is not the point here
        FEATURE_ENTRIES[entry](X, torch.tensor(Y))


def test_valid_unusual_input_is_accepted():
    # torch.device objects, label-free indicator rows, DataFrame labels with names
    _ = PALClassifier(hidden_sizes=(8,), max_epochs=1, device=torch.device("cpu")).fit(H, Y)
    _ = UFMSolver(device=torch.device("cpu")).fit(Y)
    Yml = np.zeros((40, 3), dtype=int)
    Yml[np.arange(30), np.arange(30) % 3] = 1  # the last 10 rows carry no label
    frame = pd.DataFrame(Yml, columns=["cat", "dog", "owl"])
    clf = _pal(H, frame)
    assert list(clf.classes_) == ["cat", "dog", "owl"]
    assert np.isfinite(nc_report(H, Yml)["nc1"])


@pytest.mark.parametrize("sizes,kind,pattern", [
    ((0,), ValueError, "positive"), ((-5,), ValueError, "positive"), ((16.5,), TypeError, "integers"),
    ((True,), TypeError, "integers"),
])
def test_hidden_sizes(sizes, kind, pattern):
    with pytest.raises(kind, match=pattern):
        PALClassifier(hidden_sizes=sizes, max_epochs=1, device="cpu").fit(H, Y)


def test_no_hidden_layer_is_a_linear_feature_map():
    # issue 24: hidden_sizes=() was refused; it leaves the linear feature layer on the scaled inputs
    clf = PALClassifier(hidden_sizes=(), feature_dim=4, max_epochs=2, device="cpu", random_state=0).fit(H, Y)
    linears = [m for m in clf.net_.module_.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2  # the feature layer and the head
    a, b = H[:10], H[10:20]
    mixed = clf.transform(0.25 * a + 0.75 * b)
    np.testing.assert_allclose(mixed, 0.25 * clf.transform(a) + 0.75 * clf.transform(b), atol=1e-5)


@pytest.mark.parametrize("device,pattern", [
    ("nonsense", "not a valid torch device"), ("mps", "not available"), ("cuda:3", "CUDA is not available|cuda"),
])
@pytest.mark.parametrize("estimator", ["PALClassifier", "UFMSolver"])
def test_unavailable_devices(estimator, device, pattern):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and mps is not None and mps.is_available():
        pytest.skip("MPS is available here")
    make = {"PALClassifier": lambda: PALClassifier(hidden_sizes=(8,), max_epochs=1, device=device).fit(H, Y),
            "UFMSolver": lambda: UFMSolver(max_iter=3, device=device).fit(Y)}[estimator]
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize("args,pattern", [
    ((RNG.standard_normal((4, 3)),), r"shape \(n_classes, n_dims\) = \(4, 5\)"),
    ((RNG.standard_normal((3, 5)),), r"W has 3 rows but the data have 4 classes"),
    ((None, np.zeros(4)), "b was given without W"),
    ((RNG.standard_normal((4, 5)), np.zeros(3)), r"b must have shape \(4,\)"),
    ((np.full((4, 5), np.nan),), "W contains NaN"),
])
def test_bad_classifier(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        nc_report(H, Y, *args)


def test_accumulator_refuses_a_changing_label_type_and_width():
    with pytest.raises(TypeError, match="string labels but earlier batches had number labels"):
        NCAccumulator().update(H[:20], Y[:20]).update(H[20:], Y[20:].astype(str))
    with pytest.raises(ValueError, match="3 dims; earlier batches had 5"):
        NCAccumulator().update(H[:20], Y[:20]).update(H[20:, :3], Y[20:])


def test_scorers_and_extraction():
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(TypeError, match="not a classifier whose features sknc can read"):
        nc_report_scorer("not an estimator", H, Y)
    with pytest.raises(NotFittedError):
        nc_report_scorer(LogisticRegression(), H, Y)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    with pytest.raises(ValueError, match="unknown layer 'nope'; valid names are: 0, 1, 2"):
        model_nc_report(net, H, Y, layers=["nope"])
    with pytest.raises(ValueError, match=r"no nn.Linear layer"):
        model_nc_report(torch.nn.Sequential(torch.nn.ReLU()), H, Y)
    with pytest.raises(ValueError, match=r"input batch \(Tensor of shape \(40, 3\)"):
        model_nc_report(net, H[:, :3], Y)
    with pytest.raises(ValueError, match="30 rows but the data have 40"):
        model_nc_report(net, H, Y[:30])


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture
def files(tmp_path):
    np.savez(tmp_path / "ok.npz", features=H, labels=Y)
    np.save(tmp_path / "y.npy", Y)
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "notzip.npz").write_bytes(b"this is not a zip archive at all")
    good = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    with zipfile.ZipFile(tmp_path / "corrupt.npz", "w") as z:  # a zip whose member is not an .npy
        z.writestr("features.npy", b"garbage")
    np.savez(tmp_path / "nofeatures.npz", other=H)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "text.csv").write_text("a,b\nx,1\ny,2\n")
    (tmp_path / "blank.csv").write_text("\n")
    np.save(tmp_path / "short.npy", Y[:10])
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "ok.txt").write_text("1 2 3")
    return tmp_path


CLI_DATA_CASES = [  # (argv after "metrics", exit code, message pattern)
    (["missing.npz"], 2, "no such file"),
    (["folder.npz"], 2, "is a folder"),
    (["ok.txt"], 2, "unsupported file type"),
    (["empty.npz"], 1, "is empty"),
    (["notzip.npz"], 1, "not an .npz archive"),
    (["truncated.npz"], 1, "damaged|truncated"),
    (["corrupt.npz"], 1, "damaged|not a readable"),
    (["nofeatures.npz"], 1, "needs one named 'features'"),
    (["objects.npy", "--labels", "y.npy"], 1, "Python objects"),
    (["text.csv", "--labels", "y.npy"], 1, "not numeric"),
    (["blank.csv", "--labels", "y.npy"], 1, "no data"),
    (["ok.npz", "--labels", "short.npy"], 1, "10 labels"),
    (["ok.npz", "--out", "r.txt"], 2, "must end in one of"),
    (["ok.npz", "--out", "afile/r.csv"], 2, "cannot write|existing file"),
]


def _one_line_error(capsys, code, pattern, result):
    err = capsys.readouterr().err.strip()
    assert result == code, err
    assert len(err.splitlines()) == 1, err
    assert re.search(pattern, err), err


@pytest.mark.parametrize("argv,code,pattern", CLI_DATA_CASES)
def test_cli_metrics_bad_files(files, monkeypatch, capsys, argv, code, pattern):
    monkeypatch.chdir(files)
    _one_line_error(capsys, code, pattern, main(["metrics", *argv]))


@pytest.mark.parametrize("argv,pattern", [
    (["ufm", "--classes", "0"], "--classes: must be at least 2"),
    (["ufm", "--per-class", "0"], "--per-class: must be at least 1"),
    (["ufm", "--lambda-W", "-1"], "--lambda-W: must be >= 0"),
    (["ufm", "--lambda-H", "nan"], "--lambda-H: must be >= 0 and finite"),
    (["ufm", "--max-iter", "ten"], "expected an integer"),
    (["ufm", "--lr", "0.1"], "--lr applies to --solver gd or adam"),
    (["ufm", "--sizes", "3,0,2,1"], "must be positive"),
    (["ufm", "--loss", "pal", "--sets", "9:1"], "between 1 and --classes=4"),
    (["ufm", "--plot", "afile/p.png"], "cannot write|existing file"),
    (["ufm", "--plot", "p.txt"], "must end in one of"),
    (["ufm", "--device", "nonsense"], "not a valid torch device"),
    (["demo", "--epochs", "0"], "--epochs: must be at least 1"),
    (["demo", "--out", "afile"], "existing file"),
    (["demo", "--out", "afile/sub"], "cannot write"),
    (["demo", "--device", "nonsense"], "not a valid torch device"),
    (["nonsense"], "invalid choice"),
])
def test_cli_usage_errors_are_one_line_and_exit_2(files, monkeypatch, capsys, argv, pattern):
    monkeypatch.chdir(files)
    result = main(argv)
    captured = capsys.readouterr()
    assert "multi-label digits" not in captured.out  # refused before any training
    assert result == 2, captured.err
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and re.search(pattern, err), err


def test_cli_study_checks_everything_before_training(files, monkeypatch, capsys):
    import json

    monkeypatch.chdir(files)
    (files / "grid.json").write_text(json.dumps({"lambda_H": [0.1, 0.3]}))
    (files / "bad.json").write_text("{not json")
    (files / "unknown.json").write_text(json.dumps({"bogus": [1]}))
    (files / "scalar.json").write_text(json.dumps({"lambda_H": 0.1}))
    cases = [
        (["--grid", "bad.json"], 2, "not valid JSON"),
        (["--grid", "missing.json"], 2, "no such file"),
        (["--grid", "unknown.json"], 2, r"unknown PALClassifier parameter\(s\) in the grid: \['bogus'\]"),
        (["--grid", "scalar.json"], 2, "non-empty JSON list"),
        (["--grid", "grid.json", "--out", "afile"], 2, "existing file"),
        (["--grid", "grid.json", "--data", "notzip.npz"], 1, "not an .npz archive"),
        (["--grid", "grid.json", "--data", "nofeatures.npz"], 1, "needs 'X' and 'y'"),
        (["--grid", "grid.json", "--data", "text.csv"], 1, "name the label column"),
        (["--grid", "grid.json", "--data", "text.csv", "--target", "zzz"], 1, r"no column\(s\) \['zzz'\]"),
        (["--grid", "grid.json", "--scoring", "nc1,bogus"], 2, "unknown score 'bogus'"),
        (["--grid", "grid.json", "--refit", "bogus"], 2, "--refit 'bogus' is not one of the scores"),
        (["--grid", "grid.json", "--set", "nope=1"], 2, "unknown PALClassifier parameter 'nope'"),
        (["--grid", "grid.json", "--set", "lr"], 2, "PARAM=VALUE"),
        (["--grid", "grid.json", "--cv", "1"], 2, "--cv: must be at least 2"),
        (["--grid", "grid.json", "--target", "y"], 2, "--target needs --data"),
    ]
    for argv, code, pattern in cases:
        result = main(["study", "--out", "s", *argv] if "--out" not in argv else ["study", *argv])
        err = capsys.readouterr().err.strip()
        assert result == code and len(err.splitlines()) == 1 and re.search(pattern, err), (argv, result, err)
    assert not (files / "s" / "cv_results.csv").exists()  # nothing was trained


# ------------------------------------------------------ every public entry point, expected outcome first
def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))


def _tracked(X, y):
    from skorch import NeuralNetClassifier

    from sknc import NCTracker

    net = NeuralNetClassifier(_net(), max_epochs=1, criterion=torch.nn.CrossEntropyLoss, train_split=None,
                              verbose=0, callbacks=[NCTracker()]).fit(X, y)
    return net.history[-1]


def _scored(X, y):
    from sklearn.linear_model import LogisticRegression

    from sknc import nc_scorer

    return nc_scorer("nc1")(LogisticRegression(max_iter=300).fit(H, Y), X, y)


def _ncmetrics(X, y):
    from sknc import NCMetrics

    return NCMetrics().fit(X, y).report_


OK = None  # the expected outcome: accepted, with a finite nc1
# (entry point, call, expected): expected is OK or (exception type, message pattern)
ENTRY_CASES = {
    "nc_report, nullable Float64 with pd.NA": (
        lambda: nc_report(pd.DataFrame(_with(2, 1, np.nan)).astype("Float64"), Y), (ValueError, r"NaN .* 1 row")),
    "NCMetrics, tensor with requires_grad": (
        lambda: _ncmetrics(torch.tensor(H, requires_grad=True), torch.tensor(Y)), OK),
    "NCMetrics, ragged label lists": (
        lambda: _ncmetrics(H[:3], [[0, 1], [1], [0]]), (ValueError, "different lengths")),
    "NCAccumulator, second pass before the first": (
        lambda: NCAccumulator().update_second_pass(H, Y), (ValueError, "accumulator is empty")),
    "NCAccumulator, classes that do not list a label": (
        lambda: NCAccumulator(classes=[0, 1, 2, 5]).update(H, Y).report(RNG.standard_normal((4, 5))),
        (ValueError, r"y holds label\(s\) 3 that are not in classes")),
    "model_nc_report, batch_size=0": (
        lambda: model_nc_report(_net(), H, Y, batch_size=0), (ValueError, "batch_size must be a positive integer")),
    "model_nc_report, a list of rows": (lambda: model_nc_report(_net(), H.tolist(), Y.tolist()).iloc[0], OK),
    "model_nc_report, float64 data": (lambda: model_nc_report(_net(), H.astype(np.float64), Y).iloc[0], OK),
    "model_nc_report, a one-shot generator": (
        lambda: model_nc_report(_net(), ((H[i:i + 8], Y[i:i + 8]) for i in range(0, 40, 8))),
        (ValueError, "one-shot iterator")),
    "model_nc_report, dict batches without forward": (
        lambda: model_nc_report(_net(), [{"x": torch.tensor(H), "labels": torch.tensor(Y)}]),
        (ValueError, "dict batch needs forward=")),
    "model_nc_report, data missing a class of W": (
        lambda: model_nc_report(_net(), H[Y < 3], Y[Y < 3]).iloc[0], OK),
    "model_nc_report, text data": (
        lambda: model_nc_report(_net(), H.astype(str), Y), (ValueError, "dtype <U|give numbers")),
    "layer_features, a layer name that is not one": (
        lambda: sknc_layer_features(_net(), H, Y, layers=["9"]), (ValueError, "unknown layer '9'")),
    "layer_features, reduce for a layer not measured": (
        lambda: sknc_layer_features(_net(), H, Y, layers=["0"], reduce={"1": "flatten"}),
        (ValueError, r"reduce names layer\(s\) \['1'\]")),
    "NCTracker, training data missing a class of W": (lambda: _tracked(H[Y < 3], Y[Y < 3]), OK),
    # a search never dies of a score: NaN, with the reason in the warning
    "nc_scorer, labels of another length": (lambda: _scored(H, Y[:30]), ("NaN", "y has 30 labels but features")),
    "PALClassifier, tag-wise rule, a label column that never occurs": (
        lambda: _pal(H, np.eye(5, dtype=int)[Y], decision_rule="tagwise"),
        (ValueError, r"class\(es\) 4 never occur in y")),
    # the default threshold rule needs no class mean: it trains and predicts
    "PALClassifier, a label column that never occurs": (
        lambda: 1.0 if _pal(H, np.eye(5, dtype=int)[Y]).predict(H).shape == (len(H), 5) else np.nan, OK),
    "PALClassifier, no hidden layer": (lambda: _pal_report(_pal_sizes(())), OK),
}


def sknc_layer_features(*args, **kwargs):
    from sknc import layer_features

    return layer_features(*args, **kwargs)


def _pal_sizes(sizes):
    return PALClassifier(hidden_sizes=sizes, max_epochs=1, device="cpu", random_state=0).fit(H, Y)


def _pal_report(clf):
    return nc_report(clf.transform(H), Y)


@pytest.mark.parametrize("case", ENTRY_CASES)
def test_entry_points_on_inputs_off_the_happy_path(case):
    call, expected = ENTRY_CASES[case]
    if expected is OK:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NaN keys come with a warning; nc1 must not be one of them
            result = call()
        value = result["nc1"] if hasattr(result, "__getitem__") else result
        assert np.isfinite(float(value)), case
        return
    kind, pattern = expected
    if kind == "NaN":
        with pytest.warns(NCWarning, match=pattern):
            assert np.isnan(call())
        return
    with pytest.raises(kind, match=pattern):
        call()
