"""`compare.py port` of keras.io-style models with custom layers
(tests/kerasio_models.py; issue 20: "a dozen keras.io-style models with custom
layers port and pass their own proof, float64 within 1e-12").

Each model is built with random weights (port_helpers.randomise), ported,
and every check of its proof must pass: per-node forward values, loss and
gradients in float32 and float64, float64 outputs within 1e-12 relative.
The node count is pinned (a converter that silently drops or adds a node
moves it) and the generated model.py is checked for the construct the
example needs. The slowest builders run under -m slow.
"""

from __future__ import annotations

import port_helpers  # noqa: F401  (torch before TensorFlow)

import re

import pytest

import compare
import kerasio_models as km
from port_helpers import F64_REL, port_ok, randomise, standalone_outputs, worst

# name -> (nodes in the neutral graph, a regular expression model.py must match: the
# construct the example needs; names without Keras' per-process uid suffixes; a tensor read only by
# the next line is `x`, or `h` in a class whose call() takes `x`: torch_impl/write/forward_plan.py)
EXPECTED = {
    "text_transformer": (22, r"h = self\.pos_emb\(h\)  # \(10, 8\)"),
    "vit": (40, r"extract_patches\(\w+, \(4, 4\), \(4, 4\), \(1, 1\), \(0, 0, 0, 0\)\)  # extract_patches: \(N, 2, 2, 48\)"),
    "mlp_mixer": (35, r"x = x\.permute\(0, 2, 1\)  # transpose: \(N, 8, 16\)"),
    "fnet": (34, r"torch\.fft\.fft2\(torch\.complex\(\w+, \w*zeros_like\)\)\.real  # \(N, 16, 8\)"),
    "gmlp": (33, r"x = \w+\[:, :, 8:16\]  # split:1: \(N, 16, 8\)"),
    "convmixer": (25, r"nn\.Conv2d\(8, 8, kernel_size=\(3, 3\), padding=\(1, 1\), groups=8\)"),
    "cct": (50, r"torch\.matmul\(\w+, \w+\)  # matmul: \(N, 1, 8\)"),
    "involution": (31, r"extract_patches\(\w+, \(3, 3\), \(2, 2\), \(1, 1\), \(0, 1, 0, 1\)\)  # extract_patches: \(N, 2, 2, 27\)"),
    "token_learner": (23, r"x = x\.permute\(0, 2, 1\)  # permute(_\d+)?: \(N, 4, 16\)"),
    "einsum_token_learner": (16, r"torch\.einsum\('bts,bsc->btc', \w+, \w+\)  # einsum(_\d+)?: \(N, 4, 8\)"),
    "timeseries_transformer": (30, r"\.mean\(dim=\(2,\)\)  # \w+: \(N, 12\)"),  # pooling over the steps
    "fused_attention": (12, r"keras_dot_product_attention\(\w+, \w+, \w+, 0\.5, causal=True\)"),
    "fused_attention_masked": (16, r"keras_dot_product_attention\(\w+, \w+, \w+, 0\.5, mask=\w+\)"),
    "vae_decoder": (10, r"nn\.ConvTranspose2d\(8, 4, kernel_size=\(3, 3\), stride=\(2, 2\)\)"),
    "mae_classifier": (14, r"x = x\.repeat\(\w+\.shape\[0\], 1, 1\)  # tile: \(N, 16, 8\)"),
    "perceiver": (68, r"self\.variable = Variable\(\(4, 8\)\)"),
    "swin": (114, r"h = h\.reshape\(-1, 2, 2, 8\)  # reshape_3: \(N, 2, 2, 8\)"),  # window_partition: batch x windows
}
# Parameter counts of the shrunk builders (keras-hub style: a changed builder shows here first).
PARAMS = {"text_transformer": 1334, "vit": 2900, "mlp_mixer": 1820, "fnet": 620, "gmlp": 1180, "convmixer": 668,
          "timeseries_transformer": 270, "cct": 2413, "involution": 226, "token_learner": 1027,
          "einsum_token_learner": 651, "fused_attention": 451, "fused_attention_masked": 355, "vae_decoder": 1009,
          "mae_classifier": 896, "perceiver": 1525, "swin": 2144}
SLOW = {"vit", "fnet", "mlp_mixer", "gmlp", "perceiver", "swin"}
# The FordA model's LayerNormalization over its one feature (x - mean is
# rounding noise times 1/sqrt(1e-6)) and TokenLearner's attention convolutions
# (Keras' own float32 error 4.7e-4 at its first 3x3 conv) miss a fixed float32
# tolerance; under the one verdict policy (shared/verdict/policy.py) each float32 row
# is held to both frameworks' own float32-vs-float64 error and passes, as
# every other model's does (issue 19).


def _proof(name, model):
    return port_ok(model)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in EXPECTED])
def test_kerasio_model_ports_and_passes_its_proof(name):
    build, _example = km.BUILDERS[name]
    model = randomise(build())
    assert model.count_params() == PARAMS[name]
    r = _proof(name, model)
    nodes, pattern = EXPECTED[name]
    assert len(r.graph.nodes) == nodes, [n.name for n in r.graph.nodes]
    assert re.search(pattern, r.source), r.source
    for check in ("node", "grad ", "output"):
        assert worst(r, check, "float64") <= F64_REL, (check, worst(r, check, "float64"))


@pytest.mark.slow
def test_involution_model_py_runs_standalone(tmp_path):
    """extract_patches ("same" padding, stride 2) is a helper inside model.py: the file runs with torch alone."""
    import numpy as np

    model = randomise(km.involution())
    out = tmp_path / "port"
    module, source = compare.keras_to_torch(model)
    out.mkdir()
    (out / "model.py").write_text(source)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(out / "weights.safetensors"))
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype("float32")
    y = standalone_outputs(out, x, tmp_path)
    expected = np.asarray(model(np.transpose(x, (0, 2, 3, 1))))
    assert np.max(np.abs(y - expected)) < 1e-5


def test_random_layer_at_inference_is_refused_naming_the_draw():
    """The VAE's Sampling layer draws keras.random.normal in call() at inference:
    random in Keras itself, so no port can be proved equal; refused (exit 2)
    naming the layer, its class, the keras.random function and the line."""
    from keras_impl.read.trace import UntraceableLayerError

    with pytest.raises(UntraceableLayerError) as e:
        compare.keras_to_torch(randomise(km.vae_encoder()))
    msg = str(e.value)
    assert "'sampling' of class Sampling draws random numbers at inference" in msg
    assert "keras.random.normal at kerasio_models.py" in msg and "epsilon = keras.random.normal(" in msg
    assert "@keras_converter('Sampling')" in msg


def test_swin_drop_path_drawing_at_inference_is_refused():
    """The listing's DropPath has no training branch: it drops paths at inference too
    (random in Keras itself). Refused by name; the corpus' swin draws in training only."""
    from keras_impl.read.trace import UntraceableLayerError

    with pytest.raises(UntraceableLayerError) as e:
        compare.keras_to_torch(km.swin(drop_path_at_inference=True))
    msg = str(e.value)
    assert "of class DropPath (inside layer 'swin_transformer" in msg and "of class SwinTransformer)" in msg
    assert "draws random numbers at inference: keras.random.uniform at kerasio_windows.py" in msg
    assert "random_tensor = (1 - self.drop_prob) + keras.random.uniform(" in msg and "@keras_converter('DropPath')" in msg
