"""ONNX Runtime vs torch eager latency of the registered model, at batch 1, 32 and 512.

Reads the workbook's registry (run `make run` first), loads the version's bundle and the checkpoint it came
from, and times both side by side (same thread count) --repeat times; prints the median of each figure.

    python bench/onnx_latency.py [--model digits-cnn@staging] [--repeat 5]
"""
import argparse, statistics, tempfile
from pathlib import Path
from mlops_nb.config import load_settings
from mlops_nb.data import load_dataset
from mlops_nb.model import load_checkpoint
from mlops_nb.package import latency
from mlops_nb.registry import registry_for


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits-cnn@staging", help="registry reference (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=5, help="measurements of each figure (default: %(default)s)")
    a = ap.parse_args()
    s = load_settings(); reg = registry_for(s)
    b = reg.load(a.model)
    net, _, _ = load_checkpoint(reg.store.path(b.lineage["checkpoint"]))
    x, _ = load_dataset(reg.store.path(b.lineage["dataset"])).part("test")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp)/"model.onnx").write_bytes(b.onnx)
        runs = [latency(net, Path(tmp)/"model.onnx", x, budget_s=3.0, threads=s.torch_threads) for _ in range(a.repeat)]
    print(f"{a.model}, {s.torch_threads} threads, median of {a.repeat}:")
    print("  batch  torch ms  ORT ms  ORT speed-up")
    for i, row in enumerate(runs[0]):
        med = lambda k: statistics.median(r[i][k] for r in runs)
        print(f"  {row['batch']:>5}  {med('torch_ms'):8.3f}  {med('ort_ms'):6.3f}  {med('ort_speedup'):.1f}x")


if __name__ == "__main__":
    main()
