"""The prediction service under load: throughput and p50/p99 of /v1/predict and OIP /infer against the HTTP floor and bare ONNX Runtime.

Starts `mlops-nb serve` (one worker, prediction logging on, its log in a temporary folder) on the workbook's
registered model (run `make run` first, or pass --settings) and drives it with wrk on 127.0.0.1, side by side in
one run, each figure --repeat times (medians):
  - GET /healthz, a no-op route on the same server: the HTTP floor;
  - POST /v1/predict and POST /v2/models/NAME/infer, one row per request;
  - POST /v1/predict with 512 rows per request, as rows/s, against bare `session.run` at batch 512;
  - bare `session.run` rows/s at batch 1 and 512, in this process;
  - process start to ready (`mlops-nb serve` until /readyz answers);
  - `mlflow models serve` on the same ONNX model, when an interpreter with MLflow is given (--mlflow-python: a venv of
    its own, `pip install mlflow==3.17.2 onnxruntime onnx`, since MLflow needs pyarrow<26) or this one imports it.

    python bench/serve.py [--model NAME@ALIAS] [--repeat 3] [--seconds 5] [--connections 4] [--quick]
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
import numpy as np

BIN = Path(sys.executable).parent


def wait_ready(url, p, timeout=60.0, output=None) -> float:
    "Seconds until `url` answers 200; a process `p` that stops first fails with its output (`output()`, else its stderr)."
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200: return time.perf_counter() - t0
        except OSError: time.sleep(0.01)
        if p.poll() is not None: raise SystemExit(f"the service stopped: {output() if output else p.stderr.read()}")
    raise SystemExit(f"{url} never became ready")


def wrk(url, seconds, connections, body=None, script_dir=None, allow_errors=False, pause_ms: int = 0) -> dict:
    "req/s, p50 and p99 ms, requests and failed requests (non-2xx, socket errors) from one wrk run (a POST of `body` "
    "when given); a run with failures is refused unless `allow_errors` (then they are counted). `pause_ms`: each "
    "connection waits that long before each request (a paced load, below saturation)."
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url]
    if body is not None or pause_ms:
        lua = Path(script_dir) / f"wrk-{pause_ms}.lua"
        code = "" if body is None else 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[' + body + ']==]\n'
        lua.write_text(code + (f"function delay() return {int(pause_ms)} end\n" if pause_ms else ""))
        args[1:1] = ["-s", str(lua)]
    return parse_wrk(subprocess.run(args, capture_output=True, text=True, check=True).stdout, allow_errors)


def parse_wrk(out: str, allow_errors: bool = False) -> dict:
    "wrk's report as req/s, p50 and p99 ms, requests and failed requests; one with failures refused unless `allow_errors`."
    if not allow_errors and ("Non-2xx" in out or "Socket errors" in out): raise SystemExit(f"wrk saw errors:\n{out}")
    ms = lambda v, u: float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[u]
    pct = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": pct["50"], "p99": pct["99"],
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "failed": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)}


def bare(sess, x, seconds) -> float:
    "Rows per second of `session.run` on batches like `x`."
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds: sess.run(None, {"image": x}); n += len(x)
    return n / (time.perf_counter() - t0)


def mlflow_server(python, onnx_bytes, shape, tmp, port):
    "`mlflow models serve` on the ONNX model (saved with a uint8 tensor signature) by `python`, an interpreter with MLflow."
    src, path = Path(tmp) / "model.onnx", Path(tmp) / "mlflow-model"
    src.write_bytes(onnx_bytes)
    subprocess.run([python, "-c", f"""
