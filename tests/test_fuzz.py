"""Fuzzing `mlops-nb serve` (issue 15): requests generated from its own OpenAPI schema (schemathesis), and generated
tags and request ids (hypothesis), must each get a status the schema documents and never a 5xx; hand-written hostile
requests (a 100 MB body, 100k-deep JSON, batches over the limit, control characters and unicode in labels and tags,
climbing upload filenames, decompression bombs, a cut-off multipart body, slow clients) get the exact 4xx naming the
problem, and the service answers /healthz after each. A real server on 127.0.0.1, as in test_serve.py; every request
and every wait is bounded in time. The service must log no traceback throughout (`stop` checks its stderr)."""
import collections, hashlib, io, json, socket, struct, threading, time, zlib
from pathlib import Path
from types import SimpleNamespace
import psutil
import pytest
from test_serve import http, own_log, start, stop

QUICK, THOROUGH = 15, 50   # examples per operation and generation mode: ~270 requests in 10-20 s; ~860 in 30-60 s (slow)
MAX_BATCH = 1024           # SERVE_DEFAULTS: the service below runs with the default limits
MAX_BODY = 16 << 20


@pytest.fixture(scope="module")
def service(smoke, tmp_path_factory):
    "A running service on the smoke run's model with its own prediction log: url, port, process, log path, workbook root."
    settings, _, _ = smoke
    tmp = tmp_path_factory.mktemp("fuzz")
    url, p = start(own_log(tmp, settings))
    yield SimpleNamespace(url=url, port=int(url.rsplit(":", 1)[1]), p=p, log=tmp / "predictions.db", tmp=tmp,
                          root=Path(settings).parent)
    stop(p)                                   # asserts a clean stop and no traceback in the service's stderr


def alive(s):
    "The service still answers, promptly, on a fresh connection."
    t0 = time.time()
    assert http("GET", s.url + "/healthz")[0] == 200 and time.time() - t0 < 2


def raw(s, data: bytes, timeout: float = 10) -> tuple[int, dict, bytes]:
    "Send bytes as they are on a fresh connection: (status, lower-cased headers, body) of the answer."
    with socket.create_connection(("127.0.0.1", s.port), timeout=timeout) as c:
        c.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = c.recv(65536)
            if not b: break
            buf += b
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        h = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        while len(body) < int(h.get("content-length", 0)):
            b = c.recv(65536)
            if not b: break
            body += b
        return int(lines[0].split()[1]), h, body


def post(s, path, body: bytes, ctype="application/json", headers: bytes = b""):
    "POST `body` with a Content-Length (headers as raw bytes, so they may hold any byte): (status, headers, JSON)."
    st, h, b = raw(s, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (path.encode(), ctype.encode(), len(body))
                   + headers + b"\r\n" + body)
    return st, h, json.loads(b)


def refused(s, got, status: int, *says: str):
    "The answer is `status` with a JSON error naming the problem, and the service still answers."
    st, _, body = got
    assert st == status and isinstance(body.get("error"), str), (st, body)
    for w in says: assert w in body["error"], (w, body)
    alive(s)
    return body["error"]


ROW = [7] * 64
PRED = "/v1/predict"
INFER = "/v2/models/digits-cnn/infer"


def oip(n=1, **kw):
    return {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [n, 1, 8, 8], "data": ROW * n}], **kw}


def logged(s, rid: str, tries: int = 40) -> list[dict]:
    "The prediction log's rows for request `rid` (its writer commits every few ms)."
    from mlops_nb.core.predlog import predictions
    for _ in range(tries):
        if rows := [r for r in predictions(s.log) if r["request_id"] == rid]: return rows
        time.sleep(0.05)
    return []


