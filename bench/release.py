"""Releasing to a running service: swap time, requests failed during swaps (must be 0), p99 with and without a shadow, the apptest's load figures.

Uses the workbook's registered model (run `make run` first, or pass --settings). Works on a scratch registry of its
own (sharing the workbook's artifact store): version A is the model, version B the same network in another bundle,
so both cost the same to run. Starts `mlops-nb serve` following production (its own prediction log), then:
  - swaps: while wrk drives /v1/predict (4 connections), production moves A -> B -> A ... --swaps times; a client
    beside it notes the version of every answer. Reported: the service's own swap time (load, verify, warm up,
    swap: its `mlops_nb_swap_seconds`), the time from the registry write to the first answer of the new version
    (includes waiting for the next poll, [serve] follow_ms), and wrk's failed requests (non-2xx and socket errors);
  - shadow: wrk on /v1/predict with no shadow and with B as shadow, alternately, --repeat times (medians), at
    saturation (4 connections, no pause) and paced below it (4 connections, each pausing 1 ms before each request):
    the shadow runs in its own process at nice 19, so where the primary needs both cores it yields and drops (counted);
  - the application test's load figures (`mlops-nb apptest --no-record`).

    python bench/release.py [--repeat 3] [--seconds 5] [--swaps 6] [--quick]
"""
import argparse, configparser, json, math, os, re, statistics, subprocess, sys, tempfile, threading, time, urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve import BIN, wait_ready, wrk   # noqa: E402  (bench/serve.py: the same start-up wait and wrk runner)


