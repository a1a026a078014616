"""The package's layout: one subpackage per phase of the lifecycle, each importing only the phases before it, each module
exported from a notebook named after it (`nbs/NN_<phase>.<module>.ipynb`)."""
import ast, re
from pathlib import Path
from mlops_nb.pipeline.cache import _imports, _module_file

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "mlops_nb"
PHASES = ["core", "build", "pipeline", "deploy", "monitor", "cli"]    # in this order: each may import those before it


def _here(py: Path) -> str:
    "The dotted name of a module of the package (`build.data`); '' for a file outside it."
    return ".".join(py.relative_to(PKG).with_suffix("").parts) if py.is_relative_to(PKG) else ""


def imported(py: Path) -> set[str]:
    "The `mlops_nb` subpackages the module `py` imports anywhere (inside functions too): the stage cache's own reading "
    "of imports (`_imports`, relative ones resolved), cut to its first part."
    return {n.split(".")[0] for n in _imports(py.read_text(), "mlops_nb", _here(py))}


def modules():
    return [p for ph in PHASES for p in sorted((PKG / ph).glob("*.py")) if p.name != "__init__.py"]


def test_every_module_is_in_a_phase():
    loose = sorted(p.name for p in PKG.glob("*.py") if p.name not in ("__init__.py", "_modidx.py"))
    assert loose == [], f"modules outside the phase subpackages: {loose}"
    assert {p.name for p in PKG.iterdir() if p.is_dir() and not p.name.startswith("__")} == set(PHASES) | {"proto"}
    assert len(modules()) >= 55


def test_no_phase_imports_a_later_one():
    back = []
    for py in modules():
        phase = py.parent.name
        for used in imported(py) & set(PHASES):
            if PHASES.index(used) > PHASES.index(phase): back.append(f"{phase}/{py.name} imports {used}")
    assert back == [], back


def test_each_module_comes_from_its_notebook():
    for py in modules():
        m = re.search(r"File to edit: \.\./\.\./nbs/(\S+)\.ipynb", py.read_text())
        assert m, f"{py} is not generated from a notebook"
        assert re.fullmatch(rf"\d\d[a-z]?_{py.parent.name}\.{py.stem}", m[1]), f"{py} comes from nbs/{m[1]}.ipynb"


def test_the_check_sees_a_backward_import():
    "What nbdev writes, `from ..monitor.windows import x` in a core module, names monitor."
    src = "from ..monitor.windows import a\nfrom .db import b\ndef g():\n    import mlops_nb.deploy.serve\n"
    assert {n.split(".")[0] for n in _imports(src, "mlops_nb", "core.x")} == {"monitor", "core", "deploy"}


def _defines(py: Path) -> set[str]:
    "The names a module binds itself at its top level (definitions and assignments, under `if` and `try` too), not by import."
    out = set()
    for node in ast.parse(py.read_text()).body:
        for n in ast.walk(node):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): out.add(n.name)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store): out.add(n.id)
    return out


def test_names_are_imported_from_where_they_are_defined():
    "One way to import each name: from the module that defines it, never through another module that imports it (so a "
    "linter removing an import that module does not use breaks nothing)."
    files = [*modules(), *sorted((REPO / "tests").glob("*.py")), *sorted((REPO / "bench").rglob("*.py"))]
    defined, wrong = {}, []
    for f in files:
        for name in _imports(f.read_text(), "mlops_nb", _here(f)):       # `from A import b` gives A.b
            mod, _, attr = name.rpartition(".")
            if not mod or (target := _module_file(PKG, mod)) is None: continue   # a package, or the module itself
            if target not in defined: defined[target] = _defines(target)      # once a module (setdefault would parse it each time)
            if attr not in defined[target]: wrong.append(f"{f.relative_to(REPO)}: {attr} from {mod}")
    assert wrong == [], wrong


def test_no_function_over_60_lines():
    "A function a reader can hold in view: 60 lines at most, its signature and docstring included."
    long = [f"{py.relative_to(PKG)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for py in modules() for n in ast.walk(ast.parse(py.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert long == [], long