# --- generated requests --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("examples", [pytest.param(QUICK, id="quick"), pytest.param(THOROUGH, id="thorough", marks=pytest.mark.slow)])
def test_generated_requests_get_documented_answers(service, examples):
    "Every operation of /openapi.json, schema-valid and schema-violating requests (schemathesis), `examples` of each per "
    "operation (derandomized: the same requests every run): a documented status, content type, error body and headers; no 5xx."
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                                   response_schema_conformance, status_code_conformance)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              response_headers_conformance]
    s = service
    schema = schemathesis.openapi.from_url(s.url + "/openapi.json")
    version = str(http("GET", s.url + "/v1/model")[2]["version"])
    ran, statuses, failures, spent = collections.Counter(), collections.Counter(), [], collections.Counter()
    ops = [r.ok() for r in schema.get_all_operations()]
    assert {o.label for o in ops} >= {"POST /v1/predict", "POST /v1/predict/image", "POST /v1/feedback", "GET /v1/model", "GET /healthz",
                                      "GET /readyz", "GET /metrics", "GET /v2", "GET /v2/health/live", "GET /v2/health/ready",
                                      "GET /v2/models/{name}", "GET /v2/models/{name}/ready", "POST /v2/models/{name}/infer",
                                      "GET /v2/models/{name}/versions/{version}", "GET /v2/models/{name}/versions/{version}/ready",
                                      "POST /v2/models/{name}/versions/{version}/infer"}
    t0 = time.time()
    for op in ops:
        passes = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None)]
        if any(p.name == "version" for p in op.path_parameters):       # a generated version is (almost) never one served
            passes.append((GenerationMode.POSITIVE, {"version": version}))
        for mode, fixed in passes:
            @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode, path_parameters=fixed))
            def run(case):
                t1 = time.perf_counter()
                r = case.call(base_url=s.url, timeout=15)
                spent[op.label] += time.perf_counter() - t1
                ran[op.label] += 1; statuses[(op.label, r.status_code)] += 1
                try: case.validate_response(r, checks=checks)
                except Exception as e: failures.append(f"{op.label} ({mode.value}) -> {r.status_code}\n{str(e)[:3000]}")
            try: run()
            except Unsatisfiable: pass       # an operation without parameters or body has no schema-violating request
    n, secs = sum(ran.values()), time.time() - t0
    for label in sorted(ran):
        print(f"  {label}: {ran[label]} cases ({spent[label]:.1f} s waiting for answers), statuses " +
              ", ".join(f"{st}x{c}" for (l, st), c in sorted(statuses.items()) if l == label))
    server_errors = sum(c for (_, st), c in statuses.items() if st >= 500)
    print(f"fuzz: {n} cases, {server_errors} server errors, {len(failures)} failed checks ({secs:.1f} s)")
    assert not failures, f"{len(failures)} failed checks; the first:\n" + "\n\n".join(failures[:3])
    assert n >= 10 * examples and server_errors == 0
    assert statuses[("POST /v1/predict", 200)] and statuses[("GET /v2/models/{name}/versions/{version}", 200)]   # valid ones reach the model
    alive(s)


def test_generated_tags_and_ids(service):
    "Any text as an X-Tags value (sent as UTF-8) or an OIP id and parameters: 200, or 400 naming the tag or the id."
    from hypothesis import HealthCheck, given, settings, strategies as hs
    s = service
    text = hs.text(hs.characters(exclude_categories=("Cs",)), max_size=40)
    header = hs.text(hs.characters(exclude_categories=("Cs",), exclude_characters="\r\n\0"), max_size=40)
    n = collections.Counter()

    row = json.dumps({"inputs": [ROW]}).encode()

    @settings(max_examples=100, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(key=hs.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True) | header, value=header)
    def tags(key, value):
        st, h, b = raw(s, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                       b"X-Tags: %s\r\n\r\n" % (len(row), f"{key}={value}".encode()) + row)
        if not h.get("content-type", "").startswith("application/json"):     # a control byte in a header: the HTTP parser
            assert st == 400 and b"Invalid HTTP request" in b; n["400 (parser)"] += 1; return   # refuses it before the app
        n[st] += 1
        assert st in (200, 400), (key, value, st, b)
        if st == 400: assert "tag" in (e := json.loads(b)["error"]) or "X-Tags" in e, e

    @settings(max_examples=100, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rid=text, params=hs.dictionaries(text, text | hs.integers(-2**63, 2**63 - 1) | hs.booleans(), max_size=3),
           binary=hs.booleans())
    def infer(rid, params, binary):
        body = oip(id=rid, parameters={**params, "binary_data_output": binary})
        st, h, b = raw(s, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                       % (INFER.encode(), len(j := json.dumps(body).encode())) + j)
        n[st] += 1
        assert st in (200, 400), (rid, params, st, b[:300])
        if st == 400:
            err = json.loads(b)["error"]
            assert err.startswith(("tag", "id: use at most 128 printable characters")), err
        else:
            head = json.loads(b[:int(h["inference-header-content-length"])] if binary else b)
            assert head["id"] == (rid or head["id"]) and len(head["outputs"]) == 2

    tags(); infer()
    print(f"fuzz (tags, ids): {sum(n.values())} cases, statuses {dict(n)}, 0 server errors")
    assert n[200] and n[400]
    alive(s)


