"""ONNX Runtime vs torch eager latency of the registered model, at batch 1, 32 and 512.

Reads the workbook's registry (run `make run` first, or pass --settings), loads the version's bundle and the
checkpoint it came from, and times both side by side (same thread count) --repeat times; prints the median of each figure.

    python bench/onnx_latency.py [--model NAME@ALIAS] [--settings FILE] [--repeat 5] [--quick] [--json FILE]
"""
import argparse, json, statistics, tempfile
from pathlib import Path
import numpy as np
from mlops_nb.core.config import load_settings
from mlops_nb.build.data import load_dataset
from mlops_nb.build.model import load_checkpoint
from mlops_nb.build.package import latency
from mlops_nb.build.registry import registry_for
from mlops_nb.deploy.served import pick


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="registry reference (default: what `mlops-nb serve` picks: production, else staging, else the latest)")
    ap.add_argument("--settings", help="the workbook's settings.ini (default: found as mlops-nb finds it)")
    ap.add_argument("--repeat", type=int, default=5, help="measurements of each figure (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="one measurement in a 0.5 s budget: a smoke test of this script")
    ap.add_argument("--json", help="also write the medians to this JSON file")
    a = ap.parse_args()
    budget = 0.5 if a.quick else 3.0
    if a.quick: a.repeat = 1
    s = load_settings(a.settings); reg = registry_for(s)
    v = pick(reg, a.model)
    ref = a.model if a.model and "@" in a.model else f"{v['name']}@{v['version']}"
    b = reg.load(f"{v['name']}@{v['version']}")
    net, _, _ = load_checkpoint(reg.store.path(b.lineage["checkpoint"]))
    x, _ = load_dataset(reg.store.path(b.lineage["dataset"]), reg.store).part("test")
    x = np.asarray(x)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp)/"model.onnx").write_bytes(b.onnx)
        runs = [latency(net, Path(tmp)/"model.onnx", x, budget_s=budget, threads=s.torch_threads) for _ in range(a.repeat)]
    print(f"{ref}, {s.torch_threads} threads, median of {a.repeat}:")
    print("  batch  torch ms  ORT ms  ORT speed-up")
    rows = []
    for i, row in enumerate(runs[0]):
        med = lambda k: statistics.median(r[i][k] for r in runs)
        rows.append({"batch": row["batch"], **{k: med(k) for k in ("torch_ms", "ort_ms", "ort_speedup")}})
        print(f"  {row['batch']:>5}  {med('torch_ms'):8.3f}  {med('ort_ms'):6.3f}  {med('ort_speedup'):.1f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": ref, "threads": s.torch_threads, "repeat": a.repeat, "quick": a.quick,
                                            "budget_s": budget, "batches": rows}, indent=2))


if __name__ == "__main__":
    main()