import mlflow.onnx, onnx, numpy as np
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Schema, TensorSpec
sig = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, {", ".join(map(str, shape))}), "image")]))
mlflow.onnx.save_model(onnx.load({str(src)!r}), {str(path)!r}, signature=sig)
"""], check=True, capture_output=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"file://{tmp}/mlruns",       # mlflow runs `uvicorn` from the PATH
           "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen([str(Path(python).parent / "mlflow"), "models", "serve", "-m", str(path), "-p", str(port),
                             "-h", "127.0.0.1", "--env-manager", "local", "-w", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def mlflow_python(given):
    "An interpreter that imports MLflow: --mlflow-python, else this one when it can; None otherwise."
    if given: return given
    try: import mlflow  # noqa: F401
    except ImportError: return None
    return sys.executable


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="registry reference (default: what `mlops-nb serve` picks)")
    ap.add_argument("--settings", help="the workbook's settings.ini (default: found as mlops-nb finds it)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each figure (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=5, help="seconds per wrk run (default: %(default)s)")
    ap.add_argument("--connections", type=int, default=4, help="wrk connections (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="1 s runs, one repeat, no MLflow: a smoke test of this script")
    ap.add_argument("--json", help="also write the medians to this JSON file")
    ap.add_argument("--mlflow-python", help="a Python with MLflow installed (pip install mlflow==3.17.2 onnxruntime onnx), "
                                            "when this one has none; default: this one, if it imports mlflow")
    a = ap.parse_args()
    if a.quick: a.repeat, a.seconds = 1, 1
    if not shutil.which("wrk"): raise SystemExit("wrk is not installed: `make sysdeps` (Debian package wrk)")
    from mlops_nb.core.config import load_settings
    from mlops_nb.deploy.served import ServedModel
    from mlops_nb.deploy.apptest import free_port, test_settings
    s = load_settings(a.settings)
    m = ServedModel.load(s, a.model)
    ref = f"{m.name}@{m.version}"
    x1 = np.zeros((1, *m.shape), np.uint8)
    row = json.dumps({"inputs": x1.reshape(1, -1).tolist()})
    big_rows = max(1, min(512, s.serve["max_body"] // 2 // (4 * int(np.prod(m.shape)))))   # a colour frame: its JSON at most half of max_body
    x512 = np.random.default_rng(0).integers(0, 256, (big_rows, *m.shape), dtype=np.uint8)
    big = json.dumps({"inputs": x512.reshape(len(x512), -1).tolist()})
    oip = json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, *m.shape], "data": x1.ravel().tolist()}]})
    res = {k: [] for k in ("floor", "predict", "infer", "batch512", "bare1", "bare512", "start_s", "mlflow")}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLOPS_NB_SETTINGS": str(test_settings(s, tmp)), "WANDB_MODE": "disabled"}   # its own log
        for r in range(a.repeat):
            port = free_port(); url = f"http://127.0.0.1:{port}"
            p = subprocess.Popen([str(BIN / "mlops-nb"), "serve", "--model", ref, "--port", str(port), "--no-grpc"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                res["start_s"].append(wait_ready(url + "/readyz", p))
                wrk(url + "/healthz", 1, a.connections)                                            # warm-up
                res["floor"].append(wrk(url + "/healthz", a.seconds, a.connections))
                res["predict"].append(wrk(url + "/v1/predict", a.seconds, a.connections, row, tmp))
                res["infer"].append(wrk(url + f"/v2/models/{m.name}/infer", a.seconds, a.connections, oip, tmp))
                res["batch512"].append(wrk(url + "/v1/predict", a.seconds, 1, big, tmp))
            finally:
                p.terminate(); p.wait(60)
            res["bare1"].append(bare(m.sess, x1, min(a.seconds, 2)))
            res["bare512"].append(bare(m.sess, x512, min(a.seconds, 2)))
        py = None if a.quick else mlflow_python(a.mlflow_python)
        if py:
            port = free_port()
            p = mlflow_server(py, open_bundle_onnx(s, ref), m.shape, tmp, port)
            try:
                wait_ready(f"http://127.0.0.1:{port}/ping", p, 180)
                body = json.dumps({"inputs": x1.tolist()})
                wrk(f"http://127.0.0.1:{port}/invocations", 1, a.connections, body, tmp)                  # warm-up
                for r in range(a.repeat): res["mlflow"].append(wrk(f"http://127.0.0.1:{port}/invocations", a.seconds, a.connections, body, tmp))
            finally: p.terminate(); p.wait(60)
    med = lambda k, f=None: statistics.median(v[f] if f else v for v in res[k]) if res[k] else None
    out = {"model": ref, "repeat": a.repeat, "seconds": a.seconds, "connections": a.connections, "quick": a.quick,
           "mlflow_python": a.mlflow_python,
           **{f"{k}_{f}": med(k, f) for k in ("floor", "predict", "infer", "batch512", "mlflow") for f in ("rps", "p50", "p99") if res[k]},
           "bare1_rows_s": med("bare1"), "bare512_rows_s": med("bare512"), "start_s": med("start_s")}
    out["big_rows"] = big_rows
    out["batch512_rows_s"] = out["batch512_rps"] * big_rows
    print(f"{ref}, one worker, prediction logging on, wrk -c{a.connections}, {a.seconds:g} s runs, median of {a.repeat}:")
    print(f"  {'what':34} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7}")
    for k, what in (("floor", "GET /healthz (HTTP floor)"), ("predict", "POST /v1/predict, 1 row"),
                    ("infer", "POST OIP /infer, 1 row"), ("batch512", f"POST /v1/predict, {big_rows} rows (-c1)"), ("mlflow", "mlflow models serve, 1 row")):
        if res[k]: print(f"  {what:34} {out[k + '_rps']:9.0f} {out[k + '_p50']:7.2f} {out[k + '_p99']:7.2f}")
    print(f"  bare session.run rows/s: batch 1 {out['bare1_rows_s']:.0f}, batch {big_rows} {out['bare512_rows_s']:.0f}")
    print(f"  batch {big_rows} through HTTP: {out['batch512_rows_s']:.0f} rows/s = {out['batch512_rows_s'] / out['bare512_rows_s']:.0%} of bare")
    print(f"  /v1/predict vs the floor: {out['predict_rps'] / out['floor_rps']:.0%}; start to ready {out['start_s']:.2f} s")
    if res["mlflow"]: print(f"  /v1/predict vs MLflow: {out['predict_rps'] / out['mlflow_rps']:.1f}x")
    elif not a.quick: print("  MLflow not found: pass --mlflow-python (a venv with mlflow==3.17.2, onnx, onnxruntime) to compare")
    if a.json: Path(a.json).write_text(json.dumps(out, indent=2))


def open_bundle_onnx(s, ref):
    from mlops_nb.build.registry import registry_for
    return registry_for(s).load(ref).onnx


if __name__ == "__main__":
    main()