# --- hand-written hostile requests ---------------------------------------------------------------------------------------

def rss_peak(pid: int, stop: threading.Event, out: list):
    "Sample a process's resident memory every 5 ms until `stop`: the peak goes into `out`."
    p, peak = psutil.Process(pid), 0
    while not stop.is_set():
        peak = max(peak, p.memory_info().rss); time.sleep(0.005)
    out.append(peak)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_100mb_body_is_refused_without_being_read(service, chunked):
    "100 MB streamed at the service: 413 at once, the connection closed (the client cannot send it all), memory flat. A "
    "chunked body is read (and thrown away) up to `serve.DRAIN` times the limit first, so a client that sends before it "
    "reads gets its 413; one that declares 100 MB is not read at all."
    from mlops_nb.deploy.serve import DRAIN
    s = service
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    c.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
              (b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % (100 << 20)))
    sent, err, stop_, peak = [0], [], threading.Event(), []
    def pump():
        mb = b" " * (1 << 20)
        try:
            for _ in range(100):
                c.sendall(b"100000\r\n" + mb + b"\r\n" if chunked else mb); sent[0] += 1
            if chunked: c.sendall(b"0\r\n\r\n")
        except OSError as e: err.append(e)
    rss0 = psutil.Process(s.p.pid).memory_info().rss
    sampler = threading.Thread(target=rss_peak, args=(s.p.pid, stop_, peak)); sampler.start()
    t0 = time.time()
    sender = threading.Thread(target=pump); sender.start()
    try:
        head = b""
        while not (b"\r\n\r\n" in head and head.endswith(b"}")):        # the whole answer (a JSON error), however it arrives
            try: got = c.recv(4096)
            except OSError: break
            if not got: break
            head += got
        secs = time.time() - t0
        sender.join(30)
    finally:
        stop_.set(); sampler.join(5); c.close()
    assert head.startswith(b"HTTP/1.1 413 ") and b"connection: close" in head.lower(), head
    assert b"over the limit of %d" % MAX_BODY in head and secs < 3, (head, secs)
    most = (DRAIN * MAX_BODY >> 20) + 16 if chunked else 50                 # MB: read up to DRAIN x the limit, and the sockets' buffers
    assert not sender.is_alive() and err and sent[0] < most, (sent, err)    # the service closed the connection
    assert peak[0] - rss0 < 4 * MAX_BODY, (peak[0] - rss0) >> 20           # at most the 16 MB limit buffered (chunked)
    print(f"100 MB {'chunked' if chunked else 'with Content-Length'}: 413 in {secs:.3f} s, the client sent {sent[0]} MB "
          f"before the service closed, peak memory +{(peak[0] - rss0) >> 20} MB")
    alive(s)


@pytest.mark.parametrize("path", [PRED, "/v1/feedback", INFER])
def test_deeply_nested_json(service, path):
    refused(service, post(service, path, b"[" * 100_000), 400, "malformed JSON", "depth limit")
    refused(service, post(service, path, b'{"inputs": ' + b"[" * 100_000 + b"1" + b"]" * 100_000 + b"}"), 400, "malformed JSON", "depth")


