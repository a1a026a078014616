"""The prediction log sized for images (issue 26 §1): bytes a prediction by `[serve] log_inputs` policy and input size,
monitoring's memory and speed over long windows of colour frames, and the same verdicts whatever the policy.

- bytes: --rows one-row predictions a model size and policy (all, auto, none), written through `PredictionLog` (the
  service's writer) with the ids, tags, probabilities and digests the service logs; the file's size after a
  checkpoint and VACUUM, divided by the rows. Frames are distinct (one pixel block carries the row number), so `all`
  stores every one.
- monitor: logs of N and 4N predictions of 3x224x224 frames (`auto`: summaries, and a raw frame now and then), each
  read in a fresh process the way `mlops-nb monitor` reads them (`predlog.chunks` within `[monitor] memory_mb`, every
  chunk added to a `monitor.Window`): rows/s, and the peak resident memory over the memory before reading. The aims:
  within memory_mb, and the same at 4N as at N once N fills a chunk (64 MB: about 10,000 rows).
- verdicts: the same traffic (camera-like 3x64x64 frames from `mlops_nb.build.frames`, the second half brightened) logged with `all` and with `auto`: every
  drift statistic of the window, and the window's checks, compared; and against the features computed from the
  raw frames, as monitoring did before summaries were logged.

    python bench/fleet.py [--rows 20000] [--window 20000] [--quick] [--json FILE]
"""
import argparse, json, os, sqlite3, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

SHAPES = {"digits 1x8x8": (1, 8, 8), "3x64x64": (3, 64, 64), "3x224x224": (3, 224, 224)}
POLICIES = ("auto", "none", "all")


def frames(n: int, shape, seed: int = 0, bright: float = 0.0, start: int = 0) -> np.ndarray:
    "Filler frames `start` to `start + n` for the byte and memory figures, which do not depend on what a frame shows "
    "(summaries have a fixed size; SQLite does not compress): gradients with noise, `bright` added, the first pixels "
    "carrying the row number so that no two are alike. Made at 10,000 a second, where `mlops_nb.build.frames` draws about "
    "200; the verdicts, which do depend on it, use `mlops_nb.build.frames` (`camera`)."
    rng = np.random.default_rng([seed, start])
    c, h, w = shape
    ramp = (np.linspace(40, 200, w, dtype=np.float32)[None, None, None, :] * rng.uniform(0.6, 1.2, (n, c, 1, 1)).astype(np.float32))
    x = np.clip(ramp + rng.standard_normal((n, c, h, w), np.float32) * 18 + bright, 0, 255).astype(np.uint8)
    if h * w >= 16: x[:, 0, 0, :4] = np.frombuffer(np.arange(start, start + n, dtype="<u4").tobytes(), np.uint8).reshape(n, 4)
    return x


