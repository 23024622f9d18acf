"""Every bad input: a DataError naming the file, the row and what was expected,
raised before anything is written (the decoded-image cache stays absent)."""

from __future__ import annotations

import re

import pytest

from conftest import PASCAL_ROWS, write_pascal
from shared.core.errors import DataError, UsageError
from shared.data.loaders import load_biwi, load_csv, load_pascal


@pytest.fixture
def fails(ktp_dirs):
    """fails(fn, *args, match=regex, **kw) -> the DataError; asserts nothing was cached."""

    def check(fn, *args, match, **kw):
        with pytest.raises(DataError) as info:
            fn(*args, **kw)
        assert re.search(match, str(info.value)), str(info.value)
        assert not ktp_dirs.cache.exists(), "a failed load wrote to the cache"
        return info.value

    return check


def _pascal(tmp_path, rows=PASCAL_ROWS, header="fname,labels,is_valid"):
    return write_pascal(tmp_path / "p", rows, header)


# ---------------------------------------------------------------- PASCAL
def test_pascal_missing_column(tmp_path, fails):
    root = _pascal(tmp_path, [r[:2] for r in PASCAL_ROWS], header="fname,labels")
    err = fails(load_pascal, root, match=r"missing column\(s\) \['is_valid'\]; columns present: \['fname', 'labels'\]")
    assert err.path == str(root / "train.csv") and err.row is None


def test_pascal_extra_column(tmp_path, fails):
    root = _pascal(tmp_path, [r + ("x",) for r in PASCAL_ROWS], header="fname,labels,is_valid,notes")
    fails(load_pascal, root, match=r"train\.csv: unexpected column\(s\) \['notes'\]; expected only \['fname', 'labels', 'is_valid'\]")


def test_pascal_zero_byte_csv(tmp_path, fails):
    root = _pascal(tmp_path)
    (root / "train.csv").write_bytes(b"")
    fails(load_pascal, root, match=r"train\.csv: empty file \(0 bytes\); expected a header row and at least one data row")


def test_pascal_header_only_csv(tmp_path, fails):
    root = _pascal(tmp_path, rows=[])
    fails(load_pascal, root, match=r"train\.csv: no data rows under the header \['fname', 'labels', 'is_valid'\]")


def test_pascal_missing_csv(tmp_path, fails):
    root = _pascal(tmp_path)
    (root / "train.csv").unlink()
    fails(load_pascal, root, match=r"train\.csv: file not found; expected a CSV file")


def test_pascal_missing_image(tmp_path, fails):
    root = _pascal(tmp_path)
    (root / "train" / "d.png").unlink()
    err = fails(load_pascal, root, match=r"train\.csv, row 4: image '.*d\.png': image file not found")
    assert err.row == 4


def test_pascal_corrupt_image(tmp_path, fails):
    root = _pascal(tmp_path)
    (root / "train" / "e.jpg").write_bytes(b"\xff\xd8\xff garbage, not a jpeg")
    err = fails(load_pascal, root, match=r"train\.csv, row 5: image '.*e\.jpg': cannot decode image .*expected a readable image file")
    assert err.row == 5


@pytest.mark.parametrize("bad", ["maybe", "", "yes", "2"])
def test_pascal_non_boolean_is_valid(tmp_path, fails, bad):
    rows = [r if r[0] != "c.png" else (r[0], r[1], bad) for r in PASCAL_ROWS]
    err = fails(
        load_pascal,
        _pascal(tmp_path, rows),
        match=rf"train\.csv, row 3: column 'is_valid' must be True or False \(or true/false/1/0\); got '{bad}'",
    )
    assert err.row == 3


def test_pascal_label_not_in_vocab(tmp_path, fails):
    vocab = ["car", "cat", "person"]
    err = fails(
        load_pascal,
        _pascal(tmp_path),
        vocab=vocab,
        match=r"train\.csv, row 2: label 'dog' is not in the given vocabulary \['car', 'cat', 'person'\]",
    )
    assert err.row == 2


def test_pascal_empty_fname(tmp_path, fails):
    rows = [("", "car", "False")] + PASCAL_ROWS
    fails(load_pascal, _pascal(tmp_path, rows), match=r"row 1: column 'fname' is empty; expected an image file name")


