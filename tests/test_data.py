"""Ingest: image-folder validation, the split, the dataset version; and image folders through the CLI."""
import os
import json
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from conftest import cli, make_workbook, run_record
from mlops_nb.build.data import ingest, load_dataset, read_imagefolder, stratified_split
from mlops_nb.core.images import DataValidationError
from mlops_nb.core.store import Store


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


def test_reasons_are_reproducible(tmp_path):
    "A reason goes into the manifest, so it must not name a memory address: reproduce would see the raw data change."
    good_folder(tmp_path)
    (tmp_path / "cat" / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)        # the signature, then nothing PNG
    reasons = [dict(read_imagefolder(tmp_path, image_size=8, skip_bad=True)[3])[str(tmp_path / "cat" / "fake.png")] for _ in range(2)]
    assert reasons[0] == reasons[1] and " at 0x" not in reasons[0] and "UnidentifiedImageError" in reasons[0]


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
    with pytest.raises(ValueError, match="use 'digits', 'imagefolder:.*' or 'parquet:"):
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
    src = f"ingest.source=imagefolder:{os.path.relpath(tmp_path / 'pets')}"      # relative to where the command runs, as a user writes it
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
    p = cli("registry", "ls", settings=settings)
    assert p.stdout.startswith("pets-cnn  latest v1  staging->v1"), p.stdout   # named after the folder, not digits-cnn

    # the stage cache follows the folder's content, not only the parameters
    args = ["run", "--profile", "smoke", "-p", src, "-p", "ingest.image_size=16", "-p", "ingest.mode=RGB", "-p", "ingest.skip_bad=True"]
    again = run_record(settings, cli(*args, settings=settings))
    assert all(st["cached"] for st in again["stages"])                           # nothing changed: all cached
    _img(tmp_path / "pets" / "cat" / "2.png", (11, 14), "RGB", 200)             # one image redrawn, same name
    p = cli(*args, settings=settings)
    assert p.returncode == 0, p.stderr
    changed = run_record(settings, p)
    assert not changed["stages"][0]["cached"]
    assert changed["stages"][0]["outputs"]["dataset"] != rec["stages"][0]["outputs"]["dataset"]

    # the same name for a model of other inputs (grayscale now) is refused before anything runs, with a name to use instead
    runs = sorted((tmp_path / "wb" / "runs").iterdir())
    p = cli("run", "--profile", "smoke", "-p", src, "-p", "ingest.image_size=16", "-p", "ingest.skip_bad=True",
            "-p", "register.model_name=pets-cnn", settings=settings)
    assert p.returncode == 2 and p.stdout == "", p.stdout + p.stderr
    assert "pets-cnn (register.model_name) is registered with inputs 3x16x16, but these parameters give 1x16x16" in p.stderr
    assert "-p register.model_name=pets-cnn-1x16x16" in p.stderr and "-p ingest.mode=RGB" in p.stderr
    assert sorted((tmp_path / "wb" / "runs").iterdir()) == runs                  # no run started
    assert "pets-cnn  latest v2  staging->v2" in cli("registry", "ls", settings=settings).stdout


# --- reading faithfully: every mode, EXIF orientation, only regular files, pixel limits -------------------------------

def _one_image_folder(root: Path, name: str, im: Image.Image, fmt="PNG", **save):
    "Class `a` holds the image under test, class `b` a plain one: ingest with min_per_class=1."
    for c in ("a", "b"): (root / c).mkdir(parents=True, exist_ok=True)
    im.save(root / "a" / name, format=fmt, **save)
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(root / "b" / "plain.png")
    return root


def _read_a(root, mode="L", size=8, **kw):
    x, y, classes, skipped = read_imagefolder(root, image_size=size, mode=mode, min_per_class=1, **kw)
    return x[y == classes.index("a")][0]


def test_16_bit_png_keeps_its_grey_levels(tmp_path):
    a16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1024 + 300)          # 300 .. 64812: not all white
    im = Image.fromarray(a16)
    assert im.mode.startswith("I;16")
    got = _read_a(_one_image_folder(tmp_path, "deep.png", im))
    assert (got[0] == (a16 >> 8).astype(np.uint8)).all()                        # the top 8 bits, exactly


def test_transparency_is_composited_over_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255                                                           # red everywhere ...
    rgba[:4, :, 3] = 0                                                           # ... transparent on the top half
    rgba[4:, :, :3] = (0, 0, 255); rgba[4:, :, 3] = 255                          # opaque blue below
    got = _read_a(_one_image_folder(tmp_path / "rgba", "t.png", Image.fromarray(rgba, "RGBA")), mode="RGB")
    assert (got[:, :4] == 255).all() and (got[:, 4:].transpose(1, 2, 0) == (0, 0, 255)).all()
    pal = Image.fromarray(np.tile(np.array([0, 1], np.uint8), (8, 4)), "P")
    pal.putpalette([255, 0, 0, 0, 0, 0] + [0] * 762)                             # 0 red, 1 black
    got = _read_a(_one_image_folder(tmp_path / "pal", "p.png", pal, transparency=0))
    assert (got[0][:, 0::2] == 255).all() and (got[0][:, 1::2] == 0).all()       # transparent red -> white, black stays


def test_cmyk_jpeg_reads_as_its_colours(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8); rgb[..., 0] = 200; rgb[..., 1] = np.arange(16)[:, None] * 10; rgb[..., 2] = 60
    got = _read_a(_one_image_folder(tmp_path, "c.jpg", Image.fromarray(rgb).convert("CMYK"), fmt="JPEG", quality=100),
                  mode="RGB", size=16)
    assert np.abs(got.transpose(1, 2, 0).astype(int) - rgb).max() <= 8          # JPEG rounding only


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((8, 8), np.uint8); arr[0] = 255                               # a white top row
    im = Image.fromarray(arr)
    exif = im.getexif(); exif[0x0112] = 6                                        # 6: the camera was turned; rotate 90 degrees clockwise
    got = _read_a(_one_image_folder(tmp_path, "o.png", im, exif=exif))
    assert (got[0] == np.rot90(arr, -1)).all() and (got[0][:, -1] == 255).all()  # the top row became the right column


