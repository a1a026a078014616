"""mlops-nb serve side by side with the model servers people compare it with, on the same ONNX models and the same load.

Three models with the workbook's convnet (random weights: speed does not depend on them), exported as the package
stage exports them (uint8 pixels in, logits out): the digits (1x8x8), and the README recipe's camera model
(64 channels) at 3x64x64 and 3x224x224. Each server runs on 127.0.0.1 with one worker and one ONNX Runtime thread
(mlops-nb serve's defaults), the peers in virtual environments of their own under ~/.cache/mlops_nb/venvs (made by
`--install`, minutes each, from PyPI), each with batching set as its docs set it:
  - mlops-nb serve: prediction logging on, its dynamic batcher at the settings' defaults;
  - MLServer: a custom MLModel around onnxruntime (MLServer has no ONNX runtime), adaptive batching;
  - KServe's Python ModelServer: a custom Model (KServe batches in its Kubernetes agent, not in the server);
  - BentoML: a batchable API; Ray Serve: one replica with @serve.batch.
The load is wrk for HTTP (`-c` connections, each sending the next request when its answer comes) and a bounded
grpc.aio load for gRPC, in --repeat rounds (every server started afresh once a round, so slow drift of the machine
falls on all of them alike); each figure is the median of its rounds. Routes: each server's own single-row JSON, the Open
Inference Protocol's JSON, its binary tensor extension and gRPC where the server has them, 224 px JPEG uploads
(mlops-nb only), and 16 concurrent single-frame clients on the 3x224x224 model against bare `session.run` at the
batch size that gives the most rows/s (the ceiling).

    python bench/peers.py [--install] [--peers mlserver,kserve,bentoml,ray] [--models digits,cam64,cam224]
                          [--repeat 3] [--seconds 5] [--connections 4] [--quick] [--json FILE]
"""
import argparse, asyncio, configparser, io, json, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from serve import BIN, bare as rows_s, parse_wrk, wait_ready   # noqa: E402  (bench/serve.py: the same helpers)

VENVS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlops_nb" / "venvs"
ORT = "onnxruntime==1.31.1"                                            # mlops_nb's own pin, in every peer's environment
PEERS = {"mlserver": ("mlserver-1.7.1", ["mlserver==1.7.1", ORT]), "bentoml": ("bentoml-1.4.40", ["bentoml==1.4.40", ORT]),
         "kserve": ("kserve-0.21.0-server", ["kserve==0.21.0", ORT]),     # (tests/test_grpc.py's kserve-0.21.0 has no onnxruntime)
         "ray": ("ray-2.60.0", ["ray[serve]==2.60.0", ORT])}               # {peer: (its environment's folder, what it installs)}
MODELS = {"digits": ((1, 8, 8), 16, 10), "cam64": ((3, 64, 64), 64, 6), "cam224": ((3, 224, 224), 64, 6)}  # shape, channels, classes
GRPC = {"ours", "mlserver", "kserve"}                 # the servers that speak the protocol's gRPC
FULL_BEFORE = False       # --before's build serves gRPC (issue 25 and after): measured on every route of ours, not JSON alone


def like_ours(server: str) -> bool:
    "Whether `server` is measured on every route of mlops-nb serve: ours, and --before's build when it serves gRPC."
    return server == "ours" or (server == "before" and FULL_BEFORE)
OIP = {"ours", "mlserver", "kserve"}                  # ... and its REST


# ---------------------------------------------------------------- environments and models

def venv(peer: str) -> Path:
    return VENVS / PEERS[peer][0]


