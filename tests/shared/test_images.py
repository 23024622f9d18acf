"""shared/data/images.py (decoding, modes, cache) and shared/core/atomic.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from shared.data import images
from shared.core.atomic import atomic_dir, atomic_write_bytes, atomic_write_text
from shared.core.errors import DataError
from shared.data.images import CACHE_FORMAT_VERSION, cache_key, load_image, load_images

pytestmark = pytest.mark.usefixtures("ktp_dirs")


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


# ---------------------------------------------------------------- modes
@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("RGB", (10, 20, 30), (10, 20, 30)),
        ("L", 128, (128, 128, 128)),
        ("1", 1, (255, 255, 255)),
        ("LA", (64, 255), (64, 64, 64)),  # opaque grey stays grey
        ("LA", (64, 0), (255, 255, 255)),  # fully transparent -> white background
        ("RGBA", (200, 100, 0, 255), (200, 100, 0)),
        ("RGBA", (200, 100, 0, 0), (255, 255, 255)),
    ],
)
def test_modes_become_rgb(tmp_path, mode, value, expected):
    path = _save(Image.new(mode, (6, 6), value), tmp_path / "img.png")
    x = load_image(path, 6)
    assert x.shape == (6, 6, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x, np.broadcast_to(np.array(expected, np.float32) / 255, (6, 6, 3)))


def test_rgba_half_transparent_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red everywhere...
    rgba[..., 3] = 128  # ...at about half opacity
    path = _save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "half.png")
    x = load_image(path, 4)
    # alpha_composite: 255*128/255 + 255*(127/255) -> 255 for R; G, B = 255*127/255 = 127
    np.testing.assert_array_equal(x[0, 0] * 255, [255, 127, 127])


def test_palette_with_transparency_key(tmp_path):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    path = _save(img, tmp_path / "p.png", transparency=1)  # index 1 (green) is transparent
    np.testing.assert_array_equal(load_image(path, 4)[0, 0], [1, 1, 1])


def test_palette_without_transparency(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    np.testing.assert_array_equal(load_image(_save(img, tmp_path / "p.png"), 4)[2, 2], [0, 0, 1])


def test_cmyk_jpeg(tmp_path):
    path = _save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "c.jpg", quality=95)
    x = load_image(path, 8)
    assert np.abs(x - np.array([1, 0, 0], np.float32)).max() < 3 / 255


def test_sixteen_bit_grey_scaled_to_eight_bits(tmp_path):
    arr = np.full((4, 4), 65535, dtype=np.uint16)
    arr[0, 0] = 257 * 100
    path = _save(Image.fromarray(arr), tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I")
    x = load_image(path, 4)
    np.testing.assert_array_equal(x[0, 0] * 255, [100, 100, 100])
    np.testing.assert_array_equal(x[3, 3], [1, 1, 1])


def test_resize_is_bilinear_squish(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    path = _save(Image.fromarray(arr), tmp_path / "r.png")
    x = load_image(path, 16)
    want = np.asarray(Image.fromarray(arr).resize((16, 16), Image.Resampling.BILINEAR), np.float32) / 255
    assert x.shape == (16, 16, 3)
    np.testing.assert_array_equal(x, want)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_missing_image_names_file(tmp_path):
    with pytest.raises(DataError, match="image file not found") as info:
        load_image(tmp_path / "nope.jpg", 8)
    assert info.value.path.endswith("nope.jpg")


def test_corrupt_image_names_file(tmp_path):
    bad = tmp_path / "garbage.jpg"
    bad.write_bytes(b"this is not a jpeg at all")
    with pytest.raises(DataError, match="garbage.jpg.*cannot decode image.*expected a readable image file"):
        load_image(bad, 8)


def test_truncated_png_names_file(tmp_path):
    good = _save(Image.new("RGB", (64, 64), (1, 2, 3)), tmp_path / "t.png")
    good.write_bytes(good.read_bytes()[:60])
    with pytest.raises(DataError, match="t.png.*cannot decode image"):
        load_image(good, 8)


# ---------------------------------------------------------------- cache
def _three_images(tmp_path):
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        paths.append(_save(Image.new("RGB", (10, 7), colour), tmp_path / f"{i}.png"))
    return paths


def test_load_images_stacks_in_order(tmp_path, ktp_dirs):
    paths = _three_images(tmp_path)
    x = load_images(paths, 5)
    assert x.shape == (3, 5, 5, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0, 0], np.eye(3, dtype=np.float32))
    cached = list(ktp_dirs.cache.glob("*.npy"))  # default dir from KTP_CACHE_DIR
    assert [p.name for p in cached] == [f"{cache_key(paths, 5)}.npy"]


def test_second_call_reads_cache_without_decoding(tmp_path, monkeypatch):
    paths = _three_images(tmp_path)
    first = load_images(paths, 5)

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded although the cache should have answered")

    monkeypatch.setattr(images, "load_image", no_decode)
    np.testing.assert_array_equal(load_images(paths, 5), first)


def test_cache_key_follows_files_size_and_version(tmp_path, monkeypatch):
    paths = _three_images(tmp_path)
    key = cache_key(paths, 5)
    assert cache_key(paths, 5) == key
    assert cache_key(paths, 6) != key
    assert cache_key(paths[::-1], 5) != key
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    touched = cache_key(paths, 5)
    assert touched != key
    monkeypatch.setattr(images, "CACHE_FORMAT_VERSION", CACHE_FORMAT_VERSION + 1)
    assert cache_key(paths, 5) != touched


def test_changed_file_is_decoded_again(tmp_path):
    paths = _three_images(tmp_path)
    load_images(paths, 5)
    Image.new("RGB", (10, 7), (255, 255, 255)).save(paths[0])
    os.utime(paths[0], ns=(1, 1))  # a different mtime, whatever the clock resolution
    np.testing.assert_array_equal(load_images(paths, 5)[0, 0, 0], [1, 1, 1])


def test_explicit_cache_dir_and_no_cache(tmp_path, ktp_dirs):
    paths = _three_images(tmp_path)
    load_images(paths, 5, cache_dir=tmp_path / "mine")
    assert len(list((tmp_path / "mine").glob("*.npy"))) == 1
    load_images(paths, 4, use_cache=False)
    assert not ktp_dirs.cache.exists()


def test_corrupt_cache_file_is_ignored(tmp_path, ktp_dirs):
    paths = _three_images(tmp_path)
    want = load_images(paths, 5)
    (cache_file,) = ktp_dirs.cache.glob("*.npy")
    cache_file.write_bytes(b"\x93NUMPY broken")
    np.testing.assert_array_equal(load_images(paths, 5), want)
    np.testing.assert_array_equal(np.load(cache_file), want)  # rewritten


def test_failed_stack_writes_no_cache(tmp_path, ktp_dirs):
    paths = _three_images(tmp_path)
    paths[2].write_bytes(b"garbage")
    with pytest.raises(DataError, match="2.png"):
        load_images(paths, 5)
    assert not ktp_dirs.cache.exists()


def test_error_names_listing_file_row_and_image(tmp_path):
    paths = _three_images(tmp_path)
    paths[1].unlink()
    with pytest.raises(DataError) as info:
        load_images(paths, 5, source=tmp_path / "list.csv", rows=[4, 5, 6])
    err = info.value
    assert err.path.endswith("list.csv") and err.row == 5
    assert "1.png" in str(err) and "image file not found" in str(err)


def test_empty_list(tmp_path, ktp_dirs):
    assert load_images([], 7).shape == (0, 7, 7, 3)
    assert not ktp_dirs.cache.exists()


# ---------------------------------------------------------------- atomic writes
def test_atomic_write_bytes_and_text(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    atomic_write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\n".encode()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["f.bin", "sub", "t.txt"]


def test_atomic_write_failure_keeps_old_content(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_dir_creates_and_replaces(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        assert tmp.parent == tmp_path and tmp != final and not final.exists()
        (tmp / "a").write_text("1")
    assert (final / "a").read_text() == "1"
    with atomic_dir(final) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_exception_leaves_nothing(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_dir(final) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    final.mkdir()
    (final / "keep").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(final):
            raise RuntimeError("again")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (final / "keep").read_text() == "old"
