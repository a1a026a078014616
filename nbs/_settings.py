"""`make readme` (and `make export`) step: the settings' documentation generated from their models.

Writes the generated markdown into two notebook cells: the README's map of the sections (`nbs/index.ipynb`, cell
`settings-map`) and the full table (`nbs/explanations/settings.ipynb`, cell `settings-table`); then `settings.ini`'s
comments (`mlops-nb settings --write`). tests/test_docs.py fails when any of them is stale."""
import json, sys
from pathlib import Path

NBS = Path(__file__).resolve().parent
sys.path.insert(0, str(NBS.parent))
from mlops_nb.core.config import sections_table, settings_table, settings_text  # noqa: E402

CELLS = {NBS/"index.ipynb": ("settings-map", sections_table), NBS/"explanations"/"settings.ipynb": ("settings-table", settings_table)}


def lines(text: str) -> list[str]:
    "A notebook cell's `source`: the text's lines, each but the last ending in a newline (as nbdev-clean leaves them)."
    ls = text.split("\n")
    return [x + "\n" for x in ls[:-1]] + ([ls[-1]] if ls[-1] else [])


def main() -> int:
    for nb_path, (cell_id, make) in CELLS.items():
        nb = json.loads(nb_path.read_text())
        cell = next(c for c in nb["cells"] if c.get("id") == cell_id)
        if cell["source"] != lines(make()):
            cell["source"] = lines(make())
            nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            print(f"{nb_path.relative_to(NBS.parent)}: cell {cell_id} regenerated")
    ini = NBS.parent/"settings.ini"
    if settings_text(ini) != ini.read_text():
        ini.write_text(settings_text(ini)); print("settings.ini: comments regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
