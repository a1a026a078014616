"""The prediction log's commits as it grows: request ids the service makes (time-ordered, UUIDv7 layout) against random ones.

Every prediction row is indexed by its request id (feedback joins by it). A random id lands the insert at a random
page of that index, so once the index outgrows SQLite's page cache each commit touches pages all over the file; a
time-ordered id lands it at the end. This writes --rows one-row predictions into a fresh log through `PredictionLog`
(the service's writer: `add`, then `flush`, timing each commit of --chunk rows) once with each kind of id, and
reports the median commit time over the first ten and the last ten chunks. The two kinds alternate over --repeat runs
(medians). A commit that takes longer than the rows it holds took to arrive is a backlog held in memory.

    python bench/log_ids.py [--rows 500000] [--chunk 5000] [--repeat 3] [--quick] [--json FILE]
"""
import argparse, json, os, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np

KINDS = {"ordered": "the service's ids (time-ordered)", "random": "random ids (os.urandom(16).hex(), as uuid4)"}


def one_run(kind: str, rows: int, chunk: int, tmp: Path) -> dict:
    "Fill a fresh log with `rows` one-row predictions of `kind` ids: the commit times (ms) of each chunk, and the file size."
    from mlops_nb.deploy.inputs import new_request_id
    from mlops_nb.core.predlog import PredictionLog
    make = new_request_id if kind == "ordered" else (lambda: os.urandom(16).hex())
    path = tmp / f"{kind}.db"
    for sfx in ("", "-wal", "-shm"): Path(f"{path}{sfx}").unlink(missing_ok=True)
    log = PredictionLog(path, flush_ms=10_000)                  # commits only when flushed: one commit per chunk, timed
    x, p, ident = np.zeros((1, 1, 8, 8), np.uint8), np.full((1, 10), 0.1, np.float32), ("digits-cnn", 1, "sha256:" + "0" * 64)
    ms = []
    try:
        for _ in range(rows // chunk):
            for _ in range(chunk): log.add(make(), ident, x, p, ["3"], 0.5, "/v1/predict")
            t0 = time.perf_counter()
            if not log.flush(120): raise SystemExit(f"the log did not commit {chunk} rows within 120 s")
            ms.append((time.perf_counter() - t0) * 1000)
    finally: log.close()
    return {"ms": ms, "mb": path.stat().st_size / 2**20}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500_000, help="rows written with each kind of id (default: %(default)s)")
    ap.add_argument("--chunk", type=int, default=5000, help="rows per commit (default: %(default)s, the writer's chunk_rows)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each kind (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="100,000 rows in chunks of 2,500, one run: a smoke test of this script")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    a = ap.parse_args()
    if a.quick: a.rows, a.chunk, a.repeat = 100_000, 2500, 1
    if a.chunk < 1 or a.rows < 20 * a.chunk: ap.error("--rows must be at least 20 chunks (the first ten and the last ten are compared)")
    runs = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeat):
            for kind in (KINDS if i % 2 == 0 else list(KINDS)[::-1]):       # alternate which kind runs first
                runs[kind].append(one_run(kind, a.rows, a.chunk, Path(tmp)))
                print(f"  {kind:8s} run {i + 1}: first chunks {statistics.median(runs[kind][-1]['ms'][:10]):.1f} ms, "
                      f"last {statistics.median(runs[kind][-1]['ms'][-10:]):.1f} ms", file=sys.stderr, flush=True)
    med = lambda kind, sl: statistics.median(statistics.median(r["ms"][sl]) for r in runs[kind])
    out = {"rows": a.rows, "chunk": a.chunk, "repeat": a.repeat, "quick": a.quick,
           **{f"{k}_{w}_ms": round(med(k, sl), 2) for k in KINDS for w, sl in (("first", slice(0, 10)), ("last", slice(-10, None)))},
           **{f"{k}_mb": round(statistics.median(r["mb"] for r in runs[k]), 1) for k in KINDS}}
    out["ratio_last"] = out["random_last_ms"] / out["ordered_last_ms"]
    print(f"commit of {a.chunk:,} rows, median of {a.repeat} runs of {a.rows:,} rows:")
    for k, what in KINDS.items():
        print(f"  {what}: {out[f'{k}_first_ms']:.1f} ms at the start, {out[f'{k}_last_ms']:.1f} ms by {a.rows:,} rows ({out[f'{k}_mb']} MB)")
    print(f"  random ids cost {out['ratio_last']:.2f}x the service's ids by the end")
    if a.json: Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
