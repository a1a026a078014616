"""Ingest: image-folder validation, the split, the dataset version; and image folders through the CLI."""
import json
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from conftest import cli, make_workbook, run_record
from mlops_nb.data import DataValidationError, ingest, load_dataset, read_imagefolder, stratified_split
from mlops_nb.store import Store


def _img(path, size, mode, value, fmt=None):
    arr = (np.arange(size[0] * size[1]).reshape(size[1], size[0]) * 7 + value) % 256
    im = Image.fromarray(arr.astype(np.uint8))
    im.convert(mode).save(path, format=fmt)


def good_folder(root: Path, classes=("cat", "dog", "fox"), n=8):
    "Valid images of several sizes, modes and formats."
    modes = ["RGB", "L", "RGBA", "P"]
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            ext = ".jpg" if i % 3 == 0 else ".png"
            _img(root / c / f"{i}{ext}", (10 + i, 14 + k), "RGB" if ext == ".jpg" else modes[i % 4], 31 * k + 5 * i,
                 "JPEG" if ext == ".jpg" else "PNG")
    return root


def bad_folder(root: Path):
    "A good folder plus one of each problem; returns the offending paths."
    good_folder(root)
    corrupt = root / "cat" / "corrupt.png"
    corrupt.write_bytes((root / "cat" / "1.png").read_bytes()[:40])          # a truncated PNG
    text = root / "dog" / "readme.jpg"
    text.write_text("this is not a jpeg")                                    # a text file named .jpg
    (root / "empty").mkdir()                                                 # an empty class
    dup_a, dup_b = root / "fox" / "1.png", root / "dog" / "copy_of_fox.png"
    dup_b.write_bytes(dup_a.read_bytes())                                    # the same file under two classes
    return {"corrupt": corrupt, "text": text, "empty": root / "empty", "dup_a": dup_a, "dup_b": dup_b}


def test_good_folder_reads_every_image(tmp_path):
    x, y, classes, skipped = read_imagefolder(good_folder(tmp_path), image_size=16, mode="RGB")
    assert classes == ["cat", "dog", "fox"] and x.shape == (24, 3, 16, 16) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [8, 8, 8] and skipped == []


def test_every_problem_listed_in_one_error(tmp_path):
    bad = bad_folder(tmp_path)
    with pytest.raises(DataValidationError) as e:
        read_imagefolder(tmp_path, image_size=16)
    msg, listed = str(e.value), {p for p, _ in e.value.problems}
    assert {str(p) for p in bad.values()} <= listed
    assert "corrupt or unreadable image" in msg and "not an image file" in msg and "empty class folder" in msg
    assert "under several classes: dog, fox" in msg and "skip_bad=True" in msg


def test_skip_bad_skips_and_lists(tmp_path):
    bad = bad_folder(tmp_path)
    x, y, classes, skipped = read_imagefolder(tmp_path, image_size=16, skip_bad=True)
    assert classes == ["cat", "dog", "fox"]
    assert {str(p) for p in bad.values()} <= {p for p, _ in skipped}
    assert np.bincount(y).tolist() == [8, 8, 7]                      # the fox copied into dog is dropped from fox too


def test_class_below_minimum(tmp_path):
    good_folder(tmp_path, classes=("a", "b"), n=8)
    (tmp_path / "c").mkdir()
    _img(tmp_path / "c" / "0.png", (9, 9), "L", 3)
    with pytest.raises(DataValidationError, match="fewer than min_per_class=5"):
        read_imagefolder(tmp_path, min_per_class=5)


def test_missing_folder_and_bad_source(tmp_path):
    with pytest.raises(DataValidationError, match="not a folder"):
        ingest(f"imagefolder:{tmp_path / 'nope'}", tmp_path)
    with pytest.raises(ValueError, match="use 'digits' or 'imagefolder:"):
        ingest("mnist", tmp_path)


def test_split_is_stratified_seeded_and_versioned(tmp_path):
    a, b = ingest("digits", tmp_path / "a"), ingest("digits", tmp_path / "b")
    assert a.manifest["version"] == b.manifest["version"]                    # same content + split, same version
    c = ingest("digits", tmp_path / "c", seed=1)
    assert c.manifest["version"] != a.manifest["version"]                    # the split is part of the version
    for split in ("train", "val", "test"):
        counts = np.array(list(a.manifest["counts"][split].values()))
        share = counts / np.array([sum(a.manifest["counts"][s][k] for s in ("train", "val", "test")) for k in a.manifest["classes"]])
        assert np.ptp(share) < 0.02                                          # every class split alike
    assert (load_dataset(a.path).split == a.dataset.split).all()
    with pytest.raises(ValueError, match="their sum below 1"):
        stratified_split(np.zeros(10), 0.5, 0.6)


def test_imagefolder_through_the_cli(tmp_path):
    settings = make_workbook(tmp_path / "wb")
    bad = bad_folder(tmp_path / "pets")
    src = f"ingest.source=imagefolder:{tmp_path / 'pets'}"
    p = cli("run", "--profile", "smoke", "-p", src, "-p", "ingest.image_size=16", settings=settings)
    assert p.returncode == 1
    rec = run_record(settings, p)
    assert rec["status"] == "failed" and rec["error"]["stage"] == "ingest"
    for path in bad.values():
        assert str(path) in rec["error"]["message"]                 # every offending path, in one message
    assert not (tmp_path / "wb" / "store" / "objects").exists() or not any((tmp_path / "wb" / "store" / "objects").rglob("*.*"))

    p = cli("run", "--profile", "smoke", "-p", src, "-p", "ingest.image_size=16", "-p", "ingest.mode=RGB",
            "-p", "ingest.skip_bad=True", settings=settings)
    assert p.returncode == 0, p.stderr
    rec = run_record(settings, p)
    manifest = json.loads(Store(tmp_path / "wb" / "store").read_bytes(rec["stages"][0]["outputs"]["manifest"]))
    assert manifest["classes"] == ["cat", "dog", "fox"] and manifest["shape"] == [3, 16, 16]
    assert {str(p) for p in bad.values()} <= {p for p, _ in manifest["skipped"]}
    report = (tmp_path / "wb" / "runs" / rec["run_id"] / "01_ingest.ipynb").read_text()
    assert "readme.jpg" in report                                   # the skipped files are listed in the report
