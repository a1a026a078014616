"""`mlops-nb predict`: the forms of .npy rows it takes, and the files of a folder it skips, said (issue 23 item 15)."""
import numpy as np
import pytest
from PIL import Image
from conftest import make_workbook
from mlops_nb.cli import main as cli
from mlops_nb.cli.serve import score_paths


class Model:
    "What predict needs of a served model: a 1x8x8 input, two labels; class 1 when the mean pixel is over 100."
    name, version, shape, labels = "toy", 1, (1, 8, 8), ["dark", "light"]
    def predict(self, x):
        assert x.dtype == np.uint8 and x.shape[1:] == self.shape
        m = x.reshape(len(x), -1).mean(1) > 100
        return np.stack([~m, m], 1).astype(np.float32)


@pytest.mark.parametrize("shape", [(4, 8, 8), (4, 64), (4, 1, 8, 8)])
def test_npy_rows_of_an_8x8_model_in_every_form(tmp_path, shape):
    x = np.zeros((4, 1, 8, 8), np.uint8); x[1::2] = 200
    np.save(tmp_path / "rows.npy", x.reshape(shape))
    rows = score_paths(Model(), [tmp_path / "rows.npy"], progress=False)
    assert [r["label"] for r in rows] == ["dark", "light", "dark", "light"]


def test_npy_of_another_shape_is_refused_naming_the_forms(tmp_path):
    np.save(tmp_path / "rows.npy", np.zeros((4, 9, 9), np.uint8))
    with pytest.raises(ValueError, match=r"rows of shape \[9, 9\]; the model takes rows of \[1, 8, 8\] or \[64\] or \[8, 8\]"):
        score_paths(Model(), [tmp_path / "rows.npy"], progress=False)


def test_files_of_a_folder_that_are_not_images_are_said(tmp_path, monkeypatch, capsys):
    wb = make_workbook(tmp_path / "wb")
    from mlops_nb.deploy.served import ServedModel
    monkeypatch.setattr(ServedModel, "load", classmethod(lambda cls, s, ref, *a, **k: Model()))
    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "in" / "a.png")
    for n in ("notes.txt", "labels.txt"): (tmp_path / "in" / n).write_text("x")
    assert cli.main(["--settings", str(wb), "predict", "toy@1", str(tmp_path / "in")]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].split(",")[2] == "light"
    assert (f"skipped 2 file(s) in the folders given that are not PNG or JPEG images: {tmp_path / 'in' / 'labels.txt'}, "
            f"{tmp_path / 'in' / 'notes.txt'}") in err, err
