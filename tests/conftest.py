"""Shared fixtures: a throw-away workbook (its own settings.ini, runs, store, W&B folders) and a smoke run."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from mlops_nb.core.config import scratch_settings

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def make_workbook(root: Path) -> Path:
    "A scratch workbook under `root` using the repo's pipeline notebooks."
    return scratch_settings(root, REPO / "settings.ini")


def cli(*args, settings, env=None, timeout=600):
    "Run `mlops-nb ARGS` in a fresh process, as a user would; returns the CompletedProcess."
    e = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.run([str(BIN / "mlops-nb"), *args], capture_output=True, text=True, env=e, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def run_record(settings, proc):
    "The run.json of the run a `mlops-nb run` process printed."
    run_id = proc.stdout.split()[0]
    return json.loads((Path(settings).parent / "runs" / run_id / "run.json").read_text())


def _sharing_smoke(tests: Path) -> set:
    "The test files with a test or fixture that asks for the session's `smoke` workbook (an argument named `smoke`)."
    import ast
    return {f"tests/{f.name}" for f in tests.glob("test_*.py")
            if any(isinstance(n, ast.FunctionDef) and any(a.arg == "smoke" for a in n.args.args) for n in ast.walk(ast.parse(f.read_text())))}


def pytest_xdist_make_scheduler(config, log):
    "With pytest-xdist (`make pytest`: `-n 2 --dist loadfile`): each test file runs whole on one worker (its module "
    "fixtures once), and the files that use the session's `smoke` workbook all on one worker, in file order, as in one "
    "process: they share that workbook, and some change it (an approval, a newer version at staging). (xdist's own "
    "`xdist_group` marks do nothing under pytest 9: xdist 3.8 renames `item._nodeid`, which pytest 9 no longer reads.)"
    if config.getvalue("dist") != "loadfile": return None
    from xdist.scheduler import LoadFileScheduling
    shared = _sharing_smoke(Path(__file__).parent)

    class Groups(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "smoke" if path in shared else path
    return Groups(config, log)


@pytest.fixture(scope="session")
def workbook(tmp_path_factory):
    return make_workbook(tmp_path_factory.mktemp("workbook"))


@pytest.fixture(scope="session")
def smoke(workbook):
    "One smoke-profile pipeline run: (settings path, completed process, run record)."
    p = cli("run", "--profile", "smoke", settings=workbook)
    assert p.returncode == 0, p.stderr
    return workbook, p, run_record(workbook, p)


def variant_bundle(store, digest: str, tag: str) -> str:
    "Another real bundle (same model, signature and labels; a different model card, hence digest), stored; returns its digest."
    import io, zipfile
    src, out = zipfile.ZipFile(io.BytesIO(store.read_bytes(digest))), io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info)
            z.writestr(info, data + f"\n\nvariant {tag}\n".encode() if info.filename == "MODEL_CARD.md" else data)
    return store.put_bytes(out.getvalue(), f"variant-{tag}.zip")


# --- headless Chromium: the reviewer's pages as a browser shows them ---------------------------------------------------

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert CHROMIUM and DRIVER, "chromium and chromedriver are needed (make sysdeps installs them)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--window-size=1200,1600"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    tmp = tmp_path_factory.mktemp("chromium")           # its profile and scratch folders (org.chromium.Chromium.*): with the
    d = webdriver.Chrome(service=Service(DRIVER, env={**os.environ, "TMPDIR": str(tmp)}), options=o)   # tests', not in /tmp
    yield d
    d.quit()


def width_at_1280(d, page: Path, shot: Path) -> int:
    "The page's document width in a 1280 px wide window (screenshot saved to look at)."
    d.set_window_size(1280, 1400)
    d.get(page.as_uri())
    assert d.execute_script("return window.innerWidth") <= 1280
    d.save_screenshot(str(shot))
    return d.execute_script("return document.documentElement.scrollWidth")


@pytest.fixture
def s3(monkeypatch):
    "A moto S3 server on a free port of 127.0.0.1 with an empty bucket `fleet`, its endpoint and test credentials in "
    "the environment (as a deployment gives them): yields (server, env)."
    from moto.server import ThreadedMotoServer
    import socket
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0)); port = sk.getsockname()[1]
    env = {"AWS_ACCESS_KEY_ID": "fleet-test", "AWS_SECRET_ACCESS_KEY": "fleet-test-secret", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    for k, v in env.items(): monkeypatch.setenv(k, v)
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    import s3fs, urllib.request
    urllib.request.urlopen(urllib.request.Request(env["AWS_ENDPOINT_URL"] + "/moto-api/reset", method="POST"), timeout=10)  # moto keeps
    # its buckets in this process across servers: each test starts from none
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir("fleet")
    yield srv, env
    srv.stop()
