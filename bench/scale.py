"""Ingest, training and batch scoring of camera-like frames as the dataset grows.

Generates the frames itself (mlops_nb.build.frames.make_frames; kept under --cache so a second run does not draw 100,000 frames
again) and measures each stage in a fresh subprocess, so its peak memory is its own (the resident memory of the process
and its children summed, sampled every 50 ms): ingest (`mlops_nb.build.data.ingest`, every core) at each --sizes and --px,
then a re-ingest after 1% of the files changed; one training epoch of --train-arch at the largest size (streamed from
the shards); the test accuracy of convnet, mobilenet_v3_small and resnet18 (random init: no pretrained weights are
fetched), each trained with the README image recipe's parameters (settings.ini's `images` profile), on the same
--acc-sizes frames; and `mlops-nb predict` of --score-n frames against bare `session.run` on the same decoded
batches. Figures are medians of --repeat runs, side by side in one run.

    python bench/scale.py [--sizes 3000,30000,100000] [--px 64,128] [--repeat 3] [--cache DIR] [--quick] [--json FILE]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACC_ARCHS = ("convnet", "mobilenet_v3_small", "resnet18")
AIMS = {"peak_mb": 1536.0, "ingest_images_s": 300.0, "reingest_ratio": 0.05, "predict_share": 0.70}
CLASSES = ("cat", "dog", "empty")


def ints(v: str) -> list: return [int(x) for x in v.split(",") if x.strip()]
def med(xs): return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- the stages, each run in its own process

def stage_ingest(a: dict) -> dict:
    "Ingest an image folder; its seconds leave out any wait for cores other runs held (mlops_nb.core.cores), as training's do."
    from mlops_nb.core import cores
    from mlops_nb.build.data import ingest
    from mlops_nb.core.store import Store
    t, w0 = time.perf_counter(), cores.waited()
    r = ingest(f"imagefolder:{a['folder']}", a["out"], image_size=a["px"], mode="RGB", store=Store(a["store"]), workers=0)
    waited = cores.waited() - w0
    s = time.perf_counter() - t - waited
    return {"seconds": s, "waited_s": waited, "images": len(r.dataset.y), "images_s": len(r.dataset.y) / s, "stats": r.stats,
            "dataset": str(r.path)}


def _dataset(a):
    from mlops_nb.build.data import load_dataset
    from mlops_nb.core.store import Store
    return load_dataset(a["dataset"], Store(a["store"]))


def stage_train(a: dict) -> dict:
    from mlops_nb.build.evaluate import evaluate
    from mlops_nb.build.train import Recipe, search
    ds = _dataset(a)
    res = search(ds, lr=(a.get("lr", 3e-3),), channels=(a.get("channels", 16),), epochs=(a["epochs"],), batch_size=(a.get("batch_size", 64),),
                 recipe=Recipe(arch=a["arch"], flip=a.get("flip", False)))
    t = res.trials[res.best]
    out = {"arch": a["arch"], "epochs": a["epochs"], "seconds": t["seconds"], "images_s": t["images_per_s"], "val_acc": t["val/acc"],
           "train_images": int((ds.split == 0).sum()), "device": t["device_name"]}
    if a.get("evaluate"): out["test_acc"] = evaluate(ds, res.model).metrics["test/accuracy"]
    return out


def stage_register(a: dict) -> dict:
    "A bundle of an untrained `arch` for frames of `px`, registered as camera@1 in the scratch workbook `settings`."
    import numpy as np
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.data import Dataset
    from mlops_nb.core.images import decode_image
    from mlops_nb.build.model import Classifier
    from mlops_nb.build.package import package
    from mlops_nb.build.registry import registry_for
    files = sorted(Path(a["folder"]).rglob("*.jpg"))[:240]
    x = np.stack([decode_image(f.read_bytes(), a["px"], "RGB")[0] for f in files])
    y = np.array([CLASSES.index(f.parent.name) for f in files])
    ds = Dataset(x, y, (np.arange(len(y)) % 3).astype(np.uint8), list(CLASSES))
    import torch; torch.manual_seed(0)
    net = Classifier(a["arch"], 3, 3).eval()
    with tempfile.TemporaryDirectory() as tmp:
        p = package(ds, net, CLASSES, {"metrics": {}}, {"source": "bench/scale.py"}, tmp, measure_latency=False)
        reg = registry_for(load_settings(a["settings"]))
        v = reg.register("camera", reg.store.put_file(p.path))
    return {"model": f"camera@{v}", "arch": a["arch"]}


def stage_score(a: dict) -> dict:
    "`score_paths` (what `mlops-nb predict` runs) against bare `session.run` on the same decoded batches, one session."
    import numpy as np
    from mlops_nb.cli.serve import score_paths
    from mlops_nb.core.config import load_settings
    from mlops_nb.core.images import decode_image
    from mlops_nb.deploy.served import ServedModel
    m = ServedModel.load(load_settings(a["settings"]), a["model"]).warm_up()
    t = time.perf_counter(); rows = score_paths(m, [a["folder"]], a["batch"], progress=False); lib = time.perf_counter() - t
    files = sorted(Path(a["folder"]).rglob("*.jpg"))
    t = time.perf_counter(); x = np.stack([decode_image(f.read_bytes(), m.shape[1], "RGB")[0] for f in files]); dec = time.perf_counter() - t
    batches = [np.ascontiguousarray(x[i:i + a["batch"]]) for i in range(0, len(x), a["batch"])]
    t = time.perf_counter()
    for b in batches: m.sess.run(["probabilities"], {"image": b})
    bare = time.perf_counter() - t
    return {"images": len(files), "scored": sum(r["error"] is None for r in rows), "library_s": lib, "decode_s": dec, "bare_s": bare}


STAGES = {"ingest": stage_ingest, "train": stage_train, "register": stage_register, "score": stage_score}


def stage_main(name: str, args: str, out: str):
    import resource
    d = STAGES[name](json.loads(args))
    d["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps(d))


# ---------------------------------------------------------------- running a stage, measuring its memory

def tree_rss(proc) -> int:
    import psutil
    total = 0
    try: procs = [proc, *proc.children(recursive=True)]
    except psutil.Error: return 0
    for p in procs:
        try: total += p.memory_info().rss
        except psutil.Error: pass
    return total


def run_stage(name: str, work: Path, timeout: float = 7200, **args) -> dict:
    "Run stage `name` in a fresh Python process: its figures, plus `peak_mb` (process tree, sampled every 50 ms) and `wall_s`."
    import psutil
    out, err = work / f"stage-{name}-{time.monotonic_ns()}.json", work / "stage.err"
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    with open(err, "w") as ef:
        p = subprocess.Popen([sys.executable, __file__, "--stage", name, "--stage-args", json.dumps(args), "--stage-out", str(out)],
                             cwd=REPO, stdout=ef, stderr=ef, stdin=subprocess.DEVNULL, env=env)
        proc, peak = psutil.Process(p.pid), 0
        while p.poll() is None:
            peak = max(peak, tree_rss(proc))
            if time.perf_counter() - t0 > timeout: p.kill(); p.wait(); break
            time.sleep(0.05)
    if p.returncode != 0 or not out.exists():
        tail = [l for l in err.read_text().splitlines() if l.strip()][-1:] or ["no output"]
        raise SystemExit(f"stage {name} failed (status {p.returncode}): {tail[0]}")
    d = json.loads(out.read_text())
    d["peak_mb"] = max(peak / 2**20, d["maxrss_mb"])
    d["wall_s"] = time.perf_counter() - t0
    return d


def run_cli(args: list, settings: Path) -> float:
    "Seconds of `mlops-nb ARGS` in a scratch workbook, from process start to exit."
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
    t = time.perf_counter()
    p = subprocess.run([str(Path(sys.executable).parent / "mlops-nb"), *args], cwd=REPO, env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    s = time.perf_counter() - t
    if p.returncode: raise SystemExit(f"mlops-nb {args[0]} failed: {(p.stderr.strip().splitlines() or ['no output'])[-1]}")
    return s


# ---------------------------------------------------------------- the frames, cached

def frames(cache: Path, n: int, px: int, seed: int = 0) -> Path:
    "A folder of `n` frames of `px` (made once: a `.done` file beside it says it is complete)."
    from mlops_nb.build.frames import make_frames
    root = cache / f"frames-n{n}-px{px}-seed{seed}"
    done, dirty = root.with_name(root.name + ".done"), root.with_name(root.name + ".changing")
    if dirty.exists(): done.unlink(missing_ok=True); dirty.unlink()      # a run stopped before it put the changed files back
    if not done.exists():
        print(f"   generating {n:,} frames of {px} px into {root}", file=sys.stderr, flush=True)
        s = make_frames(root, n, px, seed=seed, force=root.exists(), progress=False)
        done.write_text(json.dumps(s))
    return root


def change_files(folder: Path, px: int, share: float = 0.01, seed: int = 1) -> dict:
    "Rewrite every 1/share-th frame with another frame of its class; returns {path: original bytes} to put back."
    from mlops_nb.build.frames import frame_bytes
    files = sorted(folder.rglob("*.jpg"))
    step = max(1, round(1 / share))
    old = {}
    folder.with_name(folder.name + ".changing").touch()                 # until they are put back: the cache is not to be trusted
    for i, f in enumerate(files[::step]):
        old[f] = f.read_bytes()
        f.write_bytes(frame_bytes(f.parent.name, seed, 10**6 + i, px))
    return old


# ---------------------------------------------------------------- the figures

def measure_ingest(a, cache: Path, work: Path) -> tuple:
    "Ingest and re-ingest figures per (px, size); the dataset and store of the largest size at the largest px, for training."
    out, keep = [], None
    for px in a.px:
        for n in a.sizes:
            folder, runs = frames(cache, n, px), []
            for r in range(a.repeat):
                store, ds_dir = work / f"store-{n}-{px}", work / f"ds-{n}-{px}"
                shutil.rmtree(store, ignore_errors=True); shutil.rmtree(ds_dir, ignore_errors=True)
                first = run_stage("ingest", work, folder=str(folder), px=px, store=str(store), out=str(ds_dir))
                old = change_files(folder, px)
                try: again = run_stage("ingest", work, folder=str(folder), px=px, store=str(store), out=str(ds_dir))
                finally:
                    for f, b in old.items(): f.write_bytes(b)
                    folder.with_name(folder.name + ".changing").unlink()
                runs.append((first, again, len(old)))
                print(f"   ingest {n:,} x {px} px: {first['seconds']:.2f} s ({first['images_s']:,.0f} images/s, peak {first['peak_mb']:,.0f} MB);"
                      f" re-ingest after {len(old)} changed: {again['seconds']:.2f} s ({again['seconds'] / first['seconds']:.1%})", flush=True)
            out.append({"n": n, "px": px, "seconds": med([f["seconds"] for f, _, _ in runs]), "images_s": med([f["images_s"] for f, _, _ in runs]),
                        "peak_mb": med([f["peak_mb"] for f, _, _ in runs]), "changed": runs[0][2],
                        "reingest_s": med([g["seconds"] for _, g, _ in runs]), "reingest_ratio": med([g["seconds"] / f["seconds"] for f, g, _ in runs]),
                        "reingest_decoded": runs[0][1]["stats"].get("decoded"), "reingest_peak_mb": med([g["peak_mb"] for _, g, _ in runs]),
                        "reingest_stats": runs[0][1]["stats"], "waited_for_cores_s": sum(f["waited_s"] + g["waited_s"] for f, g, _ in runs)})
            if px == max(a.px) and n == max(a.sizes): keep = (runs[-1][0]["dataset"], str(work / f"store-{n}-{px}"))
            else: shutil.rmtree(work / f"store-{n}-{px}", ignore_errors=True)
    return out, keep


def growth(ingest: list) -> list:
    "Between consecutive sizes at each px: how time and peak memory grew against the number of images."
    out = []
    for px in sorted({r["px"] for r in ingest}):
        rs = sorted((r for r in ingest if r["px"] == px), key=lambda r: r["n"])
        for lo, hi in zip(rs, rs[1:]):
            out.append({"px": px, "from": lo["n"], "to": hi["n"], "images": hi["n"] / lo["n"], "time": hi["seconds"] / lo["seconds"],
                        "memory": hi["peak_mb"] / lo["peak_mb"]})
    return out


def recipe(profile: str = "images") -> dict:
    "The training parameters of a settings.ini profile (the README's image recipe by default): lr, channels, batch size, flip."
    from mlops_nb.core.config import load_settings
    p = load_settings(REPO / "settings.ini").profiles[profile]
    first = lambda k, d: (p[k][0] if isinstance(p.get(k), list) else p.get(k, d))
    return {"lr": first("train.lr", 3e-3), "channels": first("train.channels", 16), "batch_size": first("train.batch_size", 64),
            "flip": bool(p.get("train.flip", False))}


def measure_accuracy(a, cache: Path, work: Path) -> list:
    "Each of --acc-archs trained with the README recipe's parameters (random init), on the same frames at each --acc-sizes."
    out, rec = [], recipe() if not a.quick else {}
    epochs = dict(zip(a.acc_sizes, a.acc_epochs + a.acc_epochs[-1:] * len(a.acc_sizes)))
    for n in a.acc_sizes:
        folder, store, ds_dir = frames(cache, n, a.acc_px), work / f"acc-store-{n}", work / f"acc-ds-{n}"
        ds = run_stage("ingest", work, folder=str(folder), px=a.acc_px, store=str(store), out=str(ds_dir))
        for arch in a.acc_archs:
            r = run_stage("train", work, dataset=ds["dataset"], store=str(store), arch=arch, epochs=epochs[n], evaluate=True, **rec)
            print(f"   accuracy {arch}, {n:,} frames of {a.acc_px} px, {epochs[n]} epoch(s): test {r['test_acc']:.3f} in {r['seconds']:.1f} s"
                  f" ({r['images_s']:,.0f} images/s, peak {r['peak_mb']:,.0f} MB)", flush=True)
            out.append({"arch": arch, "n": n, "px": a.acc_px, "epochs": epochs[n], "test_acc": r["test_acc"], "val_acc": r["val_acc"],
                        "seconds": r["seconds"], "images_s": r["images_s"], "peak_mb": r["peak_mb"], "weights": "random init", **rec})
        shutil.rmtree(store, ignore_errors=True)
    return out


def measure_scoring(a, cache: Path, work: Path) -> dict:
    from mlops_nb.core.config import scratch_settings
    folder = frames(cache, a.score_n, a.score_px)
    settings = scratch_settings(work / "workbook", REPO / "settings.ini")
    reg = run_stage("register", work, folder=str(folder), px=a.score_px, arch=a.score_arch, settings=str(settings))
    cli, runs = [], []
    for r in range(a.repeat):
        s = run_stage("score", work, folder=str(folder), settings=str(settings), model=reg["model"], batch=256)
        c = run_cli(["predict", reg["model"], str(folder), "--out", str(work / "scores.parquet")], settings)
        runs.append(s); cli.append(c)
        print(f"   scoring {s['images']:,} frames: bare session.run {s['bare_s']:.2f} s, decode alone {s['decode_s']:.2f} s, "
              f"score_paths {s['library_s']:.2f} s, `mlops-nb predict` {c:.2f} s", flush=True)
    import pyarrow.parquet as pq
    scored = pq.read_table(work / "scores.parquet").num_rows
    bare, libs = med([r["bare_s"] for r in runs]), med([r["library_s"] for r in runs])
    return {"arch": a.score_arch, "px": a.score_px, "images": runs[0]["images"], "rows_written": scored, "batch": 256,
            "bare_s": bare, "decode_s": med([r["decode_s"] for r in runs]), "library_s": libs, "cli_s": med(cli),
            "bare_images_s": runs[0]["images"] / bare, "cli_images_s": runs[0]["images"] / med(cli),
            "library_share": bare / libs, "cli_share": bare / med(cli), "peak_mb": med([r["peak_mb"] for r in runs])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=ints, default=[3000, 30000, 100000], help="images to ingest, comma-separated (default: 3000,30000,100000)")
    ap.add_argument("--px", type=ints, default=[64, 128], help="frame sizes in px, comma-separated (default: 64,128)")
    ap.add_argument("--repeat", type=int, default=3, help="measurements of each figure (default: %(default)s)")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "mlops_nb" / "bench-frames"),
                    help="where generated frame folders are kept between runs (default: %(default)s)")
    ap.add_argument("--train-arch", default="mobilenet_v3_small", help="the training figure's architecture (default: %(default)s)")
    ap.add_argument("--train-epochs", type=int, default=1, help="epochs of the training figure (default: %(default)s)")
    ap.add_argument("--acc-sizes", type=ints, default=[3000, 30000], help="frames of the accuracy figures (default: 3000,30000)")
    ap.add_argument("--acc-px", type=int, default=64, help="frame size of the accuracy figures (default: %(default)s)")
    ap.add_argument("--acc-epochs", type=ints, default=[14, 3], help="epochs of the accuracy figures at each --acc-sizes, the last "
                    "repeated (default: 14,3: the recipe's 14 at 3,000 frames, 3 at 30,000)")
    ap.add_argument("--acc-archs", default=",".join(ACC_ARCHS), help="architectures compared (default: %(default)s)")
    ap.add_argument("--score-n", type=int, default=10000, help="frames scored by `mlops-nb predict` (default: %(default)s)")
    ap.add_argument("--score-px", type=int, default=128, help="frame size of the scoring figures (default: %(default)s)")
    ap.add_argument("--score-arch", default="mobilenet_v3_small", help="the scored model, untrained (default: %(default)s)")
    ap.add_argument("--skip", default="", help="parts not to measure, comma-separated among ingest, train, accuracy, scoring")
    ap.add_argument("--quick", action="store_true", help="300 frames of 32 px, convnet only, 500 frames scored: a smoke test of this script")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--stage", help=argparse.SUPPRESS); ap.add_argument("--stage-args", help=argparse.SUPPRESS)
    ap.add_argument("--stage-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.stage: return stage_main(a.stage, a.stage_args, a.stage_out)
    if a.quick:
        a.sizes, a.px, a.repeat, a.train_arch, a.train_epochs = [300], [32], 1, "convnet", 1
        a.acc_sizes, a.acc_px, a.acc_epochs, a.acc_archs, a.score_n, a.score_px, a.score_arch = [300], 32, [1], "convnet", 500, 32, "convnet"
    a.acc_archs = [x for x in a.acc_archs.split(",") if x]
    skip = {x for x in a.skip.split(",") if x}
    if bad := skip - {"ingest", "train", "accuracy", "scoring"}: ap.error(f"--skip {','.join(sorted(bad))}: not a part of this benchmark")
    if a.repeat < 1 or not a.sizes or not a.px or min(a.sizes + a.px) < 1: ap.error("--repeat, --sizes and --px must be positive")
    cache = Path(a.cache).expanduser(); cache.mkdir(parents=True, exist_ok=True)
    import psutil
    load = os.getloadavg()[0]
    d = {"quick": a.quick, "repeat": a.repeat, "sizes": a.sizes, "px": a.px, "sizes_arg": ",".join(map(str, a.sizes)),
         "px_arg": ",".join(map(str, a.px)), "acc_sizes_arg": ",".join(map(str, a.acc_sizes)), "acc_px": a.acc_px, "acc_epochs": ",".join(map(str, a.acc_epochs)),
         "score_n": a.score_n, "skipped": sorted(skip), "cores": os.cpu_count(), "load_before": load,
         "memory_gib": psutil.virtual_memory().total / 2**30, "aims": AIMS}
    print(f"scale: {os.cpu_count()} cores, load average {load:.2f} before the run", flush=True)
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        work = Path(tmp)
        keep = None
        if "ingest" not in skip or "train" not in skip:
            d["ingest"], keep = measure_ingest(a, cache, work)
            d["growth"] = growth(d["ingest"])
        quick_acc = a.quick and "accuracy" not in skip     # --quick: one training gives both figures (same frames, arch, epochs)
        if "train" not in skip and keep:
            r = run_stage("train", work, dataset=keep[0], store=keep[1], arch=a.train_arch, epochs=a.train_epochs, evaluate=quick_acc)
            d["train"] = {**{k: r[k] for k in ("arch", "epochs", "seconds", "images_s", "peak_mb", "train_images", "device")},
                          "n": max(a.sizes), "px": max(a.px)}
            print(f"   training {a.train_arch}, {max(a.sizes):,} x {max(a.px)} px: {r['images_s']:,.0f} images/s, peak {r['peak_mb']:,.0f} MB", flush=True)
        if quick_acc and "train" in d:
            d["accuracy"] = [{"arch": r["arch"], "n": max(a.sizes), "px": max(a.px), "epochs": r["epochs"], "test_acc": r["test_acc"],
                              "val_acc": r["val_acc"], "seconds": r["seconds"], "images_s": r["images_s"], "peak_mb": r["peak_mb"],
                              "weights": "random init"}]
            print(f"   accuracy {r['arch']} (--quick: of the training above): test {r['test_acc']:.3f}", flush=True)
        elif "accuracy" not in skip: d["accuracy"] = measure_accuracy(a, cache, work)
        if "scoring" not in skip: d["scoring"] = measure_scoring(a, cache, work)
    d["load_after"] = os.getloadavg()[0]
    if a.json: Path(a.json).write_text(json.dumps(d, indent=2))


if __name__ == "__main__":
    main()
