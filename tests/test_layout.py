"""The package's layout: one subpackage per phase of the lifecycle, each importing only the phases before it, each module
exported from a notebook named after it (`nbs/NN_<phase>.<module>.ipynb`)."""
import ast, re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "mlops_nb"
PHASES = ["core", "build", "pipeline", "deploy", "monitor", "cli"]    # in this order: each may import those before it


def imported(py: Path) -> set[str]:
    "The `mlops_nb` subpackages the module `py` imports anywhere (inside functions too), relative imports resolved."
    here = py.relative_to(PKG).with_suffix("").parts                  # ('build', 'data')
    out = set()
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mlops_nb.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "mlops_nb": continue
                out |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
            else:
                base = list(here[:len(here) - node.level]) + [p for p in (node.module or "").split(".") if p]
                out |= {base[0]} if base else {a.name for a in node.names}
    return out


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


def test_the_check_sees_a_backward_import(tmp_path):
    "`imported` resolves what nbdev writes: `from ..monitor.windows import x` in a core module names monitor."
    (tmp_path / "core").mkdir()
    f = tmp_path / "core" / "x.py"
    f.write_text("from ..monitor.windows import a\nfrom .db import b\ndef g():\n    import mlops_nb.deploy.serve\n")
    global PKG
    saved, PKG = PKG, tmp_path
    try: assert imported(f) == {"monitor", "core", "deploy"}
    finally: PKG = saved


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
        here = f.relative_to(PKG).with_suffix("").parts if f.is_relative_to(PKG) else ()
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom) or (node.level == 0 and not (node.module or "").startswith("mlops_nb.")): continue
            parts = node.module.split(".")[1:] if node.level == 0 else \
                    list(here[:len(here) - node.level]) + [p for p in (node.module or "").split(".") if p]
            target = PKG.joinpath(*parts).with_suffix(".py")
            if not target.is_file(): continue                                # a package: `from . import lake`
            have = defined.setdefault(target, _defines(target))
            wrong += [f"{f.relative_to(REPO)}: {a.name} from {'.'.join(parts)}" for a in node.names if a.name not in have]
    assert wrong == [], wrong


def test_no_function_over_60_lines():
    "A function a reader can hold in view: 60 lines at most, its signature and docstring included."
    long = [f"{py.relative_to(PKG)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for py in modules() for n in ast.walk(ast.parse(py.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert long == [], long
