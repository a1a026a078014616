"""The reviewer's pages, opened in headless Chromium: no console errors, no broken links, nothing from the network."""
import json
from pathlib import Path
from urllib.parse import unquote, urlparse
import pytest
from conftest import cli, run_record, width_at_1280

def check_page(d, path: Path, shot: Path):
    "Open a page; return its links. Fails on console errors, broken local links and network resources."
    from selenium.webdriver.common.by import By
    d.get(path.as_uri())
    d.save_screenshot(str(shot))
    assert shot.stat().st_size > 5_000
    errors = [l for l in d.get_log("browser") if l["level"] == "SEVERE"]
    assert errors == [], errors
    resources = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(urlparse(r).scheme in ("file", "data") for r in resources), resources
    links = [a.get_attribute("href") for a in d.find_elements(By.TAG_NAME, "a")]
    for href in links:
        u = urlparse(href)
        assert u.scheme == "file", f"link to the network: {href}"
        assert Path(unquote(u.path)).exists(), f"broken link {href} on {path}"
    return links


def test_run_page_and_index(smoke, browser, tmp_path):
    settings, _, rec = smoke
    p = cli("run", "--profile", "smoke", "-p", "evaluate.mistakes=5", settings=settings)   # a second run to compare
    assert p.returncode == 0, p.stderr
    second = run_record(settings, p)
    runs = settings.parent / "runs"
    page = runs / rec["run_id"] / "index.html"
    links = check_page(browser, page, tmp_path / "run.png")
    assert any(l.endswith("03_evaluate.html") for l in links) and any(l.endswith("runs/index.html") for l in links)
    html = page.read_text()
    assert "<svg" in html and html.count("data:image/png;base64") >= 3 and rec["stages"][0]["outputs"]["dataset"] in html
    check_page(browser, runs / rec["run_id"] / "03_evaluate.html", tmp_path / "evaluate.png")
    for st in rec["stages"]:                                   # every stage's page (the QA page too) fits a 1280 px window
        assert width_at_1280(browser, runs / rec["run_id"] / st["html"], tmp_path / f"{st['name']}.png") <= 1280, st["name"]

    links = check_page(browser, runs / "index.html", tmp_path / "index.png")
    assert any(second["run_id"] in l for l in links)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    d = browser
    Select(d.find_element(By.ID, "ra")).select_by_value(rec["run_id"])
    Select(d.find_element(By.ID, "rb")).select_by_value(second["run_id"])
    cmp = d.find_element(By.ID, "cmp").text
    assert "evaluate.mistakes" in cmp and "16" in cmp and "5" in cmp          # the parameter that differs, side by side
    assert "test/accuracy" in cmp
    head = d.find_elements(By.CSS_SELECTOR, "#runs th")[0]
    first_before = d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")[0].text.split()[0]
    head.click(); first_after = d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")[0].text.split()[0]
    head.click(); first_again = d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")[0].text.split()[0]
    assert first_after != first_again and first_before in (first_after, first_again)      # sorting flips the order


# --- hostile names: a class folder named like HTML must render as text and run nothing ---------------------------------

HOSTILE = ["<img src=x onerror=window.pwned=1>", "<svg onload=window.pwned=2>", "a|b*c_[d](e)`f` $x$ &amp;"]
HOSTILE_FILE = "<img src=y onerror=window.pwned=4>.png"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    "A run on an image folder whose own name, class folders and a skipped file name are HTML and Markdown."
    import numpy as np
    from PIL import Image
    from conftest import make_workbook
    root = tmp_path_factory.mktemp("hostile")
    settings = make_workbook(root / "wb")
    imgs = root / "<b onmouseover=window.pwned=5>park"
    rng = np.random.default_rng(0)
    for k, c in enumerate(HOSTILE):
        (imgs / c).mkdir(parents=True)
        for i in range(10): Image.fromarray((rng.random((8, 8)) * 60 + 80 * k).astype(np.uint8)).save(imgs / c / f"{i}.png")
    (imgs / HOSTILE[0] / HOSTILE_FILE).write_text("not an image")                  # listed as skipped in the ingest report
    p = cli("run", "--profile", "smoke", "-p", f"ingest.source=imagefolder:{imgs}", "-p", "ingest.image_size=8",
            "-p", "ingest.skip_bad=True", settings=settings)
    assert p.returncode == 0, p.stderr
    return settings, run_record(settings, p)


def _pwned(d):
    return d.execute_script("return [window.pwned === undefined ? null : window.pwned, "
                            "document.querySelectorAll('img[onerror], svg[onload], [onmouseover]').length]")


def test_hostile_names_render_as_text_and_run_nothing(hostile, browser, tmp_path):
    from selenium.webdriver.common.by import By
    settings, rec = hostile
    run_dir = settings.parent / "runs" / rec["run_id"]
    pages = sorted(run_dir.glob("0*.html")) + [run_dir / "index.html", settings.parent / "runs" / "index.html"]
    assert len(pages) == 8                                                      # six stages, the run, the runs
    for page in pages:
        check_page(browser, page, tmp_path / f"{page.stem}.png")                  # no console error: nothing was blocked either
        assert _pwned(browser) == [None, 0], page
        head = page.read_text()[:4000]
        assert 'http-equiv="Content-Security-Policy"' in head, page
    text = lambda page: (browser.get(page.as_uri()), browser.find_element(By.TAG_NAME, "body").text)[1]
    ingest, evaluate, package = (text(run_dir / f) for f in ("01_ingest.html", "03_evaluate.html", "04_package.html"))
    for c in HOSTILE[:2]:
        assert c in ingest and c in evaluate and c in package                    # shown as the text it is
    assert HOSTILE[2] in ingest                                                  # Markdown syntax is text too
    assert HOSTILE_FILE in ingest                                                # the skipped file, named
    assert "<b onmouseover=window.pwned=5>park" in text(run_dir / "index.html")  # the source parameter, on the run page