def test_pascal_single_split(tmp_path, fails):
    rows = [(f, lab, "False") for f, lab, _ in PASCAL_ROWS]
    fails(load_pascal, _pascal(tmp_path, rows), match=r"needs at least one training and one validation item; got 6 training and 0 validation")


def test_pascal_no_labels_at_all(tmp_path, fails):
    rows = [(f, "", v) for f, _, v in PASCAL_ROWS]
    fails(load_pascal, _pascal(tmp_path, rows), match=r"no labels in any row; expected at least one class name")


# ---------------------------------------------------------------- BIWI
def test_biwi_folder_without_rgb_cal(biwi_dir, fails):
    (biwi_dir / "02" / "rgb.cal").unlink()
    err = fails(load_biwi, biwi_dir, match=r"biwi/02: missing rgb\.cal; expected each BIWI person folder")
    assert err.path == str(biwi_dir / "02")


def test_biwi_image_without_pose(biwi_dir, fails):
    (biwi_dir / "13" / "frame_00004_pose.txt").unlink()
    fails(load_biwi, biwi_dir, match=r"13/frame_00004_rgb\.jpg: image has no pose file frame_00004_pose\.txt")


def test_biwi_pose_without_image(biwi_dir, fails):
    (biwi_dir / "01" / "frame_00002_rgb.jpg").unlink()
    fails(load_biwi, biwi_dir, match=r"01/frame_00002_pose\.txt: pose file has no image frame_00002_rgb\.jpg")


def test_biwi_missing_valid_person(biwi_dir, fails):
    fails(
        load_biwi,
        biwi_dir,
        valid_person="07",
        match=r"validation person folder '07' not found; person folders present: \['01', '02', '13'\]",
    )


def test_biwi_bad_pose(biwi_dir, fails):
    (biwi_dir / "01" / "frame_00001_pose.txt").write_text("1 0 0\n0 1 0\n0 0 1\n\n10 -5\n")
    fails(load_biwi, biwi_dir, match=r"frame_00001_pose\.txt: expected 3 rotation rows, a blank line and a translation row")


def test_biwi_bad_cal(biwi_dir, fails):
    (biwi_dir / "13" / "rgb.cal").write_text("not a calibration\n")
    fails(load_biwi, biwi_dir, match=r"13/rgb\.cal: (cannot parse camera calibration|expected a 3x3 intrinsics matrix)")


def test_biwi_corrupt_image(biwi_dir, fails):
    (biwi_dir / "02" / "frame_00001_rgb.jpg").write_bytes(b"garbage")
    fails(load_biwi, biwi_dir, match=r"02/frame_00001_rgb\.jpg: cannot read image .*expected a readable image file")


def test_biwi_no_person_folders(tmp_path, fails):
    (tmp_path / "empty").mkdir()
    fails(load_biwi, tmp_path / "empty", match=r"no person folders; expected 2-digit folders")


# ---------------------------------------------------------------- CSV
def test_csv_zero_bytes(csv_file, fails):
    fails(load_csv, csv_file(""), "regression", match=r"data\.csv: empty file \(0 bytes\)")


def test_csv_header_only(csv_file, fails):
    fails(load_csv, csv_file("a,b,t\n"), "regression", match=r"no data rows under the header \['a', 'b', 't'\]")


def test_csv_missing_columns(csv_file, fails):
    fails(
        load_csv,
        csv_file("a,b,t\n1,2,3\n"),
        "regression",
        target="y",
        features=["a", "c"],
        match=r"data\.csv: missing column\(s\) \['y', 'c'\]; columns present: \['a', 'b', 't'\]",
    )


def test_csv_extra_column_with_explicit_features(csv_file, fails):
    fails(
        load_csv,
        csv_file("a,b,junk,t\n1,2,3,4\n5,6,7,8\n"),
        "regression",
        target="t",
        features=["a", "b"],
        match=r"unexpected column\(s\) \['junk'\]; expected only \['a', 'b', 't', 'is_valid'\]",
    )


