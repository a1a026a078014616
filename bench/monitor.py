"""Monitoring at scale, and how far the label-free accuracy estimate can be trusted.

Uses the workbook's registered model (run `make run` first, or pass --settings); writes a prediction log of its own
in a scratch folder (the workbook's registry and store are only read). Measured:
  - a day of --rows logged predictions (default 1,000,000: the model's test split sampled with replacement, scored
    with the bundle, written by the service's own log writer in single-row requests, 30% labelled a minute later):
    the wall time of a full `mlops-nb monitor --every 1d` over that day (a papermill run: kernel start, the log read
    in chunks, every statistic, the report), and `mlops_nb.monitor.windows.monitor` + `evaluate` alone in a fresh process,
    over a quarter of the day and over all of it: seconds and peak memory (the child's ru_maxrss), so memory that
    stays flat as the log grows shows as equal peaks; median of --repeat;
  - the CBPE estimate (mean calibrated confidence) against the realized accuracy on the test split under each
    simulated drift at severities 0, 0.25, 0.5 and 1: the estimate's error, where it can be trusted and where not.

    python bench/monitor.py [--rows 1000000] [--repeat 3] [--quick] [--json FILE]
"""
import argparse, configparser, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
from mlops_nb.core.times import stamp

BIN = Path(sys.executable).parent


def scratch(s, tmp) -> Path:
    "Settings like the workbook's with a prediction log under `tmp` (registry and store stay the workbook's)."
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(s.path)
    for k in ("store", "runs", "pipelines", "wandb_dir", "wandb_data_dir", "lineage", "registry"):
        v = getattr(s, k, None)
        if v is not None: cp["paths"][k] = str(v)
    cp["paths"]["runs"] = str(Path(tmp) / "runs")
    cp["paths"]["predictions"] = str(Path(tmp) / "predictions.db")
    with open(Path(tmp) / "settings.ini", "w") as f: cp.write(f)
    return Path(tmp) / "settings.ini"


def write_day(s, v, b, x, y, rows: int, day0: float, seed: int = 0) -> float:
    "Log `rows` single-row predictions over the day starting at `day0`, 30% labelled; returns seconds taken."
    from mlops_nb.core.predlog import PredictionLog
    from mlops_nb.core.reference import softmax
    from tqdm.auto import tqdm
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    log = PredictionLog(s.predictions, flush_ms=200)
    ident, labels = (v["name"], v["version"], v["bundle"]), np.array(b.labels, dtype=object)
    ts = day0 + np.sort(rng.random(rows)) * 86400
    step = 50_000
    for a in tqdm(range(0, rows, step), desc="writing the log", unit_scale=step, leave=False, disable=not sys.stderr.isatty()):
        idx = rng.integers(0, len(x), min(step, rows - a))
        xs, p = x[idx], softmax(b.predict_logits(x[idx])).astype(np.float32)
        k, lab = p.argmax(axis=1), rng.random(len(idx)) < 0.3
        for i in range(len(idx)):
            rid = f"b{a + i}"
            log.add(rid, ident, xs[i:i + 1], p[i:i + 1], labels[k[i:i + 1]], 1.0 + rng.random(), "/v1/predict", ts=ts[a + i])
            if lab[i]: log.feedback(rid, 0, str(labels[y[idx[i]]]), ts=ts[a + i] + 60)
        while log.depth > 200_000: time.sleep(0.05)        # keep the writer's queue (and this process) bounded
    log.close(timeout=600)
    return time.perf_counter() - t0