def peer_python(peer: str, install: bool) -> Path | None:
    "The peer's interpreter, its environment made first when `install` (else None when there is none)."
    d = venv(peer)
    if (d / ".installed").exists(): return d / "bin" / "python"
    if not install: return None
    print(f"installing {' '.join(PEERS[peer][1])} into {d} (minutes) ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(d)], check=True)
    subprocess.run([str(d / "bin" / "python"), "-m", "pip", "install", "-q", *PEERS[peer][1]], check=True, timeout=1800)
    (d / ".installed").touch()
    return d / "bin" / "python"


def build_models(tmp: Path, names) -> dict:
    "ONNX files of the convnet at each size, and a scratch workbook whose registry holds them (for mlops-nb serve): "
    "({name: (onnx path, shape)}, settings path)."
    import torch
    from mlops_nb.build.bundle import write_bundle
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.model import Classifier
    from mlops_nb.build.package import export_onnx
    from mlops_nb.build.registry import registry_for
    settings = scratch_workbook(tmp)
    reg, out = registry_for(load_settings(settings)), {}
    for name in names:
        shape, ch, k = MODELS[name]
        torch.manual_seed(0)
        net = Classifier("convnet", shape[0], k, channels=ch, image_size=shape[1]).eval()
        path = export_onnx(net, shape, tmp / f"{name}.onnx")
        b = write_bundle(tmp / f"{name}.zip", path, shape, [f"c{i}" for i in range(k)], {"metrics": {}}, {"source": "bench"}, name)
        reg.register(name, reg.store.put_file(b))
        out[name] = (path, shape)
    reg.close()
    return out, settings


def own_log(settings: Path, server: str) -> Path:
    "Settings like `settings` whose prediction log is `server`'s own: a build of another version may write another "
    "schema (one that cannot write this version's log would fail every write, and look faster for it)."
    out = settings.with_name(f"settings-{server}.ini")
    if not out.exists():
        cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
        cp.read(settings)
        cp["paths"]["predictions"] = str(Path(cp["paths"]["predictions"]).with_name(f"predictions-{server}.db"))
        with open(out, "w") as f: cp.write(f)
    return out


def scratch_workbook(tmp: Path) -> Path:
    "Settings with every path under `tmp`: the bench leaves nothing in the workbook."
    from mlops_nb.core.config import load_settings
    s = load_settings()
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(s.path)
    for k in ("runs", "store", "lineage", "registry", "predictions", "governance", "wandb_dir", "wandb_data_dir"):
        cp["paths"][k] = str(tmp / "wb" / Path(cp["paths"][k]).name)
    cp["paths"]["pipelines"] = str(s.pipelines)
    if cp.has_section("serve"): cp["serve"]["api_key"] = ""
    with open(tmp / "settings.ini", "w") as f: cp.write(f)
    return tmp / "settings.ini"


# ---------------------------------------------------------------- servers

def start(server: str, model: str, path: Path, shape, settings: Path, tmp: Path, pythons: dict) -> tuple:
    "Start `server` on free loopback ports: (process, HTTP url, gRPC target or None, ready url)."
    from mlops_nb.deploy.apptest import free_port
    port, gport = free_port(), free_port()
    url, env = f"http://127.0.0.1:{port}", {**os.environ, "WANDB_MODE": "disabled"}
    if server in ("ours", "before"):              # before: --before's build of mlops-nb (no gRPC before issue 25)
        bin_ = Path(pythons["before"]).parent if server == "before" else BIN
        cmd = [str(bin_ / "mlops-nb"), "serve", "--model", f"{model}@1", "--port", str(port)]
        cmd += ["--grpc-port", str(gport)] if like_ours(server) else []
        env["MLOPS_NB_SETTINGS"] = str(own_log(settings, server))
        ready = url + "/readyz"
    else:
        cmd = [str(pythons[server]), str(HERE / "peer_servers" / f"{server}_server.py"), "--model", str(path), "--name", model,
               "--port", str(port), "--grpc-port", str(gport), "--shape", json.dumps(list(shape)), "--folder", str(tmp)]
        ready = {"mlserver": f"{url}/v2/models/{model}/ready", "kserve": f"{url}/v2/models/{model}/ready",
                 "bentoml": f"{url}/readyz", "ray": f"{url}/-/healthz"}[server]
    log = tmp / f"{server}-{model}.log"          # a file, never a pipe: a server logging each request would fill a pipe
    with open(log, "ab") as f:                    # nobody reads and stall on its next write
        p = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    p.log = log
    return p, url, (f"127.0.0.1:{gport}" if server in GRPC or like_ours(server) else None), ready


def stop(p):
    import signal
    try: os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError: return
    try: p.wait(60)
    except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait(10)


# ---------------------------------------------------------------- requests

def bodies(server: str, model: str, x: np.ndarray) -> dict:
    "The requests each route sends for the rows `x`: {route: (path, content type, body bytes, extra headers)}."
    row = x.reshape(len(x), -1).tolist()
    oip = json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": list(x.shape), "data": x.ravel().tolist()}]}).encode()
    out = {}
    native = {"ours": ("/v1/predict", {"inputs": row}), "before": ("/v1/predict", {"inputs": row}), "bentoml": ("/predict", {"x": x.tolist()}),
              "ray": ("/", {"inputs": x.tolist()})}
    if server in native: out["json"] = (native[server][0], "application/json", json.dumps(native[server][1]).encode(), {})
    else: out["json"] = (f"/v2/models/{model}/infer", "application/json", oip, {})
    if server in OIP | {"before"}: out["oip"] = (f"/v2/models/{model}/infer", "application/json", oip, {})
    if like_ours(server) or server == "kserve":
        head = json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": list(x.shape),
                                       "parameters": {"binary_data_size": x.nbytes}}],
                           "outputs": [{"name": "logits" if server == "kserve" else "probabilities",
                                        "parameters": {"binary_data": True}}]}).encode()
        out["binary"] = (f"/v2/models/{model}/infer", "application/octet-stream", head + x.tobytes(),
                         {"Inference-Header-Content-Length": str(len(head))})
    return out