def stream(n: int, shape, seed: int = 0, bright: float = 0.0, block: int = 256):
    "`frames` made a block at a time (40,000 frames of 224 px would take 6 GB at once); the second half brightened by `bright`."
    for a in range(0, n, block):
        yield frames(min(block, n - a), shape, seed, bright if a >= n // 2 else 0.0, a)


def camera(n: int, size: int, seed: int = 0, bright: float = 0.0) -> np.ndarray:
    "`n` camera-like frames (N, 3, size, size) from `mlops_nb.build.frames`, cats, dogs and empty scenes in turn; the "
    "second half brightened by `bright` grey levels."
    from mlops_nb.build.frames import make_frame, CLASSES
    x = np.stack([np.asarray(make_frame(CLASSES[i % 3], seed, i, size)).transpose(2, 0, 1) for i in range(n)])
    x[n // 2:] = np.clip(x[n // 2:].astype(np.int16) + int(bright), 0, 255).astype(np.uint8)
    return x


def fill(path: Path, blocks, policy: str, t0: float, p=None) -> None:
    "Log the frames of `blocks` one row a request, as the service does (request ids, tags, a model digest, probabilities "
    "over 3 classes)."
    from mlops_nb.deploy.inputs import new_request_id
    from mlops_nb.core.predlog import PredictionLog
    for sfx in ("", "-wal", "-shm"): Path(f"{path}{sfx}").unlink(missing_ok=True)
    log = PredictionLog(path, flush_ms=5, log_inputs=policy, seed=0)
    rng = np.random.default_rng(1)
    i = 0
    try:
        for x in blocks:
            q = rng.dirichlet([4, 2, 2], len(x)).astype(np.float32) if p is None else p[i:i + len(x)]
            for j in range(len(x)):
                log.add(new_request_id(), ("camera-cnn", 3, "sha256:" + "ab" * 32), x[j:j + 1], q[j:j + 1], ["cat"], 12.5,
                        "/v2/models/camera-cnn/infer", {"camera": f"cam-{i % 10:02d}"}, ts=t0 + i)
                i += 1
            log.flush(120)                                    # as traffic arrives: the queue never holds the whole run
    finally: log.close()


def size_per_row(path: Path, n: int) -> float:
    db = sqlite3.connect(path); db.execute("PRAGMA wal_checkpoint(TRUNCATE)"); db.execute("VACUUM"); db.close()
    return path.stat().st_size / n


def bytes_table(rows: int, tmp: Path) -> list:
    "Bytes a prediction for each input size and policy."
    from mlops_nb.core.predlog import counts
    out = []
    for name, shape in SHAPES.items():
        for pol in POLICIES:
            n = rows if pol != "all" or shape[1] < 200 else max(200, rows // 20)     # 150 KB a frame: fewer rows suffice
            n = n if shape[1] < 200 else min(n, max(500, rows // 4))
            path = tmp / f"b-{shape[1]}-{pol}.db"
            t = time.perf_counter(); fill(path, stream(n, shape), pol, time.time() - 86400); t = time.perf_counter() - t
            db = sqlite3.connect(path)                        # kept inline (inputs up to 1 KiB), or in the payload store
            kept = db.execute("SELECT COUNT(*) FROM predictions WHERE input != x''").fetchone()[0] + counts(path)["payloads"]
            db.close()
            out.append({"input": name, "policy": pol, "rows": n, "raw_kept": kept, "bytes": round(size_per_row(path, n), 1),
                        "rows_per_s": round(n / t)})
            print(f"  {name:14s} {pol:5s}: {out[-1]['bytes']:>10,.0f} bytes a prediction ({kept:,} of {n:,} raw inputs kept)",
                  file=sys.stderr, flush=True)
            for sfx in ("", "-wal", "-shm"): Path(f"{path}{sfx}").unlink(missing_ok=True)
    return out


READER = r"""
import json, resource, sys, time, numpy as np
from mlops_nb.core.predlog import chunks
from mlops_nb.core.reference import build
from mlops_nb.monitor.windows import Window, figures
path, max_mb = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3]); from fleet import frames
x = frames(60, (3, 224, 224), seed=7)                  # a small reference: the memory measured is the reading's
ref = build(x, np.arange(60) % 3, np.random.default_rng(0).normal(0, 1, (60, 3)), ["cat", "dog", "empty"])
del x
hwm = lambda: int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
base = hwm()
t, n = time.perf_counter(), 0
w = Window(ref, 0, time.time() + 1)
for c in chunks(path, "camera-cnn", 0, None, max_bytes=max_mb << 20):
    w.add(c); n += len(c["ts"])
figures(w)
print(json.dumps({"rows": n, "seconds": time.perf_counter() - t, "base_mb": base,
                  "peak_mb": hwm()}))
"""


def monitor_table(window: int, memory_mb: int, tmp: Path) -> list:
    "Monitoring's reading of N and 4N predictions of 224 px frames, each in a fresh process: rows/s and peak memory."
    out = []
    for n in (window, 4 * window):
        path = tmp / f"m-{n}.db"
        fill(path, stream(n, (3, 224, 224), seed=3), "auto", time.time() - 86400)
        r = subprocess.run([sys.executable, "-c", READER, str(path), str(memory_mb), str(Path(__file__).parent)],
                           capture_output=True, text=True, env={**os.environ, "MLOPS_NB_CORE_LEASE": "off"})
        if r.returncode: raise SystemExit(f"the monitoring reader failed on {n:,} rows: {r.stderr[-2000:]}")
        d = json.loads(r.stdout.strip().splitlines()[-1])
        out.append({"rows": d["rows"], "rows_per_s": round(d["rows"] / d["seconds"]), "peak_mb": round(d["peak_mb"], 1),
                    "base_mb": round(d["base_mb"], 1), "log_mb": round(path.stat().st_size / 2**20, 1), "memory_mb": memory_mb})
        print(f"  monitor over {n:,} frames of 224 px: {out[-1]['rows_per_s']:,} rows/s, peak {out[-1]['peak_mb']:,.0f} MB "
              f"(before reading: {out[-1]['base_mb']:,.0f} MB)", file=sys.stderr, flush=True)
        for sfx in ("", "-wal", "-shm"): Path(f"{path}{sfx}").unlink(missing_ok=True)
    return out


def verdicts(n: int, tmp: Path) -> dict:
    "The same traffic logged with `all` and with `auto`: the window's drift statistics and checks, side by side."
    from mlops_nb.core.predlog import chunks
    from mlops_nb.core.reference import build, features, properties
    from mlops_nb.monitor.windows import Window, figures, checks
    from mlops_nb.core.config import MONITOR_DEFAULTS
    ref = build(camera(600, 64, seed=11), np.arange(600) % 3, np.random.default_rng(0).normal(0, 1, (600, 3)), ["cat", "dog", "empty"])
    x = camera(n, 64, seed=12, bright=25.0)
    p = np.random.default_rng(2).dirichlet([4, 2, 2], n).astype(np.float32)
    figs = {}
    for pol in ("all", "auto"):
        fill(tmp / f"v-{pol}.db", [x], pol, 1000.0, p)
        w = Window(ref, 0, time.time() + 1)
        for c in chunks(tmp / f"v-{pol}.db", "camera-cnn"): w.add(c)
        figs[pol] = figures(w)
    c0 = next(chunks(tmp / "v-all.db", "camera-cnn", size=n))
    raw = {**c0, "f": features(x), "props": properties(x)}                       # monitoring before: from the raw frames
    figs["raw"] = figures(Window(ref, 0, 1e9).add(raw))
    parts = ("features", "properties", "outputs", "confidence")
    stat = lambda f: np.concatenate([f["drift"][k]["stat"] for k in parts])
    chk = lambda f: {c["check"]: c["status"] for c in checks(f, MONITOR_DEFAULTS)}
    return {"rows": n, "same_all_auto": bool(np.array_equal(stat(figs["all"]), stat(figs["auto"]))),
            "checks_all": chk(figs["all"]), "checks_auto": chk(figs["auto"]), "checks_raw": chk(figs["raw"]),
            "max_stat_diff_raw": float(np.abs(stat(figs["all"]) - stat(figs["raw"])).max()),
            "drifted_share": {k: figs[k]["drift"]["features"]["share"] for k in figs}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000, help="predictions logged for each size and policy (default: %(default)s; fewer for 224 px)")
    ap.add_argument("--window", type=int, default=20_000, help="N: monitoring reads N and 4N predictions of 224 px (default: %(default)s)")
    ap.add_argument("--memory-mb", type=int, default=64, help="[monitor] memory_mb for the monitoring reads (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="2,000 rows, a window of 1,000: a smoke test of this script")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    a = ap.parse_args()
    if a.quick: a.rows, a.window = 2000, 1000
    if a.rows < 100 or a.window < 100: ap.error("--rows and --window must be at least 100")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = {"quick": a.quick, "rows": a.rows, "window": a.window, "memory_mb": a.memory_mb, "bytes": bytes_table(a.rows, tmp), "monitor": monitor_table(a.window, a.memory_mb, tmp),
               "verdicts": verdicts(min(a.rows, 4000), tmp)}
    print(json.dumps(out, indent=2))
    if a.json: Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
