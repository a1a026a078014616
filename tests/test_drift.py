"""The drift statistics at the size a monitor meets: bench/drift.py's smoke run (its own check against scipy)."""
import json, os, subprocess, sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "drift.py"


def test_the_drift_bench_runs(tmp_path):
    "bench/drift.py --quick (20,000 rows, no Evidently): exit 0, D and p-values equal scipy's, memory flat, drift found."
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(out)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "WANDB_MODE": "disabled"})
    assert p.returncode == 0, p.stderr + p.stdout
    r = json.loads(out.read_text())
    assert r["scipy_max_abs_diff"] <= 1e-9 and len(r["scipy_features"]) == 4
    assert r["ours_20000_seconds"] > 0 and r["ours_20000_peak_mb"] < r["ours_5000_peak_mb"] + 20
    assert 0.2 <= r["drifted_share"] <= 0.35          # the shifted quarter of the features, and hardly any other
    assert "ks_2samp" in p.stdout and "ok" in p.stdout