def test_model_card_escapes_class_names(hostile):
    import zipfile, io
    from mlops_nb.core.store import Store
    settings, rec = hostile
    card = zipfile.ZipFile(io.BytesIO(Store(settings.parent / "store").read_bytes(rec["stages"][3]["outputs"]["bundle"]))
                           ).read("MODEL_CARD.md").decode()
    assert "<img" not in card and "<svg" not in card and "&#60;img src=x onerror=window.pwned=1&#62;" in card
    assert "onmouseover" in card and "<b " not in card                           # the source path, escaped as well


def test_csp_blocks_what_escaping_missed(hostile, browser, tmp_path):
    "The second wall: script smuggled into an executed notebook's output is rendered, yet does not run."
    import nbformat
    from mlops_nb.pipeline.report import render_notebook
    settings, rec = hostile
    nb = nbformat.read(settings.parent / "runs" / rec["run_id"] / "03_evaluate.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/html": '<img src=x onerror="window.pwned=7"><script>window.pwned=8</script>'})]))
    path = tmp_path / "smuggled.ipynb"
    nbformat.write(nb, path)
    browser.get(render_notebook(path).as_uri())
    assert _pwned(browser) == [None, 1]                                          # the element is there; its handler never ran


# --- the runs index at a 1280 px window: it fits, and the comparison opens on two runs of one pipeline ------------------

def fake_runs(runs: Path, n_build: int = 3) -> list:
    "Run records as the pipeline writes them, newest last: smoke build runs with long names and values, then a monitor run."
    recs = []
    for i in range(n_build):
        params = {"ingest": {"source": "imagefolder:/home/someone/datasets/" + "very-long-folder-name-without-any-breaks-" * 3 + str(i),
                             "image_size": 8}, "train": {"lr": [0.01, 0.003], "epochs": 1}, "evaluate": {"mistakes": 16 - i}}
        recs.append({"run_id": f"20261201-10000{i}-a{i:03d}", "status": "succeeded", "pipeline": "build",
                     "profile": "smoke-with-a-long-profile-name", "started": f"2026-12-01T10:00:0{i}Z", "ended": f"2026-12-01T10:01:0{i}Z",
                     "params": params, "git": {"commit": "0123456789abcdef0123", "dirty": True},
                     "metrics": {"test/accuracy": 0.91 + i / 100, "test/recall_gap": 0.123456789, "test/macro_f1": 0.9012345,
                                 "train/best_val_acc": 0.95, "package/onnx_parity_max_abs_diff_between_torch_and_onnx": 1.2e-7},
                     "stages": [{"name": st, "status": "succeeded", "inputs": {}, "outputs": {"x": "sha256:" + "ab" * 32}}
                                for st in ("ingest", "train", "evaluate", "package", "register", "apptest", "release")]})
    recs.append({"run_id": "20261203-100000-cccc", "status": "interrupted", "pipeline": "monitor", "profile": "monitor",
                 "started": "2026-12-03T10:00:00Z", "ended": None, "params": {"monitor": {"model": "digits-cnn", "since": "7d"}},
                 "metrics": {"monitor/rows": 5000}, "git": {"commit": "0123456789", "dirty": False},
                 "stages": [{"name": "monitor", "status": "interrupted", "inputs": {}, "outputs": {}}]})
    for r in recs:
        (runs / r["run_id"]).mkdir(parents=True, exist_ok=True)
        (runs / r["run_id"] / "run.json").write_text(json.dumps(r))
    return recs


@pytest.fixture(scope="module")
def fake_index(tmp_path_factory):
    from mlops_nb.core.config import scratch_settings, load_settings
    from mlops_nb.pipeline.report import write_runs_index, write_run_report
    s = load_settings(scratch_settings(tmp_path_factory.mktemp("index"), Path(__file__).parent.parent / "settings.ini"))
    recs = fake_runs(s.runs)
    write_run_report(s, recs[-2])
    return s, recs, write_runs_index(s)


def test_runs_index_and_run_page_fit_1280px(fake_index, browser, tmp_path):
    s, recs, index = fake_index
    assert width_at_1280(browser, index, tmp_path / "index.png") <= 1280
    assert width_at_1280(browser, s.runs / recs[-2]["run_id"] / "index.html", tmp_path / "run.png") <= 1280


def test_compare_opens_on_the_two_newest_runs_of_one_pipeline(fake_index, browser):
    "The newest run is a monitor run with no other: the comparison opens on the two newest build runs, not build against monitor."
    from mlops_nb.pipeline.report import compare_pair, load_runs
    from selenium.webdriver.common.by import By
    s, recs, index = fake_index
    runs = load_runs(s)
    a, b = compare_pair(runs)
    assert (runs[a]["run_id"], runs[b]["run_id"]) == (recs[1]["run_id"], recs[2]["run_id"])
    browser.get(index.as_uri())
    assert browser.find_element(By.ID, "ra").get_attribute("value") == recs[1]["run_id"]
    assert browser.find_element(By.ID, "rb").get_attribute("value") == recs[2]["run_id"]
    cmp = browser.find_element(By.ID, "cmp").text
    assert "evaluate.mistakes" in cmp and "monitor.model" not in cmp
    assert compare_pair(runs[:1]) is None and compare_pair([runs[0], runs[1]]) == (1, 0)     # no pair of one pipeline: the two newest