CHILD = """
import json, resource, sys, time
from mlops_nb.core.config import load_settings
from mlops_nb.monitor.windows import monitor
from mlops_nb.monitor.report import evaluate
s = load_settings(sys.argv[1])
t0 = time.perf_counter()
rep = monitor(s, sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), "1d")
ev = evaluate(rep, s.monitor)
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": ev["total"]["rows"],
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def estimate_errors(b, mref, x, y, severities=(0.0, 0.25, 0.5, 1.0)) -> list:
    "Realized vs estimated accuracy on the test split under each simulated drift and severity."
    from mlops_nb.monitor.windows import Window, figures
    from mlops_nb.core.predlog import logged_columns
    from mlops_nb.core.reference import softmax
    from mlops_nb.monitor.simulate import DRIFTS, apply_drift
    out = []
    for kind in [d for d in DRIFTS if d != "none"]:
        for sev in severities:
            xd, yd = apply_drift(kind, x, y, sev, seed=1)
            p, n = softmax(b.predict_logits(xd)).astype(np.float32), len(xd)
            c = {"ts": np.arange(n, dtype=float), **logged_columns(xd), "p": p, "latency_ms": np.ones(n), "version": np.ones(n, int),
                 "role": np.array(["primary"] * n), "tags": np.array(["{}"] * n),
                 "true_label": np.array([b.labels[i] for i in yd], dtype=object), "label_ts": np.arange(n, dtype=float)}
            f = figures(Window(mref, 0, n).add(c))
            out.append({"drift": kind, "severity": sev, "rows": n, "realized": f["accuracy"]["value"],
                        "estimated": f["estimated_accuracy"], "error": f["estimated_accuracy"] - f["accuracy"]["value"],
                        "input_drift_share": f["drift"]["features"]["share"]})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", help="the workbook's settings.ini (default: found as mlops-nb finds it)")
    ap.add_argument("--model", help="registry reference (default: what `mlops-nb serve` picks)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="logged predictions in the day (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each timing (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="20,000 rows, one repeat: a smoke test of this script")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    a = ap.parse_args()
    if a.quick: a.rows, a.repeat = 20_000, 1
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import registry_for
    from mlops_nb.deploy.served import pick
    from mlops_nb.build.bundle import read_bundle
    from mlops_nb.build.data import load_dataset
    from mlops_nb.core.reference import MonitoringReference
    s = load_settings(a.settings)
    reg = registry_for(s)
    v = pick(reg, a.model)
    b = read_bundle(reg.verify(v["name"], v["version"], v["bundle"]))
    x, y = load_dataset(reg.store.path(b.lineage["dataset"]), reg.store).part("test")
    x = np.asarray(x)
    reg.close()
    mref = MonitoringReference.from_files(b.monitoring)
    if mref is None: raise SystemExit(f"{v['name']}@{v['version']} has no monitoring reference: run the pipeline again")
    ref = f"{v['name']}@{v['version']}"
    out = {"model": ref, "rows": a.rows, "repeat": a.repeat, "quick": a.quick}
    with tempfile.TemporaryDirectory() as tmp:
        settings = scratch(s, tmp)
        s2 = load_settings(settings)
        day0 = (time.time() // 86400 - 1) * 86400                   # yesterday, UTC
        out["write_s"] = write_day(s2, v, b, x, y, a.rows, day0)
        out["log_mb"] = s2.predictions.stat().st_size / 2**20
        env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
        since, until = day0, day0 + 86400
        cli = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            p = subprocess.run([str(BIN / "mlops-nb"), "monitor", "--model", ref, "--since", stamp(since), "--until", stamp(until),
                                "--every", "1d", "-q"], env=env, capture_output=True, text=True)
            if p.returncode != 0: raise SystemExit(f"mlops-nb monitor failed:\n{p.stderr[-2000:]}")
            cli.append(time.perf_counter() - t0)
        out["cli_s"] = statistics.median(cli)
        lib = {}
        for name, end in (("quarter", since + 86400 / 4), ("day", until)):
            runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, str(settings), ref, str(since), str(end)],
                                              env=env, capture_output=True, text=True, check=True).stdout) for _ in range(a.repeat)]
            lib[name] = {"rows": runs[0]["rows"], "seconds": statistics.median(r["seconds"] for r in runs),
                         "peak_mb": statistics.median(r["peak_mb"] for r in runs)}
        out["library"] = lib
    out["estimate"] = estimate_errors(b, mref, x, y)
    print(f"{ref}: a day of {a.rows:,} logged predictions (30% labelled), written in {out['write_s']:.0f} s ({out['log_mb']:.0f} MiB log)")
    print(f"  mlops-nb monitor --every 1d over the day (papermill run, report included): {out['cli_s']:.1f} s, median of {a.repeat}")
    for name, r in lib.items():
        print(f"  monitor() + evaluate() over {r['rows']:>9,} rows: {r['seconds']:6.1f} s ({r['rows'] / r['seconds']:,.0f} rows/s), "
              f"peak {r['peak_mb']:.0f} MB")
    print(f"  the label-free estimate (mean calibrated confidence) against realized accuracy, test split ({len(y)} rows):")
    print(f"    {'drift':<12} {'severity':>8} {'realized':>9} {'estimated':>10} {'error':>7} {'input drift':>12}")
    for r in out["estimate"]:
        print(f"    {r['drift']:<12} {r['severity']:>8.2f} {r['realized']:>9.3f} {r['estimated']:>10.3f} {r['error']:>+7.3f} {r['input_drift_share']:>12.0%}")
    errs = [abs(r["error"]) for r in out["estimate"]]
    clean = [abs(r["error"]) for r in out["estimate"] if r["severity"] == 0 or r["drift"] == "class-shift"]
    print(f"  |error|: median {statistics.median(errs):.3f}, max {max(errs):.3f}; without input drift (clean, class-shift): "
          f"max {max(clean):.3f}")
    if a.json: Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
