"""Shared pytest fixtures. Importable without TensorFlow or PyTorch."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

# =============================================================================
# Data-layer fixtures (shared/data/images.py, loaders.py, builtin.py, ...):
# small datasets written into tmp_path in the REAL on-disk layouts.
# =============================================================================


@pytest.fixture
def ktp_dirs(tmp_path, monkeypatch):
    """Point KTP_CACHE_DIR and KTP_DATA_DIR at fresh folders under tmp_path."""
    dirs = SimpleNamespace(cache=tmp_path / "ktp-cache", data=tmp_path / "ktp-data")
    monkeypatch.setenv("KTP_CACHE_DIR", str(dirs.cache))
    monkeypatch.setenv("KTP_DATA_DIR", str(dirs.data))
    return dirs


# PASCAL_2007 fixture: fname -> (labels cell, is_valid cell). Label counts:
# car 1, cat 1, dog 2, person 2; two rows without labels (c.png valid, f.png
# train). Train rows: a, b, e, f; valid rows: c, d.
PASCAL_ROWS = [
    ("a.jpg", "car person", "False"),
    ("b.png", "dog", "False"),
    ("c.png", "", "True"),
    ("d.png", "person", "True"),
    ("e.jpg", "cat dog", "False"),
    ("f.png", "", "False"),
]


def _pascal_images(folder: Path) -> None:
    """One image per mode: RGB jpg, L png, P png, RGBA png, CMYK jpg, RGB png."""
    Image.new("RGB", (20, 16), (255, 0, 0)).save(folder / "a.jpg", quality=95)
    Image.new("L", (10, 10), 128).save(folder / "b.png")
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 255] + [0, 0, 0] * 255)  # index 0 = pure blue
    pal.save(folder / "c.png")
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # left half fully transparent black
    rgba[:, 4:] = (0, 255, 0, 255)  # right half opaque green
    Image.fromarray(rgba, mode="RGBA").save(folder / "d.png")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(folder / "e.jpg", quality=95)  # red in CMYK
    Image.new("RGB", (12, 12), (255, 255, 255)).save(folder / "f.png")


def write_pascal(root: Path, rows=PASCAL_ROWS, header="fname,labels,is_valid") -> Path:
    """A fastai PASCAL_2007-style folder: root/train.csv + root/train/<fname>."""
    (root / "train").mkdir(parents=True, exist_ok=True)
    _pascal_images(root / "train")
    lines = [header] + [",".join(r) for r in rows]
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def pascal_dir(tmp_path):
    """PASCAL_2007 layout with 6 images of different modes (see PASCAL_ROWS)."""
    return write_pascal(tmp_path / "pascal")


# BIWI fixture. Per person: (image W, H, fx, fy, cx, cy) and frames
# {frame stem: head translation (x, y, z)}. Centres (fastbook ch.6), by hand:
#   01/frame_00001: 10*100/200+20 = 25,  -5*120/200+15 = 12
#   01/frame_00002: -40*100/400+20 = 10, 25*120/400+15 = 22.5
#   02/frame_00001: 12*50/100+29.5 = 35.5, 6*50/100+19.5 = 22.5   (60x40 images)
#   02/frame_00002: 0+29.5 = 29.5,        0+19.5 = 19.5
#   13/frame_00003: 30*200/600+20 = 30,   -30*100/600+15 = 10
#   13/frame_00004: -6*200/300+20 = 16,    9*100/300+15 = 18
BIWI_PERSONS = {
    "01": ((40, 30, 100, 120, 20, 15), {"frame_00001": (10, -5, 200), "frame_00002": (-40, 25, 400)}),
    "02": ((60, 40, 50, 50, 29.5, 19.5), {"frame_00001": (12, 6, 100), "frame_00002": (0, 0, 900)}),
    "13": ((40, 30, 200, 100, 20, 15), {"frame_00003": (30, -30, 600), "frame_00004": (-6, 9, 300)}),
}
# A real-looking rotation (BIWI sequence 12's rgb.cal), for the filler rows.
_ROTATION_ROWS = "0.999947 0.00432361 0.00929419 \n-0.00446314 0.999877 0.0150443 \n-0.009228 -0.015085 0.999844 \n"


def biwi_cal_text(fx, fy, cx, cy, width, height) -> str:
    """rgb.cal exactly as BIWI ships it: intrinsics, blank, distortion, blank,
    rotation, blank, translation, blank, image size."""
    return (
        f"{fx:g} 0 {cx:g} \n0 {fy:g} {cy:g} \n0 0 1 \n\n"
        "0 0 0 0 \n\n"
        f"{_ROTATION_ROWS}\n"
        "-24.0198 5.8896 -13.2308 \n\n"
        f"{width} {height} \n"
    )


def biwi_pose_text(tx, ty, tz) -> str:
    """frame_*_pose.txt exactly as BIWI ships it: rotation, blank, translation."""
    return f"0.980639 0.109899 0.162077 \n-0.11023 0.993882 -0.00697376 \n-0.161851 -0.011027 0.986754 \n\n{tx:g} {ty:g} {tz:g} \n\n"


def write_biwi(root: Path, persons=BIWI_PERSONS) -> Path:
    """A fastai BIWI_HEAD_POSE-style folder (plus a stray .obj file, as in the real one)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "01.obj").write_text("# head template, not a person folder\n")
    for i, (person, ((w, h, fx, fy, cx, cy), frames)) in enumerate(persons.items()):
        folder = root / person
        folder.mkdir()
        (folder / "rgb.cal").write_text(biwi_cal_text(fx, fy, cx, cy, w, h))
        for j, (stem, t) in enumerate(frames.items()):
            colour = (40 * i + 20, 60 * j + 30, 90)
            Image.new("RGB", (w, h), colour).save(folder / f"{stem}_rgb.jpg", quality=95)
            (folder / f"{stem}_pose.txt").write_text(biwi_pose_text(*t))
    return root


@pytest.fixture
def biwi_dir(tmp_path):
    """BIWI_HEAD_POSE layout: persons 01, 02 (60x40 images) and 13, 2 frames each."""
    return write_biwi(tmp_path / "biwi")


@pytest.fixture
def csv_file(tmp_path):
    """Factory: csv_file(text, name="data.csv") writes text into tmp_path and returns the path."""

    def make(text: str, name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return make


# ============================================================ end data-layer
