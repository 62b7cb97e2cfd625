"""NC across processes with the real engine: two torch.distributed ranks (gloo on localhost).

Each test spawns two processes with ``torch.multiprocessing.spawn``; every rank
writes what it computed (or the error it raised) to a file, and the test
compares those against the single-process report of the whole data.
"""

import os
import pickle
import socket
import traceback

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import sknc

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

WORLD = 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, port, out, scenario):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        result = SCENARIOS[scenario](rank)
        payload = {"ok": result}
    except Exception as exc:  # noqa: BLE001 - recorded for the parent to check
        payload = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
    finally:
        with open(os.path.join(out, f"rank{rank}.pkl"), "wb") as f:
            pickle.dump(payload, f)
    dist.destroy_process_group()


def _spawn(tmp_path, scenario):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), scenario), nprocs=WORLD, join=True)
    return [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]


# ------------------------------------------------------------------------------ data every rank can rebuild
def _data(dtype=np.float64):
    rng = np.random.default_rng(0)
    k, d, n = 5, 12, 501
    y = rng.integers(0, k, n)
    M = 4 * rng.standard_normal((k, d))
    H = (50.0 + M[y] + rng.standard_normal((n, d))).astype(dtype)
    W, b = rng.standard_normal((k, d)), rng.standard_normal(k)
    return H, y, W, b


def _pairs(y, k=5):
    """Two labels per sample, every pair of classes present, no class alone (class means are estimated)."""
    rows = np.arange(len(y))
    Y = np.zeros((len(y), k), dtype=int)
    Y[rows, y % k] = 1
    Y[rows, (y + 1 + rows % 2) % k] = 1
    return Y


def _shard(rank, n):
    # uneven shards: rank 0 has a third, rank 1 the rest, and rank 1 lacks no class
    cut = n // 3
    return slice(0, cut) if rank == 0 else slice(cut, n)


def _two_pass(acc, H, y, W, b, batch=64):
    for s in range(0, len(y), batch):
        acc.update(H[s : s + batch], y[s : s + batch])
    acc.all_reduce()
    for s in range(0, len(y), batch):
        acc.update_second_pass(H[s : s + batch], y[s : s + batch], W, b)
    if len(y) == 0:
        acc.update_second_pass(H[:0], y[:0], W, b)
    acc.all_reduce()
    return acc.report(W, b)


def scenario_accumulators(rank):
    H, y, W, b = _data()
    part = _shard(rank, len(y))
    ranked = sknc.NCAccumulator(mode="two_pass", per_class=True)
    one = _two_pass(ranked, H[part], y[part], W, b)
    variability = ranked.class_variability()  # per-class NC1 from the reduced second pass
    Y = _pairs(y)
    sets = _two_pass(sknc.NCAccumulator(mode="two_pass"), H[part], Y[part], W, b)
    # a one-pass stream, and a shard that misses classes 3 and 4 entirely
    keep = y < 3 if rank == 0 else np.ones(len(y), bool)
    mask = np.zeros(len(y), bool)
    mask[part] = True
    mask &= keep
    acc = sknc.NCAccumulator(mode="one_pass", feature_rank=True)
    acc.update(H[mask], y[mask]).all_reduce()
    partial_classes = acc.report()
    pickled = len(pickle.dumps(acc))
    per_class = (acc.cdnv_matrix(), acc.class_variability())  # the reduced state's per-class tables
    return {"two_pass": one, "two_pass_sets": sets, "one_pass_missing": partial_classes, "mask": mask, "pickled": pickled,
            "per_class": per_class, "variability": variability,
            "additive": sum(a.nbytes for a in acc.state_dict()["first"].values() if isinstance(a, np.ndarray))}


def scenario_float32_and_empty_shard(rank):
    H, y, W, b = _data(np.float32)
    part = slice(0, len(y)) if rank == 0 else slice(0, 0)  # rank 1 has no rows at all
    # the features' scatter and the per-class sums too: the rank without rows adopts them empty
    acc = sknc.NCAccumulator(mode="two_pass", feature_rank=True, per_class=True)
    report = _two_pass(acc, H[part], y[part], W, b)
    return report, acc.class_variability()