def post(url, body):
    req = urllib.request.Request(url, body.encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r: return json.loads(r.read())


def scratch(s, tmp) -> Path:
    "Settings like the workbook's with a registry and prediction log under `tmp` (the store stays shared)."
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(s.path)
    for k, v in (("store", s.store), ("runs", s.runs), ("pipelines", s.pipelines), ("wandb_dir", s.wandb_dir),
                 ("wandb_data_dir", s.wandb_data_dir), ("lineage", s.lineage)): cp["paths"][k] = str(v)
    cp["paths"]["registry"], cp["paths"]["predictions"] = str(Path(tmp) / "registry.db"), str(Path(tmp) / "predictions.db")
    with open(Path(tmp) / "settings.ini", "w") as f: cp.write(f)
    return Path(tmp) / "settings.ini"


def variant(store, digest, tag) -> str:
    "The same bundle with another model card: another version of the same network."
    import io, zipfile
    src, out = zipfile.ZipFile(io.BytesIO(store.read_bytes(digest))), io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for i in src.infolist(): z.writestr(i, src.read(i) + (f"\n\n{tag}\n".encode() if i.filename == "MODEL_CARD.md" else b""))
    return store.put_bytes(out.getvalue(), f"{tag}.zip")


def scratch_versions(s, src: dict, tmp, tags) -> tuple:
    "A scratch registry under `tmp` (the workbook's store shared) holding `src`'s bundle and one variant of it per tag, "
    "production at the first: (settings path, Registry, model name, [versions])."
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import Registry
    from mlops_nb.core.store import Store
    settings = scratch(s, tmp)
    s2 = load_settings(settings)
    reg, name = Registry(s2.registry, Store(s2.store), s2.runs), src["name"]
    vs = [reg.register(name, b, src["metrics"], src["run_id"])
          for b in [src["bundle"]] + [variant(reg.store, src["bundle"], t) for t in tags]]
    reg.set_alias(name, "production", vs[0], "bench")
    return settings, reg, name, vs


def serve_following(settings) -> tuple:
    "`mlops-nb serve` of the workbook at `settings`, following its production alias, on a free loopback port: (url, process)."
    from mlops_nb.deploy.apptest import free_port
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
    port = free_port()
    p = subprocess.Popen([str(BIN / "mlops-nb"), "serve", "--port", str(port), "--no-grpc"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    return f"http://127.0.0.1:{port}", p


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", help="the workbook's settings.ini (default: found as mlops-nb finds it)")
    ap.add_argument("--model", help="registry reference of the model (default: what `mlops-nb serve` picks)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each shadow figure (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=5, help="seconds per wrk run (default: %(default)s)")
    ap.add_argument("--swaps", type=int, default=6, help="production moves under load (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="1 s runs, one repeat, two swaps, a 1 s apptest: a smoke test of this script")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    a = ap.parse_args()
    if a.quick: a.repeat, a.seconds, a.swaps = 1, 1, 2
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import registry_for
    from mlops_nb.deploy.served import pick
    s = load_settings(a.settings)
    src = pick(registry_for(s), a.model)
    with tempfile.TemporaryDirectory() as tmp:
        settings, reg, name, (va, vb) = scratch_versions(s, src, tmp, ["bench-release-b"])
        env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
        url, p = serve_following(settings)
        res = {"plain": [], "shadow": [], "plain_paced": [], "shadow_paced": []}
        dropped = {"shadow": [], "shadow_paced": []}
        drops = lambda: float((re.search(r"^mlops_nb_shadow_dropped_total ([\d.e+-]+)", urllib.request.urlopen(url + "/metrics", timeout=30)
                                         .read().decode(), re.M) or [0, 0])[1])
        try:
            wait_ready(url + "/readyz", p)
            info = json.loads(urllib.request.urlopen(url + "/v1/model", timeout=30).read())
            shape = info["signature"]["inputs"][0]["shape"][1:]
            body = json.dumps({"inputs": [[0] * int(math.prod(shape))]})
            wrk(url + "/v1/predict", 1, 4, body, tmp)                                                 # warm-up

            # swaps under load
            seen, stop = [], threading.Event()
            def watch():
                while not stop.is_set():
                    try: seen.append((time.perf_counter(), post(url + "/v1/predict", body)["model"]["version"]))
                    except Exception as e: seen.append((time.perf_counter(), repr(e)))
                    time.sleep(0.002)
            gap = max(1.5, (a.seconds * 2) / max(1, a.swaps))
            load = {}
            t = threading.Thread(target=lambda: load.update(wrk(url + "/v1/predict", gap * (a.swaps + 1), 4, body, tmp, allow_errors=True)))
            w = threading.Thread(target=watch)
            t.start(); w.start()
            time.sleep(gap / 2)
            to_first, target = [], va
            for i in range(a.swaps):
                target = vb if target == va else va
                t0 = time.perf_counter()
                reg.set_alias(name, "production", target, f"bench swap {i}")
                while not any(tt > t0 and v == target for tt, v in seen[-20:]):
                    if time.perf_counter() - t0 > 30: raise SystemExit(f"v{target} never answered after the release")
                    time.sleep(0.001)
                to_first.append(time.perf_counter() - t0)
                time.sleep(max(0.0, gap - (time.perf_counter() - t0)))
            t.join(); stop.set(); w.join()
            metrics = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
            swap_sum = float(re.search(r"^mlops_nb_swap_seconds_sum ([\d.e+-]+)", metrics, re.M).group(1))
            swap_n = float(re.search(r"^mlops_nb_swap_seconds_count ([\d.e+-]+)", metrics, re.M).group(1))
            watcher_errors = [v for _, v in seen if not isinstance(v, int)]

            # p99 with and without a shadow, alternately
            for r in range(a.repeat):
                for mode in ("plain", "shadow"):
                    if mode == "shadow": reg.set_alias(name, "shadow", vb if target == va else va, "bench", action="shadow")
                    else: reg.unset_alias(name, "shadow", "bench", "shadow-end")
                    want = None if mode == "plain" else (vb if target == va else va)
                    deadline = time.time() + 30
                    while json.loads(urllib.request.urlopen(url + "/v1/model", timeout=30).read())["traffic"]["shadow"] != want:
                        if time.time() > deadline: raise SystemExit("the shadow never changed")
                        time.sleep(0.05)
                    for key, pause in ((mode, 0), (mode + "_paced", 1)):
                        d0 = drops()
                        res[key].append(wrk(url + "/v1/predict", a.seconds, 4, body, tmp, allow_errors=True, pause_ms=pause))
                        if key in dropped: dropped[key].append((drops() - d0) / max(1, res[key][-1]["requests"]))
            reg.unset_alias(name, "shadow", "bench", "shadow-end")
        finally:
            p.terminate(); p.wait(60)

        # the application test's load figures (its own service, its own log)
        q = subprocess.run([str(BIN / "mlops-nb"), "apptest", f"{name}@{va}", "--no-record", "--json",
                            "--seconds", str(1 if a.quick else a.seconds)], env=env, capture_output=True, text=True)
        apptest = json.loads(q.stdout)["load"] if q.stdout.strip() else {"error": q.stderr.strip()[-300:]}

    med = lambda k, f: statistics.median(r[f] for r in res[k])
    out = {"model": f"{name} (v{va} and v{vb}: one network, two bundles)", "swaps": a.swaps,
           "swap_seconds_mean_service": swap_sum / swap_n if swap_n else None,
           "release_to_first_answer_s": {"median": statistics.median(to_first), "max": max(to_first)},
           "requests_during_swaps": load["requests"], "failed_during_swaps": load["failed"] + len(watcher_errors),
           **{k: {f: med(k, f) for f in ("rps", "p50", "p99")} for k in res},
           "shadow_dropped_share": {k: statistics.median(v) for k, v in dropped.items()}, "apptest_load": apptest,
           "repeat": a.repeat, "seconds": a.seconds, "quick": a.quick, "apptest_p99_limit_ms": s.apptest.get("p99_ms"),
           "follow_ms": s.serve.get("follow_ms")}
    print(f"{out['model']}, one worker, logging on, wrk -c4:")
    print(f"  swaps under load: {a.swaps}; the service's swap (load, verify, warm up, swap) {out['swap_seconds_mean_service'] * 1000:.1f} ms "
          f"on average; release to first answer of the new version: median {out['release_to_first_answer_s']['median']:.3f} s, "
          f"max {out['release_to_first_answer_s']['max']:.3f} s (includes the wait for the next poll)")
    print(f"  requests during the swaps: {out['requests_during_swaps']}, failed: {out['failed_during_swaps']}")
    for sfx, what in (("", "saturated (no pause)"), ("_paced", "paced (1 ms pause per request and connection)")):
        pl, sh = out["plain" + sfx], out["shadow" + sfx]
        print(f"  /v1/predict {what}, median of {a.repeat}:")
        print(f"    without a shadow: {pl['rps']:.0f} req/s, p50 {pl['p50']:.2f} ms, p99 {pl['p99']:.2f} ms")
        print(f"    with a shadow:    {sh['rps']:.0f} req/s, p50 {sh['p50']:.2f} ms, p99 {sh['p99']:.2f} ms (p99 x{sh['p99'] / pl['p99']:.2f}, "
              f"req/s x{sh['rps'] / pl['rps']:.2f}; shadow dropped {out['shadow_dropped_share']['shadow' + sfx]:.1%} of requests)")
    if "rps" in apptest:
        print(f"  apptest load ({apptest['concurrency']} clients, {apptest['seconds']:g} s): {apptest['rps']:.0f} req/s, "
              f"p50 {apptest['p50_ms']:.2f} ms, p95 {apptest['p95_ms']:.2f} ms, p99 {apptest['p99_ms']:.2f} ms, {apptest['errors']} errors")
    else: print(f"  apptest: {apptest}")
    if a.json: Path(a.json).write_text(json.dumps(out, indent=2))
    if out["failed_during_swaps"]: raise SystemExit(f"{out['failed_during_swaps']} requests failed during the swaps")


if __name__ == "__main__":
    main()