def test_batches_over_the_limit(service):
    s, over = service, MAX_BATCH + 1
    refused(s, post(s, PRED, json.dumps({"inputs": [ROW] * over}).encode()), 413, f"{over} rows; at most {MAX_BATCH}")
    refused(s, post(s, INFER, json.dumps(oip(over)).encode()), 413, f"{over} rows; at most {MAX_BATCH}")
    refused(s, post(s, "/v1/feedback", json.dumps([{"request_id": "x", "label": "1"}] * over).encode()), 413,
            f"{over} feedback items; at most {MAX_BATCH}")
    refused(s, post(s, "/v1/predict/image", multipart([("image", "a.png", png())] * over), "multipart/form-data; boundary=XX"),
            413, "Too many files", str(MAX_BATCH))
    assert post(s, PRED, json.dumps({"inputs": [ROW] * MAX_BATCH}).encode())[0] == 200     # the limit itself is fine


def test_unicode_and_control_characters_in_feedback_labels(service):
    s = service
    assert http("POST", s.url + PRED, {"inputs": [ROW]}, {"x-request-id": "fz-label"})[0] == 200
    for label in ("\u0663", "1\x00", "\u202e1", "1\x1b[2J", "\U0001F600", "１"):      # Arabic 3, NUL, RLO, ESC, emoji, fullwidth 1
        st, _, e = http("POST", s.url + "/v1/feedback", {"request_id": "fz-label", "label": label})
        refused(s, (st, None, e), 422, "unknown label", repr(label)[1:-1][:20])
    for rid, says in [("fz-label\x00", "printable"), ("fz\u202elabel", "printable"), ("x" * 129, "at most 128"), ("", "non-empty")]:
        refused(s, http("POST", s.url + "/v1/feedback", {"request_id": rid, "label": "1"}), 400, "request_id", says)
    refused(s, http("POST", s.url + "/v1/feedback", {"request_id": "\u6771\u4eac", "label": "1"}), 404, "unknown request_id")
    st, _, body = http("POST", s.url + "/v1/feedback", {"request_id": "fz-label", "label": "1"})
    assert st == 200 and body == {"accepted": 1}
    assert post(s, "/v1/feedback", b'{"request_id": "\\ud800", "label": "1"}')[0] == 400        # a lone surrogate: malformed


def test_unicode_and_control_characters_in_tags(service):
    s = service
    body = json.dumps({"inputs": [ROW]}).encode()
    # X-Tags: UTF-8 is read back as such (servers hand header bytes over as latin-1), latin-1 that is no UTF-8 kept
    st, h, _ = post(s, PRED, body, headers="X-Request-ID: fz-tag-1\r\nX-Tags: site=Zürich,cam=東京 3\r\n".encode())
    assert st == 200 and logged(s, "fz-tag-1")[0]["tags"] == {"site": "Zürich", "cam": "東京 3"}
    assert post(s, PRED, body, headers=b"X-Request-ID: fz-tag-2\r\nX-Tags: site=Z\xfcrich\r\n")[0] == 200
    assert logged(s, "fz-tag-2")[0]["tags"] == {"site": "Zürich"}
    for hdr, says in [("X-Tags: site=north\u202e\r\n", "control characters"), ("X-Tags: site=a\u2028b\r\n", "control characters"),
                      ("X-Tags: ключ=1\r\n", "tag key 'ключ'"), ("X-Tags: site\r\n", "not key=value"),
                      ("X-Tags: a=" + "é" * 300 + "\r\n", "at most 256"), ("X-Request-ID: ☃\r\n", "X-Request-ID"),
                      ("X-Request-ID: ☃\r\n", "ASCII")]:
        refused(s, post(s, PRED, body, headers=hdr.encode()), 400, says)
    st, _, _ = raw(s, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Tags: site=a\x1b[2J\r\n\r\n{}")
    assert st == 400                                  # ESC in a header: the HTTP parser refuses the request itself
    alive(s)
    # OIP parameters: plain values are tags, held to the same rules
    st, _, r = post(s, INFER, json.dumps(oip(id="fz-tag-3", parameters={"site": "Zürich 東京", "n": 3})).encode())
    assert st == 200 and logged(s, "fz-tag-3")[0]["tags"] == {"site": "Zürich 東京", "n": "3"}
    for params, says in [({"site": "north\x1b[2J"}, "control characters"), ({"site": "a\u2028b"}, "control characters"),
                         ({"ключ": "1"}, "tag key"), ({"a b": "1"}, "tag key"), ({"site": "x" * 257}, "at most 256")]:
        refused(s, post(s, INFER, json.dumps(oip(parameters=params)).encode()), 400, says)
    refused(s, post(s, INFER, json.dumps(oip(parameters=["site"])).encode()), 400, "parameters must be a JSON object")
    # an OIP id is JSON text: any printable one is kept (in the JSON answer; a header cannot carry it)
    st, h, r = post(s, INFER, json.dumps(oip(id="☃ 東京")).encode())
    assert st == 200 and r["id"] == "☃ 東京" and "x-request-id" not in h and logged(s, "☃ 東京")
    refused(s, post(s, INFER, json.dumps(oip(id="a\x00b")).encode()), 400, "id: use at most 128 printable characters")


def png(w=8, h=8, v=40) -> bytes:
    from PIL import Image
    b = io.BytesIO(); Image.new("L", (w, h), v).save(b, "PNG"); return b.getvalue()


def png_declaring(w: int, h: int) -> bytes:
    "A small PNG file whose header declares w x h pixels (a decompression bomb, were it decoded)."
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * (w + 1) * 16, 9)) + chunk(b"IEND", b""))


