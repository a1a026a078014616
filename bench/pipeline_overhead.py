"""Notebook overhead: the cold pipeline through `mlops-nb run` against the same stage functions in one plain process.

Both sides start a fresh process (so both pay their imports), use the same profile's parameters and write
to a throw-away workbook; they alternate, and the medians of --repeat runs are compared. W&B is disabled on
both sides unless --wandb says otherwise: this measures what papermill, kernels and reports add. A third side,
`mlops-nb run` with `[run] fork_kernels = false` (every kernel started cold, importing torch itself), shows what
forking kernels from one process buys.

    python bench/pipeline_overhead.py [--profile default] [--repeat 3] [--wandb disabled] [--quick] [--json FILE]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
from mlops_nb.core.config import scratch_settings

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PLAIN = r'''
import json, sys, tempfile
from pathlib import Path
from mlops_nb.core.config import load_settings
from mlops_nb.pipeline.runner import stage_params
from mlops_nb.core.params import resolve_params
from mlops_nb.core.store import Store
from mlops_nb.build.data import ingest, load_dataset
from mlops_nb.build.train import search
from mlops_nb.build.model import save_checkpoint, load_checkpoint
from mlops_nb.build.evaluate import evaluate
import torch
s = load_settings(); torch.set_num_threads(s.torch_threads)
p = resolve_params(stage_params(s), s.profiles[sys.argv[1]])
store, work = Store(s.store), Path(tempfile.mkdtemp())
r = ingest(out_dir=work, store=store, **p["ingest"])
d = store.put_file(r.path)
ds = load_dataset(store.path(d), store)
res = search(ds, **p["train"])
m = store.put_file(save_checkpoint(res.model, res.hparams, ds.classes, work/"model.pt"))
model, _, _ = load_checkpoint(store.path(m))
ev = evaluate(ds, model)
(work/"metrics.json").write_text(json.dumps(ev.to_json()))
mt = store.put_file(work/"metrics.json")
from mlops_nb.build.package import package
from mlops_nb.build.registry import registry_for, model_name_for
pk = package(ds, model, ds.classes, ev.to_json(), {"source": r.manifest["source"], "dataset": d, "checkpoint": m, "metrics": mt},
             work, tol=p["package"]["parity_tol"], threads=s.torch_threads, measure_latency=p["package"]["latency"])
b = store.put_file(pk.path)
reg = registry_for(s)
name = p["register"]["model_name"] or model_name_for(r.manifest["source"])
v = reg.register(name, b, ev.metrics, "plain", parity_passed=True)
reg.set_alias(name, p["register"]["alias"], v, why="plain")
from mlops_nb.deploy.apptest import run_apptest, record
rep = run_apptest(s, f"{name}@{v}", work/"apptest", p["apptest"], log=lambda *a: None)
record(s, rep)
print(json.dumps({"test/accuracy": ev.metrics["test/accuracy"], "train/weights": res.trials[res.best]["weights"]}))
'''


def workbook(root: Path, fork: bool = True) -> Path:
    "A throw-away workbook under `root`; `fork` False: its kernels start cold (`[run] fork_kernels = false`)."
    settings = scratch_settings(root, REPO/"settings.ini")
    if not fork:
        import configparser
        cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
        cp.read(settings); cp["run"]["fork_kernels"] = "false"
        with open(settings, "w") as f: cp.write(f)
    return settings


def timed(cmd, env):
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode: sys.exit(f"{cmd[:2]} failed:\n{p.stderr[-2000:]}")
    return time.perf_counter() - t, p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", help="run profile from settings.ini (default: default; smoke with --quick)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side (default: %(default)s)")
    ap.add_argument("--wandb", default="disabled", choices=["disabled", "offline"], help="W&B mode for both sides")
    ap.add_argument("--quick", action="store_true", help="the smoke profile, one run of each side: a smoke test of this script")
    ap.add_argument("--json", help="also write the medians to this JSON file")
    a = ap.parse_args()
    if a.quick: a.repeat = 1
    a.profile = a.profile or ("smoke" if a.quick else "default")
    nb_times, cold_times, py_times = [], [], []
    for i in range(a.repeat):
        for fork, times in ((True, nb_times), (False, cold_times)):
            with tempfile.TemporaryDirectory() as tmp:
                env = {**os.environ, "MLOPS_NB_SETTINGS": str(workbook(Path(tmp), fork)), "WANDB_MODE": a.wandb}
                times.append(timed([str(BIN/"mlops-nb"), "run", "-q", "--profile", a.profile], env)[0])
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "MLOPS_NB_SETTINGS": str(workbook(Path(tmp))), "WANDB_MODE": a.wandb}
            t_py, out = timed([sys.executable, "-c", PLAIN, a.profile], env)
        py_times.append(t_py)
        print(f"run {i+1}/{a.repeat}: mlops-nb run {nb_times[-1]:6.2f} s   kernels started cold {cold_times[-1]:6.2f} s   "
              f"plain python {t_py:6.2f} s   ({json.loads(out)['test/accuracy']:.4f})", flush=True)
    mn, mc, mp = statistics.median(nb_times), statistics.median(cold_times), statistics.median(py_times)
    print(f"\nprofile {a.profile}, W&B {a.wandb}, median of {a.repeat}:")
    from mlops_nb.pipeline.runner import STAGES
    print(f"  mlops-nb run (papermill, {len(STAGES)} kernels forked, HTML reports): {mn:.2f} s")
    print(f"  mlops-nb run, kernels started cold (fork_kernels = false):  {mc:.2f} s")
    print(f"  same stage functions, one plain process:                    {mp:.2f} s")
    print(f"  ratio: {mn/mp:.2f}  (goal <= 1.3; cold kernels: {mc/mp:.2f})")
    if a.json:
        Path(a.json).write_text(json.dumps({"profile": a.profile, "repeat": a.repeat, "wandb": a.wandb, "quick": a.quick,
                                            "stages": len(STAGES), "mlops_nb_s": mn, "cold_kernels_s": mc, "plain_s": mp, "ratio": mn / mp,
                                            "goal": 1.3, "mlops_nb_runs_s": nb_times, "cold_kernels_runs_s": cold_times,
                                            "plain_runs_s": py_times}, indent=2))


if __name__ == "__main__":
    main()
