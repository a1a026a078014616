"""The workbook's HTTP client as a load generator: `mlops_nb.core.client` against http.client and httpx.Client.

The application test's load test (`apptest.load`) and the traffic simulator send from the machine that runs the
service, so every microsecond of client CPU is taken from the service being measured. This runs the same load loop
(--concurrency threads sending one-row `POST /v1/predict` requests for --seconds over keep-alive connections) against
one local service through four clients, alternating, --repeat times (medians): `mlops_nb.core.client.Client` (what
apptest, simulate, monitor and govern use), the stdlib's http.client as apptest and simulate used it before, httpx's
transport (httpcore's connection pool) and `httpx.Client`. The service is a stand-in answering a fixed /v1/predict body (uvicorn with httptools, as
`mlops-nb serve` runs), so the difference is the client's own cost: requests/s and client CPU per request.

    python bench/client.py [--seconds 3] [--concurrency 4] [--repeat 3] [--quick] [--json FILE]
"""
import argparse, http.client, json, socket, statistics, subprocess, sys, threading, time

SERVER = r'''
import sys, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
app = FastAPI()
ANSWER = b'{"predictions": [{"label": "3", "probabilities": [0.01, 0.01, 0.01, 0.9, 0.01, 0.01, 0.01, 0.01, 0.01, 0.02]}]}'
@app.post("/v1/predict")
async def predict(r: Request):
    await r.body()
    return Response(ANSWER, media_type="application/json")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", access_log=False, http="httptools")
'''
BODY = json.dumps({"inputs": [[7] * 64]}).encode()
HEAD = {"content-type": "application/json"}
KINDS = {"core": "mlops_nb.core.client.Client", "httpclient": "http.client, a connection a thread (before)",
         "httpcore": "httpcore's pool (httpx's transport)", "httpx": "httpx.Client"}


def sender(kind: str, url: str, concurrency: int):
    "A function sending one request and returning whether it was answered 200, for each of `concurrency` threads, and a closer."
    if kind == "core":
        from mlops_nb.core.client import Client
        cl = Client(url)
        return [lambda: cl.request("POST", "/v1/predict", BODY, HEAD).status == 200] * concurrency, cl.close
    if kind == "httpcore":
        import httpcore
        pool = httpcore.ConnectionPool(max_connections=concurrency)
        return [lambda: pool.request("POST", url + "/v1/predict", content=BODY, headers=HEAD).status == 200] * concurrency, pool.close
    if kind == "httpx":
        import httpx
        cl = httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=concurrency))
        return [lambda: cl.post("/v1/predict", content=BODY, headers=HEAD).status_code == 200] * concurrency, cl.close
    conns = [http.client.HTTPConnection(url.removeprefix("http://"), timeout=30) for _ in range(concurrency)]
    def one(c):
        c.request("POST", "/v1/predict", BODY, HEAD); r = c.getresponse(); r.read()
        return r.status == 200
    return [lambda c=c: one(c) for c in conns], lambda: [c.close() for c in conns]


def one_run(kind: str, url: str, concurrency: int, seconds: float) -> dict:
    "Requests/s, errors and client CPU microseconds a request of one load run through `kind`."
    fns, close = sender(kind, url, concurrency)
    done, bad, stop = [0] * concurrency, [0] * concurrency, time.perf_counter() + seconds
    def loop(k):
        while time.perf_counter() < stop:
            if fns[k](): done[k] += 1
            else: bad[k] += 1
    cpu0, t0 = time.process_time(), time.perf_counter()
    ts = [threading.Thread(target=loop, args=(k,)) for k in range(concurrency)]
    for t in ts: t.start()
    for t in ts: t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    close()
    n = sum(done)
    return {"rps": n / wall, "errors": sum(bad), "cpu_us": cpu / max(n, 1) * 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="each load run (default %(default)s)")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads, one keep-alive connection each (default %(default)s)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each client, alternating; medians (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="one run of 1 s each (a smoke test)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    if a.quick: a.seconds, a.repeat = 1.0, 1
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]; sock.close()
    srv = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            try: socket.create_connection(("127.0.0.1", port), 0.2).close(); break
            except OSError:
                if srv.poll() is not None or time.time() - t0 > 60: raise SystemExit("the stand-in service did not start")
                time.sleep(0.1)
        runs = {k: [] for k in KINDS}
        for i in range(a.repeat):
            for k in KINDS:
                runs[k].append(one_run(k, url, a.concurrency, a.seconds))
                print(f"run {i + 1}/{a.repeat} {KINDS[k]}: {runs[k][-1]['rps']:,.0f} req/s, {runs[k][-1]['cpu_us']:.0f} us of client CPU a request",
                      file=sys.stderr)
    finally:
        srv.terminate(); srv.wait(10)
    med = lambda k, f: statistics.median(r[f] for r in runs[k])
    out = {"seconds": a.seconds, "concurrency": a.concurrency, "repeat": a.repeat, "quick": a.quick,
           "clients": {k: {"what": KINDS[k], "rps": med(k, "rps"), "cpu_us": med(k, "cpu_us"),
                           "errors": sum(r["errors"] for r in runs[k])} for k in KINDS}}
    print(json.dumps(out, indent=1))
    if a.json: open(a.json, "w").write(json.dumps(out, indent=1))
    return 0 if all(v["errors"] == 0 for v in out["clients"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
