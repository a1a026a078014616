"""Hostile requests to the service, on a tiny stand-in model (no pipeline run needed): lenient values, cross-site writes,
bodies and headers that never finish, and /docs offline. In process (Starlette's test client) where HTTP framing does not
matter; a real uvicorn on 127.0.0.1 (and headless Chromium) where it does."""
import json, shutil, socket, sqlite3, threading, time
from pathlib import Path
import pytest


def toy_model():
    "A stand-in ServedModel: image (N,1,2,2) uint8 -> logits (N,3), labels a, b, c (as in nbs/30_deploy.serve.ipynb)."
    from onnx import helper, TensorProto
    from mlops_nb.build.bundle import ort_session
    from mlops_nb.deploy.served import ServedModel, with_head
    g = helper.make_graph([helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
                           helper.make_node("Flatten", ["f"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])], "t",
                          [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 1, 2, 2])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
                          [helper.make_tensor("w", TensorProto.FLOAT, [4, 3], [0.01, 0, -0.01] * 4)])
    onx = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]); onx.ir_version = 8
    head = with_head(onx.SerializeToString())
    return ServedModel("toy", 3, "sha256:00", ["a", "b", "c"], (1, 2, 2), {"inputs": []}, "run-1", ort_session(head), head)


@pytest.fixture(scope="module")
def toy():
    return toy_model()


@pytest.fixture
def client(toy, tmp_path):
    "(test client, prediction log path) for an app on the toy model with its own log."
    from fastapi.testclient import TestClient
    from mlops_nb.core.predlog import PredictionLog
    from mlops_nb.deploy.serve import create_app
    log = PredictionLog(tmp_path / "predictions.db", flush_ms=5)
    with TestClient(create_app(toy, dict(max_batch=8, max_body=4096), log)) as c:
        yield c, tmp_path / "predictions.db"


def rows_in(db: Path, table: str) -> int:
    with sqlite3.connect(db) as c: return c.execute(f"select count(*) from {table}").fetchone()[0]


def oip(data, **extra):
    return {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 1, 2, 2], "data": data}], **extra}


# --- item 11: only JSON numbers are pixels; an OIP id is a string ------------------------------------------------------

LENIENT = [(["255", 1, 2, 3], "not text '255'"), ([" 7 ", 1, 2, 3], "not text ' 7 '"), ([True, 1, 2, 3], "not true"),
           ([False, 0, 0, 0], "not false"), ([1.0, True, 2, 3], "not true"), ([[0, 1], ["2", 3]], "not text '2'")]


@pytest.mark.parametrize("row, msg", LENIENT)
def test_text_and_booleans_are_not_pixels(client, row, msg):
    c, _ = client
    flat = [v for r in row for v in r] if isinstance(row[0], list) else row
    for route, body in [("/v1/predict", {"inputs": [row if not isinstance(row[0], list) else [row]]}),
                        ("/v2/models/toy/infer", oip(flat)), ("/v2/models/toy/infer", oip([[row]] if isinstance(row[0], list) else [[[row[:2], row[2:]]]]))]:
        r = c.post(route, json=body)
        assert r.status_code == 400 and msg in r.json()["error"], (route, body, r.status_code, r.text)


def test_numbers_still_pass(client):
    c, _ = client
    assert c.post("/v1/predict", json={"inputs": [[0, 1, 2, 255]]}).status_code == 200
    assert c.post("/v1/predict", json={"inputs": [[0.0, 1.0, 2, 255e0]]}).status_code == 200
    assert c.post("/v2/models/toy/infer", json=oip([0, 1, 2, 255])).status_code == 200
    assert c.post("/v2/models/toy/infer", json=oip([[[[0.0, 1], [2, 3]]]])).status_code == 200


@pytest.mark.parametrize("rid, what", [({"a": 1}, "an object"), ([1], "an array"), (7, "a number"), (True, "a boolean")])
def test_an_oip_id_must_be_a_string(client, rid, what):
    c, _ = client
    r = c.post("/v2/models/toy/infer", json=oip([0, 1, 2, 3], id=rid))
    assert r.status_code == 400 and r.json()["error"] == f"id: give a string, not {what}", r.text
    assert "{'a'" not in r.text and r.json().get("id") is None
    assert c.post("/v2/models/toy/infer", json=oip([0, 1, 2, 3], id="cam-1")).json()["id"] == "cam-1"


