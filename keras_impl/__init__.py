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
    """Hide TensorFlow's start-up log lines unless `verbose`.

    Call before TensorFlow is imported for the C++ lines (the variable is read
    once, when TF loads); the Python-side loggers (absl, "tensorflow") are
    quieted whenever this runs after the import too.
    """
    import sys

    if verbose:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = _QUIET_CPP_LEVEL
    if "tensorflow" in sys.modules:
        import logging

        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        try:
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
        except ImportError:  # absl ships with TF; nothing to quiet without it
            pass
