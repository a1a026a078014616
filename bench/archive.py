"""The fleet's archive (issue 26 §2, §4): Parquet segments written, and monitoring over millions of predictions read by
DuckDB from the segments against the SQLite reader on the same rows.

- log: --rows predictions of 3x64x64 frames over 7 days from 10 cameras (the summaries the service logs, 408 bytes:
  those of 512 frames, each row's features moved by up to 8 steps of 1/256 at random so that no two rows are alike and
  Parquet cannot compress them away; probabilities over 3 classes; 5% labelled an hour later), written straight into
  a prediction log with SQLite (the service's writer would take hours for 10 million rows; the rows are the same).
- roll: `mlops_nb.core.archive.roll` of the whole log into a local folder: rows/s, segments, bytes a row.
- monitor: each engine in a fresh process, the way `mlops-nb monitor` reads (chunks within `[monitor] memory_mb`, each
  added to a `monitor.Window` whose reference is built from 2,000 frames, as a validation split's would be): the SQLite reader over the live log (`predlog.chunks`), and DuckDB over the segments
  (`archive.Fleet.chunks`); rows/s, peak resident memory over the memory before reading, and the labelled rows each
  found (they must agree). Aims: DuckDB at least 5x faster; memory flat (a quarter of the rows against all of them).
- lake: --frames camera-like frames (`mlops_nb.build.frames`, 160 px JPEGs, three classes) ingested at 64 px RGB from a local
  folder and from the same objects in a bucket of moto's S3 server (its own process on 127.0.0.1; s3fs as for any S3):
  the first ingest and a re-ingest of the unchanged source, images/s, and the datasets' digests (they must agree).

    python bench/archive.py [--rows 10000000] [--frames 2000] [--quick] [--json FILE] [--keep DIR]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

SHAPE = (3, 64, 64)
T0 = 1_796_000_000.0            # 2026-12-01: the week the log covers
INSERT = ("INSERT INTO predictions (request_id, row, ts, model, version, digest, role, route, tags, input, input_shape, "
          "input_digest, probabilities, label, latency_ms, features) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")


def make_log(path: Path, n: int, seed: int = 0, block: int = 50_000) -> dict:
    "A prediction log of `n` rows spread over 7 days; 5% labelled an hour after their prediction."
    sys.path.insert(0, str(Path(__file__).parent))
    from fleet import frames
    from mlops_nb.core.predlog import open_log, summaries
    from mlops_nb.core.reference import feature_names
    rng = np.random.default_rng(seed)
    pool = np.frombuffer(b"".join(summaries(frames(512, SHAPE, seed=seed))), np.uint8).reshape(512, -1)
    nf = 2 * len(feature_names(SHAPE))                   # the features' bytes (uint16), then the properties (float32)
    db = open_log(path); db.execute("PRAGMA synchronous=OFF")
    dt, labelled, digest = 7 * 86400 / n, 0, "sha256:" + "ab" * 32
    for a in range(0, n, block):
        k = min(block, n - a)
        p = rng.dirichlet([4, 2, 2], k).astype(np.float32)
        pick, lab = rng.integers(0, 512, k), rng.random(k) < 0.05
        summ = pool[pick].copy()
        q = summ[:, :nf].view("<u2")
        q += np.minimum(rng.integers(0, 9, q.shape, dtype=np.uint16), 65535 - q)      # distinct rows, as frames are
        summ = [r.tobytes() for r in summ]
        rows = [(f"r{a + i:09d}", 0, T0 + (a + i) * dt, "camera-cnn", 3, digest, "primary", "/v2/models/camera-cnn/infer",
                 f'{{"camera":"cam-{(a + i) % 10:02d}"}}', b"", "[3,64,64]", f"d{pick[i]:03d}", p[i].tobytes(),
                 ("cat", "dog", "empty")[int(p[i].argmax())], 12.5, summ[i]) for i in range(k)]
        fb = [(f"r{a + i:09d}", 0, T0 + (a + i) * dt + 3600, ("cat", "dog", "empty")[i % 3], "api") for i in np.flatnonzero(lab)]
        with db:
            db.executemany(INSERT, rows)
            db.executemany("INSERT INTO feedback VALUES (?,?,?,?,?)", fb)
        labelled += len(fb)
        if a // block % 20 == 0: print(f"  log: {a + k:,} of {n:,} rows", file=sys.stderr, flush=True)
    db.close()
    return {"rows": n, "labelled": labelled, "log_mb": round(path.stat().st_size / 2**20, 1)}


READER = r"""
import json, resource, sys, time, numpy as np
from mlops_nb.core.reference import build
from mlops_nb.monitor.windows import Window, figures, FIELDS
engine, log, archive, max_mb, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
sys.path.insert(0, sys.argv[6]); from fleet import frames
x = frames(2000, (3, 64, 64), seed=7)                  # a validation split's worth: about 1,600 distinct values a feature
ref = build(x, np.arange(2000) % 3, np.random.default_rng(0).normal(0, 1, (2000, 3)), ["cat", "dog", "empty"])
del x
hwm = lambda: int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
base = hwm()
t = time.perf_counter()
w = Window(ref, 0, 2e9)
if engine == "sqlite":
    from mlops_nb.core.predlog import chunks
    it, fl = chunks(log, "camera-cnn", 0, limit, max_bytes=max_mb << 20), None
