import json
import re
import shlex
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import sknc
from sknc.cli import main


@pytest.fixture
def saved(tmp_path, rng):
    k, d = 4, 6
    M = sknc.simplex_etf(k, d, norm=3.0, random_state=0)
    y = np.repeat(np.arange(k), 25)
    H = M[y] + 0.1 * rng.standard_normal((len(y), d))
    np.savez(tmp_path / "f.npz", features=H, labels=y, W=M, b=np.zeros(k))
    np.save(tmp_path / "f.npy", H)
    np.save(tmp_path / "y.npy", y)
    pd.DataFrame(H, columns=[f"h{i}" for i in range(d)]).to_csv(tmp_path / "f.csv", index=False)
    pd.DataFrame(H, columns=[f"h{i}" for i in range(d)]).to_parquet(tmp_path / "f.parquet")
    pd.DataFrame({"label": y}).to_csv(tmp_path / "y.csv", index=False)
    return tmp_path, H, y, M


def test_metrics_npz_writes_csv_and_json(saved, capsys):
    path, H, y, M = saved
    assert main(["metrics", str(path / "f.npz"), "--out", str(path / "r.csv")]) == 0
    out = capsys.readouterr().out
    assert "nc1" in out and "nc3" in out
    table = pd.read_csv(path / "r.csv").set_index("metric")["value"]
    expected = sknc.nc_report(H, y, M, np.zeros(4))
    assert table["nc1"] == pytest.approx(expected["nc1"], rel=1e-12)
    assert main(["metrics", str(path / "f.npz"), "--ncc-accuracy", "--feature-rank", "--out", str(path / "o.csv")]) == 0
    capsys.readouterr()
    table = pd.read_csv(path / "o.csv").set_index("metric")["value"]
    expected = sknc.nc_report(H, y, M, np.zeros(4), ncc_accuracy=True, feature_rank=True)
    for key in ("ncc_accuracy", "features_effective_rank", "features_stable_rank"):
        assert table[key] == pytest.approx(expected[key], rel=1e-12), key
    assert main(["metrics", str(path / "f.npz"), "--out", str(path / "r.json")]) == 0
    data = json.loads((path / "r.json").read_text())
    assert data["nc3"] == pytest.approx(expected["nc3"], rel=1e-12)


def test_metrics_writes_the_per_class_table_and_the_cdnv_matrix(saved, capsys, rng):
    path, H, y, _ = saved
    per_class, matrix = path / "classes.csv", path / "cdnv.csv"
    assert main(["metrics", str(path / "f.npz"), "--per-class", str(per_class), "--cdnv-matrix", str(matrix)]) == 0
    out = capsys.readouterr().out
    assert "Least collapsed classes" in out and "Largest pairwise CDNV" in out
    table = pd.read_csv(per_class, index_col="class")
    expected = sknc.metrics.class_variability(H, y)
    np.testing.assert_allclose(table.to_numpy(), expected.to_numpy(), rtol=1e-12)
    written = pd.read_csv(matrix, index_col="class")
    np.testing.assert_allclose(written.to_numpy(), sknc.metrics.cdnv_matrix(H, y).to_numpy(), rtol=1e-12)
    # an output name without .csv is refused before any work
    assert main(["metrics", str(path / "f.npz"), "--cdnv-matrix", str(path / "cdnv.txt")]) == 2
    assert ".csv" in capsys.readouterr().err
    # multi-label data without single-label samples: the per-class table is undefined and said so; the rest runs
    Y = np.zeros((len(y), 4), dtype=int)
    Y[np.arange(len(y)), y] = 1
    Y[np.arange(len(y)), (y + 1 + np.arange(len(y)) % 2) % 4] = 1
    np.savez(path / "sets.npz", features=H + Y @ rng.standard_normal((4, H.shape[1])), labels=Y)
    assert main(["metrics", str(path / "sets.npz"), "--per-class", str(per_class), "--cdnv-matrix",
                 str(matrix)]) == 0
    out = capsys.readouterr().out
    assert "no per-class table" in out and "several classes" in out and "Largest pairwise CDNV" in out