def scenario_mismatch(rank):
    H, y, W, b = _data()
    d = 12 if rank == 0 else 11  # rank 1 measures another layer by mistake
    acc = sknc.NCAccumulator(mode="two_pass").update(H[:50, :d], y[:50])
    acc.all_reduce()
    return acc.report()


def scenario_shift_mismatch(rank):
    H, y, W, b = _data()
    acc = sknc.NCAccumulator(mode="two_pass", shift="first_batch").update(H[rank * 100 : rank * 100 + 50],
                                                                          y[rank * 100 : rank * 100 + 50])
    acc.all_reduce()
    return acc.report()


def scenario_common_shift(rank):
    H, y, W, b = _data()
    reference = torch.as_tensor(H[0]) if rank == 0 else torch.zeros(H.shape[1], dtype=torch.float64)
    dist.broadcast(reference, src=0)  # the common shift, agreed before the first pass
    part = _shard(rank, len(y))
    acc = sknc.NCAccumulator(mode="two_pass", shift=reference.numpy())
    report = _two_pass(acc, H[part], y[part], W, b)
    return {"report": report, "shift_rows": acc.state_dict()["first"]["shift"].shape[0]}


class _Net(torch.nn.Module):
    """Weights on a grid of 1/64 and integer inputs (``_grid_data``): every product and sum of the first layer is
    exact in float64, so the features do not depend on how rows are batched (BLAS kernels differ by batch size),
    and the ranks' report can be held to the single process's to 1e-12."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh())
        self.fc = torch.nn.Linear(16, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.round(p * 64) / 64)


    def forward(self, x):
        return self.fc(self.body(x))


def _grid_data():
    H, y, W, b = _data()
    return np.round(H - 50.0), y


def scenario_model(rank):
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    H, y = _grid_data()
    model = _Net().double()
    dataset = TensorDataset(torch.as_tensor(H), torch.as_tensor(y))  # 501 rows: the sampler pads to 502
    sampler = DistributedSampler(dataset, num_replicas=WORLD, rank=rank, shuffle=True, seed=3)
    loader = DataLoader(dataset, batch_size=40, sampler=sampler)
    frame = sknc.model_nc_report(model, loader, layers=["body", "fc:input"], distributed=True)
    return frame


def scenario_model_failure(rank):
    H, y, W, b = _data()
    model = _Net().double()
    X = H if rank == 0 else H[:, :7]  # rank 1's data do not fit the model
    return sknc.model_nc_report(model, X, y, distributed=True)


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items() if name.startswith("scenario_")}


# ------------------------------------------------------------------------------------------- the tests
def _close(a, b, rel):
    for key in a.index:
        x, y = float(a[key]), float(b[key])
        assert (np.isnan(x) and np.isnan(y)) or x == pytest.approx(y, rel=rel, abs=1e-300), key


@pytest.mark.slow
def test_two_ranks_reduce_to_the_report_of_the_whole_data(tmp_path):
    results = _spawn(tmp_path, "accumulators")
    assert all("ok" in r for r in results), [r.get("trace") for r in results]
    H, y, W, b = _data()
    whole = sknc.nc_report(H, y, W, b)
    r0, r1 = results[0]["ok"], results[1]["ok"]
    _close(r0["two_pass"], whole, rel=1e-12)
    np.testing.assert_allclose(r0["variability"].to_numpy(), sknc.metrics.class_variability(H, y).to_numpy(),
                               rtol=1e-10)
    assert r0["two_pass"].equals(r1["two_pass"])  # identical on every rank
    # multi-label data without single-label samples: the estimated class means reduce the same way
    sets = sknc.nc_report(H, _pairs(y), W, b)
    assert sets["class_means_estimated"] and np.isfinite(sets["nc1"]) and np.isfinite(sets["nc4"])
    _close(r0["two_pass_sets"], sets, rel=1e-12)
    assert r0["two_pass_sets"].equals(r1["two_pass_sets"])
    mask = r0["mask"] | r1["mask"]
    assert "features_effective_rank" in r0["one_pass_missing"].index  # the features' d x d scatter, reduced too
    _close(r0["one_pass_missing"], sknc.nc_report(H[mask], y[mask], feature_rank=True), rel=1e-10)
    assert r0["one_pass_missing"].equals(r1["one_pass_missing"])
    # the per-class tables of the reduced state are those of the whole (masked) data
    matrix, table = r0["per_class"]
    np.testing.assert_allclose(matrix.to_numpy(), sknc.metrics.cdnv_matrix(H[mask], y[mask]).to_numpy(), rtol=1e-10)
    whole_table = sknc.metrics.class_variability(H[mask], y[mask])
    np.testing.assert_allclose(table.to_numpy(), whole_table[table.columns].to_numpy(), rtol=1e-10)
    # the pickle of a reduced accumulator is its additive state plus a few kB
    assert r0["pickled"] <= 1.5 * r0["additive"] + 8192


@pytest.mark.slow
def test_float32_rows_and_a_rank_without_rows(tmp_path):
    results = _spawn(tmp_path, "float32_and_empty_shard")
    assert all("ok" in r for r in results), [r.get("trace") for r in results]
    H, y, W, b = _data(np.float32)
    report, table = results[0]["ok"]
    assert "features_effective_rank" in report.index
    _close(report, sknc.nc_report(H, y, W, b, feature_rank=True), rel=1e-9)
    np.testing.assert_allclose(table.to_numpy(), sknc.metrics.class_variability(H, y).to_numpy(), rtol=1e-6)
    assert results[1]["ok"][0].equals(report)  # identical on the rank that had no rows


@pytest.mark.slow
def test_a_common_shift_gives_plain_sums(tmp_path):
    results = _spawn(tmp_path, "common_shift")
    assert all("ok" in r for r in results), [r.get("trace") for r in results]
    H, y, W, b = _data()
    _close(results[0]["ok"]["report"], sknc.nc_report(H, y, W, b), rel=1e-12)
    assert results[0]["ok"]["shift_rows"] == 1  # one shift row stands for every label set


@pytest.mark.slow
@pytest.mark.parametrize("scenario,pattern", [
    ("mismatch", "rank 1 has feature width 11 but rank 0 has 12"),
    ("shift_mismatch", "rank 1 has shift 'common"),
])
def test_ranks_that_disagree_fail_together_naming_the_rank_and_field(tmp_path, scenario, pattern):
    results = _spawn(tmp_path, scenario)  # returns: no rank hangs
    for r in results:
        assert "error" in r and pattern in r["error"], r


@pytest.mark.slow
def test_model_report_over_a_distributed_sampler_reads_the_padding_once(tmp_path):
    results = _spawn(tmp_path, "model")
    assert all("ok" in r for r in results), [r.get("trace") for r in results]
    H, y = _grid_data()
    model = _Net().double()
    single = sknc.model_nc_report(model, H, y, layers=["body", "fc:input"])
    frame = results[0]["ok"]
    assert int(frame.loc["fc:input", "n_samples"]) == 501  # not 502: the sampler's repeat is read once
    for layer in ("body", "fc:input"):
        _close(frame.loc[layer], single.loc[layer], rel=1e-12)
    assert frame.equals(results[1]["ok"])


@pytest.mark.slow
def test_a_failure_on_one_rank_stops_every_rank(tmp_path):
    results = _spawn(tmp_path, "model_failure")
    assert "error" in results[0] and "rank 1 failed" in results[0]["error"]
    assert "error" in results[1] and "the model failed on an input batch" in results[1]["error"]


@pytest.mark.slow
def test_the_guides_ddp_recipe_runs_as_written_under_torchrun(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    recipe = root / "docs" / "recipes" / "ddp_nc.py"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={_free_port()}", str(recipe)], capture_output=True, text=True, cwd=root,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line.split() for line in run.stdout.strip().splitlines()]
    assert lines[0][:2] == ["n_samples", "nc1"], run.stdout
    rows = {row[0]: row[1:] for row in lines[1:] if row and row[0] in ("1", "2:input")}
    assert set(rows) == {"1", "2:input"}, run.stdout
    assert all(int(float(row[0])) == 2001 for row in rows.values())  # every sample once: the padding read once
    assert all(0 < float(row[1]) < 100 for row in rows.values())
