"""NC beyond one process and one K x K array: many classes, compact states, Dask's client memory.

Everything is measured side by side in one run, with the thread settings a user
would have (no limits set here); read ratios, not seconds (shared machines).

1. **K = 32 768 classes** (token-level NC of a language model's vocabulary):
   d = 1024, N = 131 072 float32 rows streamed in batches of 8192 through an
   ``NCAccumulator`` (first pass, second pass with ``W``: NC4 included), then
   the report with every pairwise key over all K(K-1)/2 pairs in 64 MiB tiles.
   The classifier is near the class means (a trained network near collapse):
   NC4 then needs one product, the classifier's, whose scores bound every
   nearest-mean score; sknc is timed again with a classifier far from the
   means (random rows), where it takes both products.
   Against its floor, timed in the same run: two reads of the batches, one
   float32 GEMM N x d x K, and one float64 K^2 d product (the pairwise
   metrics' Gram), and against a faithful re-implementation of the best
   library peer's accumulators (rhubarbwu/neural-collapse, see
   ``shared/reference/peers.md``): float32 one-hot class sums, a pooled d x d
   covariance, per-class variance norms, a SHA-256 of the means every batch,
   NCC by ``||x||^2 + ||mu||^2 - 2 x.mu`` and ``argmax(x W^T)``, ``pinv`` of
   the d x d between-class covariance, its tiled CDNV kernel. The batches are
   drawn as they are read (the same rows in both passes), never held together;
   peak RSS of a fresh process per contender.
   Targets: sknc's peak RSS <= 3 GB, time <= 2x the floor.
2. **Pickles against the additive state**: an accumulator after each pass at
   K = 100 and K = 10 000 (d = 512): bytes of ``pickle.dumps`` against the
   bytes of its additive arrays. Target <= 1.5x plus a few kB.
3. **Dask**: ``nc_report`` of a 200 000 x 512 float32 dask array on a 2-worker
   ``LocalCluster``: growth of the client's RSS, against the array's size, and
   the same report after ``.compute()`` on the client.

Run: ``python benchmarks/bench_scale.py [--quick] [--only scale|pickle|dask]``
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import pickle
import subprocess
import sys
import time
import warnings

import numpy as np

import sknc

PAUSE = 0.25


def _status_gb(field):
    """A memory figure of this process from /proc/self/status (VmHWM: peak RSS, VmRSS: RSS now), in GB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def _peak_rss_gb():
    return _status_gb("VmHWM")


def _rss_gb():
    return _status_gb("VmRSS")


# ----------------------------------------------------------------------------------- the shape
def scale_data(n, d, k, batch, far=False):
    """A stream of float32 batches (every class present; the same rows at every read, drawn batch by batch and
    never held together), the class means' frame and a classifier near it (``far``: random rows instead)."""
    rng = np.random.default_rng(0)
    means = rng.standard_normal((k, d)).astype(np.float32)
    W = (means + 0.3 * rng.standard_normal((k, d))).astype(np.float32)
    if far:
        W = rng.standard_normal((k, d)).astype(np.float32)
    order = rng.permutation(np.resize(np.arange(k), n))

    def batches():
        noise = np.random.default_rng(1)
        for s in range(0, n, batch):
            y = order[s : s + batch]
            x = means[y]
            x += noise.standard_normal(x.shape, dtype=np.float32)
            yield x, y

    return batches, means, W


