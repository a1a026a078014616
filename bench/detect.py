"""How often monitoring is right: each drift check's false-alarm rate and power, as "Failing Loudly" measures them.

For each model family (the digits; camera-like frames of --px), a model is trained here with one class held out, the
unseen class of the shift of that name (digits: 9; frames: dog, so the model tells cats from empty scenes), and its
monitoring reference is built from the validation split as packaging builds it. Windows of held-out rows, clean and
under each simulated shift (noise, blur, rotate, brightness, invert, class-shift, unseen class) at three severities
(`mlops_nb.monitor.power.SEVERITIES`), of --sizes rows, go --trials times each through the monitor's own `figures` and
`checks` (`mlops_nb.monitor.power.rates`): on clean windows the share that alerts is the false-alarm rate, on shifted ones the
power. A window size over a pool's held-out rows is skipped (the digits have about 400). Beside the monitor's verdict,
the rule it used before this bench (a check alerted on effect size alone: drifted share over 25%, PSI over 0.2, the
label-free estimate 0.05 under the reference) is judged on the same windows. The label-free estimate's errors are
measured on --estimate-n windows (`mlops_nb.monitor.power.estimates`). With --live SETTINGS, detection is also timed end to
end on that workbook's served model: `mlops-nb serve`, `simulate` sending --live-rate predictions an hour for a day
and, from noon, half as many again under each medium shift, then the monitor over the day hour by hour.

    python bench/detect.py [--families digits,frames] [--trials 100] [--sizes 10,100,1000,10000] [--px 32]
                           [--live SETTINGS] [--quick] [--json FILE] [--plot FILE] [--save-table FILE] [--cache DIR]
"""
import argparse, json, os, sys, time
from pathlib import Path
import numpy as np

os.environ.setdefault("MLOPS_NB_CORE_LEASE", "off")
sys.path.insert(0, str(Path(__file__).parent))     # the other bench scripts' helpers (`live`)
SHIFTS = ("noise", "blur", "rotate", "brightness", "invert", "class-shift", "unseen-class")


def before(f, m) -> bool:
    "The verdict before this bench: any check over its effect threshold, without a test."
    return (any(f["drift"][d]["share"] > 0.25 for d in ("features", "properties", "outputs")) or f["prediction"]["psi"] > 0.2
            or f["estimated_accuracy"] < f["reference"]["estimated_accuracy"] - 0.05)


def split3(y, seed=0, fracs=(0.5, 0.25)):
    "Stratified train / validation / held-out indices."
    rng, parts = np.random.default_rng(seed), ([], [], [])
    for c in np.unique(y):
        i = rng.permutation(np.flatnonzero(y == c))
        a, b = int(len(i) * fracs[0]), int(len(i) * (fracs[0] + fracs[1]))
        parts[0].append(i[:a]); parts[1].append(i[a:b]); parts[2].append(i[b:])
    return [np.sort(np.concatenate(p)) for p in parts]


def digits():
    from mlops_nb.build.data import read_digits
    x, y, classes = read_digits()
    seen = y != 9
    tr, va, ho = split3(y[seen])
    xs, ys = x[seen], y[seen]
    return {"classes": classes[:9], "train": (xs[tr], ys[tr]), "val": (xs[va], ys[va]), "held": (xs[ho], ys[ho]),
            "unseen": x[~seen], "epochs": 8}


def _draw(args):
    from mlops_nb.build.frames import make_frame
    label, seed, i0, n, px = args
    return np.stack([np.asarray(make_frame(label, seed, i, px)).transpose(2, 0, 1) for i in range(i0, i0 + n)])


