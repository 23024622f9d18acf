"""keras.io-style models with custom layers, sizes shrunk, for the port tests
(tests/flows/port/test_port_kerasio.py; issue 20's "a dozen keras.io-style models").

Each builder reproduces the model code of one official keras.io example
(keras-team/keras-io, `examples/...`, named in its docstring) as the Keras 3
version publishes it: the custom `keras.layers.Layer` subclasses call the
same Keras layers and keras.ops in the same order (ops.image.extract_patches,
ops.arange, ops.transpose, ops.split, ops.fft2, ops.matmul, ops.einsum, ...),
so the port meets what a user meets. They are written anew here, shortened
(no get_config, no plotting), with the sizes shrunk so that each ports in a
few seconds; where an example still calls tf.* (the older CCT and involution
listings) the keras.ops twin named in a comment takes its place.

The image models live in kerasio_patches.py (patches and tokens) and
kerasio_windows.py (latents and windows); this module keeps the text,
time-series and generative ones and the registry. BUILDERS maps a model name to (builder, keras.io example path); every builder
returns a keras.Model with float32 weights of the default initialisers
(tests randomise them: port_helpers.randomise).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from kerasio_patches import (cct, convmixer, einsum_token_learner, fnet, gmlp, involution, mae_classifier, mlp_mixer,
                             token_learner, vit)
from kerasio_windows import perceiver, swin

__all__ = ["BUILDERS", "Sampling"]


# --- nlp/text_classification_with_transformer.py ---------------------------
class TransformerBlock(layers.Layer):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kw):
        super().__init__(**kw)
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs):
        attn_output = self.dropout1(self.att(inputs, inputs))
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.dropout2(self.ffn(out1))
        return self.layernorm2(out1 + ffn_output)


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim, **kw):
        super().__init__(**kw)
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        maxlen = ops.shape(x)[-1]
        positions = ops.arange(start=0, stop=maxlen, step=1)
        positions = self.pos_emb(positions)
        x = self.token_emb(x)
        return x + positions


def text_transformer(maxlen=10, vocab_size=30, embed_dim=8):
    """nlp/text_classification_with_transformer.py (embed 32, heads 2, ff 32, maxlen 200 there)."""
    inputs = layers.Input(shape=(maxlen,), dtype="int32")  # the example declares Input((maxlen,)): float ids
    x = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)(inputs)
    x = TransformerBlock(embed_dim, 2, 16)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(12, activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    return keras.Model(inputs=inputs, outputs=layers.Dense(2, activation="softmax")(x))

# --- timeseries/timeseries_classification_transformer.py ---------------------
def timeseries_transformer(steps=12, features=1, head_size=4, num_heads=2, ff_dim=4, blocks=2):
    """timeseries/timeseries_classification_transformer.py (500 steps, head 256, 4 heads, 4 blocks there):
    transformer_encoder written as a function; GlobalAveragePooling1D over the steps (channels_first)."""

    def transformer_encoder(inputs):
        x = layers.MultiHeadAttention(key_dim=head_size, num_heads=num_heads, dropout=0.25)(inputs, inputs)
        x = layers.Dropout(0.25)(x)
        x = layers.LayerNormalization(epsilon=1e-6)(x)
        res = x + inputs
        x = layers.Conv1D(filters=ff_dim, kernel_size=1, activation="relu")(res)
        x = layers.Dropout(0.25)(x)
        x = layers.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x)
        x = layers.LayerNormalization(epsilon=1e-6)(x)
        return x + res

    inputs = keras.Input(shape=(steps, features))
    x = inputs
    for _ in range(blocks):
        x = transformer_encoder(x)
    x = layers.GlobalAveragePooling1D(data_format="channels_first")(x)
    x = layers.Dropout(0.4)(layers.Dense(8, activation="relu")(x))
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(x))

# --- keras.ops.dot_product_attention ---------------------------------------
class FusedSelfAttention(layers.Layer):
    """The fused path of keras-hub's CachedMultiHeadAttention._compute_attention
    (keras_hub/src/layers/modeling/cached_multi_head_attention.py) and of
    Keras' MultiHeadAttention: (B, T, heads, head_dim) projections through
    keras.ops.dot_product_attention with a causal flag and a boolean mask."""

    def __init__(self, num_heads, head_dim, causal=False, **kw):
        super().__init__(**kw)
        self.num_heads, self.head_dim, self.causal = num_heads, head_dim, causal
        self.qkv = layers.Dense(3 * num_heads * head_dim)
        self.out = layers.Dense(num_heads * head_dim)

    def call(self, x, padding_mask=None):
        b, t = keras.ops.shape(x)[0], keras.ops.shape(x)[1]
        qkv = keras.ops.reshape(self.qkv(x), (b, t, 3, self.num_heads, self.head_dim))
        q, k, v = keras.ops.unstack(qkv, axis=2)
        mask = None
        if padding_mask is not None:
            mask = keras.ops.cast(keras.ops.expand_dims(keras.ops.expand_dims(padding_mask, 1), 1), "bool")
        y = keras.ops.dot_product_attention(q, k, v, mask=mask, is_causal=self.causal)
        return self.out(keras.ops.reshape(y, (b, t, self.num_heads * self.head_dim)))


def fused_attention(steps=6, dim=8, causal=True):
    inputs = keras.Input((steps, dim))
    x = FusedSelfAttention(2, 4, causal=causal)(inputs)
    x = layers.LayerNormalization()(x + inputs)
    return keras.Model(inputs, layers.Dense(3)(layers.Flatten()(x)))


def fused_attention_masked(steps=6, vocab=5, dim=8):
    """The same layer over token embeddings, padding ids (0) masked out through a boolean mask."""
    ids = keras.Input((steps,), dtype="int32")
    x = layers.Embedding(vocab, dim)(ids)
    x = FusedSelfAttention(2, 4)(x, padding_mask=ops.not_equal(ids, 0))
    return keras.Model(ids, layers.Dense(3)(layers.GlobalAveragePooling1D()(x)))

# --- generative/vae.py ---------------------------------------------------------
class Sampling(layers.Layer):
    """Uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch, dim = ops.shape(z_mean)[0], ops.shape(z_mean)[1]
        epsilon = keras.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def vae_encoder(image_size=8, latent_dim=2):
    """generative/vae.py's encoder (28x28 MNIST there): Sampling draws at inference too."""
    encoder_inputs = keras.Input(shape=(image_size, image_size, 1))
    x = layers.Conv2D(4, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
    x = layers.Conv2D(8, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Dense(8, activation="relu")(layers.Flatten()(x))
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    return keras.Model(encoder_inputs, z, name="encoder")


def vae_decoder(image_size=8, latent_dim=2):
    """generative/vae.py's decoder: Dense, Reshape, Conv2DTranspose (stride 2, same)."""
    latent_inputs = keras.Input(shape=(latent_dim,))
    s = image_size // 4
    x = layers.Dense(s * s * 8, activation="relu")(latent_inputs)
    x = layers.Reshape((s, s, 8))(x)
    x = layers.Conv2DTranspose(8, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(4, 3, activation="relu", strides=2, padding="same")(x)
    return keras.Model(latent_inputs, layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x), name="decoder")


# name -> (builder, keras.io example). vae_encoder is refused by design (random at inference).
BUILDERS = {
    "text_transformer": (text_transformer, "examples/nlp/text_classification_with_transformer.py"),
    "vit": (vit, "examples/vision/image_classification_with_vision_transformer.py"),
    "mlp_mixer": (mlp_mixer, "examples/vision/mlp_image_classification.py"),
    "fnet": (fnet, "examples/vision/mlp_image_classification.py"),
    "gmlp": (gmlp, "examples/vision/mlp_image_classification.py"),
    "convmixer": (convmixer, "examples/vision/convmixer.py"),
    "timeseries_transformer": (timeseries_transformer, "examples/timeseries/timeseries_classification_transformer.py"),
    "cct": (cct, "examples/vision/cct.py"),
    "involution": (involution, "examples/vision/involution.py"),
    "token_learner": (token_learner, "examples/vision/token_learner.py"),
    "einsum_token_learner": (einsum_token_learner, "examples/vision/token_learner.py (as a layer, ops.einsum)"),
    "fused_attention": (fused_attention, "keras_hub cached_multi_head_attention.py (fused path)"),
    "fused_attention_masked": (fused_attention_masked, "keras_hub cached_multi_head_attention.py (fused path)"),
    "vae_decoder": (vae_decoder, "examples/generative/vae.py"),
    "mae_classifier": (mae_classifier, "examples/vision/masked_image_modeling.py"),
    "perceiver": (perceiver, "examples/vision/perceiver_image_classification.py"),
    "swin": (swin, "examples/vision/swin_transformers.py"),
}