def _bomb_png(path: Path, w=200_000, h=200_000):
    "A tiny PNG whose header claims w x h pixels."
    import struct, zlib
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytearray(data[12:29]); ihdr[4:12] = struct.pack(">II", w, h)
    data[12:29] = ihdr; data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))


def test_decompression_bomb_is_one_listed_problem(tmp_path):
    good_folder(tmp_path)
    bomb = tmp_path / "cat" / "bomb.png"
    _bomb_png(bomb)
    (tmp_path / "dog" / "junk.png").write_text("not an image")
    with pytest.raises(DataValidationError) as e:
        read_imagefolder(tmp_path, image_size=8)
    reasons = dict(e.value.problems)
    assert "decompression bomb" in reasons[str(bomb)] and "200000x200000" in reasons[str(bomb)]
    assert str(tmp_path / "dog" / "junk.png") in reasons                          # the other problems are still listed
    x, y, classes, skipped = read_imagefolder(tmp_path, image_size=8, skip_bad=True)
    assert str(bomb) in dict(skipped) and np.bincount(y).tolist() == [8, 8, 8]           # the bomb is not among them
    with pytest.raises(DataValidationError, match="over the limit max_pixels=100"):   # the limit is a parameter
        read_imagefolder(tmp_path, image_size=8, skip_bad=False, max_pixels=100)


def test_only_regular_files_inside_the_root_are_read(tmp_path):
    import os, signal
    root = good_folder(tmp_path / "pets")
    os.mkfifo(root / "cat" / "a.png")                                            # would block a plain open() forever
    outside = tmp_path / "secret.png"; _img(outside, (9, 9), "L", 1)
    (root / "dog" / "link.png").symlink_to(outside)
    (root / "fox" / "inside.png").symlink_to(root / "fox" / "1.png")            # a symlink within the folder is fine
    (tmp_path / "elsewhere").mkdir(); (root / "bird").symlink_to(tmp_path / "elsewhere")
    (root / ".cache").mkdir(); _img(root / ".cache" / "0.png", (9, 9), "L", 2)
    (root / "cat" / ".DS_Store").write_bytes(b"\0\1")
    class Hung(BaseException): pass                                           # not an OSError: ingest must not swallow it
    def hung(*_): raise Hung("ingest blocked on a file")
    old = signal.signal(signal.SIGALRM, hung); signal.alarm(60)                  # a hang fails the test instead of CI
    try:
        with pytest.raises(DataValidationError) as e:
            read_imagefolder(root, image_size=8)
        x, y, classes, skipped = read_imagefolder(root, image_size=8, skip_bad=True)
    finally: signal.alarm(0); signal.signal(signal.SIGALRM, old)
    reasons = dict(e.value.problems)
    assert reasons[str(root / "cat" / "a.png")] == "not a regular file (a FIFO)"
    assert "outside the image folder" in reasons[str(root / "dog" / "link.png")]
    assert "outside the image folder" in reasons[str(root / "bird")]
    assert "outside" not in reasons.get(str(root / "fox" / "inside.png"), "")  # a link within the folder is read (here: a duplicate)
    assert str(root / ".cache") not in reasons                                  # hidden: not a problem ...
    assert "hidden" in dict(skipped)[str(root / ".cache")]                       # ... but listed as skipped
    assert "hidden" in dict(skipped)[str(root / "cat" / ".DS_Store")]
    assert classes == ["cat", "dog", "fox"]


def test_store_objects_follow_the_umask(tmp_path):
    import os
    old = os.umask(0o022)
    try:
        st = Store(tmp_path / "store")
        d = st.put_bytes(b"shared", "x.bin")
        assert st._obj(d).stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "store" / "meta" / (d.split(":")[1] + ".json")).stat().st_mode & 0o777 == 0o644
        from mlops_nb.core.tracking import write_json
        write_json(tmp_path / "run.json", {"a": 1})
        assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        d = st.put_bytes(b"private", "y.bin")
        assert st._obj(d).stat().st_mode & 0o777 == 0o600                          # a stricter umask is honoured too
    finally: os.umask(old)


def test_control_characters_in_names_are_listed_problems(tmp_path):
    "A class folder named with an ESC sequence, a file whose name carries a newline and a fake listing line: each refused, "
    "listed like any other problem, and the listing keeps one line per problem (issue 23 item 14)."
    good_folder(tmp_path)
    esc = tmp_path / "\x1b[31mred"
    esc.mkdir()
    for i in range(8): _img(esc / f"{i}.png", (10, 10), "L", 9 * i)
    forged = tmp_path / "cat" / "x.png\n  b.png: fine"
    _img(forged, (10, 10), "L", 3, "PNG")
    with pytest.raises(DataValidationError) as e:
        read_imagefolder(tmp_path, 16)
    assert sorted(p for p, _ in e.value.problems) == sorted([str(esc), str(forged)])
    assert all("control characters" in r for _, r in e.value.problems)
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and not any("\x1b" in l for l in lines), lines             # a heading and one line per problem
    assert "  " + str(forged).replace("\n", "\\n") + ": its name has control characters (\\n): rename it" in lines
    x, y, classes, skipped = read_imagefolder(tmp_path, 16, skip_bad=True)
    assert classes == ["cat", "dog", "fox"] and len(x) == 24 and len(skipped) == 2
