"""A non-editable install has every module: build the wheel and read its file list."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "keras_impl", "torch_impl")


def _source_copy(dest: Path) -> Path:
    """The files a wheel is built from, copied, so the build leaves nothing in the checkout."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "compare.py"):
        shutil.copy2(ROOT / name, dest / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def test_wheel_holds_every_python_file(tmp_path):
    src = _source_copy(tmp_path / "src")
    out = tmp_path / "dist"
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(out), str(src)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    (wheel,) = out.glob("keras_torch_parity-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(f.relative_to(ROOT)) for pkg in PACKAGES for f in (ROOT / pkg).rglob("*.py")} | {"compare.py"}
    assert len(expected) > 100  # the three packages and their subpackages
    missing = sorted(expected - in_wheel)
    assert not missing, f"{len(missing)} of {len(expected)} files missing from {wheel.name}: {missing[:10]}"
    subpackages = {str(f.parent.relative_to(ROOT)) for f in ROOT.glob("*/*/__init__.py") if f.parts[-3] in PACKAGES}
    assert {"keras_impl/read", "torch_impl/write", "shared/core", "shared/flows"} <= subpackages
