"""`make docs`: the documentation site builds offline, with a page per module showing every exported function."""
import ast, importlib, inspect, os, re, subprocess, sys
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
    assert "core_lease" in pages["core.cores.html"] and "cores the body keeps busy" in pages["core.cores.html"]   # docments too


def _annotation_names(fn) -> set[str]:
    "Names an unquoted annotation of `fn`'s parameters or return value uses (a quoted one is never evaluated by show_doc)."
    a = fn.args
    anns = [x.annotation for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x and x.annotation]
    anns += [fn.returns] if fn.returns else []
    return {n.id for ann in anns if not (isinstance(ann, ast.Constant) and isinstance(ann.value, str))
            for n in ast.walk(ann) if isinstance(n, ast.Name)}


def _bound(node) -> set[str]:
    "The module-level names a statement binds."
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)): return {(a.asname or a.name).split(".")[0] for a in node.names}
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def test_docs_signatures_resolve_in_notebook_order():
    "The quick half of `make docs`: nbdev's page for a notebook runs its cells in order and shows each exported "
    "definition's signature after its cell, so an annotation naming a class defined in a later cell (Kernel's "
    "`zygote: Zygote | None` did) kills the page with a NameError. Every unquoted annotation must name something "
    "bound in that cell or an earlier one."
    import builtins
    bad = []
    for py in sorted((REPO / "mlops_nb").rglob("*.py")):
        src = py.read_text()
        if "File to edit:" not in src: continue
        known = set(dir(builtins))
        for cell in re.split(r"^# %% .*$", src, flags=re.M):           # nbdev marks each exported cell
            tree = ast.parse(cell)
            for node in tree.body: known |= _bound(node)
            for node in tree.body:
                fns = [node] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else \
                      [f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"] if isinstance(node, ast.ClassDef) else []
                bad += [f"{py.name}: {node.name} annotates with {n!r}, defined in a later cell (quote the annotation)"
                        for f in fns for n in sorted(_annotation_names(f) - known)]
    assert not bad, "\n".join(bad)


def test_example_cells_keep_imports_apart():
    "nbdev's docs processing (`make docs`) executes every cell holding an import, for show_doc, without the examples "
    "before it: an example cell mixing imports with other code ran alone there and killed the site (a NameError). Imports "
    "go in a cell of their own (nbdev's FAQ)."
    import json
    mixed = []
    for nb in sorted((REPO / "nbs").glob("*.ipynb")):
        for c in json.loads(nb.read_text())["cells"]:
            src = "".join(c["source"])
            if c["cell_type"] != "code" or re.search(r"^#\| ?(export|exports|exporti|exec_doc|default_exp|eval: ?false)", src, re.M): continue
            try: tree = ast.parse("\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!"))))
            except SyntaxError: continue
            top = [isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body]
            nested = any(isinstance(m, (ast.Import, ast.ImportFrom)) for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))
                         for m in ast.walk(n))
            if (any(top) and not all(top)) or nested: mixed.append(f"{nb.name}:{c['id']}")
    assert mixed == [], mixed


def test_settings_documentation_is_generated(tmp_path):
    "settings.ini's comments, the README's map of the settings and the settings page are the models' descriptions, "
    "regenerated by `make readme` (nbs/_settings.py): a description changed without it fails here."
    import json
    from mlops_nb.core.config import SECTIONS, sections_table, settings_table, settings_text
    ini = REPO / "settings.ini"
    assert settings_text(ini) == ini.read_text(), "settings.ini's comments are stale: run `make readme`"
    for nb, cell_id, make in (("index.ipynb", "settings-map", sections_table),
                              ("explanations/settings.ipynb", "settings-table", settings_table)):
        cells = {c.get("id"): "".join(c["source"]) for c in json.loads((REPO / "nbs" / nb).read_text())["cells"]}
        assert cells[cell_id] == make(), f"nbs/{nb}: cell {cell_id} is stale: run `make readme`"
    readme = (REPO / "README.md").read_text()
    assert all(f"`[{sec}]`" in readme for sec in SECTIONS)
    # a description edited in the model shows in every generated place at once
    from mlops_nb.core.config import ServeSection
    f = ServeSection.model_fields["max_batch"]
    old, f.description = f.description, "EDITED most rows"
    try: assert "EDITED most rows" in settings_text(ini) and "EDITED most rows" in settings_table()
    finally: f.description = old


def test_tutorial_workbook_leaves_no_scratch_folder(tmp_path):
    "Each tutorial's scratch workbook is removed when its kernel exits, or, when its process left without exit handlers "
    "(nbdev-test's pool workers do), by the next workbook (nbdev-test left a 5 MB folder a tutorial in /tmp)."
    def run(code):
        p = subprocess.run([sys.executable, "-c", "import os, sys; sys.path.insert(0, 'nbs/tutorials'); from _workbook import Workbook\n" + code],
                           cwd=REPO, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp_path)}, timeout=120)
        assert p.returncode == 0, p.stderr
        return Path(p.stdout.strip().splitlines()[-1])
    root = run("wb = Workbook(); print(wb.root)")
    assert root.parent == tmp_path and not root.exists(), f"{root} left behind"
    left = run("wb = Workbook(); print(wb.root, flush=True); os._exit(0)")
    assert left.exists()                                                   # no exit handler ran
    run("wb = Workbook(); print(wb.root)")
    assert not left.exists() and not list(tmp_path.glob("mlops-nb-tutorial-*"))