def jpeg_declaring(w: int, h: int) -> bytes:
    "A real 8x8 JPEG with its frame header (SOF0) patched to declare w x h pixels."
    from PIL import Image
    b = io.BytesIO(); Image.new("L", (8, 8), 40).save(b, "JPEG"); j = bytearray(b.getvalue())
    i = j.index(b"\xff\xc0")
    j[i + 5:i + 9] = struct.pack(">HH", h, w)
    return bytes(j)


def multipart(files, boundary=b"XX", close=True) -> bytes:
    "A multipart/form-data body of (field, filename, bytes); the filename goes in as it is (str: UTF-8; bytes: raw)."
    out = b""
    for field, name, data in files:
        name = name.encode() if isinstance(name, str) else name
        out += (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + field.encode() + b'"; filename="' + name
                + b'"\r\nContent-Type: image/png\r\n\r\n' + data + b"\r\n")
    return out + (b"--" + boundary + b"--\r\n" if close else b"")


def upload(s, body: bytes, headers: bytes = b""):
    return post(s, "/v1/predict/image", body, "multipart/form-data; boundary=XX", headers)


def test_upload_filenames_never_reach_the_filesystem(service):
    "Climbing, absolute, NUL-carrying and odd filenames: the upload's own bytes are scored, the name is only echoed; no file "
    "is created or read outside the service's folders (it runs as whoever runs the tests: here root)."
    s = service
    target = s.tmp / "planted.png"                      # where a climbing name would land, from any working folder
    climb = "../" * 40 + str(target).lstrip("/")
    passwd = Path("/etc/passwd"); before = passwd.stat().st_mtime_ns, passwd.stat().st_size
    img = png(v=200)
    st, _, ok = upload(s, multipart([("image", "a.png", img)]))
    assert st == 200
    snap = lambda: {p: p.stat().st_mtime_ns for p in s.root.rglob("*") if p.is_file() and not p.name.startswith(("registry", "predictions", "lineage"))}
    files0 = snap()
    names = [climb, str(target), "../../etc/passwd", "/etc/passwd", "..\\..\\windows\\win.ini", b"a\x00b.png", "a%00.png",
             "%2e%2e%2f%2e%2e%2fetc%2fpasswd", b"\xff\xfe.png", "Zürich 東京.png", "CON", ".", "", "-rf"]
    for i, name in enumerate(names):
        rid = f"fz-name-{i}"
        st, _, r = upload(s, multipart([("image", name, img)]), f"X-Request-ID: {rid}\r\n".encode())
        assert st == 200, (name, r)
        assert r["predictions"][0]["probabilities"] == ok["predictions"][0]["probabilities"], name    # the upload, not a file
        want = name.decode("latin-1") if isinstance(name, bytes) and name.startswith(b"\xff") else \
               name.decode() if isinstance(name, bytes) else name
        assert r["predictions"][0]["file"] in (want, "image"), (name, r["predictions"][0]["file"])   # echoed as text
        assert logged(s, rid)[0]["input_digest"] == "sha256:" + hashlib.sha256(img).hexdigest()
    refused(s, upload(s, multipart([("image", "a\r.png", img)])), 400, "multipart body")     # a CR breaks the part's header
    assert not target.exists() and not (s.tmp / "a.png").exists()
    assert (passwd.stat().st_mtime_ns, passwd.stat().st_size) == before
    assert snap() == files0                           # nothing written in the workbook (its registry and log aside)
    alive(s)