def jpeg_upload(shape) -> tuple:
    "A 224 px camera-like JPEG as a multipart upload to /v1/predict/image: (content type, body)."
    from PIL import Image
    rng = np.random.default_rng(1)
    a = (np.linspace(0, 1, shape[1])[:, None, None] * rng.integers(60, 200, 3)).astype(np.uint8).repeat(shape[2], 1)
    a = np.clip(a.astype(int) + rng.integers(-20, 20, a.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO(); Image.fromarray(a).save(buf, "JPEG", quality=85)
    b = "mlopsnbbench"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"frame.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            .encode() + buf.getvalue() + f"\r\n--{b}--\r\n".encode())
    return f"multipart/form-data; boundary={b}", body


def wrk_post(url, seconds, connections, ctype, body: bytes, headers: dict, tmp: Path) -> dict:
    "wrk POSTing `body` (any bytes: read from a file by its Lua script) with `headers`."
    f = tmp / f"body-{abs(hash(body))}.bin"; f.write_bytes(body)
    lua = tmp / f"post-{abs(hash((body, tuple(headers.items()))))}.lua"
    hs = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in {"Content-Type": ctype, **headers}.items())
    lua.write_text(f'wrk.method = "POST"\n{hs}local f = io.open("{f}", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(lua), url]
    try: return parse_wrk(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    except SystemExit as e: raise RuntimeError(str(e)) from None               # a route's failure, said in the table


def grpc_load(target: str, model: str, x: np.ndarray, seconds: float, concurrency: int) -> dict:
    "A bounded gRPC load: `concurrency` callers, each sending ModelInfer with raw_input_contents when its answer "
    "comes, for `seconds`: req/s, p50 and p99 ms. Any error fails the figure."
    import grpc
    from mlops_nb.proto import open_inference_grpc_pb2 as pb
    from mlops_nb.proto.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
    req = pb.ModelInferRequest(model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="image", datatype="UINT8", shape=list(x.shape))], raw_input_contents=[x.tobytes()])

    async def main():
        async with grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
            stub, lat = GRPCInferenceServiceStub(ch), []
            await stub.ModelInfer(req, timeout=30)                                      # warm
            end = time.perf_counter() + seconds

            async def caller():
                while (t := time.perf_counter()) < end:
                    r = await stub.ModelInfer(req, timeout=30)
                    if not r.raw_output_contents and not r.outputs: raise RuntimeError("an empty answer")
                    lat.append(time.perf_counter() - t)
            t0 = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(concurrency)))
            return lat, time.perf_counter() - t0
    lat, wall = asyncio.run(main())
    q = np.percentile(lat, [50, 99]) * 1e3
    return {"rps": len(lat) / wall, "p50": float(q[0]), "p99": float(q[1])}


