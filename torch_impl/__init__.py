"""The PyTorch side. Never imports TensorFlow or Keras.

Mirrors keras_impl/ file for file and name for name.
"""


def setup(threads: int, verbose: bool = False) -> None:
    """Import torch and pin its intra-op threads. Twin of keras_impl.setup
    (`verbose` is accepted for symmetry: torch prints nothing on import)."""
    import torch

    torch.set_num_threads(threads)


def versions() -> dict:
    """The versions this side runs on (the report's environment)."""
    import onnxscript
    import torch

    return {"torch": torch.__version__, "onnxscript": onnxscript.__version__}


def threads() -> dict:
    import torch

    return {"torch_intra_op": torch.get_num_threads()}
