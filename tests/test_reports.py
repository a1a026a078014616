"""The reviewer's pages, opened in headless Chromium: no console errors, no broken links, nothing from the network."""
import json, shutil
from pathlib import Path
from urllib.parse import unquote, urlparse
import pytest
from conftest import cli, run_record

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM and DRIVER, "chromium and chromedriver are needed (make sysdeps installs them)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--window-size=1200,1600"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(DRIVER), options=o)
    yield d
    d.quit()


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