def bare(path: Path, shape, batches=(1, 4, 8, 16, 32), seconds: float = 2.0) -> dict:
    "{batch size: rows/s} of bare `session.run` on the model, with one intra-op thread as the servers run it: the ceiling."
    from mlops_nb.build.bundle import ort_session
    sess, rng = ort_session(Path(path), 1), np.random.default_rng(0)
    out = {}
    for b in batches:
        x = rng.integers(0, 256, (b, *shape), dtype=np.uint8)
        sess.run(None, {"image": x})                                        # first call: allocations
        out[b] = rows_s(sess, x, seconds)
    return out


# ---------------------------------------------------------------- one server, every route

def routes(server: str, model: str, shape) -> dict:
    "{route: request} for `server` on `model`: wrk routes as bodies() gives them, 'grpc' for the protocol's gRPC, "
    "'jpeg' (mlops-nb only, 224 px), 'c16' (3x224x224: 16 clients on the server's fastest route)."
    x = np.random.default_rng(2).integers(0, 256, (1, *shape), dtype=np.uint8)
    out = {k: ("http", v) for k, v in bodies(server, model, x).items()}
    if server in GRPC or like_ours(server): out["grpc"] = ("grpc", x)
    if like_ours(server) and shape[1] == 224:
        ct, body = jpeg_upload(shape)
        out["jpeg"] = ("http", ("/v1/predict/image", ct, body, {}))
    if shape[1] == 224 and (server != "before" or like_ours(server)):
        fast = "grpc" if "grpc" in out else "json"
        out["c16"] = (out[fast][0], out[fast][1], 16)
        if like_ours(server): out["c16_binary"] = ("http", out["binary"][1], 16)
    return out


def measure(server: str, model: str, path, shape, settings, tmp: Path, pythons: dict, a) -> dict:
    "{route: figures} and 'start_s' from one start of a server on one model; a route that fails gets its error."
    p, url, target, ready = start(server, model, path, shape, settings, tmp, pythons)
    res = {}
    try:
        res["start_s"] = wait_ready(ready, p, 300, lambda: p.log.read_text(errors="replace")[-1500:])
        for route, (kind, req, *conns) in routes(server, model, shape).items():
            c = conns[0] if conns else a.connections
            load = ((lambda s: grpc_load(target, model, req, s, c)) if kind == "grpc" else
                    (lambda s: wrk_post(url + req[0], s, c, req[1], req[2], req[3], tmp)))
            try:
                load(1)                                                         # warm-up
                c0, t0, b0 = cpu_s(p.pid), time.perf_counter(), batching(url, model) if server == "ours" else None
                res[route] = load(a.seconds)
                res[route]["cpu_us"] = (cpu_s(p.pid) - c0) / (res[route]["rps"] * (time.perf_counter() - t0)) * 1e6
                if b0 is not None:                                              # the batches this load made: their size and compute
                    (n1, r1, s1), (n0, r0, s0) = batching(url, model), b0
                    res[route].update(batch_rows=(r1 - r0) / max(1, n1 - n0), batch_ms=(s1 - s0) / max(1, n1 - n0) * 1e3)
            except Exception as e:                                              # noqa: BLE001  (the table says why)
                lines = str(e).strip().splitlines() or [type(e).__name__]
                res[route] = "failed: " + next((l.strip() for l in lines if "Non-2xx" in l or "Socket errors" in l), lines[0])[:200]
            print(f"  {server:9} {model:7} {route:11} {summary(res[route])}", file=sys.stderr, flush=True)
    finally:
        stop(p)
        if server == "ray": subprocess.run([str(venv("ray") / "bin" / "ray"), "stop", "--force"], capture_output=True)
    return res


