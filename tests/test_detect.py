"""The detection bench's quick run (bench/detect.py --quick): the monitor's drift verdict on clean windows of 10
predictions no longer alerts every time, and shifts are still caught."""
import json, os, subprocess, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_detection_run(tmp_path):
    out = tmp_path / "detect.json"
    p = subprocess.run([sys.executable, str(REPO / "bench" / "detect.py"), "--quick", "--json", str(out), "--plot", str(tmp_path / "p.png")],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "WANDB_MODE": "disabled"})
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads(out.read_text())["families"]["digits"]
    rate = {(r["pool"], r["n"]): r["rates"] for r in d["table"]}
    assert rate[("clean", 10)]["before"] == 1.0                 # effect sizes alone: PSI on 10 rows is over 0.2 by chance
    assert rate[("clean", 10)]["overall"] <= 0.15 and rate[("clean", 100)]["overall"] <= 0.15, rate
    for shift in ("noise", "blur", "rotate", "brightness"):
        assert rate[(f"{shift} medium", 100)]["overall"] >= 0.9, (shift, rate[(f"{shift} medium", 100)])
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert "| digits | rows | input drift |" in p.stdout
