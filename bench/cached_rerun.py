"""Cached re-run: `mlops-nb run` when nothing changed, after one cold run, in a throw-away workbook.

Every stage should come from the cache (no kernel started); prints the cold time and the median of the re-runs.

    python bench/cached_rerun.py [--profile default] [--repeat 5] [--quick] [--json FILE]
"""
import argparse, json, os, statistics, sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from pipeline_overhead import BIN, timed, workbook


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", help="run profile from settings.ini (default: default; smoke with --quick)")
    ap.add_argument("--repeat", type=int, default=5, help="cached re-runs to time (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="the smoke profile, one re-run: a smoke test of this script")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    a = ap.parse_args()
    if a.quick: a.repeat = 1
    a.profile = a.profile or ("smoke" if a.quick else "default")
    with tempfile.TemporaryDirectory() as tmp:
        settings = workbook(Path(tmp))
        env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
        cmd = [str(BIN/"mlops-nb"), "run", "-q", "--profile", a.profile]
        cold, _ = timed(cmd, env)
        times = []
        for _ in range(a.repeat):
            t, out = timed(cmd, env)
            rec = json.loads((Path(tmp)/"runs"/out.split()[0]/"run.json").read_text())
            assert all(s["cached"] for s in rec["stages"]), "a stage was executed: the cache missed"
            times.append(t)
    print(f"profile {a.profile}: cold run {cold:.2f} s; cached re-run median {statistics.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}, n={a.repeat}; goal < 1 s, no kernel started)")
    if a.json:
        Path(a.json).write_text(json.dumps({"profile": a.profile, "repeat": a.repeat, "quick": a.quick, "cold_s": cold,
                                            "cached_median_s": statistics.median(times), "cached_min_s": min(times),
                                            "cached_max_s": max(times), "goal_s": 1.0, "cached_runs_s": times}, indent=2))


if __name__ == "__main__":
    main()