def batching(url: str, model: str) -> tuple:
    "mlops-nb serve's batches so far, from its statistics (`/v2/models/{m}/stats`, Triton's): (batches, rows, compute s)."
    import urllib.request
    with urllib.request.urlopen(f"{url}/v2/models/{model}/stats", timeout=30) as r: st = json.loads(r.read())["model_stats"]
    return (sum(s["execution_count"] for s in st), sum(s["inference_count"] for s in st),
            sum(s["inference_stats"]["compute_infer"]["ns"] for s in st) / 1e9)


def cpu_s(pid: int) -> float:
    "CPU seconds (user + system) the server's process and its children have used so far: with the requests answered, "
    "the server's cost a request, which the machine's noise moves far less than its req/s (Ray Serve's daemons count "
    "where they are its children)."
    import psutil
    try: procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess: return 0.0
    total = 0.0
    for q in procs:
        try: c = q.cpu_times(); total += c.user + c.system
        except psutil.NoSuchProcess: pass
    return total


def merged(runs: list) -> dict:
    "The medians over rounds of each route's figures (a route that failed in any round: its first error)."
    out = {}
    for k in runs[0]:
        vs = [r.get(k) for r in runs]
        bad = [v for v in vs if isinstance(v, str) or v is None]
        out[k] = (bad[0] or "failed: missing") if bad else statistics.median(vs) if k == "start_s" else medians(vs)
    return out


def summary(m) -> str:
    if isinstance(m, str): return m
    return f"{m['rps']:8.0f} req/s  p50 {m['p50']:6.2f} ms  p99 {m['p99']:6.2f} ms  {m.get('cpu_us', 0):7.0f} us CPU a request"


