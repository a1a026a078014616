"""Camera-like frames (mlops_nb.build.frames): deterministic bytes whatever the workers, the folder layout the pipeline ingests,
the command line."""
import hashlib, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from mlops_nb.build.data import read_imagefolder
from mlops_nb.build.frames import frame_bytes, main, make_frames


def digests(root: Path) -> dict:
    "Every file under `root` (relative path -> sha256 of its bytes)."
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def park(tmp_path_factory):
    "40 frames of 64x48 px written by 2 worker processes: (root, summary)."
    root = tmp_path_factory.mktemp("frames") / "park"
    return root, make_frames(root, n=40, size=(64, 48), seed=5, workers=2)


def test_layout_counts_sizes_modes(park):
    root, s = park
    assert sorted(p.name for p in root.iterdir()) == ["cat", "dog", "empty"]
    names = {c: sorted(p.name for p in (root / c).iterdir()) for c in ("cat", "dog", "empty")}
    assert names["cat"][:2] == ["cat_000000.jpg", "cat_000003.jpg"] and names["dog"][0] == "dog_000001.jpg"
    assert {c: len(v) for c, v in names.items()} == s["counts"] == {"cat": 14, "dog": 13, "empty": 13}
    assert s["n"] == 40 and s["size"] == (64, 48) and s["workers"] == 2 and sum(s["light"].values()) == 40
    for p in root.rglob("*.jpg"):
        with Image.open(p) as im: assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 48)), p


def test_deterministic_whatever_the_workers(park, tmp_path):
    root, _ = park
    one = tmp_path / "one"
    make_frames(one, n=40, size=(64, 48), seed=5, workers=1)
    assert digests(one) == digests(root)                                   # workers=1 and workers=2: the same bytes
    assert (root / "dog/dog_000007.jpg").read_bytes() == frame_bytes("dog", 5, 7, (64, 48))
    other = tmp_path / "other"
    make_frames(other, n=40, size=(64, 48), seed=6, workers=1)
    assert not set(digests(other).values()) & set(digests(root).values())  # another seed: other frames, none repeated


def test_png_and_a_frame_per_index(tmp_path):
    s = make_frames(tmp_path / "p", n=6, size=32, classes=("empty", "cat"), fmt="png", workers=1)
    assert s["counts"] == {"empty": 3, "cat": 3}
    files = sorted((tmp_path / "p").rglob("*.png"))
    assert [f.name for f in files] == ["cat_000001.png", "cat_000003.png", "cat_000005.png",
                                       "empty_000000.png", "empty_000002.png", "empty_000004.png"]
    assert len({f.read_bytes() for f in files}) == 6


def test_read_by_the_pipelines_reader(park):
    root, _ = park
    x, y, classes, skipped = read_imagefolder(root, 32, "RGB")             # raises on any problem
    assert x.shape == (40, 3, 32, 32) and x.dtype == np.uint8 and classes == ["cat", "dog", "empty"] and skipped == []
    assert np.bincount(y).tolist() == [14, 13, 13]


def test_refuses_a_folder_that_is_not_empty_unless_forced(park, tmp_path):
    root = tmp_path / "park"
    make_frames(root, n=9, size=32, workers=1)
    (root / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not empty"): make_frames(root, n=3, size=32, workers=1)
    make_frames(root, n=3, size=32, workers=1, force=True)                  # a smaller run leaves no old frame behind
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == \
        ["cat/cat_000000.jpg", "dog/dog_000001.jpg", "empty/empty_000002.jpg", "mine.txt"]
    make_frames(root, n=4, size=32, classes=("cat", "dog"), workers=1, force=True)
    assert sorted(p.name for p in root.iterdir()) == ["cat", "dog", "mine.txt"]   # no empty class folder left for the reader


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "mlops_nb.build.frames", *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_help_and_refusals(tmp_path, capsys):
    p = cli("--help")
    assert p.returncode == 0 and "python -m mlops_nb.build.frames" in p.stdout and "WIDTHxHEIGHT" in p.stdout
    p = cli(str(tmp_path / "out"), "--n", "2")
    assert p.returncode == 2 and "error: n=2: need an int of at least one frame per class (3)" in p.stderr
    (tmp_path / "full").mkdir(); (tmp_path / "full/x").write_text("")
    for args, msg in (([str(tmp_path / "full"), "--n", "3"], "is not empty: choose a new folder, or force (--force)"),
                      ([str(tmp_path / "out"), "--size", "8"], "size=8: each side must be 16 to 8192 px"),
                      ([str(tmp_path / "out"), "--size", "12x"], "'12x': use 128 (square) or WIDTHxHEIGHT"),
                      ([str(tmp_path / "out"), "--fmt", "gif"], "fmt='gif': use one of jpg, jpeg, png"),
                      ([str(tmp_path / "out"), "--workers", "-1"], "workers=-1: use an int from 0 to 1024"),
                      ([str(tmp_path / "out"), "--classes", "cat,\x1b[2Jfox"], "\\x1b[2Jfox")):   # escaped: no terminal control
        with pytest.raises(SystemExit) as e: main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and msg in err and "\x1b" not in err, (args, err)
    assert not (tmp_path / "out").exists() and os.listdir(tmp_path / "full") == ["x"]


def test_cli_writes(tmp_path):
    p = cli(str(tmp_path / "out"), "--n", "6", "--size", "40x30", "--seed", "2", "--workers", "1")
    assert p.returncode == 0, p.stderr
    assert "wrote 6 frames (cat 2, dog 2, empty 2) of 40x30 px" in p.stdout
    assert (tmp_path / "out/empty/empty_000005.jpg").read_bytes() == frame_bytes("empty", 2, 5, (40, 30))
