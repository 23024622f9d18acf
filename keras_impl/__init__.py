"""The Keras (TensorFlow backend) side. Never imports torch.

Mirrors torch_impl/ file for file and name for name.
"""

import os

# Keras 3 picks its backend from this variable at import time; the project
# compares TensorFlow-backed Keras with PyTorch.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
