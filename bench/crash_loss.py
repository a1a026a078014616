"""What `kill -9` of the prediction service under load loses: acknowledged predictions missing from the log, and their age.

Starts `mlops-nb serve` (one worker, its prediction log in a temporary folder) on the workbook's registered model (run
`make run` first, or pass --settings), drives it with --clients threads sending one-row /v1/predict requests on
keep-alive connections for --seconds, recording each acknowledged request id and the time its answer was read, then
kills the service with SIGKILL (at a random moment of the log writer's flush cycle). It then opens the log: `PRAGMA integrity_check`, and which acknowledged predictions
are not in it ("lost") and how long before the kill the oldest of them was acknowledged. The bound the log promises:
one flush interval (`[serve] flush_ms`) plus one commit. Each run --repeat times (medians; the oldest loss also as the
maximum over the runs).

    python bench/crash_loss.py [--model NAME@ALIAS] [--settings FILE] [--repeat 5] [--seconds 3] [--clients 3] [--flush-ms N] [--quick] [--json FILE]
"""
import argparse, configparser, http.client, json, math, os, random, signal, sqlite3, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve import BIN, wait_ready   # noqa: E402  (bench/serve.py: the same start-up wait)

MARGIN_S = 0.25             # what the test allows on top of the flush interval (tests/test_faults.py)


def client(url, prefix, row, acks, stop):
    "Send one-row predictions until `stop` or the service is gone; append (request id, time answered) to `acks`."
    conn, i = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30), 0
    try:
        while not stop.is_set():
            rid = f"{prefix}{i}"; i += 1
            conn.request("POST", "/v1/predict", row, {"content-type": "application/json", "x-request-id": rid})
            r = conn.getresponse(); r.read()
            if r.status == 200: acks.append((rid, time.time()))
    except (OSError, http.client.HTTPException): pass
    finally: conn.close()


def one_run(settings: Path, ref: str, row: str, seconds: float, clients: int, flush_s: float) -> dict:
    "Serve, load, kill -9, and read the log: the figures of one run."
    from mlops_nb.deploy.apptest import free_port
    port = free_port(); url = f"http://127.0.0.1:{port}"
    p = subprocess.Popen([str(BIN / "mlops-nb"), "serve", "--model", ref, "--port", str(port), "--no-grpc"],
                         env={**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    acks, stop, threads = [], threading.Event(), []
    try:
        wait_ready(url + "/readyz", p)
        threads = [threading.Thread(target=client, args=(url, f"c{k}-", row, acks, stop)) for k in range(clients)]
        for t in threads: t.start()
        time.sleep(seconds + random.uniform(0, flush_s))          # the kill at a random moment of the writer's cycle
        t_kill = time.time()
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None: p.kill()
        stop.set()
        for t in threads: t.join(30)
    db = sqlite3.connect(settings.parent / "predictions.db")
    try:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        logged = {r[0] for r in db.execute("SELECT request_id FROM predictions")}
    finally: db.close()
    ages = sorted(t_kill - t for rid, t in acks if rid not in logged)
    return {"acked": len(acks), "lost": len(ages), "lost_share": len(ages) / max(1, len(acks)),
            "max_lost_age_ms": ages[-1] * 1000 if ages else 0.0, "integrity_ok": ok, "rps": len(acks) / seconds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="registry reference (default: what `mlops-nb serve` picks)")
    ap.add_argument("--settings", help="the workbook's settings.ini (default: found as mlops-nb finds it)")
    ap.add_argument("--repeat", type=int, default=5, help="kills (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=3, help="seconds of load before each kill (default: %(default)s)")
    ap.add_argument("--clients", type=int, default=3, help="client threads, one keep-alive connection each (default: %(default)s)")
    ap.add_argument("--flush-ms", type=int, help="[serve] flush_ms for the service (default: the workbook's)")
    ap.add_argument("--quick", action="store_true", help="one kill after 1 s of load: a smoke test of this script")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    a = ap.parse_args()
    if a.quick: a.repeat, a.seconds = 1, 1
    from mlops_nb.core.config import load_settings
    from mlops_nb.deploy.served import ServedModel
    from mlops_nb.deploy.apptest import test_settings
    s = load_settings(a.settings)
    m = ServedModel.load(s, a.model)
    ref = f"{m.name}@{m.version}"
    row = json.dumps({"inputs": [[0] * math.prod(m.shape)]})
    flush_ms = a.flush_ms or s.serve["flush_ms"]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeat):
            f = test_settings(s, Path(tmp) / f"run{r}")             # a log of its own each run
            cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str; cp.read(f)
            cp["serve"]["flush_ms"] = str(flush_ms)
            with open(f, "w") as fh: cp.write(fh)
            runs.append(one_run(f, ref, row, a.seconds, a.clients, flush_ms / 1000))
            x = runs[-1]
            print(f"  run {r + 1}: {x['acked']} acknowledged, {x['lost']} lost ({x['lost_share']:.3%}), oldest lost "
                  f"{x['max_lost_age_ms']:.1f} ms before the kill, integrity {'ok' if x['integrity_ok'] else 'FAILED'}", flush=True)
    med = lambda k: statistics.median(x[k] for x in runs)
    out = {"model": ref, "repeat": a.repeat, "seconds": a.seconds, "clients": a.clients, "quick": a.quick, "flush_ms": flush_ms,
           "acked": med("acked"), "lost": med("lost"), "lost_share": med("lost_share"), "rps": med("rps"),
           "max_lost_age_ms": med("max_lost_age_ms"), "worst_lost_age_ms": max(x["max_lost_age_ms"] for x in runs),
           "integrity_ok": sum(x["integrity_ok"] for x in runs),
           "beyond_bound": sum(x["max_lost_age_ms"] > flush_ms + MARGIN_S * 1000 for x in runs)}
    print(f"{ref}, one worker, {a.clients} clients, kill -9 after {a.seconds:g} s of load, flush_ms {flush_ms}, median of {a.repeat}:")
    print(f"  acknowledged {out['acked']:.0f} ({out['rps']:.0f} req/s), lost {out['lost']:.0f} ({out['lost_share']:.3%}); oldest lost "
          f"{out['max_lost_age_ms']:.1f} ms before the kill (worst run {out['worst_lost_age_ms']:.1f} ms; bound: flush interval {flush_ms} ms + one commit)")
    print(f"  integrity_check ok in {out['integrity_ok']} of {a.repeat} runs")
    if a.json: Path(a.json).write_text(json.dumps(out, indent=2))
    if out["integrity_ok"] < a.repeat: raise SystemExit("the log failed integrity_check after a kill")


if __name__ == "__main__":
    main()
