"""What a user sees on the console: no TensorFlow start-up noise unless --verbose."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("ktp_dirs")
# TensorFlow's C++ start-up lines, as TF 2.21 prints them with TF_CPP_MIN_LOG_LEVEL=0.
TF_NOISE = ("absl::InitializeLog", "cpu_feature_guard", "oneDNN", "I0000 ")


def _run(tmp_path, *extra):
    # The user's environment asks for every TF log line; the CLI still hides them.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")
    args = ["--task", "binary", "--steps", "1", "--optimizer", "sgd", "--no-onnx", "--out", str(tmp_path / "r"), *extra]
    return subprocess.run([sys.executable, str(ROOT / "compare.py"), *args], capture_output=True, text=True, env=env, cwd=ROOT)


def test_tensorflow_startup_lines_hidden_by_default(tmp_path):
    p = _run(tmp_path)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    noise = [line for line in (p.stderr + p.stdout).splitlines() if any(n in line for n in TF_NOISE)]
    assert not noise, noise


@pytest.mark.slow
def test_tensorflow_startup_lines_shown_with_verbose(tmp_path):
    p = _run(tmp_path, "--verbose")
    assert any(n in p.stderr for n in TF_NOISE), p.stderr[-2000:]
