"""`make docs`: the documentation site builds offline, with a page per module showing every exported function."""
import importlib, inspect, re, subprocess, sys
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]


def modules():
    "Every generated module (mlops_nb/**/*.py) and the notebook it is exported from."
    for py in sorted((REPO / "mlops_nb").rglob("*.py")):
        m = re.search(r"File to edit: \.\./(?:\.\./)?nbs/(\S+)\.ipynb", py.read_text())
        if m: yield ".".join(py.relative_to(REPO).with_suffix("").parts), m[1]


@pytest.mark.slow                 # about 70 s: in `make test-slow`, keeping `make test` near 15 minutes
def test_docs_site(tmp_path):
    out = tmp_path / "site"
    p = subprocess.run([sys.executable, str(REPO / "nbs" / "_docs.py"), "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    pages = {f.name: f.read_text() for f in out.glob("*.html")}
    home = pages.pop("index.html")
    mods = list(modules())
    assert len(mods) >= 25, mods
    for mod, nb in mods:
        m = importlib.import_module(mod)
        names = [n for n in getattr(m, "__all__", []) if inspect.isfunction(getattr(m, n)) or inspect.isclass(getattr(m, n))]
        name = re.sub(r"^\d+[a-z]?_", "", nb) + ".html"               # nbdev's page for the notebook
        assert name in pages, f"no page {name} for {mod}"
        assert f'href="{name}"' in home, f"the home page does not link {name}"
        text = re.sub(r"<[^>]+>", "", pages[name])
        for n in names:                                            # the signature of each exported function and class
            assert re.search(rf"(def|class) {n}\b", text), f"{name}: no signature of {mod}.{n}"
    assert "core_lease" in pages["cores.html"] and "cores the body keeps busy" in pages["cores.html"]   # docments too