# --- item 7: no cross-site writes ---------------------------------------------------------------------------------------

PNG = None


def png() -> bytes:
    import io
    from PIL import Image
    b = io.BytesIO(); Image.new("L", (2, 2), 40).save(b, "PNG"); return b.getvalue()


def test_a_foreign_origin_is_refused(client):
    "Origin present and not in [serve] cors_origins: 403 on every route, nothing predicted or fed back."
    c, db = client
    assert c.post("/v1/predict", json={"inputs": [[0, 1, 2, 3]]}, headers={"x-request-id": "r1"}).status_code == 200
    evil = {"origin": "http://127.0.0.1:9"}
    for route, kw in [("/v1/predict", dict(json={"inputs": [[0, 1, 2, 3]]})), ("/v1/feedback", dict(json={"request_id": "r1", "label": "b"})),
                      ("/v1/predict/image", dict(files={"image": ("a.png", png(), "image/png")})),
                      ("/v2/models/toy/infer", dict(json=oip([0, 1, 2, 3]))), ("/v2/models/toy/versions/3/infer", dict(json=oip([0, 1, 2, 3])))]:
        r = c.post(route, headers=evil, **kw)
        assert r.status_code == 403 and "Origin 'http://127.0.0.1:9' is not allowed" in r.json()["error"], (route, r.text)
    assert c.get("/v1/model", headers={"origin": "null"}).status_code == 403
    # the service's own pages (/docs) may call it: same origin, reached by its address
    assert c.post("/v1/predict", json={"inputs": [[0, 1, 2, 3]]}, headers={"origin": "http://testserver"}).status_code == 403
    host = {"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}
    assert c.post("/v1/predict", json={"inputs": [[0, 1, 2, 3]]}, headers=host).status_code == 200
    c.__exit__(None, None, None)                                     # the log commits what it holds
    assert rows_in(db, "predictions") == 2 and rows_in(db, "feedback") == 0
    assert rows_in(db, "rejected") == 7


def test_listed_origins_pass(toy, tmp_path):
    from fastapi.testclient import TestClient
    from mlops_nb.deploy.serve import create_app
    with TestClient(create_app(toy, dict(cors_origins="http://dash.example:3000"))) as c:
        r = c.post("/v1/predict", json={"inputs": [[0, 1, 2, 3]]}, headers={"origin": "http://dash.example:3000"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://dash.example:3000"
        assert c.post("/v1/predict", json={"inputs": [[0, 1, 2, 3]]}, headers={"origin": "http://other.example"}).status_code == 403


@pytest.mark.parametrize("ct", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_json_routes_need_a_json_content_type(client, ct):
    c, db = client
    for route, body in [("/v1/predict", {"inputs": [[0, 1, 2, 3]]}), ("/v1/feedback", {"request_id": "r1", "label": "b"})]:
        r = c.post(route, content=json.dumps(body), headers={} if ct is None else {"content-type": ct})
        assert r.status_code == 415 and "send Content-Type: application/json" in r.json()["error"], (route, ct, r.text)
    r = c.post("/v2/models/toy/infer", content=json.dumps(oip([0, 1, 2, 3])), headers={} if ct is None else {"content-type": ct})
    assert r.status_code == (200 if ct is None else 415), r.text        # tritonclient sends none: OIP takes a body without one


def serve_in_thread(app, **config):
    "A real uvicorn on a free loopback port, in a thread, as `serve` configures it: (url, stop())."
    import uvicorn
    from mlops_nb.deploy.serve import uvicorn_options
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, **{**uvicorn_options("127.0.0.1", port, config)}))
    t = threading.Thread(target=server.run, daemon=True); t.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline and t.is_alive(), "the server did not start"
        time.sleep(0.02)
    def stop():
        server.should_exit = True; t.join(20)
    return f"http://127.0.0.1:{port}", stop


ATTACK = """<!doctype html><html><body><script>
const url = %(url)r, rows = JSON.stringify({inputs: [[0, 1, 2, 3]]});
const form = new FormData(); form.append("image", new Blob([new Uint8Array(%(png)s)], {type: "image/png"}), "a.png");
const posts = [["/v1/predict", new Blob([rows])], ["/v1/feedback", new Blob([JSON.stringify({request_id: "r1", label: "b"})])],
               ["/v1/predict/image", form], ["/v2/models/toy/infer", new Blob([JSON.stringify(%(oip)s)])],
               ["/v1/predict", rows]];                               // a string body: text/plain
Promise.allSettled(posts.map(([p, body]) => fetch(url + p, {method: "POST", mode: "no-cors", body})))
  .then(rs => { document.title = "done " + rs.map(r => r.status).join(","); });
</script></body></html>"""


def test_a_page_from_another_origin_writes_nothing(toy, tmp_path):
    "Headless Chromium on a page from a second loopback origin posts no-cors to every writing route: nothing is logged."
    CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
    assert CHROMIUM and DRIVER, "chromium and chromedriver are needed (make sysdeps installs them)"
    import http.server, urllib.request
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from mlops_nb.core.predlog import PredictionLog
    from mlops_nb.deploy.serve import create_app
    db = tmp_path / "predictions.db"
    url, stop = serve_in_thread(create_app(toy, dict(max_batch=8, max_body=4096), PredictionLog(db, flush_ms=5)))
    try:
        req = urllib.request.Request(url + "/v1/predict", json.dumps({"inputs": [[0, 1, 2, 3]]}).encode(),
                                     {"content-type": "application/json", "x-request-id": "r1"})
        assert urllib.request.urlopen(req, timeout=10).status == 200      # a prediction the page's feedback could name
        page = (ATTACK % dict(url=url, png=list(png()), oip=json.dumps(oip([0, 1, 2, 3])))).encode()
        class Page(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.send_header("content-type", "text/html"); self.end_headers(); self.wfile.write(page)
            def log_message(self, *a): pass
        site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
        threading.Thread(target=site.serve_forever, daemon=True).start()
        o = webdriver.ChromeOptions(); o.binary_location = CHROMIUM
        for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"): o.add_argument(a)
        d = webdriver.Chrome(service=Service(DRIVER), options=o)
        try:
            d.get(f"http://127.0.0.1:{site.server_port}/attack.html")
            deadline = time.time() + 20
            while not d.title.startswith("done"):
                assert time.time() < deadline, "the page's requests never settled"
                time.sleep(0.05)
        finally:
            d.quit(); site.shutdown()
    finally:
        stop()                                                       # the app's shutdown commits the log
    assert rows_in(db, "predictions") == 1 and rows_in(db, "feedback") == 0    # only the test's own prediction
    with sqlite3.connect(db) as c:
        assert sorted(r[0] for r in c.execute("select status from rejected")) == [403] * 5


# --- item 9: bodies and headers that never finish ------------------------------------------------------------------------

def answer_to(port: int, data: bytes, wait: float = 10.0) -> bytes:
    "Send `data` on a fresh connection to 127.0.0.1 and never more; what the service answers before it closes (b'' when it "
    "closed without a word), or None when `wait` seconds pass in silence."
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        if data: s.sendall(data)
        got = b""
        try:
            while chunk := s.recv(65536): got += chunk
        except socket.timeout: return got or None
        return got


@pytest.fixture(scope="module")
def slow_limits(toy, tmp_path_factory):
    "A real uvicorn on the toy model, [serve] body_timeout_s and header_timeout_s at half a second: (port, prediction log)."
    from mlops_nb.core.predlog import PredictionLog
    from mlops_nb.deploy.serve import create_app
    db = tmp_path_factory.mktemp("slow") / "predictions.db"
    opts = dict(max_batch=8, max_body=4096, body_timeout_s=0.5, header_timeout_s=0.5)
    url, stop = serve_in_thread(create_app(toy, opts, PredictionLog(db, flush_ms=5)), **opts)
    yield int(url.rsplit(":", 1)[1]), db
    stop()


@pytest.mark.parametrize("route, ct", [("/v1/predict", "application/json"), ("/v1/feedback", "application/json"),
                                       ("/v2/models/toy/infer", "application/json"), ("/v1/predict/image", "multipart/form-data; boundary=XX")])
def test_a_body_that_never_finishes_gets_408(slow_limits, route, ct):
    port, _ = slow_limits
    got = answer_to(port, f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: 100\r\n\r\n".encode() + b"{" * 10)
    assert got is not None, "no answer: the service still waits for the body"
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower(), got
    assert "body_timeout_s" in json.loads(body)["error"] and "10 of 100 bytes" in json.loads(body)["error"], body


@pytest.mark.parametrize("sent", [b"", b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Len"])
def test_headers_that_never_finish_get_408(slow_limits, sent):
    port, _ = slow_limits
    got = answer_to(port, sent)
    assert got is not None, "no answer: the service still waits for the headers"
    assert got.startswith(b"HTTP/1.1 408 ") and b"header_timeout_s" in got, got


def test_a_keep_alive_connection_gets_the_header_timeout_again(slow_limits):
    "After one answered request, the next request's headers are timed too (from its first byte)."
    port, _ = slow_limits
    body = json.dumps({"inputs": [[0, 1, 2, 3]]}).encode()
    ok = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    got = answer_to(port, ok + b"GET /healthz HTTP/1.1\r\nHo")
    assert got is not None and got.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in got, got


# --- item 10: /docs offline, under a CSP ---------------------------------------------------------------------------------

def test_docs_reference_only_the_service(client):
    "GET /docs names no URL outside the service, every asset it names is served, and a CSP allows only 'self'."
    import re
    c, _ = client
    r = c.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and not re.search(r"https?:|\*|'unsafe", csp), csp
    assert not re.search(r"(?i)\b(https?:)?//", r.text), r.text                # nothing from a CDN, nor any other host
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css", "init.js"}, assets
    for a in assets:
        got = c.get(a)
        assert got.status_code == 200 and len(got.content) > 100 and got.headers["x-content-type-options"] == "nosniff", a
    assert "validatorUrl: null" in c.get("/docs/init.js").text                 # no badge fetched from validator.swagger.io
    assert c.get("/docs/../settings.ini").status_code == 404 and c.get("/docs/core.py").status_code == 404
    assert c.get("/redoc").status_code == 404                                    # it loaded from a CDN too: gone


def test_docs_render_in_a_browser_with_nothing_from_outside(toy):
    "Headless Chromium opens /docs from a real server: the operations render, every resource came from the service, no CSP error."
    CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
    assert CHROMIUM and DRIVER, "chromium and chromedriver are needed (make sysdeps installs them)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from mlops_nb.deploy.serve import create_app
    url, stop = serve_in_thread(create_app(toy, {}))
    o = webdriver.ChromeOptions(); o.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"): o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(DRIVER), options=o)
    try:
        d.get(url + "/docs")
        deadline = time.time() + 30
        while not d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"):
            assert time.time() < deadline, "Swagger UI rendered no operation"
            time.sleep(0.1)
        paths = {e.text.replace("\u200b", "") for e in d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert {"/v1/predict", "/v1/feedback", "/v2/models/{name}/infer"} <= paths, paths
        # "Try it out" posts from the page itself (same origin, by address): answered, not refused as cross-site
        op = next(e for e in d.find_elements(By.CSS_SELECTOR, ".opblock-post")
                  if e.find_element(By.CSS_SELECTOR, ".opblock-summary-path").text.replace("\u200b", "") == "/v1/predict")
        op.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        wait_for(lambda: op.find_elements(By.CSS_SELECTOR, ".try-out__btn"))[0].click()
        wait_for(lambda: op.find_elements(By.CSS_SELECTOR, ".execute"))[0].click()
        status = wait_for(lambda: [e.text for e in op.find_elements(By.CSS_SELECTOR, ".live-responses-table .response-col_status")
                                   if e.text.isdigit()])
        assert status == ["200"], status
        resources = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources and all(r.startswith(url + "/") for r in resources), resources
        errors = [l for l in d.get_log("browser") if l["level"] == "SEVERE"]
        assert errors == [], errors                                  # a CSP violation is one
    finally:
        d.quit(); stop()


def wait_for(what, seconds: float = 20):
    "What `what()` returns once it is truthy (polled), or a failure after `seconds`."
    deadline = time.time() + seconds
    while not (got := what()):
        assert time.time() < deadline, "never happened"
        time.sleep(0.05)
    return got


def test_timeouts_are_settings(tmp_path):
    "[serve] header_timeout_s and body_timeout_s in settings.ini reach the service's options (they were ignored)."
    from conftest import make_workbook
    from mlops_nb.core.config import load_settings
    wb = make_workbook(tmp_path)
    text = wb.read_text()
    assert "header_timeout_s = 10" in text and "body_timeout_s = 30" in text      # documented in the workbook's settings
    wb.write_text(text.replace("header_timeout_s = 10", "header_timeout_s = 2.5").replace("body_timeout_s = 30", "body_timeout_s = 0"))
    s = load_settings(wb)
    assert (s.serve["header_timeout_s"], s.serve["body_timeout_s"]) == (2.5, 0.0)


# --- an over-limit body: a 413 the client can read, never a reset connection --------------------------------------------

BIG = 8 << 20                                                    # [serve] max_body of the service below: 2.5x it is past what loopback buffers hold


@pytest.fixture(scope="module")
def limited(toy, tmp_path_factory):
    "A real uvicorn on the toy model with [serve] max_body = 1 MiB: its URL."
    from mlops_nb.deploy.serve import create_app
    url, stop = serve_in_thread(create_app(toy, dict(max_batch=8, max_body=BIG)))
    yield url
    stop()


OVER = [("/v1/predict", "application/json"), ("/v2/models/toy/infer", "application/json"),
        ("/v2/models/toy/versions/3/infer", "application/json"), ("/v1/predict/image", "multipart/form-data; boundary=XX")]


def refused_413(status: int, body: bytes):
    assert status == 413, (status, body[:300])
    err = json.loads(body)["error"]
    assert f"over the limit of {BIG} bytes ([serve] max_body)" in err, err


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("route, ct", OVER)
def test_an_over_limit_body_gets_a_413_that_http_client_reads(limited, route, ct, chunked):
    "http.client (as `requests` uses it) sends the whole body before it reads: 2.5x max_body must not reset the connection "
    "(the application test of a 224 px model died of `ConnectionResetError: [Errno 104]` this way)."
    import http.client
    body = b" " * (BIG * 5 // 2)
    c = http.client.HTTPConnection(limited.removeprefix("http://"), timeout=30)
    try:
        if chunked: c.request("POST", route, (body[i:i + 65536] for i in range(0, len(body), 65536)), {"content-type": ct}, encode_chunked=True)
        else: c.request("POST", route, body, {"content-type": ct})
        r = c.getresponse()
        refused_413(r.status, r.read())
        assert r.getheader("connection") == "close"
    finally:
        c.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("route, ct", OVER)
def test_an_over_limit_body_gets_a_413_that_httpx_reads(limited, route, ct, chunked):
    import httpx
    body = b" " * (BIG * 5 // 2)
    content = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    r = httpx.post(limited + route, content=content, headers={"content-type": ct}, timeout=30)
    refused_413(r.status_code, r.content)
    assert httpx.get(limited + "/healthz", timeout=10).status_code == 200      # and the service goes on


def test_a_huge_declared_body_is_not_read(limited):
    "Content-Length far past what the service will discard: 413 at once and the connection closed, nothing read."
    port = int(limited.rsplit(":", 1)[1])
    t0 = time.time()
    got = answer_to(port, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (100 * BIG))
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"connection: close" in head.lower() and time.time() - t0 < 3, got
    refused_413(413, body)


def test_a_client_waiting_for_100_continue_gets_its_413_at_once(limited):
    "`Expect: 100-continue` (curl past 1 MB): the client sends nothing until told, so nothing is waited for: 413, closed."
    port = int(limited.rsplit(":", 1)[1])
    t0 = time.time()
    got = answer_to(port, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                          b"Content-Length: %d\r\n\r\n" % (2 * BIG))
    assert got.startswith(b"HTTP/1.1 413 ") and time.time() - t0 < 3, (got, time.time() - t0)
    refused_413(413, got.partition(b"\r\n\r\n")[2])