def frames(px: int, n_train: int, n_val: int, n_held: int, cache: Path):
    "Frames of cats and empty scenes (train, validation, held out) and of dogs (the unseen class), made once into --cache."
    f = cache / f"detect-frames-px{px}-{n_train}-{n_val}-{n_held}.npz"
    if not f.exists():
        from multiprocessing import Pool
        jobs, parts = [], {"cat": n_train // 2 + n_val // 2 + n_held // 2, "empty": n_train // 2 + n_val // 2 + n_held // 2,
                           "dog": n_held}
        for label, n in parts.items():
            jobs += [(label, 7, i, min(500, n - i), px) for i in range(0, n, 500)]
        print(f"   drawing {sum(parts.values()):,} frames of {px} px into {f}", file=sys.stderr, flush=True)
        with Pool(os.cpu_count()) as p: got = p.map(_draw, jobs)
        out, k = {}, 0
        for label, n in parts.items():
            m = -(-n // 500); out[label] = np.concatenate(got[k:k + m]); k += m
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, **out)
    z = np.load(f)
    cat, empty = z["cat"], z["empty"]
    cut = lambda a: (a[:n_train // 2], a[n_train // 2:n_train // 2 + n_val // 2], a[n_train // 2 + n_val // 2:])
    (ct, cv, ch), (et, ev, eh) = cut(cat), cut(empty)
    lab = lambda a, b: (np.concatenate([a, b]), np.repeat([0, 1], [len(a), len(b)]))
    xh, yh = lab(ch, eh)
    mix = np.random.default_rng(5).permutation(len(yh))            # classes mixed: the shifts work 2,000 rows at a time
    return {"classes": ["cat", "empty"], "train": lab(ct, et), "val": lab(cv, ev), "held": (xh[mix], yh[mix]), "unseen": z["dog"], "epochs": 6}


def model(d: dict):
    "Train a convnet on the family's training rows: its probabilities, its embedding (projected as packaging projects "
    "it), and the monitoring reference of its validation rows."
    from mlops_nb.build.data import Dataset
    from mlops_nb.build.embedding import fit_projection, penultimate
    from mlops_nb.build.model import predict_proba
    from mlops_nb.core.reference import build
    from mlops_nb.build.train import search
    (xt, yt), (xv, yv) = d["train"], d["val"]
    x, y = np.concatenate([xt, xv]), np.concatenate([yt, yv])
    ds = Dataset(x, y, np.repeat(np.array([0, 1], np.uint8), [len(yt), len(yv)]), d["classes"])
    t = time.perf_counter()
    res = search(ds, epochs=(d["epochs"],))
    net = res.model.eval()
    proba = lambda b: predict_proba(net, b)
    mu, basis = fit_projection(penultimate(net, xv))
    embed = lambda b: (penultimate(net, b) - mu) @ basis
    pv = proba(xv)
    mref = build(xv, yv, np.log(np.clip(pv, 1e-30, None)), d["classes"], embedding=embed(xv))
    return (proba, embed), mref, {"train_s": time.perf_counter() - t, "val_acc": float((pv.argmax(1) == yv).mean()), "train_rows": len(yt),
                         "val_rows": len(yv)}


def pools(d: dict, model, severities: dict) -> dict:
    "The held-out rows' columns, clean and under each shift at each severity (input shifts applied 2,000 rows at a time)."
    from mlops_nb.monitor.power import columns
    from mlops_nb.monitor.simulate import apply_drift
    xh, yh = d["held"]
    out = {"clean": columns(xh, *model, y=yh)}
    for s in SHIFTS:
        for level, sev in severities.items():
            if s == "unseen-class":              # a share of the rows replaced by rows of the class the model never saw
                rng = np.random.default_rng(3)
                k = min(int(round(sev * len(yh))), len(d["unseen"]))
                x, y, at = xh.copy(), yh.copy(), rng.choice(len(yh), k, replace=False)
                x[at], y[at] = d["unseen"][rng.choice(len(d["unseen"]), k, replace=False)], -1    # never right
            else:
                got = [apply_drift(s, xh[i:i + 2000], yh[i:i + 2000], sev, seed=i) for i in range(0, len(yh), 2000)]
                x, y = np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])
            out[f"{s} {level}"] = columns(x, *model, y=y)
    return out


def time_to_detect(table: list) -> dict:
    "Hours until `monitor --every 1h` alerts after a shift starts at the top of an hour, at a traffic of n predictions an "
    "hour, from the measured power p of windows of n rows (each hour is a window of its own, so the first alert comes in "
    "hour k with probability (1 - p)^(k-1) p): the median hour, ceil(log 0.5 / log(1 - p)); None where p is 0."
    import math
    out = {}
    for r in table:
        if not r["pool"].endswith(" medium"): continue
        p = r["rates"]["overall"]
        out.setdefault(r["pool"].rsplit(" ", 1)[0], {})[r["n"]] = (None if p == 0 else 1 if p >= 0.5 else
                                                                   math.ceil(math.log(0.5) / math.log(1 - p)))
    return out


