"""The security review's checks (SECURITY.md): no secret reaches any file or stream a serve session and a monitoring run
write; request bodies are bounded even when they declare no length; the service listens on loopback unless told
otherwise; hostile names never reach the filesystem; no unsafe deserialisation, eval or shell in the package; HTML
reports carry a CSP and show a hostile tag as text. (Escaping of hostile class and folder names in the run pages, and
the CSP stopping what escaping missed, are tested in a browser in test_reports.py.)"""
import configparser, json, os, re, socket, subprocess, time
from pathlib import Path
import pytest
from conftest import BIN, REPO, cli
from test_serve import start, http

WANDB_SECRET = "dummy-wandb-secret-1234567890abcdef1234"     # W&B's key, in the environment of every process below
API_SECRET = "dummy-api-secret-5678-zyxw"                     # the service's key, via [serve] api_key_env
WRONG_SECRET = "dummy-wrong-key-4242-qrst"                    # what a client without the key tries
FILE_SECRET = "dummy-file-secret-9911-mnop"                   # a key written into settings.ini [serve] api_key
SECRETS = (WANDB_SECRET, API_SECRET, WRONG_SECRET)
CANARY = "canary-tag-7f3a19"                                  # not a secret: must be found, proving the scan reads the log
HOSTILE_TAG = "<img src=x onerror=window.pwned=1>"


def derived(tmp: Path, settings: Path, **serve) -> Path:
    "A settings file sharing `settings`' registry and store, with every other path (runs, logs, W&B) under `tmp`."
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(settings)
    for k in ("runs", "lineage", "predictions", "governance", "wandb_dir", "wandb_data_dir"):
        cp["paths"][k] = str(tmp / k)
    for k, v in serve.items(): cp["serve"][k] = str(v)
    with open(tmp / "settings.ini", "w") as f: cp.write(f)
    return tmp / "settings.ini"


def files_under(*roots):
    return [p for r in roots for p in Path(r).rglob("*") if p.is_file() and not p.is_symlink()]


def leaks(paths, texts, secrets) -> list:
    "Every (where, secret) pair: a secret found in a file's bytes or in a captured stream."
    found = [(str(p), s) for p in paths for s in secrets if s.encode() in p.read_bytes()]
    return found + [(name, s) for name, t in texts.items() for s in secrets if s in t]


def home_env(tmp: Path) -> dict:
    "HOME under `tmp`, so what any library writes to ~ (W&B, IPython, caches) is scanned too; matplotlib keeps its font cache."
    (tmp / "home").mkdir(exist_ok=True)
    mpl = os.environ.get("MPLCONFIGDIR") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "matplotlib")
    return {"HOME": str(tmp / "home"), "MPLCONFIGDIR": mpl}


def chunked_probe(port: int, path: str, content_type: str, first: bytes, finish: bool = False) -> tuple:
    "Send a chunked body (no Content-Length), and end it only when `finish`: (status line or None, seconds until the "
    "service answered). Unfinished, with a first chunk past the limit: the service must answer without waiting for the rest."
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nX-API-Key: {API_SECRET}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode() + b"%x\r\n" % len(first) + first + b"\r\n"
                  + (b"0\r\n\r\n" if finish else b""))
        t0 = time.time()
        try: head = s.recv(64).split(b"\r\n")[0].decode()
        except socket.timeout: head = None
        return head, time.time() - t0


