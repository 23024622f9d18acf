"""shared/data/loaders.py on well-formed inputs: real numbers from hand-made fixtures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.data.dataset import Dataset
from shared.core.errors import UsageError
from shared.data.loaders import FORMATS, load, load_biwi, load_csv, load_pascal, load_sklearn, point_pixels

pytestmark = pytest.mark.usefixtures("ktp_dirs")


# ---------------------------------------------------------------- PASCAL
def test_pascal_counts_labels_and_split(pascal_dir):
    ds = load_pascal(pascal_dir)
    assert ds.task == "multilabel" and ds.format == "pascal"
    assert ds.classes == ["car", "cat", "dog", "person"]
    assert ds.items_train == ["a.jpg", "b.png", "e.jpg", "f.png"]
    assert ds.items_valid == ["c.png", "d.png"]
    assert ds.x_train.shape == (4, 32, 32, 3) and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.float32
    np.testing.assert_array_equal(ds.y_train, [[1, 0, 0, 1], [0, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(ds.y_valid, [[0, 0, 0, 0], [0, 0, 0, 1]])
    s = ds.summary()
    assert s["label_counts"] == {"car": 1, "cat": 1, "dog": 2, "person": 2}
    assert s["items_without_labels"] == 2


def test_pascal_pixels_of_each_mode(pascal_dir):
    ds = load_pascal(pascal_dir, image_size=8)
    x = dict(zip(ds.items_train + ds.items_valid, np.concatenate([ds.x_train, ds.x_valid])))
    assert x["a.jpg"].shape == (8, 8, 3)
    assert np.abs(x["a.jpg"] - [1, 0, 0]).max() < 3 / 255  # RGB jpeg, red
    np.testing.assert_array_equal(x["b.png"], np.full((8, 8, 3), 128 / 255, np.float32))  # L
    np.testing.assert_array_equal(x["c.png"][3, 3], [0, 0, 1])  # P, blue palette entry
    np.testing.assert_array_equal(x["d.png"][:, 0], np.ones((8, 3)))  # RGBA transparent -> white
    np.testing.assert_array_equal(x["d.png"][:, 7], np.tile([0, 1, 0], (8, 1)))  # opaque green
    assert np.abs(x["e.jpg"] - [1, 0, 0]).max() < 3 / 255  # CMYK jpeg, red
    np.testing.assert_array_equal(x["f.png"], np.ones((8, 8, 3)))


def test_pascal_caller_vocab_keeps_order(pascal_dir):
    vocab = ["person", "dog", "cat", "car", "bus"]
    ds = load_pascal(pascal_dir, vocab=vocab)
    assert ds.classes == vocab
    np.testing.assert_array_equal(ds.y_train[0], [1, 0, 0, 1, 0])  # a.jpg: car person


@pytest.mark.parametrize("true_text, false_text", [("true", "false"), ("1", "0"), ("TRUE", "False")])
def test_pascal_is_valid_spellings(tmp_path, true_text, false_text):
    from conftest import PASCAL_ROWS, write_pascal

    rows = [(f, lab, true_text if v == "True" else false_text) for f, lab, v in PASCAL_ROWS]
    ds = load_pascal(write_pascal(tmp_path / "p", rows))
    assert ds.items_valid == ["c.png", "d.png"]


def test_pascal_nan_text_means_no_label(tmp_path):
    from conftest import PASCAL_ROWS, write_pascal

    rows = [(f, "NaN" if lab == "" else lab, v) for f, lab, v in PASCAL_ROWS]
    ds = load_pascal(write_pascal(tmp_path / "p", rows))
    assert ds.classes == ["car", "cat", "dog", "person"]
    assert ds.summary()["items_without_labels"] == 2


# ---------------------------------------------------------------- BIWI
# Hand-computed in conftest.BIWI_PERSONS: pixels, then x/(W/2)-1, y/(H/2)-1.
BIWI_TRAIN = [
    [25 / 20 - 1, 12 / 15 - 1],  # 01/frame_00001 (40x30): 0.25, -0.2
    [10 / 20 - 1, 22.5 / 15 - 1],  # 01/frame_00002: -0.5, 0.5
    [35.5 / 30 - 1, 22.5 / 20 - 1],  # 02/frame_00001 (60x40)
    [29.5 / 30 - 1, 19.5 / 20 - 1],  # 02/frame_00002
]
BIWI_VALID = [[30 / 20 - 1, 10 / 15 - 1], [16 / 20 - 1, 18 / 15 - 1]]  # 13: 0.5, -1/3; -0.2, 0.2


def test_biwi_centres_match_fastbook_by_hand(biwi_dir):
    ds = load_biwi(biwi_dir)
    assert ds.task == "regression" and ds.classes == ["x", "y"] and ds.format == "biwi"
    assert ds.items_train == [
        "01/frame_00001_rgb.jpg",
        "01/frame_00002_rgb.jpg",
        "02/frame_00001_rgb.jpg",
        "02/frame_00002_rgb.jpg",
    ]
    assert ds.items_valid == ["13/frame_00003_rgb.jpg", "13/frame_00004_rgb.jpg"]
    assert ds.y_train.dtype == np.float32 and ds.y_train.shape == (4, 2)
    np.testing.assert_allclose(ds.y_train, BIWI_TRAIN, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ds.y_valid, BIWI_VALID, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ds.y_train[0], [0.25, -0.2], atol=1e-7)
    assert ds.x_train.shape == (4, 32, 32, 3) and ds.x_valid.shape == (2, 32, 32, 3)


def test_biwi_pixels_recovered_from_meta(biwi_dir):
    ds = load_biwi(biwi_dir, image_size=16)
    assert ds.meta["original_sizes"]["train"] == [[40, 30], [40, 30], [60, 40], [60, 40]]
    assert ds.meta["original_sizes"]["valid"] == [[40, 30], [40, 30]]
    np.testing.assert_allclose(point_pixels(ds, "train"), [[25, 12], [10, 22.5], [35.5, 22.5], [29.5, 19.5]], atol=1e-5)
    np.testing.assert_allclose(point_pixels(ds, "valid"), [[30, 10], [16, 18]], atol=1e-5)


@pytest.mark.parametrize("person", ["02", 2])
def test_biwi_other_valid_person(biwi_dir, person):
    ds = load_biwi(biwi_dir, valid_person=person)
    assert ds.items_valid == ["02/frame_00001_rgb.jpg", "02/frame_00002_rgb.jpg"]
    assert len(ds.items_train) == 4 and ds.meta["valid_person"] == "02"


def test_biwi_fixture_is_real_format(biwi_dir):
    """The fixture files parse exactly as fastbook parses the real BIWI ones."""
    cal = np.genfromtxt(biwi_dir / "01" / "rgb.cal", skip_footer=6)
    np.testing.assert_array_equal(cal, [[100, 0, 20], [0, 120, 15], [0, 0, 1]])
    ctr = np.genfromtxt(biwi_dir / "01" / "frame_00001_pose.txt", skip_header=3)
    np.testing.assert_array_equal(ctr, [10, -5, 200])
    lines = (biwi_dir / "01" / "rgb.cal").read_text().splitlines()
    assert len(lines) == 13 and lines[3] == lines[5] == lines[9] == lines[11] == ""
    assert lines[4].split() == ["0", "0", "0", "0"] and lines[12].split() == ["40", "30"]


# ---------------------------------------------------------------- CSV
MULTICLASS_CSV = "a,b,species,is_valid\n1,10,cat,False\n2,10,dog,False\n3,10,cat,False\n9,10,bird,True\n5,10,dog,True\n"


def test_csv_multiclass_with_is_valid(csv_file):
    ds = load_csv(csv_file(MULTICLASS_CSV), "multiclass")
    assert ds.classes == ["bird", "cat", "dog"]
    assert ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, [1, 2, 1])
    np.testing.assert_array_equal(ds.y_valid, [0, 2])
    assert ds.items_train == ["1", "2", "3"] and ds.items_valid == ["4", "5"]
    # a: train mean 2, population std sqrt(2/3); b: constant -> std 1 -> 0.
    std = math.sqrt(2 / 3)
    assert ds.meta["feature_mean"] == [2.0, 10.0]
    assert ds.meta["feature_std"] == pytest.approx([std, 1.0])
    np.testing.assert_allclose(ds.x_train, [[-1 / std, 0], [0, 0], [1 / std, 0]], rtol=1e-6)
    np.testing.assert_allclose(ds.x_valid, [[7 / std, 0], [3 / std, 0]], rtol=1e-6)
    assert ds.x_train.dtype == np.float32
    assert ds.meta["feature_names"] == ["a", "b"] and ds.meta["split"] == "is_valid column"


def test_csv_multiclass_numeric_labels_sorted_numerically(csv_file):
    text = "f,label\n" + "".join(f"{i},{lab}\n" for i, lab in enumerate(["10", "9", "2", "10", "9", "2"]))
    ds = load_csv(csv_file(text), "multiclass", valid_fraction=0.5)
    assert ds.classes == ["2", "9", "10"]


def test_csv_multiclass_caller_vocab(csv_file):
    ds = load_csv(csv_file(MULTICLASS_CSV), "multiclass", vocab=["dog", "cat", "bird", "fish"])
    assert ds.classes == ["dog", "cat", "bird", "fish"]
    np.testing.assert_array_equal(ds.y_train, [1, 0, 1])


def test_csv_binary(csv_file):
    text = "x,y,answer,is_valid\n0,1,yes,0\n1,1,no,0\n2,0,yes,1\n3,0,no,1\n4,1,yes,0\n"
    ds = load_csv(csv_file(text), "binary")
    assert ds.classes == ["no", "yes"]
    assert ds.y_train.dtype == np.float32 and ds.y_train.shape == (3, 1)
    np.testing.assert_array_equal(ds.y_train[:, 0], [1, 0, 1])
    np.testing.assert_array_equal(ds.y_valid[:, 0], [1, 0])
    assert ds.summary()["label_counts"] == {"no": 2, "yes": 3}


def test_csv_multilabel(csv_file):
    text = "f1,f2,red,round,is_valid\n1,2,1,0,False\n3,4,0,0,False\n5,6,1,1,True\n7,8,0,1,False\n"
    ds = load_csv(csv_file(text), "multilabel", target=["red", "round"])
    assert ds.classes == ["red", "round"]
    np.testing.assert_array_equal(ds.y_train, [[1, 0], [0, 0], [0, 1]])
    np.testing.assert_array_equal(ds.y_valid, [[1, 1]])
    assert ds.input_shape == (2,)


def test_csv_regression_explicit_features(csv_file):
    text = "u,v,t1,t2\n1,0,0.5,10\n2,0,1.5,20\n3,0,2.5,30\n4,0,3.5,40\n5,0,4.5,50\n"
    ds = load_csv(csv_file(text), "regression", target=["t1", "t2"], features=["u", "v"], valid_fraction=0.4, seed=3)
    assert ds.classes == ["t1", "t2"] and ds.y_train.dtype == np.float32
    assert len(ds.y_train) == 3 and len(ds.y_valid) == 2
    rows = [int(r) for r in ds.items_train + ds.items_valid]
    want = np.array([[r - 0.5, 10 * r] for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(np.concatenate([ds.y_train, ds.y_valid]), want)
    train_u = [int(r) for r in ds.items_train]
    np.testing.assert_allclose(ds.meta["feature_mean"][0], np.mean(train_u))


def test_csv_default_target_is_last_column(csv_file):
    ds = load_csv(csv_file("p,q,r\n1,2,0.5\n3,4,1.5\n5,6,2.5\n7,8,3.5\n9,0,4.5\n"), "regression")
    assert ds.classes == ["r"] and ds.meta["feature_names"] == ["p", "q"] and ds.y_train.shape[1] == 1


def test_csv_seeded_split_is_deterministic(csv_file):
    path = csv_file("f,t\n" + "".join(f"{i},{i % 3}\n" for i in range(20)))
    a = load_csv(path, "multiclass", seed=0)
    b = load_csv(path, "multiclass", seed=0)
    c = load_csv(path, "multiclass", seed=1)
    assert len(a.items_valid) == 4 and len(a.items_train) == 16
    assert a.items_valid == b.items_valid and a.fingerprint() == b.fingerprint()
    assert a.items_valid != c.items_valid
    assert a.items_train == sorted(a.items_train, key=int)  # file order kept within a split


# ---------------------------------------------------------------- sklearn
def test_sklearn_digits():
    ds = load_sklearn("digits")
    assert (len(ds.x_train), len(ds.x_valid)) == (1437, 360)  # ceil(0.2 * 1797) = 360
    assert ds.x_train.shape[1:] == (64,) and ds.x_train.dtype == np.float32
    assert ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0
    assert ds.classes == [str(d) for d in range(10)] and ds.y_train.dtype == np.int64
    counts = np.bincount(ds.y_valid, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    again = load_sklearn("digits")
    assert again.fingerprint() == ds.fingerprint()
    assert load_sklearn("digits", seed=1).fingerprint() != ds.fingerprint()


def test_sklearn_breast_cancer():
    ds = load_sklearn("breast_cancer")
    assert (len(ds.x_train), len(ds.x_valid)) == (455, 114)
    assert ds.task == "binary" and ds.classes == ["malignant", "benign"]
    assert ds.y_train.shape == (455, 1) and ds.y_train.dtype == np.float32
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1, atol=1e-4)
    assert abs(ds.y_train.mean() - ds.y_valid.mean()) < 0.01  # stratified


# ---------------------------------------------------------------- dispatcher
def test_load_dispatches_every_format(pascal_dir, biwi_dir, csv_file, tmp_path):
    assert set(FORMATS) == {
        "pascal", "biwi", "csv", "digits", "breast_cancer", "builtin-multilabel", "builtin-regression"
    }
    assert load(pascal_dir, "pascal", image_size=8).x_train.shape == (4, 8, 8, 3)
    assert load(biwi_dir, "biwi", valid_person="01").items_valid[0] == "01/frame_00001_rgb.jpg"
    assert load(csv_file(MULTICLASS_CSV), "csv", task="multiclass").classes == ["bird", "cat", "dog"]
    assert load(None, "digits").name == "digits"
    assert load(None, "breast_cancer", seed=2).task == "binary"
    ds = load(tmp_path / "ml", "builtin-multilabel", image_size=16)
    assert isinstance(ds, Dataset) and ds.format == "builtin-multilabel" and ds.input_shape == (16, 16, 3)


def test_load_usage_errors(pascal_dir):
    with pytest.raises(UsageError, match="format must be one of .*got 'imagenet'"):
        load(pascal_dir, "imagenet")
    with pytest.raises(UsageError, match=r"does not take option\(s\) \['task'\]"):
        load(pascal_dir, "pascal", task="multilabel")
    with pytest.raises(UsageError, match="needs a source path"):
        load(None, "csv", task="binary")
    with pytest.raises(UsageError, match="task must be one of"):
        load_csv(pascal_dir / "train.csv", "ranking")
    with pytest.raises(UsageError, match="sklearn dataset must be one of"):
        load_sklearn("iris")


@pytest.mark.parametrize("tail", ["only intrinsics", "an extra row", "no image size"])
def test_biwi_cal_takes_the_first_three_rows(biwi_dir, tail):
    """rgb.cal: the intrinsics are the first three rows, whatever follows them
    (fastbook's skip_footer=6 would read a wrong matrix, or fail, when the
    rows after them are not exactly six)."""
    ref = load_biwi(biwi_dir)
    cal = biwi_dir / "01" / "rgb.cal"
    lines = cal.read_text().splitlines()
    cal.write_text({"only intrinsics": "\n".join(lines[:3]) + "\n",
                    "an extra row": "\n".join(lines) + "\n1 2 3\n",
                    "no image size": "\n".join(lines[:-1]) + "\n"}[tail])
    ds = load_biwi(biwi_dir)
    np.testing.assert_array_equal(ds.y_train, ref.y_train)
    np.testing.assert_array_equal(ds.y_valid, ref.y_valid)