else:
    from mlops_nb.core.archive import Fleet
    fl = Fleet(archive, memory_mb=max_mb, cache=archive + "-cache")
    it = fl.chunks("camera-cnn", 0, limit, max_bytes=max_mb << 20, fields=FIELDS)   # the columns `monitor` reads
for c in it: w.add(c)
figures(w)
n, lab = w.rows, w.labelled + w.unknown_labels     # what `monitor` counts (no loop over the rows of its own)
if fl is not None: fl.close()
print(json.dumps({"rows": n, "labelled": lab, "seconds": time.perf_counter() - t, "base_mb": base, "peak_mb": hwm()}))
"""


def read(engine: str, log: Path, archive: Path, memory_mb: int, until: float) -> dict:
    r = subprocess.run([sys.executable, "-c", READER, engine, str(log), str(archive), str(memory_mb), str(until),
                        str(Path(__file__).parent)], capture_output=True, text=True, env={**os.environ, "MLOPS_NB_CORE_LEASE": "off"})
    if r.returncode: raise SystemExit(f"the {engine} reader failed: {r.stderr[-2000:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    out = {"engine": engine, "rows": d["rows"], "labelled": d["labelled"], "rows_per_s": round(d["rows"] / d["seconds"]),
           "seconds": round(d["seconds"], 1), "peak_mb": round(d["peak_mb"], 1), "base_mb": round(d["base_mb"], 1), "memory_mb": memory_mb}
    print(f"  {engine:6s} over {d['rows']:,} rows: {out['rows_per_s']:,} rows/s, peak {out['peak_mb']:,.0f} MB "
          f"(before reading {out['base_mb']:,.0f} MB)", file=sys.stderr, flush=True)
    return out


def lake(n: int, tmp: Path) -> dict:
    "Ingest `n` frames from a local folder and from the same objects in moto's S3 server: images/s, first and again."
    import io, shutil, socket, urllib.request
    from mlops_nb.build.frames import make_frame, CLASSES
    from mlops_nb.build.data import ingest
    from mlops_nb.core.store import Store
    with socket.socket() as sk: sk.bind(("127.0.0.1", 0)); port = sk.getsockname()[1]
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    os.environ.update(env)
    srv = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try: urllib.request.urlopen(env["AWS_ENDPOINT_URL"] + "/moto-api/", timeout=1); break
            except OSError: time.sleep(0.1)
        import s3fs
        fs = s3fs.S3FileSystem(skip_instance_cache=True); fs.mkdir("lake")
        root = tmp / "frames"
        for i in range(n):
            c = CLASSES[i % 3]; (root / c).mkdir(parents=True, exist_ok=True)
            b = io.BytesIO(); make_frame(c, 3, i, 160).save(b, "JPEG", quality=90)
            (root / c / f"{i:06d}.jpg").write_bytes(b.getvalue())
        fs.put(str(root) + "/", "lake/frames/", recursive=True)
        keys, t = sorted(fs.find("lake/frames")), time.perf_counter()
        for i in range(0, len(keys), 64): fs.cat(keys[i:i + 64])          # what the server gives: the ceiling of any client
        out = {"frames": n, "s3_raw_fetch_per_s": round(len(keys) / (time.perf_counter() - t))}
        print(f"  raw fetch from the server: {out['s3_raw_fetch_per_s']:,} objects/s", file=sys.stderr, flush=True)
        for where, src in (("local", f"imagefolder:{root}"), ("s3", "imagefolder:s3://lake/frames")):
            store = Store(tmp / f"store-{where}")
            for run in ("first", "again"):
                t = time.perf_counter(); r = ingest(src, tmp / f"ds-{where}-{run}", 64, "RGB", store=store, workers=2)
                s = time.perf_counter() - t
                out[f"{where}_{run}_per_s"], out[f"{where}_digests"] = round(n / s), r.manifest["digests"]
                print(f"  ingest {where:5s} {run:5s}: {n / s:,.0f} images/s ({r.stats['decoded']:,} decoded)", file=sys.stderr, flush=True)
            shutil.rmtree(tmp / f"store-{where}", ignore_errors=True)
        assert out["local_digests"] == out["s3_digests"], "the bucket and the folder gave different datasets"
        return {k: v for k, v in out.items() if not k.endswith("digests")} | {"same_dataset": True}
    finally: srv.terminate(); srv.wait(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="predictions in the log (default: %(default)s)")
    ap.add_argument("--memory-mb", type=int, default=256, help="[monitor] memory_mb for both readers (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=2000, help="frames ingested from a folder and from S3 (default: %(default)s)")
    ap.add_argument("--parts", default="monitor,lake", help="what to measure: monitor (log, roll, readers), lake (ingest); default: %(default)s")
    ap.add_argument("--quick", action="store_true", help="200,000 rows and 150 frames: a smoke test of this script")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--tmp", help="a folder for the log and the archive (default: a temporary one; 10 million rows take about 12 GB)")
    ap.add_argument("--keep", help="a folder to keep the log and the archive in and to reuse them from (when made for "
                                   "the same --rows): the readers measured again without making 10 million rows again")
    a = ap.parse_args()
    if a.quick: a.rows, a.frames = 200_000, 150
    if a.rows < 10_000: ap.error("--rows must be at least 10000")
    parts = set(a.parts.split(","))
    if not parts <= {"monitor", "lake"}: ap.error(f"--parts {a.parts}: monitor, lake")
    out = {"quick": a.quick, "rows": a.rows, "frames": a.frames}
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        tmp = Path(tmp)
        if "monitor" in parts: out.update(monitor_part(a, tmp))
        if "lake" in parts: out["lake"] = lake(a.frames, tmp)
    print(json.dumps(out, indent=2))
    if a.json: Path(a.json).write_text(json.dumps(out, indent=2))


def make_and_roll(rows: int, log: Path, archive: Path) -> tuple:
    "The log of `rows` predictions, rolled into `archive`: what each took."
    from mlops_nb.core.archive import roll
    t = time.perf_counter(); made = make_log(log, rows); made["seconds"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter(); got = roll(log, archive, "bench-1", batch=200_000); s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in archive.rglob("*.parquet"))
    rolled = {"rows": got["predictions"] + got["feedback"], "segments": got["segments"], "rows_per_s": round((got["predictions"] + got["feedback"]) / s),
              "seconds": round(s, 1), "bytes_a_prediction": round(size / rows, 1)}
    return made, rolled


def monitor_part(a, tmp: Path) -> dict:
    "The log, the roll and the readers (see the top of this file)."
    keep = Path(a.keep) / f"rows-{a.rows}" if a.keep else None
    log, archive = (keep or tmp) / "predictions.db", (keep or tmp) / "archive"
    if keep is not None and (keep / "made.json").is_file():
        made, rolled = json.loads((keep / "made.json").read_text())
        print(f"  reusing the log and the archive in {keep}", file=sys.stderr, flush=True)
    else:
        if keep is not None: shutil.rmtree(keep, ignore_errors=True); keep.mkdir(parents=True)
        made, rolled = make_and_roll(a.rows, log, archive)
        if keep is not None: (keep / "made.json").write_text(json.dumps([made, rolled]))
    shutil.rmtree(f"{archive}-cache", ignore_errors=True)     # the first DuckDB read checks every segment (and remembers)
    print(f"  roll: {rolled['rows_per_s']:,} rows/s into {rolled['segments']} segments, {rolled['bytes_a_prediction']} bytes a prediction",
          file=sys.stderr, flush=True)
    quarter = T0 + 7 * 86400 / 4
    monitor = [read(e, log, archive, a.memory_mb, u) for u in (quarter, 2e9) for e in ("sqlite", "duckdb")]
    for u in range(2):
        sq, dk = monitor[2 * u], monitor[2 * u + 1]
        assert (sq["rows"], sq["labelled"]) == (dk["rows"], dk["labelled"]), (sq, dk)
    if keep is None:
        for p in (log, archive): shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
    return {"log": made, "roll": rolled, "monitor": monitor, "speedup": round(monitor[3]["rows_per_s"] / monitor[2]["rows_per_s"], 2)}


if __name__ == "__main__":
    main()