@pytest.mark.parametrize("features,labels", [("f.npy", "y.npy"), ("f.csv", "y.csv"), ("f.parquet", "y.csv")])
def test_metrics_other_formats(saved, capsys, features, labels):
    path, H, y, _ = saved
    assert main(["metrics", str(path / features), "--labels", str(path / labels)]) == 0
    out = capsys.readouterr().out
    value = float(next(line.split()[1] for line in out.splitlines() if line.startswith("nc1 ")))
    assert value == pytest.approx(sknc.nc1(H, y), rel=1e-5)
    assert "nc3" not in out  # no classifier given


def test_metrics_errors(saved, capsys):
    path, *_ = saved
    assert main(["metrics", str(path / "missing.npy")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["metrics", str(path / "f.npy")]) == 2
    assert "no labels" in capsys.readouterr().err
    (path / "f.txt").write_text("1 2")
    assert main(["metrics", str(path / "f.txt"), "--labels", str(path / "y.npy")]) == 2
    np.save(path / "bad.npy", np.zeros(10))
    assert main(["metrics", str(path / "f.npy"), "--labels", str(path / "bad.npy")]) == 1
    assert "10 labels" in capsys.readouterr().err
    assert main(["metrics", str(path / "f.npz"), "--out", str(path / "r.txt")]) == 2
    assert main(["nonsense"]) == 2


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "sknc.cli", "metrics", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--labels", "--weights", "--out", "--global-mean", "--between"):
        assert option in out.stdout


def test_shipped_example_file_runs(capsys):
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "data" / "digits_mlp_features.npz"
    assert main(["metrics", str(example)]) == 0
    out = capsys.readouterr().out
    nc4 = float(next(line.split()[1] for line in out.splitlines() if line.startswith("nc4 ")))
    assert 0 <= nc4 < 0.2  # a trained MLP's NCC rule mostly agrees with its classifier


def test_demo_quick_writes_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "3", "--device", "cpu", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "NC checkpoint" in text and "Test metrics" in text and "scale_theory" in text
    assert "lr nan" not in text and "lr 0.1" in text  # the progress line reads this epoch's rate
    for name in ("history.csv", "report.json", "tagwise_summary.csv", "nc_history.png", "class_means_2d.png",
                 "class_means_3d.png", "tagwise.png"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert 0 <= report["test"]["subset_accuracy"] <= 1 and report["train_nc"]["nc1"] > 0
    assert isinstance(report["train_nc"]["n_samples"], int) and isinstance(report["train_nc"]["nc1_rank"], int)
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 3 and history["nc1"].notna().sum() >= 1
    assert main(["demo", "--epochs", "0"]) == 2


def test_ufm_command_reports_theory_gap(capsys):
    assert main(["ufm", "--classes", "3", "--per-class", "4", "--lambda-W", "5e-3", "--lambda-H", "5e-3"]) == 0
    out = capsys.readouterr().out
    gap = float(next(line.split()[-1] for line in out.splitlines() if "gap objective" in line))
    assert gap < 1e-8
    assert main(["ufm", "--classes", "3", "--sizes", "1,2"]) == 2
    assert main(["ufm", "--loss", "pal", "--sets", "1:x"]) == 2
    assert main(["ufm", "--loss", "hinge"]) == 2


def test_study_command_on_the_users_data(tmp_path, capsys):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = (X[:240] / 16).astype(np.float32), y[:240]
    np.savez(tmp_path / "data.npz", X=X, y=y)
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])]).assign(digit=y)
    frame.to_csv(tmp_path / "data.csv", index=False)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"lambda_H": [0.03, 0.3], "fixed_etf": [False, True]}))
    out = tmp_path / "s"
    argv = ["study", "--grid", str(grid), "--data", str(tmp_path / "data.npz"), "--epochs", "4", "--track-every", "2",
            "--cv", "2", "--set", "hidden_sizes=[32]", "--seed", "1", "--out", str(out)]
    assert main(argv) == 0
    table = pd.read_csv(out / "study.csv")
    assert len(table) == 4
    for column in ("nc1_train", "nc1_test", "accuracy_train", "accuracy_test"):
        assert np.isfinite(table[column]).all(), column
    assert (table["nc1_train"] > 0).all()  # the metric itself, not its negation
    results = pd.read_csv(out / "cv_results.csv")
    assert np.allclose(table["nc1_train"], -results["mean_train_neg_nc1"])
    traj = pd.read_csv(out / "trajectories.csv")
    assert set(traj["epoch"]) == {2, 4} and {"nc1", "train_loss"} <= set(traj["metric"])
    for name in ("grid.json", "settings.json", "versions.json", "study.png", "heatmap.png", "trajectories.png"):
        assert (out / name).exists(), name
    settings = json.loads((out / "settings.json").read_text())
    assert settings["n_samples"] == 240 and settings["multilabel"] is False and settings["refit"] == "accuracy"
    words = shlex.split(settings["command"])
    assert words[words.index("--set") + 1] == "hidden_sizes=[32]" and words[words.index("--seed") + 1] == "1"
    assert json.loads((out / "versions.json").read_text())["sknc"] == sknc.__version__
    # the saved command re-runs the study from its folder, to the same numbers
    rerun = words[2:]
    rerun[rerun.index("--out") + 1] = str(tmp_path / "again")
    assert main(["study", *rerun]) == 0
    again = pd.read_csv(tmp_path / "again" / "study.csv")
    assert np.allclose(again["nc1_train"], table["nc1_train"], rtol=1e-6)
    # a table with a named target column
    assert main(["study", "--grid", str(grid), "--data", str(tmp_path / "data.csv"), "--target", "digit",
                 "--epochs", "2", "--track-every", "2", "--cv", "2",
                 "--scoring", "nc1,ncc_accuracy,features_effective_rank,accuracy", "--out", str(tmp_path / "csv")]) == 0
    named = pd.read_csv(tmp_path / "csv" / "study.csv")
    assert len(named) == 4
    # opt-in keys as scores: one shared report per split with their options; ranks shown as ranks (positive)
    assert named["ncc_accuracy_test"].between(0, 1).all() and (named["features_effective_rank_train"] >= 1).all()
    capsys.readouterr()


