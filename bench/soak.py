"""The service held under load: errors, p99, memory over time and log rows against requests, with two releases and a rollback during it.

Uses the workbook's registered model (run `make run` first, or pass --settings). Works on a scratch registry of its
own (sharing the workbook's artifact store): versions A, B and C are the same network in three bundles. Starts
`mlops-nb serve` following production (one worker, prediction logging on, its own log) and drives /v1/predict with
wrk (4 connections) for --seconds. A quarter of the way in production moves A -> B, half-way B -> C, and at three
quarters it is rolled back (C -> B). Reported:
  - requests, failed requests (wrk's non-2xx and socket errors: must be 0), req/s, p50, p99;
  - the service's resident memory (its process and children), sampled every second: at the end of the warm-up (the
    first 10% of the run, at least 20 s, at most half of it: the service's bounded caches, such as the last 10,000
    request ids, fill first) and at the end, and the growth between them (aim: under 10%);
  - the service's answered /v1/predict requests (its /metrics) against the rows in its prediction log after a clean
    stop (SIGTERM): they must be equal;
  - the releases the service saw (its swap count) and the versions it served at the end.

    python bench/soak.py [--seconds 600] [--quick]        (tests/test_load.py runs it for 60 s)
"""
import argparse, json, math, re, signal, sqlite3, subprocess, sys, tempfile, threading, time, urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve import wait_ready, wrk    # noqa: E402  (bench/serve.py: the same start-up wait and wrk runner)
from release import scratch_versions, serve_following   # noqa: E402  (bench/release.py: scratch registry, its service)


def rss_mb(pid: int) -> float:
    "Resident memory of `pid` and its children, MB."
    import psutil
    p = psutil.Process(pid)
    total = p.memory_info().rss
    for c in p.children(recursive=True):
        try: total += c.memory_info().rss
        except psutil.Error: pass
    return total / 2**20


def metric(text: str, name: str, **labels) -> float:
    "The sum of a Prometheus sample's values over the series that carry `labels`."
    total = 0.0
    for m in re.finditer(rf"^{name}(?:{{([^}}]*)}})? ([\d.e+-]+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()): total += float(m.group(2))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", help="the workbook's settings.ini (default: found as mlops-nb finds it)")
    ap.add_argument("--model", help="registry reference of the model (default: what `mlops-nb serve` picks)")
    ap.add_argument("--seconds", type=float, default=600, help="seconds under load (default: %(default)s)")
    ap.add_argument("--connections", type=int, default=4, help="wrk connections (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="a 12 s run: a smoke test of this script")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    a = ap.parse_args()
    if a.quick: a.seconds = 12
    if a.seconds < 8: ap.error("--seconds must be at least 8 (a warm-up, two releases and a rollback)")
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import registry_for
    from mlops_nb.deploy.release import rollback
    from mlops_nb.deploy.served import pick
    s = load_settings(a.settings)
    src = pick(registry_for(s), a.model)
    with tempfile.TemporaryDirectory() as tmp:
        settings, reg, name, (va, vb, vc) = scratch_versions(s, src, tmp, ["bench-soak-b", "bench-soak-c"])
        s2 = load_settings(settings)
        url, p = serve_following(settings)
        try:
            wait_ready(url + "/readyz", p)
            info = json.loads(urllib.request.urlopen(url + "/v1/model", timeout=30).read())
            body = json.dumps({"inputs": [[0] * int(math.prod(info["signature"]["inputs"][0]["shape"][1:]))]})
            before = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
            load, samples = {}, []
            t = threading.Thread(target=lambda: load.update(wrk(url + "/v1/predict", a.seconds, a.connections, body, tmp, allow_errors=True)))
            t0 = time.perf_counter(); t.start()
            plan = [(0.25, "release", vb), (0.5, "release", vc), (0.75, "rollback", vb)]
            moves = []
            while t.is_alive():
                el = time.perf_counter() - t0
                samples.append((el, rss_mb(p.pid)))
                if plan and el >= plan[0][0] * a.seconds:
                    _, what, v = plan.pop(0)
                    if what == "release": reg.set_alias(name, "production", v, "bench soak release")
                    else: rollback(reg, name, "bench soak rollback")
                    moves.append((round(el, 1), what, reg.aliases(name)["production"]))
                t.join(1.0)
            after = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
            served_versions = sorted({int(v) for v in re.findall(r'^mlops_nb_model_info\{[^}]*version="(\d+)"[^}]*\} 1\.0$', after, re.M)})
        finally:
            p.send_signal(signal.SIGTERM)
            try: p.wait(60)
            except subprocess.TimeoutExpired: p.kill(); p.wait()
        answered = metric(after, "mlops_nb_requests_total", route="/v1/predict", status="200") - \
                   metric(before, "mlops_nb_requests_total", route="/v1/predict", status="200")
        db = sqlite3.connect(s2.predictions)
        logged = db.execute("SELECT COUNT(*) FROM predictions WHERE route='/v1/predict' AND role='primary'").fetchone()[0]
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        db.close()

    warm_at = min(max(20.0, 0.1 * a.seconds), a.seconds / 2)         # the service's bounded caches (request ids) fill first
    warm = next(m for el, m in samples if el >= warm_at) if any(el >= warm_at for el, _ in samples) else samples[0][1]
    end = samples[-1][1]
    out = {"model": f"{name} (v{va}, v{vb}, v{vc}: one network, three bundles)", "seconds": a.seconds, "connections": a.connections,
           "quick": a.quick, "requests": load["requests"], "failed": load["failed"], "rps": load["rps"], "p50": load["p50"],
           "p99": load["p99"], "rss_warm_mb": round(warm, 1), "rss_end_mb": round(end, 1), "rss_max_mb": round(max(m for _, m in samples), 1),
           "rss_growth": (end - warm) / warm, "warm_up_s": warm_at, "answered": int(answered), "logged": int(logged),
           "integrity": check, "moves": moves, "swaps": int(metric(after, "mlops_nb_swap_seconds_count")),
           "production_at_end": moves[-1][2] if moves else va, "served_at_end": served_versions,
           "rss_series_mb": [round(m, 1) for _, m in samples[:: max(1, len(samples) // 60)]]}
    print(f"{out['model']}, one worker, logging on, wrk -c{a.connections}, {a.seconds:g} s:")
    print(f"  {out['requests']} requests, {out['failed']} failed; {out['rps']:.0f} req/s, p50 {out['p50']:.2f} ms, p99 {out['p99']:.2f} ms")
    print(f"  releases and rollback under load: {', '.join(f'{w} at {el} s -> v{v}' for el, w, v in moves)}; the service swapped "
          f"{out['swaps']} times, serves v{out['served_at_end']} at the end")
    print(f"  memory: {warm:.1f} MB after the {warm_at:g} s warm-up, {end:.1f} MB at the end ({out['rss_growth']:+.1%}), max {out['rss_max_mb']} MB")
    print(f"  answered /v1/predict {out['answered']}, logged {out['logged']} (integrity_check: {check})")
    if a.json: Path(a.json).write_text(json.dumps(out, indent=2))
    problems = ([f"{out['failed']} requests failed"] if out["failed"] else []) + \
               ([f"{out['answered']} answered but {out['logged']} logged"] if out["answered"] != out["logged"] else []) + \
               ([f"integrity_check: {check}"] if check != "ok" else [])
    if problems: raise SystemExit("; ".join(problems))


if __name__ == "__main__":
    main()