def run_floor(n, d, k, batch):
    batches, means, W = scale_data(n, d, k, batch)
    time.sleep(PAUSE)
    t0 = time.perf_counter()
    for _ in range(2):  # two reads of the stream (drawing a batch is part of reading it, for every contender)
        for x, _ in batches():
            x.sum(axis=0, dtype=np.float64)
    reads = time.perf_counter() - t0
    right = np.ascontiguousarray(means.T)
    held = next(batches())[0]
    gemm = 0.0
    for _ in range(-(-n // batch)):  # the N x d x K product, a batch at a time
        t0 = time.perf_counter()
        held @ right
        gemm += time.perf_counter() - t0
    m64 = means.astype(np.float64)
    tile = 2896
    t0 = time.perf_counter()
    for r in range(0, k, tile):
        for c in range(r, k, tile):  # the symmetric half, as a pairwise sweep needs
            m64[r : r + tile] @ m64[c : c + tile].T
    return {"reads": reads, "gemm": gemm, "pairs": time.perf_counter() - t0}


def run_sknc(n, d, k, batch, far=False):
    batches, means, W = scale_data(n, d, k, batch, far)
    held = _rss_gb()
    time.sleep(PAUSE)
    t0 = time.perf_counter()
    acc = sknc.NCAccumulator(mode="two_pass")
    for x, y in batches():
        acc.update(x, y)
    t1 = time.perf_counter()
    for x, y in batches():
        acc.update_second_pass(x, y, W)
    t2 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = acc.report(W)
    t3 = time.perf_counter()
    return {"first": t1 - t0, "second": t2 - t1, "report": t3 - t2, "peak_rss": _peak_rss_gb(), "held_rss": held,
            "nc1": float(rep["nc1"]), "nc4": float(rep["nc4"]), "cdnv": float(rep["cdnv"]),
            "nc2_h": float(rep["nc2_h"])}


def run_peer(n, d, k, batch):
    """rhubarbwu/neural-collapse's accumulators at this shape, in torch float32 (its default)."""
    import torch

    batches, means, W = scale_data(n, d, k, batch)
    time.sleep(PAUSE)
    t0 = time.perf_counter()
    arange = torch.arange(k)
    Wt = torch.from_numpy(W)
    sums, counts = torch.zeros(k, d), torch.zeros(k)
    for x, y in batches():  # MeanAccumulator: a one-hot B x K mask times the batch
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        idx = (yt[:, None] == arange[None, :]).to(torch.float32)
        sums += idx.T @ xt
        counts += idx.sum(0)
    M = sums / counts[:, None]
    mG = M.mean(0)
    totals, var, agree = torch.zeros(d, d), torch.zeros(k), 0
    mu_sq = (M * M).sum(1)
    for x, y in batches():  # CovarAccumulator, VarNormAccumulator, DecAccumulator; hashify every call
        hashlib.sha256(M.numpy().tobytes()).hexdigest()
        hashlib.sha256(Wt.numpy().tobytes()).hexdigest()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        idx = (yt[:, None] == arange[None, :]).to(torch.float32)
        diff = xt - M[yt]
        totals += diff.mT @ diff
        var += idx.T @ (diff * diff).sum(1)
        dist = (xt * xt).sum(1, keepdim=True) + mu_sq[None, :] - 2 * xt @ M.T
        agree += int((dist.argmin(1) == (xt @ Wt.T).argmax(1)).sum())
    S_W = totals / n
    Mc = M - mG
    S_B = Mc.T @ Mc / k
    nc1 = float(torch.trace(torch.linalg.pinv(S_B) @ S_W)) / k
    sigma = var / counts
    tile, total, pairs = 2048, 0.0, 0  # its CDNV kernel: tiles of pairwise distances, a loop over tile pairs
    for r in range(0, k, tile):
        for c in range(r, k, tile):
            dd = torch.cdist(M[r : r + tile], M[c : c + tile]) ** 2
            sv = (sigma[r : r + tile, None] + sigma[None, c : c + tile]) / 2
            ratio = sv / dd
            if r == c:
                ratio = ratio[torch.triu(torch.ones_like(ratio, dtype=torch.bool), 1)]
            total += float(ratio.sum())
            pairs += ratio.numel()
    t1 = time.perf_counter()
    return {"time": t1 - t0, "peak_rss": _peak_rss_gb(), "nc1": nc1, "cdnv": total / pairs, "nc4": 1 - agree / n}


def _fresh(kind, args):
    """Run one contender in a fresh process: its peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, "--contender", kind, "--shape", json.dumps(args)],
                         capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def scale_case(n, d, k, batch):
    shape = [n, d, k, batch]
    floor = _fresh("floor", shape)
    ours = _fresh("sknc", shape)
    far = _fresh("sknc_far", shape)
    peer = _fresh("peer", shape)
    total = ours["first"] + ours["second"] + ours["report"]
    floor_t = floor["reads"] + floor["gemm"] + floor["pairs"]
    print(f"K={k} classes, d={d}, N={n} float32 rows in batches of {batch} (NC4 and every pair included)")
    print(f"  floor: two reads {floor['reads']:.2f} s + float32 GEMM N x d x K {floor['gemm']:.1f} s "
          f"+ float64 K^2 d {floor['pairs']:.1f} s = {floor_t:.1f} s")
    print(f"  sknc: first pass {ours['first']:.1f} s, second pass {ours['second']:.1f} s, report {ours['report']:.1f} s "
          f"= {total:.1f} s = {total / floor_t:.2f}x the floor (target <= 2x)")
    print(f"        peak RSS {ours['peak_rss']:.2f} GB (target <= 3 GB; before the first batch: {ours['held_rss']:.2f} GB); "
          f"nc1 {ours['nc1']:.6g}, nc4 {ours['nc4']:.4g}, cdnv {ours['cdnv']:.4g}, nc2_h {ours['nc2_h']:.4g}")
    # far from the means NC4 compares two argmaxes over all K classes (nearest mean, classifier) from two
    # N x d x K products; the pairwise keys of the means and of W need two K^2 d Grams: no exact method does less
    need = floor["reads"] + 2 * floor["gemm"] + 2 * floor["pairs"]
    far_total = far["first"] + far["second"] + far["report"]
    print(f"  sknc with a classifier far from the means (random W: both NC4 products): second pass {far['second']:.1f} s, "
          f"{far_total:.1f} s in all = {far_total / floor_t:.2f}x the floor; peak RSS {far['peak_rss']:.2f} GB")
    print(f"        the products it needs at least (two reads, two N x d x K, two K^2 d for the pairs of the means and "
          f"of W) = {need:.1f} s = {need / floor_t:.2f}x the floor; sknc = {far_total / need:.2f}x this")
    if "error" in peer:
        print(f"  peer (RW's accumulators): failed: {peer['error']}")
    else:
        print(f"  peer (RW's accumulators, torch float32): {peer['time']:.1f} s = {peer['time'] / floor_t:.2f}x the "
              f"floor, {peer['time'] / total:.2f}x sknc's time; peak RSS {peer['peak_rss']:.2f} GB; "
              f"nc1 {peer['nc1']:.6g}, nc4 {peer['nc4']:.4g}, cdnv {peer['cdnv']:.4g}")


# ----------------------------------------------------------------------------------- pickles
def _additive_bytes(state):
    first = state["first"]
    total = sum(a.nbytes for a in (first["counts"], first["shift"], first["sums"], first["sq"]))
    total += 0 if first["scatter"] is None else first["scatter"].nbytes
    second = state.get("second")
    if second is not None:
        total += sum(np.asarray(second[name]).nbytes for name in ("within", "resid", "Q", "counts", "probe_sums"))
    return total


def pickle_case(k, d, n):
    rng = np.random.default_rng(1)
    y = np.resize(np.arange(k), n)
    means = rng.standard_normal((k, d)).astype(np.float32)
    H = means[y] + rng.standard_normal((n, d), dtype=np.float32)
    W = means + 0.1
    acc = sknc.NCAccumulator(mode="two_pass")
    for s in range(0, n, 8192):
        acc.update(H[s : s + 8192], y[s : s + 8192])
    first = len(pickle.dumps(acc)), _additive_bytes(acc.state_dict())
    for s in range(0, n, 8192):
        acc.update_second_pass(H[s : s + 8192], y[s : s + 8192], W)
    second = len(pickle.dumps(acc)), _additive_bytes(acc.state_dict())
    basis = acc.state_dict()["basis"].nbytes
    W = None
    print(f"Pickles, K={k}, d={d}, N={n}:")
    print(f"  after the first pass  {first[0] / 1e6:8.3f} MB for {first[1] / 1e6:8.3f} MB of additive arrays "
          f"({first[0] / first[1]:.2f}x)")
    print(f"  after the second pass {second[0] / 1e6:8.3f} MB for {second[1] / 1e6:8.3f} MB of additive arrays "
          f"({second[0] / second[1]:.2f}x; {basis / 1e6:.3f} MB of it the projection basis every shard shares)")


# ----------------------------------------------------------------------------------- dask
def dask_case(n, d, k, chunk):
    import dask.array as da
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        X = da.random.RandomState(0).standard_normal((n, d), chunks=(chunk, d)).astype(np.float32)
        y = da.random.RandomState(1).randint(0, k, n, chunks=chunk)
        W = np.random.default_rng(0).standard_normal((k, d))
        cold = _rss_gb()
        sknc.nc_report(X[:chunk], y[:chunk], W)  # the first compute's imports and connections
        gc.collect()
        before = _rss_gb()
        t0 = time.perf_counter()
        rep = sknc.nc_report(X, y, W)
        t1 = time.perf_counter()
        after = _rss_gb()
        Xn, yn = X.compute(), y.compute()
        t2 = time.perf_counter()
        local = sknc.nc_report(Xn, yn, W)
        t3 = time.perf_counter()
        materialised = _rss_gb()
    print(f"Dask: nc_report of a {n} x {d} float32 array ({X.nbytes / 1e6:.0f} MB in chunks of "
          f"{chunk * d * 4 / 1e6:.0f} MB), K={k}, on a 2-worker LocalCluster")
    print(f"  map-reduced on the workers: client RSS {before:.3f} -> {after:.3f} GB "
          f"(+{(after - before) * 1e3:.0f} MB; {cold:.3f} GB before the first, smaller compute, which loads what "
          f"a compute needs once); {t1 - t0:.1f} s")
    print(f"  gathered on the client: RSS {materialised:.3f} GB, {t3 - t1:.1f} s; "
          f"nc1 {rep['nc1']:.10g} vs {local['nc1']:.10g} (rel. {abs(rep['nc1'] - local['nc1']) / local['nc1']:.1e})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--only", choices=("scale", "pickle", "dask"))
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        fn = {"floor": run_floor, "sknc": run_sknc, "sknc_far": lambda *shape: run_sknc(*shape, far=True),
              "peer": run_peer}[args.contender]
        print(json.dumps(fn(*json.loads(args.shape))))
        return
    quick = args.quick
    if args.only in (None, "scale"):
        scale_case(*((16_384, 256, 4096, 4096) if quick else (131_072, 1024, 32_768, 8192)))
    if args.only in (None, "pickle"):
        pickle_case(100, 512, 20_000)
        pickle_case(10_000 if not quick else 2000, 512, 40_000)
    if args.only in (None, "dask"):
        dask_case(*((20_000, 128, 20, 2000) if quick else (200_000, 512, 100, 20_000)))


if __name__ == "__main__":
    main()