def test_study_command_multilabel_default_data(tmp_path):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"lambda_H": [0.03, 0.3]}))
    assert main(["study", "--grid", str(grid), "--epochs", "2", "--cv", "2", "--track-every", "1",
                 "--out", str(tmp_path / "s")]) == 0
    table = pd.read_csv(tmp_path / "s" / "study.csv")
    assert len(table) == 2 and np.isfinite(table["nc1_train"]).all() and "jaccard_samples_test" in table
    traj = pd.read_csv(tmp_path / "s" / "trajectories.csv")
    assert "tagwise_angle" in set(traj["metric"])


def test_study_command_on_images_without_single_label_samples(tmp_path):
    # strips of two or three digits, image arrays (N, 8, 24) through the CNN: the class means are estimated
    # from the label sets, so every NC column is finite, in the table, the trajectories and the plots
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, Y = sknc.make_multilabel_strips(digits.images, digits.target, 150, random_state=0)
    assert Y.sum(1).min() == 2
    np.savez(tmp_path / "images.npz", X=X, y=Y)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"lambda_H": [0.03, 0.3]}))
    out = tmp_path / "s"
    assert main(["study", "--grid", str(grid), "--data", str(tmp_path / "images.npz"), "--module", "cnn",
                 "--epochs", "2", "--cv", "2", "--track-every", "1", "--set", "decision_rule=threshold",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out / "study.csv")
    for column in ("nc1_train", "nc1_test", "nc2_h_train", "nc3_train", "nc4_train"):
        assert np.isfinite(table[column]).all(), column
    traj = pd.read_csv(out / "trajectories.csv")
    assert np.isfinite(traj.loc[traj["metric"] == "nc1", "mean"]).all() and len(traj) > 0
    assert (out / "study.png").exists() and (out / "trajectories.png").exists()


def test_help_is_light():
    code = "import sys, sknc.cli; sknc.cli.build_parser(); print(sorted(m for m in ('torch', 'skorch', 'numpy', " \
           "'pandas', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    code = "import sys, sknc; sknc.nc1; sknc.simplex_etf; import sknc.theory, sknc.plotting; " \
           "print(sorted(m for m in ('torch', 'skorch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("command", ["demo", "ufm", "study", "metrics"])
def test_every_command_has_help(command):
    out = subprocess.run([sys.executable, "-m", "sknc.cli", command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: sknc" in out.stdout and "--" in out.stdout


# ------------------------------------------------------------------------ issue 24: no silent numbers
@pytest.mark.parametrize("sets,pattern", [("", "--sets is empty"), (",", "--sets is empty"),
                                          ("1:3,1:5", "multiplicity 1 twice")])
def test_ufm_sets_that_say_nothing_or_twice_are_refused(sets, pattern, capsys):
    # '' solved the default problem and 1:3,1:5 kept the last count, both with exit code 0
    assert main(["ufm", "--loss", "pal", "--sets", sets]) == 2
    assert pattern in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        sknc.cli.build_parser().parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"sknc {sknc.__version__}"
    run = subprocess.run([sys.executable, "-m", "sknc.cli", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == f"sknc {sknc.__version__}"


def test_every_command_reads_both_npz_layouts(saved, capsys):
    path, H, y, M = saved
    np.savez(path / "xy.npz", X=H, y=y)
    assert main(["metrics", str(path / "xy.npz"), "--out", str(path / "r.json")]) == 0
    report = json.loads((path / "r.json").read_text())
    assert report["nc1"] == pytest.approx(sknc.nc_report(H, y)["nc1"], rel=1e-12)
    # counts are integers in JSON, undefined keys null
    assert report["n_samples"] == len(y) and isinstance(report["n_samples"], int)
    assert isinstance(report["n_classes"], int) and isinstance(report["nc1_rank"], int)
    capsys.readouterr()


def test_study_checks_every_grid_candidate_before_any_fit(tmp_path, capsys):
    # a bad value failed every fit of its candidate, then printed a flattened traceback
    for grid, pattern in (({"lambda_H": ["abc", 0.1]}, r"grid candidate \{'lambda_H': 'abc'\}: The 'lambda_H'"),
                          ({"hidden_sizes": [[0]]}, r"hidden_sizes must hold positive widths"),
                          ({"lr": [-1.0]}, r"'lr' parameter")):
        path = tmp_path / "grid.json"
        path.write_text(json.dumps(grid))
        out = tmp_path / "never"
        assert main(["study", "--grid", str(path), "--epochs", "1", "--cv", "2", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re.search(pattern, err), err
        assert not (out / "grid.json").exists()  # nothing half-written


def test_study_takes_image_arrays_and_checks_them_before_any_fit(tmp_path, capsys):
    # issue 23: `sknc study ... --module cnn` needed input_shape, said so only after every fit had failed
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    np.savez(tmp_path / "images.npz", X=(X[:120] / 16).reshape(-1, 8, 8).astype(np.float32), y=y[:120])
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"lambda_H": [0.1, 0.3]}))
    base = ["study", "--grid", str(grid), "--data", str(tmp_path / "images.npz"), "--epochs", "1", "--cv", "2",
            "--track-every", "1"]
    assert main(base + ["--module", "mlp", "--out", str(tmp_path / "mlp")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "takes flat rows" in err and not (tmp_path / "mlp" / "grid.json").exists()
    assert main(base + ["--module", "cnn", "--set", "module__width=4", "--out", str(tmp_path / "cnn")]) == 0
    assert len(pd.read_csv(tmp_path / "cnn" / "study.csv")) == 2
    capsys.readouterr()


def test_metrics_class_means_option_on_data_without_singletons(tmp_path, capsys, rng):
    k, d = 4, 6
    M = sknc.simplex_etf(k, d, norm=3.0, random_state=0)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    Y = np.array([[int(c in p) for c in range(k)] for p in pairs for _ in range(10)])
    H = 1.4 * (Y @ M) / 2 + 0.05 * rng.standard_normal((len(Y), d))
    np.savez(tmp_path / "f.npz", features=H, labels=Y, W=M, b=np.zeros(k))
    assert main(["metrics", str(tmp_path / "f.npz"), "--out", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"class_means_estimated\s+True", out)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["class_means_estimated"] is True
    assert data["nc1"] == pytest.approx(sknc.nc_report(H, Y, M, np.zeros(k))["nc1"], rel=1e-12)
    with pytest.warns(sknc.NCWarning, match="no multiplicity-1 sample"):
        assert main(["metrics", str(tmp_path / "f.npz"), "--class-means", "singletons",
                     "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["nc1"] is None
    assert main(["metrics", str(tmp_path / "f.npz"), "--class-means", "sets"]) == 2  # a usage error
