"""Concurrent runs: two `mlops-nb run` side by side against one alone, wall time and train-stage time.

Each run gets its own throw-away workbook and --force, so nothing is cached. On a machine with C cores where
each run's training uses T threads, two runs share the cores: a slowdown of about 2x (each gets half the
cores) is proportional; far more means they fight (threads oversubscribed, OpenMP spin-waiting).

    python bench/concurrent_runs.py [--profile default] [--repeat 2] [--timeout 900] [--quick] [--json FILE]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
from mlops_nb.core.config import scratch_settings

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def start(tmp: Path, profile: str):
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(scratch_settings(tmp, REPO/"settings.ini")), "WANDB_MODE": "disabled"}
    return subprocess.Popen([str(BIN/"mlops-nb"), "run", "-q", "--force", "--profile", profile], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def finish(p, tmp: Path, t0: float, timeout: float):
    "(wall seconds, train-stage seconds) of a run started at t0."
    try: out, err = p.communicate(timeout=max(1, timeout - (time.perf_counter() - t0)))
    except subprocess.TimeoutExpired:
        p.kill(); p.communicate(); return float("inf"), float("inf")
    wall = time.perf_counter() - t0
    if p.returncode: sys.exit(f"mlops-nb run failed:\n{err[-2000:]}")
    rec = json.loads((tmp/"runs"/out.split()[0]/"run.json").read_text())
    return wall, next(st["seconds"] for st in rec["stages"] if st["name"] == "train")


def side_by_side(n: int, profile: str, timeout: float):
    with tempfile.TemporaryDirectory() as d:
        tmps = [Path(d)/f"wb{i}" for i in range(n)]
        t0 = time.perf_counter()
        ps = [start(t, profile) for t in tmps]
        return [finish(p, t, t0, timeout) for p, t in zip(ps, tmps)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", help="run profile from settings.ini (default: default; smoke with --quick)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of (one alone, two side by side) (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds a round may take before it is killed (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="the smoke profile, one round: a smoke test of this script")
    ap.add_argument("--json", help="also write the medians to this JSON file")
    a = ap.parse_args()
    if a.quick: a.repeat = 1
    a.profile = a.profile or ("smoke" if a.quick else "default")
    alone, two = [], []
    for i in range(a.repeat):
        alone += side_by_side(1, a.profile, a.timeout)
        two += side_by_side(2, a.profile, a.timeout)
        print(f"round {i+1}/{a.repeat}: alone wall {alone[-1][0]:.1f} s (train {alone[-1][1]:.1f} s)   two side by side: "
              + ", ".join(f"wall {w:.1f} s (train {t:.1f} s)" for w, t in two[-2:]), flush=True)
    med = lambda xs: statistics.median(xs)
    aw, at = med([w for w, _ in alone]), med([t for _, t in alone])
    tw, tt = med([w for w, _ in two]), med([t for _, t in two])
    print(f"\nprofile {a.profile}, {os.cpu_count()} cores, medians of {a.repeat} rounds:")
    print(f"  one run alone:            wall {aw:7.1f} s   train stage {at:7.1f} s")
    print(f"  each of two side by side: wall {tw:7.1f} s   train stage {tt:7.1f} s")
    print(f"  slowdown: wall {tw/aw:.2f}x   train {tt/at:.2f}x   (two runs sharing the cores: about 2x is proportional)")
    if a.json:
        Path(a.json).write_text(json.dumps({"profile": a.profile, "repeat": a.repeat, "quick": a.quick, "cores": os.cpu_count(),
                                            "alone_wall_s": aw, "alone_train_s": at, "two_wall_s": tw, "two_train_s": tt,
                                            "slowdown_wall": tw / aw, "slowdown_train": tt / at}, indent=2))


if __name__ == "__main__":
    main()