@pytest.mark.parametrize(
    "cell, message",
    [
        ("nan", r"column 'b' must be a finite number \(feature\); got 'nan'"),
        ("", r"column 'b' has an empty value; expected a finite number \(feature\)"),
        ("inf", r"column 'b' must be a finite number \(feature\); got 'inf'"),
        ("abc", r"column 'b' must be numeric \(feature\); got 'abc'"),
    ],
)
def test_csv_bad_feature_cell(csv_file, fails, cell, message):
    text = f"a,b,t\n1,2,0.5\n3,4,1.5\n5,{cell},2.5\n7,8,3.5\n"
    err = fails(load_csv, csv_file(text), "regression", match=r"data\.csv, row 3: " + message)
    assert err.row == 3


def test_csv_first_bad_cell_in_row_order(csv_file, fails):
    text = "a,b,t\n1,2,0\n3,x,1\ny,4,0\n"
    fails(load_csv, csv_file(text), "binary", match=r"row 2: column 'b' must be numeric \(feature\); got 'x'")


def test_csv_non_boolean_is_valid(csv_file, fails):
    text = "a,t,is_valid\n1,0,False\n2,1,True\n3,0,sometimes\n"
    fails(load_csv, csv_file(text), "binary", match=r"row 3: column 'is_valid' must be True or False .*got 'sometimes'")


def test_csv_label_not_in_vocab(csv_file, fails):
    text = "a,t\n1,cat\n2,dog\n3,cow\n4,cat\n"
    fails(
        load_csv,
        csv_file(text),
        "multiclass",
        vocab=["cat", "dog"],
        match=r"row 3: label 'cow' in column 't' is not in the vocabulary \['cat', 'dog'\]",
    )


def test_csv_binary_needs_two_values(csv_file, fails):
    fails(
        load_csv,
        csv_file("a,t\n1,x\n2,y\n3,z\n4,x\n"),
        "binary",
        match=r"binary target column 't' must hold exactly 2 distinct values; got 3: \['x', 'y', 'z'\]",
    )


def test_csv_multilabel_needs_zero_one(csv_file, fails):
    fails(
        load_csv,
        csv_file("a,l1,l2\n1,0,1\n2,1,2\n3,0,0\n"),
        "multilabel",
        target=["l1", "l2"],
        match=r"row 2: column 'l2' must be 0 or 1 \(multilabel target\); got '2'",
    )


def test_csv_empty_class_label(csv_file, fails):
    fails(load_csv, csv_file("a,t\n1,cat\n2,\n3,dog\n"), "multiclass", match=r"row 2: target column 't' has an empty value")


def test_csv_regression_target_not_finite(csv_file, fails):
    fails(load_csv, csv_file("a,t\n1,0.5\n2,oops\n3,1\n"), "regression", match=r"row 2: column 't' must be numeric \(regression target\); got 'oops'")


def test_csv_missing_file(tmp_path, fails):
    fails(load_csv, tmp_path / "absent.csv", "binary", match=r"absent\.csv: file not found")


def test_csv_usage_errors(csv_file):
    path = csv_file("a,b,t\n1,2,0\n3,4,1\n")
    with pytest.raises(UsageError, match=r"cannot be both feature and target"):
        load_csv(path, "binary", target="t", features=["a", "t"])
    with pytest.raises(UsageError, match=r"valid_fraction must be between 0 and 1"):
        load_csv(path, "binary", valid_fraction=1.5)
    with pytest.raises(UsageError, match=r"takes exactly one target column; got \['a', 't'\]"):
        load_csv(path, "multiclass", target=["a", "t"])


@pytest.mark.parametrize("size", [1, 2])
def test_image_size_too_small_for_the_cnn_is_bad_usage(tmp_path, pascal_dir, capsys, size):
    """A configuration the models cannot take is bad input: exit 2, one line,
    no traceback, nothing written (it was exit 3, "internal error")."""
    import compare

    out = tmp_path / "out"
    rc = compare.main(["--data", str(pascal_dir), "--format", "pascal", "--image-size", str(size), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert re.match(rf"error: cnn needs images of at least 3x3 .*input_shape=\({size}, {size}, 3\)", err[0]), err[0]
    assert not out.exists()