def accuracy_summary(rows: list) -> dict:
    "The label-free estimates' errors (`mlops_nb.monitor.power.estimates`): CBPE's on every window; the reweighted estimate's "
    "on the windows called reliable; how many windows CBPE misses by over 0.10, and how many of those are called unreliable."
    err = lambda r, k: abs(r[k] - r["realized"])
    rel = [r for r in rows if r["verdict"] == "reliable"]
    bad = [r for r in rows if err(r, "cbpe") > 0.10]
    return {"windows": len(rows), "reliable": len(rel), "cbpe_median": float(np.median([err(r, "cbpe") for r in rows])),
            "cbpe_max": max(err(r, "cbpe") for r in rows), "reliable_median": float(np.median([err(r, "weighted") for r in rel])) if rel else None,
            "reliable_max": max((err(r, "weighted") for r in rel), default=None), "cbpe_off": len(bad),
            "cbpe_off_unreliable": sum(r["verdict"] != "reliable" for r in bad),
            "reliable_off": sum(err(r, "weighted") > 0.10 for r in rel),
            "pools": {p: {"reliable": sum(r["verdict"] == "reliable" for r in rows if r["pool"] == p),
                          "windows": sum(r["pool"] == p for r in rows),
                          "cbpe_err": float(np.median([r["cbpe"] - r["realized"] for r in rows if r["pool"] == p])),
                          "why": sorted({w.split(":")[0].split(" (")[0] for r in rows if r["pool"] == p for w in r["why"]})[:3]}
                      for p in dict.fromkeys(r["pool"] for r in rows)}}


def live(settings: str, rate: int, shift: str, severity: float, share: float = 0.5, seed: int = 0) -> dict:
    "Time to detect, end to end: the workbook's served model (`mlops-nb serve`, client times on, a prediction log of its "
    "own), `simulate` sending `rate` clean predictions an hour for a day and, from noon (twelve hours ago), `share` more "
    "of them under `shift` (one camera of two), then `monitor --every 1h` over the day: the first hour after the shift "
    "starts that alerts, and any clean hour before it that alerted."
    import configparser, tempfile
    from monitor import scratch                   # bench/monitor.py: the workbook's registry and store, a log of its own
    from release import serve_following           # bench/release.py: `mlops-nb serve` on a free loopback port
    from serve import wait_ready                  # bench/serve.py: the start-up wait
    from mlops_nb.core.config import load_settings
    from mlops_nb.monitor.windows import monitor
    from mlops_nb.monitor.report import evaluate, status
    from mlops_nb.monitor.simulate import simulate
    with tempfile.TemporaryDirectory() as tmp:
        path = scratch(load_settings(settings), tmp)
        cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str; cp.read(path)
        cp["serve"]["client_time"] = "true"                # simulate back-dates its traffic over the day
        with open(path, "w") as f: cp.write(f)
        s = load_settings(path)
        url, p = serve_following(path)
        try:
            wait_ready(url + "/readyz", p)
            now = time.time()
            simulate(s, url, 24 * rate, days=1, seed=seed, progress=False, feedback_rate=0.0)
            simulate(s, url, int(12 * rate * share), drift=shift, severity=severity, days=0.5, seed=seed + 1, progress=False, feedback_rate=0.0)
        finally:
            p.terminate(); p.wait(30)
        rep = monitor(s, since=now - 86400, until=time.time(), every="1h")
        ev = evaluate(rep, s.monitor)
    start = now - 43200
    hours = [(w.start, f["rows"], status(f["checks"])) for w, f in zip(rep.windows, ev["windows"])]
    after = [(t, n, st) for t, n, st in hours if t + 3600 > start]
    first = next(((t, i) for i, (t, n, st) in enumerate(after) if st == "ALERT"), None)
    return {"rate": rate, "shift": shift, "severity": severity, "share": share,
            "clean_hours": sum(t + 3600 <= start for t, _, _ in hours),
            "clean_alerts": sum(t + 3600 <= start and st == "ALERT" for t, _, st in hours),
            "hours_to_alert": None if first is None else round((first[0] + 3600 - start) / 3600, 2),
            "predictions_to_alert": None if first is None else int(sum(n for _, n, _ in after[:first[1] + 1]))}