def test_decompression_bombs(service):
    "Images declaring 400 million (and 3.6 billion) pixels: refused from the header, before any decoding; memory flat."
    s = service
    rss0 = psutil.Process(s.p.pid).memory_info().rss
    for name, data, says in [("bomb.png", png_declaring(20000, 20000), "20000x20000 = 400000000 pixels"),
                             ("bomb.jpg", jpeg_declaring(60000, 60000), "60000x60000 = 3600000000 pixels")]:
        t0 = time.time()
        refused(s, upload(s, multipart([("image", name, data)])), 413, repr(name), says, "max_pixels=4000000", "decompression bomb")
        assert time.time() - t0 < 3
    assert psutil.Process(s.p.pid).memory_info().rss - rss0 < 64 << 20
    refused(s, upload(s, multipart([("image", "ok.png", png()), ("image", "bomb.png", png_declaring(4000, 4000))])), 413,
            "'bomb.png'", "over the limit")


def test_truncated_multipart(service):
    s = service
    whole = multipart([("image", "a.png", png())])
    refused(s, upload(s, whole[:-30]), 400, "truncated", "--XX--")
    refused(s, upload(s, multipart([("image", "a.png", png())], close=False)), 400, "truncated")
    refused(s, upload(s, b'--XX\r\nContent-Disposition: form-da'), 400, "truncated")
    refused(s, upload(s, b""), 400, "truncated")
    refused(s, post(s, "/v1/predict/image", whole, "multipart/form-data"), 400, "boundary")
    refused(s, post(s, "/v1/predict/image", whole, "multipart/form-data-x; boundary=XX"), 415, "multipart/form-data")
    # the client goes away mid-body: nothing to answer, and the service carries on (no traceback: `stop` checks)
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        c.sendall(b"POST /v1/predict/image HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XX\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(whole) + whole[:len(whole) // 2])
        c.shutdown(socket.SHUT_WR)
        c.settimeout(5)
        try: c.recv(4096)
        except OSError: pass
    alive(s)


def test_malformed_oip_requests(service):
    "What the fuzzing found: each was a 500 (an unhandled exception), now a 400 naming the problem."
    s = service
    body = json.dumps(oip()).encode()
    refused(s, post(s, INFER, body, headers="Inference-Header-Content-Length: \u00b2\r\n".encode("latin-1")), 400,
            "Inference-Header-Content-Length")
    refused(s, post(s, INFER, json.dumps(oip(outputs=["label"])).encode()), 400, "outputs must be a list of")
    refused(s, post(s, INFER, json.dumps(oip(outputs=[{"name": "label", "parameters": [1]}])).encode()), 400,
            "output 'label': parameters must be a JSON object")
    bad = oip(); bad["inputs"][0]["shape"] = [True, 1, 8, 8]
    refused(s, post(s, INFER, json.dumps(bad).encode()), 400, "shape [True, 1, 8, 8]")


def test_slow_clients_do_not_hold_up_others(service):
    "Slowloris: connections dribbling their headers or their body a byte at a time; a request on a fresh connection is "
    "still answered promptly meanwhile."
    s = service
    slow, worst = [], 0.0
    try:
        for i in range(12):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=2)
            c.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-Pad: " if i % 2 else
                      b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            slow.append(c)
        end = time.time() + 4
        while time.time() < end:
            for c in slow: c.send(b"a" if slow.index(c) % 2 else b" ")
            t0 = time.time()
            assert http("GET", s.url + "/healthz")[0] == 200
            assert http("POST", s.url + PRED, {"inputs": [ROW]})[0] == 200
            worst = max(worst, time.time() - t0)
            time.sleep(0.25)
    finally:
        for c in slow: c.close()
    print(f"slow clients: 12 dribbling connections for 4 s; the slowest fresh request took {worst * 1000:.0f} ms")
    assert worst < 1.0
    alive(s)
