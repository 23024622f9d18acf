"""shared/cli/show.py: describe, items CSV and the image grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from shared.core.errors import UsageError
from shared.data.loaders import load_biwi, load_csv, load_pascal, load_sklearn
from shared.cli.show import describe, show_grid, write_items_csv

pytestmark = pytest.mark.usefixtures("ktp_dirs")


def test_describe_multilabel(pascal_dir):
    ds = load_pascal(pascal_dir)
    text = describe(ds)
    assert "items:       train 4, valid 2" in text
    assert "input shape: (32, 32, 3) float32" in text
    assert "classes:     4: car cat dog person" in text
    assert "  dog     train     2  valid     0" in text
    assert "  person  train     1  valid     1" in text
    assert "items without labels: train 1, valid 1" in text
    assert f"fingerprint: {ds.fingerprint()}" in text


def test_describe_multiclass_and_regression(biwi_dir):
    digits = describe(load_sklearn("digits"))
    assert "items:       train 1437, valid 360" in digits and "input shape: (64,) float32" in digits
    assert "  0  train   142  valid    36" in digits  # 178 zeros, stratified
    biwi = describe(load_biwi(biwi_dir))
    assert "classes:     2: x y" in biwi and "targets:     mean [" in biwi


def test_items_csv_multilabel(pascal_dir, tmp_path):
    out = tmp_path / "items.csv"
    write_items_csv(load_pascal(pascal_dir), out)
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == ["split", "item", "labels"]
    assert df.values.tolist() == [
        ["train", "a.jpg", "car person"],
        ["train", "b.png", "dog"],
        ["train", "e.jpg", "cat dog"],
        ["train", "f.png", ""],
        ["valid", "c.png", ""],
        ["valid", "d.png", "person"],
    ]


def test_items_csv_biwi_in_pixels(biwi_dir, tmp_path):
    out = tmp_path / "items.csv"
    write_items_csv(load_biwi(biwi_dir), out)
    df = pd.read_csv(out)
    assert list(df.columns) == ["split", "item", "x_pixels", "y_pixels"]
    assert df["split"].tolist() == ["train"] * 4 + ["valid"] * 2
    # Hand-computed centres (conftest.BIWI_PERSONS), in original-image pixels.
    want = [[25, 12], [10, 22.5], [35.5, 22.5], [29.5, 19.5], [30, 10], [16, 18]]
    np.testing.assert_array_equal(df[["x_pixels", "y_pixels"]].to_numpy(), want)
    assert df["item"][4] == "13/frame_00003_rgb.jpg"


def test_items_csv_tabular(csv_file, tmp_path):
    ds = load_csv(csv_file("a,kind,is_valid\n1,cat,False\n2,dog,True\n3,dog,False\n"), "multiclass")
    out = tmp_path / "items.csv"
    write_items_csv(ds, out)
    assert out.read_text() == "split,item,label\ntrain,1,cat\ntrain,3,dog\nvalid,2,dog\n"
    reg = load_csv(csv_file("a,t1,t2\n1,0.5,2\n2,1.5,3\n3,2.5,4\n", name="r.csv"), "regression", target=["t1", "t2"], valid_fraction=0.34)
    write_items_csv(reg, out)
    assert pd.read_csv(out).columns.tolist() == ["split", "item", "t1", "t2"]


def test_show_grid_multilabel(pascal_dir, tmp_path):
    png = tmp_path / "grid.png"
    show_grid(load_pascal(pascal_dir), 4, png, split="train")
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (320, 320)  # 2x2 cells of 1.6 in at 100 dpi
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_show_grid_regression_red_dot(biwi_dir, tmp_path):
    png = tmp_path / "dots.png"
    show_grid(load_biwi(biwi_dir), 9, png)  # only 2 valid items: n is clipped
    arr = np.asarray(Image.open(png).convert("RGB")).astype(int)
    red = (arr[..., 0] > 200) & (arr[..., 1] < 60) & (arr[..., 2] < 60)
    assert red.sum() > 20


def test_show_grid_rejects_tabular_and_bad_args(csv_file, pascal_dir, tmp_path):
    tab = load_csv(csv_file("a,t\n1,0\n2,1\n3,0\n4,1\n"), "binary")
    with pytest.raises(UsageError, match="--show needs an image dataset"):
        show_grid(tab, 4, tmp_path / "x.png")
    ds = load_pascal(pascal_dir)
    with pytest.raises(UsageError, match="split must be one of"):
        show_grid(ds, 4, tmp_path / "x.png", split="test")
    with pytest.raises(UsageError, match="nothing to show: n=0"):
        show_grid(ds, 0, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