def table_md(fam: str, table: list, verdicts: list) -> str:
    "A markdown table: a row per pool and size, a column per verdict."
    head = "| " + fam + " | rows | " + " | ".join(verdicts) + " |\n|" + "---|" * (len(verdicts) + 2) + "\n"
    return head + "".join(f"| {r['pool']} | {r['n']:,} | " + " | ".join(f"{r['rates'][v]:.2f}" for v in verdicts) + " |\n" for r in table)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="digits,frames", help="digits, frames or both (default: %(default)s)")
    ap.add_argument("--trials", type=int, default=100, help="windows drawn per pool and size (default: %(default)s)")
    ap.add_argument("--sizes", default="10,100,1000,10000", help="window sizes (default: %(default)s)")
    ap.add_argument("--px", type=int, default=32, help="frame size (default: %(default)s)")
    ap.add_argument("--held", type=int, default=20_000, help="held-out frames (default: %(default)s)")
    ap.add_argument("--estimate-n", type=int, default=1000, help="rows a window for the label-free estimate (default: %(default)s)")
    ap.add_argument("--estimate-trials", type=int, default=20, help="windows per pool for the estimate (default: %(default)s)")
    ap.add_argument("--skip-detection", action="store_true", help="measure the label-free estimate only")
    ap.add_argument("--live", metavar="SETTINGS", help="also time detection end to end on this workbook's served model "
                    "(serve, simulate a shift from noon, monitor --every 1h): its settings.ini")
    ap.add_argument("--live-rate", type=int, default=100, help="--live: predictions an hour (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="digits, 20 trials, sizes 10 and 100, one severity: a smoke test")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--save-table", help="write the rates the report shows beside each check (mlops_nb/detection.json)")
    ap.add_argument("--plot", help="write the power plot (medium severity) to this PNG")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "mlops_nb" / "bench-frames"), help="where drawn frames are kept")
    a = ap.parse_args()
    from mlops_nb.monitor.power import SEVERITIES, VERDICTS, rates, needed, estimates
    sizes, sev = [int(v) for v in a.sizes.split(",")], dict(SEVERITIES)
    fams = [f for f in a.families.split(",") if f]
    if a.quick: a.trials, sizes, sev, fams, a.estimate_trials = 20, [10, 100], {"medium": SEVERITIES["medium"]}, ["digits"], 3
    bad = [f for f in fams if f not in ("digits", "frames")]
    if bad: ap.error(f"--families: unknown {', '.join(bad)}; use digits, frames")
    out = {"quick": a.quick, "trials": a.trials, "sizes": sizes, "sizes_arg": ",".join(map(str, sizes)), "px": a.px, "severities": sev,
           "families": {}}
    for fam in fams:
        d = digits() if fam == "digits" else frames(a.px, 4000, 2000, a.held, Path(a.cache))
        fns, mref, info = model(d)
        print(f"{fam}: trained in {info['train_s']:.0f} s, validation accuracy {info['val_acc']:.3f}", file=sys.stderr, flush=True)
        t = time.perf_counter()
        ps = pools(d, fns, sev)
        table = [] if a.skip_detection else rates(mref, ps, sizes, a.trials, progress=True, extra={"before": before})
        info.update(held_rows=len(d["held"][1]), trials_s=time.perf_counter() - t, table=table, needed=needed(table),
                    hours=time_to_detect(table))
        n_est = min(a.estimate_n, len(d["held"][1]))
        est = estimates(mref, ps, n_est, a.estimate_trials)
        info["estimate"] = {"n": n_est, "trials": a.estimate_trials, **accuracy_summary(est)}
        print(f"{fam}: label-free estimate on windows of {n_est:,}: {json.dumps({k: v for k, v in info['estimate'].items() if k != 'pools'})}",
              file=sys.stderr, flush=True)
        out["families"][fam] = info
        if table: print(table_md(fam, table, [*VERDICTS, "before"]))
    if a.plot and not a.skip_detection:
        from mlops_nb.core.plots import _plt
        from mlops_nb.monitor.power import plot_power
        plt = _plt()
        fig, axes = plt.subplots(1, len(out["families"]), figsize=(7 * len(out["families"]), 4), squeeze=False)
        for ax, (fam, info) in zip(axes[0], out["families"].items()):
            plot_power([r for r in info["table"] if r["pool"] == "clean" or r["pool"].endswith(" medium")], title=f"{fam}: medium shifts", ax=ax)
        fig.tight_layout(); fig.savefig(a.plot, dpi=110)
    if a.live:
        out["live"] = [live(a.live, a.live_rate, sh, SEVERITIES["medium"]) for sh in ("noise", "blur", "rotate", "brightness", "invert")]
        for r in out["live"]: print(f"live: {json.dumps(r)}", file=sys.stderr, flush=True)
    if a.json: Path(a.json).write_text(json.dumps(out, indent=1))
    if a.save_table:
        from mlops_nb.monitor.power import compact
        Path(a.save_table).write_text(json.dumps({"command": "python bench/detect.py " + " ".join(sys.argv[1:]), "trials": a.trials,
                                                  "families": {f: {"sizes": sorted({r["n"] for r in i["table"]}), "checks": compact(i["table"])}
                                                               for f, i in out["families"].items() if i["table"]}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
