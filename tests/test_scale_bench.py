"""bench/scale.py --quick, the camera-frames-at-scale benchmark's smoke run (in `make test`: about 40 s on 2 cores):
every stage gives figures, the re-ingest decodes only the changed files, the cached frames are put back as they were;
and bench/gpu.py --quick (slow: `make test-slow`)."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "scale.py"
GPU = BENCH.with_name("gpu.py")


def test_scale_quick(tmp_path):
    out, cache = tmp_path / "s.json", tmp_path / "cache"
    p = subprocess.run([sys.executable, str(BENCH), "--quick", "--cache", str(cache), "--json", str(out)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "MLOPS_NB_CORE_LEASE": "off"})   # no turn-taking with other runs: a smoke test
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["quick"] and d["sizes"] == [300] and d["px"] == [32]
    (ing,) = d["ingest"]
    assert ing["n"] == 300 and ing["images_s"] > 0 and 50 < ing["peak_mb"] < 4000
    assert ing["changed"] == 3 and ing["reingest_decoded"] == 3              # the stat cache: only the rewritten files decoded again
    assert d["train"]["arch"] == "convnet" and d["train"]["train_images"] == 240 and d["train"]["peak_mb"] > ing["peak_mb"] / 2
    (acc,) = d["accuracy"]
    assert acc["arch"] == "convnet" and 0 <= acc["test_acc"] <= 1 and acc["weights"] == "random init"
    s = d["scoring"]
    assert s["images"] == s["rows_written"] == 500 and s["bare_s"] > 0 and 0 < s["cli_share"] < s["library_share"]
    from mlops_nb.build.frames import frame_bytes
    first = cache / "frames-n300-px32-seed0" / "cat" / "cat_000000.jpg"              # rewritten for the re-ingest, then put back
    assert first.read_bytes() == frame_bytes("cat", 0, 0, 32) and (cache / "frames-n300-px32-seed0.done").exists()
    assert not (cache / "frames-n300-px32-seed0.changing").exists()
    assert "load average" in p.stdout                                            # the load it ran under, said


@pytest.mark.slow
def test_gpu_quick(tmp_path):
    "bench/gpu.py --quick: CPU figures always; the GPU's when torch sees one, else said skipped and `gpu: null`."
    import torch
    p = subprocess.run([sys.executable, str(GPU), "--quick", "--json", str(tmp_path / "g.json")], capture_output=True, text=True,
                       timeout=300, cwd=GPU.parents[1])
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads((tmp_path / "g.json").read_text())
    assert d["quick"] and d["px"] == 64 and d["cpu_images_s"] > 0 and d["cpu_name"]
    if torch.cuda.is_available(): assert d["gpu"]["images_s"]["32"] > 0
    else: assert d["gpu"] is None and "GPU: skipped" in p.stdout
