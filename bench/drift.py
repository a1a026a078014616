"""Drift over a large window: mlops_nb.core.drift's KS+PSI, counted chunk by chunk, against Evidently's DataDriftPreset (KS).

The data: a reference of --ref-rows rows and a window of --rows rows (default 1,000,000) of --features features
(default 64), generated from a seed chunk by chunk (chunk i from its own generator, so any chunk can be made again
alone): normal features, the first quarter of them shifted by 0.1 standard deviation in the window (drift to find),
the last quarter rounded to whole numbers (ties). Measured, each figure --repeat times (medians), each run in a fresh
child process so that its peak memory is its own:
  - ours: `Reference.build` on the reference, then `Window.add` on chunks of --chunk rows made on the fly and
    `result()` (KS D and p-value, PSI, BH): seconds of add + result (making the data is not counted), at --rows and
    at a quarter of it, to show the memory stays flat as the window grows;
  - Evidently 0.7: `Report([DataDriftPreset(method="ks")]).run(current, reference)` on pandas frames of the same data,
    the whole window in memory as Evidently needs it (making the frames is not counted), at the same two sizes.
Peak memory is the child's peak resident set size, `resource.getrusage(RUSAGE_SELF).ru_maxrss` read in the child as
it ends (what `RUSAGE_CHILDREN` would give the parent for that one child); "base" is the same read once the child has
imported its libraries and, for ours, built the reference, before the window: the peak includes the interpreter and
libraries, the difference is the work. tracemalloc is not used: it sees only Python's allocator, not numpy's or
pandas' buffers alone, and slows both.
Checks: ours' D and p-values equal `scipy.stats.ks_2samp(reference column, window column)` within 1e-9 on four
features (shifted, plain, discrete), and Evidently's per-column p-values equal ours.

Evidently 0.7.23 fails to import with pandas 3: install it in a venv of its own and pass its interpreter
(`python3.11 -m venv /tmp/evvenv && /tmp/evvenv/bin/pip install evidently==0.7.23 "pandas<3"`), or use
`pip install -e ".[bench]"`, which pins both.

    python bench/drift.py [--rows 1000000] [--repeat 3] [--evidently-python /tmp/evvenv/bin/python] [--quick] [--json F]
"""
import argparse, json, math, os, resource, statistics, subprocess, sys, time
from pathlib import Path
import numpy as np

SHIFT = 0.1   # the window's shift of the first quarter of the features, in standard deviations


