"""What a user sees on the console: no TensorFlow start-up noise unless --verbose.

TF_ENABLE_ONEDNN_OPTS=1 switches oneDNN's custom operations on whatever the CPU
(as AVX-512 machines do by default): TensorFlow then writes abseil's
"All log messages before absl::InitializeLog()" and the oneDNN notice to file
descriptor 2 while it loads, whatever TF_CPP_MIN_LOG_LEVEL says. The control
test proves this environment makes the noise here, so the hiding test fails
on this machine when the hiding is removed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("ktp_dirs")
# TensorFlow's C++ start-up lines, as TF 2.21 prints them with TF_CPP_MIN_LOG_LEVEL=0.
TF_NOISE = ("absl::InitializeLog", "cpu_feature_guard", "oneDNN", "I0000 ")
# The user's environment asks for every TF log line and for oneDNN's custom operations.
NOISY_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_ENABLE_ONEDNN_OPTS="1")


def _noise(text: str) -> list:
    return [line for line in text.splitlines() if any(n in line for n in TF_NOISE)]


def _run(tmp_path, *extra):
    args = ["--task", "binary", "--steps", "1", "--optimizer", "sgd", "--no-onnx", "--out", str(tmp_path / "r"), *extra]
    return subprocess.run([sys.executable, str(ROOT / "compare.py"), *args], capture_output=True, text=True,
                          env=NOISY_ENV, cwd=ROOT)


def test_plain_tensorflow_import_is_noisy_in_this_environment():
    """The control: without the project's hiding, this environment prints the lines."""
    p = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=NOISY_ENV)
    assert p.returncode == 0, p.stderr[-2000:]
    assert _noise(p.stderr), p.stderr[-2000:]


def test_quiet_tensorflow_hides_the_lines_even_at_level_3():
    """The hiding itself, without the whole run: even TF_CPP_MIN_LOG_LEVEL=3 leaves the oneDNN lines."""
    code = "import keras_impl; keras_impl.quiet_tensorflow(); import tensorflow as tf; print(tf.reduce_sum([1., 2.]).numpy())"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(NOISY_ENV, TF_CPP_MIN_LOG_LEVEL="3"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "3.0" in p.stdout and not _noise(p.stderr + p.stdout), p.stderr[-2000:]


def test_quiet_tensorflow_shows_why_an_import_failed(tmp_path):
    """Hidden lines come back when TensorFlow cannot load: an import error is never silent."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os\nos.write(2, b'native loader: libfoo.so missing\\n')\nraise ImportError('boom')\n")
    code = "import keras_impl; keras_impl.quiet_tensorflow()"
    env = dict(NOISY_ENV, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode != 0
    assert "libfoo.so missing" in p.stderr and "ImportError" in p.stderr, p.stderr[-2000:]


def test_tensorflow_startup_lines_hidden_by_default(tmp_path):
    p = _run(tmp_path)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    noise = _noise(p.stderr + p.stdout)
    assert not noise, noise


@pytest.mark.slow
def test_tensorflow_startup_lines_shown_with_verbose(tmp_path):
    p = _run(tmp_path, "--verbose")
    assert _noise(p.stderr), p.stderr[-2000:]
