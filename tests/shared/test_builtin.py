"""shared/data/builtin.py: deterministic digit datasets in the real layouts."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from shared.data import builtin, images
from shared.data.builtin import DIGIT_WORDS, builtin_dataset, make_multilabel, make_regression
from shared.core.errors import UsageError

pytestmark = pytest.mark.usefixtures("ktp_dirs")


def _tree_hashes(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- determinism
def test_multilabel_same_seed_same_bytes(tmp_path):
    a = _tree_hashes(make_multilabel(tmp_path / "a", n_items=40, seed=0))
    b = _tree_hashes(make_multilabel(tmp_path / "b", n_items=40, seed=0))
    c = _tree_hashes(make_multilabel(tmp_path / "c", n_items=40, seed=1))
    assert len(a) == 41  # train.csv + 40 png
    assert a == b
    assert a["train.csv"] != c["train.csv"]
    assert sum(a[k] != c[k] for k in a) >= 35


def test_regression_same_seed_same_bytes(tmp_path):
    kw = dict(n_per_person=4, persons=("01", "13"))
    a = _tree_hashes(make_regression(tmp_path / "a", seed=0, **kw))
    b = _tree_hashes(make_regression(tmp_path / "b", seed=0, **kw))
    c = _tree_hashes(make_regression(tmp_path / "c", seed=5, **kw))
    assert len(a) == 2 * (1 + 4 * 2)  # rgb.cal + 4 x (jpg, pose) per person
    assert a == b
    assert a["01/rgb.cal"] == c["01/rgb.cal"]
    assert a["01/frame_00000_rgb.jpg"] != c["01/frame_00000_rgb.jpg"]
    assert a["13/frame_00003_pose.txt"] != c["13/frame_00003_pose.txt"]


# ---------------------------------------------------------------- multilabel
def test_multilabel_layout_and_labels(tmp_path):
    root = make_multilabel(tmp_path / "ml")
    df = pd.read_csv(root / "train.csv", keep_default_na=False)
    assert list(df.columns) == ["fname", "labels", "is_valid"]
    assert len(df) == 600 and int(df["is_valid"].sum()) == 120
    n_labels = df["labels"].str.split().str.len()
    assert np.bincount(n_labels, minlength=4).tolist() == [90, 210, 180, 120]  # 15/35/30/20 %
    for labels in df["labels"]:
        words = labels.split()
        assert len(set(words)) == len(words) and set(words) <= set(DIGIT_WORDS)
    with Image.open(root / "train" / df["fname"][0]) as img:
        assert (img.format, img.mode, img.size) == ("PNG", "RGB", (48, 48))


def test_multilabel_empty_image_is_background_only(tmp_path):
    root = make_multilabel(tmp_path / "ml", n_items=40)
    df = pd.read_csv(root / "train.csv", keep_default_na=False)
    empty = df.loc[df["labels"] == "", "fname"].tolist()
    full = df.loc[df["labels"].str.split().str.len() == 3, "fname"].tolist()
    assert len(empty) == 6  # round(0.15 * 40)
    assert np.asarray(Image.open(root / "train" / empty[0])).max() <= builtin._NOISE_MAX
    assert np.asarray(Image.open(root / "train" / full[0])).max() >= builtin._COLOUR_MIN


def test_builtin_multilabel_dataset(ktp_dirs):
    ds = builtin_dataset("multilabel")
    assert ds.format == "builtin-multilabel" and ds.task == "multilabel"
    assert (ds.source, ds.meta["generator"]["version"]) == (str(ktp_dirs.data / "multilabel-v1"), 1)
    assert ds.classes == sorted(DIGIT_WORDS)
    assert ds.x_train.shape == (480, 32, 32, 3) and ds.x_valid.shape == (120, 32, 32, 3)
    s = ds.summary()
    assert s["items_without_labels"] == 90
    assert sum(s["label_counts"].values()) == 210 + 2 * 180 + 3 * 120
    assert min(s["label_counts"].values()) > 50
    assert ds.y_train.sum(axis=1).max() == 3


# ---------------------------------------------------------------- regression
def test_regression_pose_projects_to_digit_centre(tmp_path):
    root = make_regression(tmp_path / "rg", n_per_person=10, persons=("01", "13"))
    cal = np.genfromtxt(root / "01" / "rgb.cal", skip_footer=6)
    np.testing.assert_array_equal(cal, [[500, 0, 32], [0, 500, 24], [0, 0, 1]])
    for k in range(10):
        ctr = np.genfromtxt(root / "01" / f"frame_{k:05d}_pose.txt", skip_header=3)
        u = ctr[0] * cal[0][0] / ctr[2] + cal[0][2]
        v = ctr[1] * cal[1][1] / ctr[2] + cal[1][2]
        assert u == int(u) and v == int(v)  # exact, integer centres
        assert 8 <= u <= 64 - 8 and 8 <= v <= 48 - 8
        img = np.asarray(Image.open(root / "01" / f"frame_{k:05d}_rgb.jpg"), dtype=np.float64)
        assert img.shape == (48, 64, 3)
        box = img[int(v) - 8 : int(v) + 8, int(u) - 8 : int(u) + 8]
        outside = img.sum() - box.sum()
        assert box.mean() > 2 * outside / (img.size - box.size)  # the digit is in the box


def test_builtin_regression_dataset(ktp_dirs):
    ds = builtin_dataset("regression")
    assert ds.format == "builtin-regression" and ds.classes == ["x", "y"]
    assert ds.x_train.shape == (500, 32, 32, 3) and ds.x_valid.shape == (100, 32, 32, 3)
    assert all(it.startswith("13/") for it in ds.items_valid)
    assert {it[:2] for it in ds.items_train} == {"01", "02", "03", "04", "05"}
    assert ds.meta["original_sizes"]["valid"][0] == [64, 48]
    assert np.abs(ds.y_train).max() <= 1 - 8 / 32 + 1e-6  # digits never touch the border
    px = (ds.y_train.astype(np.float64) + 1) * [32, 24]
    np.testing.assert_allclose(px, np.round(px), atol=1e-4)  # integer pixel centres


# ---------------------------------------------------------------- caching & atomicity
def test_second_call_neither_generates_nor_decodes(ktp_dirs, monkeypatch):
    first = builtin_dataset("multilabel")

    def forbidden(*a, **k):
        raise AssertionError("should have been served from disk/cache")

    monkeypatch.setattr(builtin, "make_multilabel", forbidden)
    monkeypatch.setattr(images, "load_image", forbidden)
    start = time.perf_counter()
    again = builtin_dataset("multilabel")
    assert time.perf_counter() - start < 2.0
    assert again.fingerprint() == first.fingerprint()


def test_interrupted_generation_leaves_nothing(ktp_dirs, monkeypatch):
    def half_then_crash(root, seed=0):
        (root / "train").mkdir(parents=True)
        (root / "train.csv").write_text("fname,labels,is_valid\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(builtin, "make_multilabel", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        builtin_dataset("multilabel")
    assert list(ktp_dirs.data.iterdir()) == []


def test_explicit_data_dir_and_unknown_name(tmp_path):
    ds = builtin_dataset("regression", data_dir=tmp_path / "here", image_size=8)
    assert ds.source == str(tmp_path / "here") and ds.input_shape == (8, 8, 3)
    assert (tmp_path / "here" / "13" / "rgb.cal").is_file()
    with pytest.raises(UsageError, match="must be one of .*got 'cifar'"):
        builtin_dataset("cifar")
