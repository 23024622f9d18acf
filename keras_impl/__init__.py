"""The Keras (TensorFlow backend) side. Never imports torch.

Mirrors torch_impl/ file for file and name for name.
"""

import os

# Keras 3 picks its backend from this variable at import time; the project
# compares TensorFlow-backed Keras with PyTorch.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up lines (abseil's "All log messages before
# absl::InitializeLog()", the oneDNN notice, cpu_feature_guard) go to stderr
# as soon as TF loads; 2 keeps warnings and errors only. The command line
# hides them entirely unless --verbose (quiet_tensorflow below).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TF_CPP_MIN_LOG_LEVEL: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR
# (tensorflow/core/platform/default/logging.cc).
_QUIET_CPP_LEVEL = "3"


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow (and Keras) with its start-up lines hidden, unless `verbose`.

    TF_CPP_MIN_LOG_LEVEL alone is not enough: where oneDNN's custom operations
    switch on (AVX-512 CPUs, or TF_ENABLE_ONEDNN_OPTS=1), TF 2.21 writes
    "All log messages before absl::InitializeLog() is called are written to
    STDERR" and the oneDNN notice (port.cc:153) straight to file descriptor 2
    while it loads, before abseil reads any level (even 3). So the import runs
    with descriptor 2 pointed at a temporary file, then given back; what was
    written there is shown only if the import fails. The Python-side loggers
    (absl, "tensorflow") are quieted afterwards.
    """
    import sys

    if verbose:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = _QUIET_CPP_LEVEL
    if "tensorflow" not in sys.modules:
        _import_with_stderr_hidden()
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl ships with TF; nothing to quiet without it
        pass


def _import_with_stderr_hidden() -> None:
    """`import tensorflow, keras` with file descriptor 2 sent to a temporary file."""
    import sys

    from shared.core.console import native_output_captured

    with native_output_captured() as written:
        try:
            import keras  # noqa: F401  (imports tensorflow: KERAS_BACKEND above)
            import tensorflow  # noqa: F401

            return
        except BaseException as e:  # noqa: BLE001 - shown with what TF wrote, then raised as it was
            failed, error = written(), e
    sys.stderr.write(failed)  # the reason the import failed, then the exception itself
    raise error


def setup(threads: int, verbose: bool = False) -> None:
    """Import TensorFlow quietly (quiet_tensorflow) and pin its intra- and
    inter-op threads (possible only before its first op; afterwards the
    setting it has is kept). Twin of torch_impl.setup."""
    quiet_tensorflow(verbose)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TF already initialised in this process: keep its setting
        pass


def versions() -> dict:
    """The versions this side runs on (the report's environment)."""
    import keras
    import tensorflow as tf
    import tf2onnx

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__}


def threads() -> dict:
    import tensorflow as tf

    cfg = tf.config.threading
    return {"tf_intra_op": cfg.get_intra_op_parallelism_threads() or "default (all cores)",
            "tf_inter_op": cfg.get_inter_op_parallelism_threads() or "default (all cores)"}