def medians(runs: list) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "cpu_us", "batch_rows", "batch_ms")
            if all(k in r for r in runs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", default=",".join(PEERS), help="which peers (default: %(default)s); those not installed "
                                                              "are skipped unless --install")
    ap.add_argument("--models", help=f"which models (default: {','.join(MODELS)}; cam64 with --quick)")
    ap.add_argument("--before", help="an interpreter with another build of mlops_nb (a virtual environment of the commit "
                                     "before a change): its `mlops-nb serve` is measured on the JSON routes beside this one")
    ap.add_argument("--install", action="store_true", help="make the peers' virtual environments first (minutes each, from PyPI)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each figure (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=5, help="seconds per load run (default: %(default)s)")
    ap.add_argument("--connections", type=int, default=4, help="concurrent clients on the single-row routes (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="1 s runs, one repeat, the cam64 model unless --models: a smoke test of this script")
    ap.add_argument("--json", help="also write the medians to this JSON file")
    a = ap.parse_args()
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # stopped: the servers still stop (measure's finally), no orphans
    if a.quick: a.repeat, a.seconds = 1, 1
    a.models = a.models or ("cam64" if a.quick else ",".join(MODELS))
    if not shutil.which("wrk"): raise SystemExit("wrk is not installed: `make sysdeps` (Debian package wrk)")
    names, wanted = [m for m in a.models.split(",") if m], [p for p in a.peers.split(",") if p]
    for flag, given, known in (("--models", names, MODELS), ("--peers", wanted, PEERS)):
        if bad := [x for x in given if x not in known]:
            raise SystemExit(f"{flag}: {', '.join(map(repr, bad))}: not one of {', '.join(known)}")
    pythons = {p: py for p in wanted if (py := peer_python(p, a.install))}
    missing = [p for p in wanted if p not in pythons]
    if a.before:
        global FULL_BEFORE
        pythons = {"before": Path(a.before), **pythons}
        h = subprocess.run([str(Path(a.before).parent / "mlops-nb"), "serve", "--help"], capture_output=True, text=True)
        FULL_BEFORE = "--grpc-port" in h.stdout
    if missing: print(f"not installed, skipped: {', '.join(missing)} (pass --install to make their environments)", file=sys.stderr)
    out = {"repeat": a.repeat, "seconds": a.seconds, "models_arg": a.models, "before": a.before, "connections": a.connections, "quick": a.quick,
           "peers": {p: PEERS[p][1][0] if p in PEERS else a.before for p in pythons}, "missing": missing, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models, settings = build_models(tmp, names)
        for name in names:
            path, shape = models[name]
            got = {"shape": list(shape), "bare": bare(path, shape, seconds=min(a.seconds, 2))}
            print(f"{name} {shape}: bare session.run rows/s " + ", ".join(f"batch {b}: {v:,.0f}" for b, v in got["bare"].items()),
                  file=sys.stderr, flush=True)
            runs = {s: [] for s in ["ours", *pythons]}
            for r in range(a.repeat):                       # rounds: every server once a round, each started afresh
                for server in runs: runs[server].append(measure(server, name, path, shape, settings, tmp, pythons, a))
            got.update({s: merged(v) for s, v in runs.items()})
            out["models"][name] = got
    report(out)
    if a.json: Path(a.json).write_text(json.dumps(out, indent=2))


ROUTES = {"json": "own JSON, 1 row", "oip": "OIP REST JSON, 1 row", "binary": "OIP REST binary tensor, 1 row",
          "grpc": "OIP gRPC raw contents, 1 row", "jpeg": "JPEG upload, 224 px", "c16": "16 clients, fastest route",
          "c16_binary": "16 clients, OIP binary"}


def report(out: dict):
    "The side-by-side table on stdout: req/s (p99 ms) per server, and mlops-nb against the best peer."
    servers = ["ours", *out["peers"]]                       # "before" (--before) first among them, not a peer
    print(f"one worker, one ONNX Runtime thread, {out['connections']} clients (16 where said), {out['seconds']:g} s runs, "
          f"median of {out['repeat']}; req/s (p99 ms)")
    for name, got in out["models"].items():
        best_b = max(got["bare"], key=got["bare"].get)
        print(f"\n{name} {tuple(got['shape'])}: bare session.run {got['bare'][1]:,.0f} rows/s at batch 1, "
              f"{got['bare'][best_b]:,.0f} at batch {best_b}")
        ab = "before" in servers
        print(f"  {'route':32}" + "".join(f"{s:>18}" for s in servers) + f"{'ours/best peer':>16}" + (f"{'ours/before':>24}" if ab else ""))
        for r, what in ROUTES.items():
            cells = [got[s].get(r) for s in servers]
            if all(c is None for c in cells): continue
            fig = lambda c: "—" if c is None else ("failed" if isinstance(c, str) else f"{c['rps']:,.0f} ({c['p99']:.1f})")
            peers = [c["rps"] for s, c in zip(servers[1:], cells[1:]) if isinstance(c, dict) and s != "before"]
            ratio = (f"{cells[0]['rps'] / max(peers):.2f}x" if peers and isinstance(cells[0], dict) else "—")
            b = got["before"].get(r) if ab else None
            vs = (f"{cells[0]['rps'] / b['rps']:.2f}x, CPU {cells[0]['cpu_us'] / b['cpu_us']:.2f}x"
                  if isinstance(b, dict) and isinstance(cells[0], dict) else "—")
            print(f"  {what:32}" + "".join(f"{fig(c):>18}" for c in cells) + f"{ratio:>16}" + (f"{vs:>24}" if ab else ""))
        ceiling = got["bare"][best_b]
        for r, what in (("c16", "gRPC"), ("c16_binary", "OIP binary")):
            c = got["ours"].get(r)
            if isinstance(c, dict):
                print(f"  16 clients, {what}: {c['rps']:,.0f} rows/s = {c['rps'] / ceiling:.0%} of bare at batch {best_b}, "
                      f"p99 {c['p99']:.1f} ms against 2 x one batch's compute, {2 * c.get('batch_ms', float('nan')):.1f} ms "
                      f"({c.get('batch_rows', float('nan')):.1f} rows a batch; [serve] max_queue_delay_us 0)")


if __name__ == "__main__":
    main()