def upload(url: str, png: bytes) -> int:
    "POST one PNG to /v1/predict/image as multipart/form-data (with a Content-Length); the status."
    import urllib.request, urllib.error
    body = (b'--XX\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
            + png + b"\r\n--XX--\r\n")
    req = urllib.request.Request(url + "/v1/predict/image", data=body, method="POST",
                                 headers={"content-type": "multipart/form-data; boundary=XX"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r: return r.status
    except urllib.error.HTTPError as e: return e.code


@pytest.fixture(scope="module")
def session(smoke, tmp_path_factory):
    "A serve session and a monitoring run (W&B offline) with dummy secrets in the environment; what they wrote and printed."
    import psutil
    settings, _, _ = smoke
    tmp = tmp_path_factory.mktemp("secrets")
    st = derived(tmp, settings, max_body=4096)
    store = Path(_paths(st)["store"])
    before = set(files_under(store))
    env = {"WANDB_API_KEY": WANDB_SECRET, "MLOPS_NB_API_KEY": API_SECRET, **home_env(tmp)}
    url, p = start(st, env=env)
    out = {"statuses": {}}
    try:
        port = int(url.rsplit(":", 1)[1])
        out["listening"] = {c.laddr.ip for c in psutil.Process(p.pid).net_connections("inet") if c.status == psutil.CONN_LISTEN}
        rows = {"inputs": [[0] * 64, [16] * 64]}
        out["statuses"]["predict"] = http("POST", url + "/v1/predict", rows,
                                          {"x-request-id": "sec-1", "x-tags": f"camera=3,note={CANARY},site={HOSTILE_TAG}"})[0]
        fb = {"request_id": "sec-1", "label": "0"}
        out["statuses"]["wrong key"] = http("POST", url + "/v1/feedback", fb, {"x-api-key": WRONG_SECRET})[0]
        out["statuses"]["wrong bearer"] = http("POST", url + "/v1/feedback", fb, {"authorization": "Bearer " + WRONG_SECRET})[0]
        out["statuses"]["key"] = http("POST", url + "/v1/feedback", fb, {"authorization": "Bearer " + API_SECRET})[0]
        out["chunked"] = {
            "feedback": chunked_probe(port, "/v1/feedback", "application/json", b" " * 8000),
            "upload": chunked_probe(port, "/v1/predict/image", "multipart/form-data; boundary=XX",
                                    b'--XX\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
                                    b"Content-Type: image/png\r\n\r\n\x89PNG" + b"\0" * 8000),
            "predict": chunked_probe(port, "/v1/predict", "application/json", b" " * 8000)}
        # and within the limit the same routes still answer: chunked feedback, an upload of a real PNG
        import io
        from PIL import Image
        png = io.BytesIO(); Image.new("L", (8, 8), 40).save(png, "PNG")
        out["statuses"]["chunked feedback"] = chunked_probe(port, "/v1/feedback", "application/json",
                                                            json.dumps(fb).encode(), finish=True)[0]
        out["statuses"]["upload"] = upload(url, png.getvalue())
    finally:
        p.terminate()
        sout, serr = p.communicate(timeout=60)
    out["texts"] = {"serve stdout": sout, "serve stderr": serr}
    mon = cli("monitor", settings=st, env={**env, "WANDB_MODE": "offline"})
    assert mon.returncode == 0, mon.stderr
    out["texts"].update({"monitor stdout": mon.stdout, "monitor stderr": mon.stderr})
    pred = cli("predictions", "--json", "--limit", "0", settings=st, env=env)
    assert pred.returncode == 0, pred.stderr
    out["texts"].update({"predictions stdout": pred.stdout, "predictions stderr": pred.stderr})
    out["run_dir"] = Path(mon.stdout.split()[1]).parent
    out["files"] = files_under(tmp) + sorted(set(files_under(store)) - before) + \
        [f for f in Path(_paths(st)["registry"]).parent.glob(Path(_paths(st)["registry"]).name + "*")]
    out["tmp"] = tmp
    return out


def _paths(st) -> dict:
    cp = configparser.ConfigParser(interpolation=None); cp.read(st)
    return dict(cp["paths"])


def test_the_session_did_what_the_scan_relies_on(session):
    "The requests were answered as documented, and the scan covers the log, the run, W&B's offline files and ~."
    st = dict(session["statuses"])
    assert st.pop("chunked feedback").startswith("HTTP/1.1 200"), st
    assert "Traceback" not in session["texts"]["serve stderr"], session["texts"]["serve stderr"]   # a client gone mid-body too
    assert st == {"predict": 200, "wrong key": 401, "wrong bearer": 401, "key": 200, "upload": 200}
    names = [str(p) for p in session["files"]]
    for part in ("predictions", "run.json", "01_monitor.html", ".wandb", "debug-internal.log", "home"):
        assert any(part in n for n in names), part
    # the canary tag went into the prediction log: a scan that could not see the log's bytes would miss it
    assert leaks(session["files"], session["texts"], [CANARY]), "the canary tag was found nowhere: the scan is blind"


def test_no_secret_in_any_file_or_stream(session):
    assert leaks(session["files"], session["texts"], SECRETS) == []


def test_service_listens_on_loopback_by_default(session):
    # HTTP on 127.0.0.1; gRPC's socket is dual-stack, bound to the same loopback address written IPv4-mapped
    assert {ip.removeprefix("::ffff:") for ip in session["listening"]} == {"127.0.0.1"}
    h = subprocess.run([str(BIN / "mlops-nb"), "serve", "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and re.search(r"--host HOST\s+address to listen on \(default: 127\.0\.0\.1", h.stdout), h.stdout
    assert "host" not in _paths(REPO / "settings.ini")        # no setting that could quietly widen it


@pytest.mark.parametrize("route", ["feedback", "upload", "predict"])
def test_a_body_without_length_is_refused_at_the_limit(session, route):
    "A chunked body past [serve] max_body is refused (413) as soon as it passes the limit, not read (or spooled) whole."
    head, secs = session["chunked"][route]
    assert head is not None and " 413 " in head and secs < 3, (head, secs)


def test_reports_carry_a_csp_and_show_a_hostile_tag_as_text(session):
    from mlops_nb.core.store import Store
    rec = json.loads((session["run_dir"] / "run.json").read_text())
    report = Store(_paths(session["tmp"] / "settings.ini")["store"]).read_bytes(rec["stages"][0]["outputs"]["report"]).decode()
    pages = {"monitor.html (W&B artifact)": report,
             **{p.name: p.read_text() for p in (session["run_dir"] / "01_monitor.html", session["run_dir"] / "index.html")}}
    for name, page in pages.items():
        head = page[:page.lower().find("</head>")] if "</head>" in page.lower() else page[:2000]
        m = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)"', head)
        assert m and "default-src 'none'" in m[1] and re.search(r"script-src ('none'|'sha256-)", m[1]), name
        assert "<img src=x" not in page, name                             # never raw HTML
    assert "onerror=window.pwned=1" in pages["01_monitor.html"]         # the tag is there, as text


def test_apptest_keeps_the_settings_key_out_of_its_files(smoke, tmp_path):
    "A key in settings.ini [serve] api_key is not copied into the application test's folder (nor does it lock its probes out)."
    settings, _, _ = smoke
    st = derived(tmp_path, settings, api_key=FILE_SECRET)
    p = cli("apptest", "digits-cnn@staging", "--no-record", "--seconds", "0.5", "--concurrency", "1", settings=st,
            env={"MLOPS_NB_API_KEY": ""})
    assert p.returncode == 0, p.stdout + p.stderr
    written = files_under(tmp_path / "runs")
    assert any(f.name == "report.json" for f in written)
    assert leaks(written, {"stdout": p.stdout, "stderr": p.stderr}, [FILE_SECRET]) == []


HOSTILE_REFS = [("show", "../x"), ("reproduce", "../../x"), ("registry", "show", "../../x@1"),
                ("export", "../../x@1", "--to", "{out}"), ("registry", "promote", "digits-cnn@1", "--to", "../../prod", "--why", "t")]


def test_hostile_names_are_refused_and_write_nothing(smoke, tmp_path):
    "Run ids, model and alias names that climb out of their folder: exit 2, one line, nothing written anywhere."
    from mlops_nb.core.params import check_name
    settings, _, _ = smoke
    root = settings.parent
    snap = lambda: {p: p.stat().st_mtime_ns for p in files_under(root, tmp_path)}
    before = snap()
    for args in HOSTILE_REFS:
        p = cli(*[a.format(out=tmp_path / "out") for a in args], settings=settings)
        assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)
    assert snap() == before and not (tmp_path / "out").exists() and not (tmp_path.parent / "x").exists()
    for bad in ("../x", "..", "a/b", "/etc", ".hidden", "x\0y", ""):
        with pytest.raises(ValueError): check_name("model", bad)       # what register and every alias write go through


# --- static: what the package must never do --------------------------------------------------------------------------------

FORBIDDEN = {
    "pickle.load": r"\bpickle\.(loads?\(|Unpickler\b)", "joblib.load": r"\bjoblib\.load\(", "cloudpickle": r"\bcloudpickle\b",
    "yaml.load (unsafe)": r"\byaml\.(load|unsafe_load|full_load)\(", "eval": r"(?<![\w.])eval\(", "exec": r"(?<![\w.])exec\(",
    "shell=True": r"shell\s*=\s*True", "os.system": r"\bos\.(system|popen)\(", "allow_pickle=True": r"allow_pickle\s*=\s*True",
    "torch.load without weights_only=True": r"\btorch\.load\((?!.*weights_only\s*=\s*True)",
    "np.load without allow_pickle=False": r"\bnp\.load\((?!.*allow_pickle\s*=\s*False)",
    "tarfile/zip extraction": r"\.extractall\(|\.extract\(",
}
# justified exceptions, each with its reason: (file, check) -> (how many, why)
ALLOWED = {
    ("deploy/traffic.py", "pickle.load"): (3, "the service and its own shadow process (started by it, same user) exchange numpy "
                                       "batches over a private pipe; nothing from a client or a file is unpickled"),
    ("monitor/windows.py", "pickle.load"): (1, "monitoring's own worker processes (or Spark's local Python workers), started by it as "
                                       "the same user, return the windows they summarized; segments are Parquet, never pickles"),
}


def test_no_unsafe_loading_eval_or_shell():
    found = {}
    srcs = {p.relative_to(REPO / "mlops_nb").as_posix(): p.read_text() for p in sorted((REPO / "mlops_nb").rglob("*.py"))
            if p.name != "_modidx.py" and "proto" not in p.parts}
    for nb in sorted((REPO / "nbs" / "pipelines").glob("*.ipynb")):         # the stage notebooks papermill executes
        srcs[nb.name] = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
    assert len(srcs) > 40
    for name, text in srcs.items():
        for check, pat in FORBIDDEN.items():
            if n := len(re.findall(pat, text)): found[(name, check)] = n
    assert found == {k: n for k, (n, _) in ALLOWED.items()}, found         # a new use, or an exception no longer needed
    plane = srcs["deploy/dataplane.py"]                                            # where every protocol's key check is
    assert "hmac.compare_digest(" in plane
    assert not any(re.search(r"(==|!=)\s*(self\.)?api_key\b|\bapi_key\s*(==|!=)", srcs[f]) for f in ("deploy/serve.py", "deploy/dataplane.py", "deploy/grpc_api.py"))


@pytest.mark.parametrize("text, hits", [("x = pickle.loads(b)", {"pickle.load"}), ("u = pickle.Unpickler(f)", {"pickle.load"}), ("torch.load(p)", {"torch.load without weights_only=True"}),
                                         ("torch.load(p, weights_only=True)", set()), ("model.eval()", set()),
                                         ("eval('1')", {"eval"}), ("np.load(p)", {"np.load without allow_pickle=False"}),
                                         ("np.load(p, allow_pickle=False)", set()),
                                         ("np.load(io.BytesIO(b), allow_pickle=False)", set()), ("yaml.safe_load(s)", set()),
                                         ("subprocess.run(c, shell=True)", {"shell=True"})])
def test_the_static_check_catches_what_it_should(text, hits):
    assert {c for c, pat in FORBIDDEN.items() if re.search(pat, text)} == hits