def make(seed: int, i: int, rows: int, features: int, shift: float) -> np.ndarray:
    "Chunk `i` (i = -1: the reference) of the data: normal; the first quarter shifted by `shift`, the last quarter whole numbers."
    x = np.random.default_rng([seed, i + 1]).normal(size=(rows, features))
    x[:, : features // 4] += shift
    x[:, features - features // 4:] = np.round(x[:, features - features // 4:] * 3)
    return x


def chunks(a):
    "The window's chunks as (index, rows), `a.rows` in all."
    for i in range(math.ceil(a.rows / a.chunk)): yield i, min(a.chunk, a.rows - i * a.chunk)


def rss_mb() -> float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_ours(a) -> dict:
    from mlops_nb.core.drift import Reference
    ref = Reference.build(make(a.seed, -1, a.ref_rows, a.features, 0), max_rows=a.ref_rows)
    ref.window().add(make(a.seed, 0, 10, a.features, SHIFT)).result()                       # warm: scipy's imports
    base, spent = rss_mb(), 0.0
    w = ref.window()
    for i, m in chunks(a):
        x = make(a.seed, i, m, a.features, SHIFT)
        t = time.perf_counter(); w.add(x); spent += time.perf_counter() - t
        del x
    t = time.perf_counter(); r = w.result(); spent += time.perf_counter() - t
    return {"seconds": spent, "peak_mb": rss_mb(), "base_mb": base, "d": r.d.tolist(), "p": r.p.tolist(),
            "share": r.share, "raw": int((r.p < 0.05).sum())}


def child_evidently(a) -> dict:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset
    names = [f"f{i}" for i in range(a.features)]
    base = rss_mb()
    ref = pd.DataFrame(make(a.seed, -1, a.ref_rows, a.features, 0), columns=names)
    cur = np.empty((a.rows, a.features))
    for i, m in chunks(a): cur[i * a.chunk: i * a.chunk + m] = make(a.seed, i, m, a.features, SHIFT)
    cur = pd.DataFrame(cur, columns=names, copy=False)
    dd = DataDefinition(numerical_columns=names)
    t = time.perf_counter()
    snap = Report([DataDriftPreset(method="ks")]).run(Dataset.from_pandas(cur, data_definition=dd),
                                                      Dataset.from_pandas(ref, data_definition=dd))
    spent = time.perf_counter() - t
    p = {m["config"]["column"]: m["value"] for m in snap.dict()["metrics"] if m["config"].get("type", "").endswith("ValueDrift")}
    return {"seconds": spent, "peak_mb": rss_mb(), "base_mb": base, "p": [float(p.get(n, math.nan)) for n in names],
            "raw": int(sum(v < 0.05 for v in p.values()))}


def run_child(python: str, who: str, a, rows: int) -> dict:
    cmd = [python, __file__, "--child", who, "--rows", str(rows), "--features", str(a.features), "--ref-rows", str(a.ref_rows),
           "--chunk", str(a.chunk), "--seed", str(a.seed)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode: raise SystemExit(f"{who} at {rows} rows failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def scipy_check(a, ours: dict, features: list[int]) -> float:
    "The largest |difference| between ours' D and p and scipy.stats.ks_2samp's, over `features`, on the full columns."
    from scipy.stats import ks_2samp
    ref = make(a.seed, -1, a.ref_rows, a.features, 0)[:, features]
    win = np.concatenate([make(a.seed, i, m, a.features, SHIFT)[:, features] for i, m in chunks(a)])
    worst = 0.0
    for j, f in enumerate(features):
        s = ks_2samp(ref[:, j], win[:, j])
        worst = max(worst, abs(s.statistic - ours["d"][f]), abs(s.pvalue - ours["p"][f]))
    return worst


def evidently_python(given):
    "An interpreter that imports Evidently: --evidently-python, else this one when it can; None otherwise."
    if given: return given
    try: import evidently  # noqa: F401
    except Exception: return None
    return sys.executable


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="window rows (default: %(default)s)")
    ap.add_argument("--features", type=int, default=64, help="features (default: %(default)s)")
    ap.add_argument("--ref-rows", type=int, default=5000, help="reference rows (default: %(default)s)")
    ap.add_argument("--chunk", type=int, default=50_000, help="rows per chunk (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="data seed (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each figure (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="20,000 rows, one repeat, Evidently only if --evidently-python: a smoke test of this script")
    ap.add_argument("--json", help="also write the medians to this JSON file")
    ap.add_argument("--evidently-python", help="a Python with Evidently installed (see above); default: this one, if it imports evidently")
    ap.add_argument("--child", choices=("ours", "evidently"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps((child_ours if a.child == "ours" else child_evidently)(a))); return
    if a.quick: a.rows, a.repeat, a.chunk = 20_000, 1, min(a.chunk, 5000)
    py = evidently_python(a.evidently_python) if not a.quick or a.evidently_python else None
    sizes = [a.rows // 4, a.rows]
    res = {(w, n): [] for w in ("ours", "evidently") for n in sizes}
    for _ in range(a.repeat):
        for n in sizes:
            res["ours", n].append(run_child(sys.executable, "ours", a, n))
            if py: res["evidently", n].append(run_child(py, "evidently", a, n))
    med = lambda w, n, k: statistics.median(r[k] for r in res[w, n]) if res[w, n] else None
    full = res["ours", a.rows][0]
    feats = sorted({0, a.features // 4, a.features // 2, a.features - 1})
    worst = scipy_check(a, full, feats)
    out = {"rows": a.rows, "features": a.features, "ref_rows": a.ref_rows, "chunk": a.chunk, "repeat": a.repeat, "quick": a.quick,
           "evidently_python": a.evidently_python,
           "scipy_max_abs_diff": worst, "scipy_features": feats, "drifted_share": full["share"], "ours_raw_p_lt_05": full["raw"]}
    for w in ("ours", "evidently"):
        for n in sizes:
            for k in ("seconds", "peak_mb", "base_mb"):
                if res[w, n]: out[f"{w}_{n}_{k}"] = med(w, n, k)
    print(f"drift of {a.rows:,} rows x {a.features} features against {a.ref_rows:,} reference rows, chunks of {a.chunk:,}, "
          f"median of {a.repeat}, each run in a fresh process:")
    print(f"  {'method':40} {'rows':>10} {'seconds':>8} {'peak MB':>8} {'base MB':>8}")
    for w, what in (("ours", "mlops_nb.core.drift KS+PSI+BH, chunked"), ("evidently", "Evidently DataDriftPreset(method='ks')")):
        for n in sizes:
            if res[w, n]: print(f"  {what:40} {n:10,} {med(w, n, 'seconds'):8.2f} {med(w, n, 'peak_mb'):8.0f} {med(w, n, 'base_mb'):8.0f}")
    grow = med("ours", a.rows, "peak_mb") - med("ours", sizes[0], "peak_mb")
    print(f"  ours' peak memory from {sizes[0]:,} to {a.rows:,} rows: {grow:+.0f} MB")
    print(f"  D and p vs scipy.stats.ks_2samp on features {feats}: max |diff| {worst:.1e} "
          f"({'ok' if worst <= 1e-9 else 'MISMATCH'}, tolerance 1e-9)")
    if py:
        ev = res["evidently", a.rows][0]
        pd_ = max(abs(x - y) for x, y in zip(full["p"], ev["p"]))
        out.update(speedup=med("evidently", a.rows, "seconds") / med("ours", a.rows, "seconds"),
                   memory_ratio=med("evidently", a.rows, "peak_mb") / med("ours", a.rows, "peak_mb"), evidently_max_abs_p_diff=pd_,
                   evidently_raw_p_lt_05=ev["raw"])
        print(f"  at {a.rows:,} rows: {out['speedup']:.1f}x faster than Evidently, {out['memory_ratio']:.1f}x less peak memory")
        print(f"  p-values vs Evidently's, all {a.features} features: max |diff| {pd_:.1e}; p < 0.05: ours {full['raw']}, "
              f"Evidently {ev['raw']} (ours flags {full['share']:.0%} after Benjamini-Hochberg)")
    elif not a.quick: print("  Evidently not installed: pass --evidently-python (see --help), or pip install -e '.[bench]', to compare")
    if a.json: Path(a.json).write_text(json.dumps(out, indent=2))
    if worst > 1e-9: raise SystemExit("p-values differ from scipy's")


if __name__ == "__main__":
    main()
