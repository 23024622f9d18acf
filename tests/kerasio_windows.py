"""keras.io models that attend over latents or windows (Perceiver, Swin
Transformer), for tests/kerasio_models.py's registry; see its docstring."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from kerasio_patches import MixerPatches, PatchEncoder

__all__ = []


# --- vision/perceiver_image_classification.py ---------------------------------
def _ffn(hidden_units, dropout_rate):
    ffn_layers = [layers.Dense(units, activation="gelu") for units in hidden_units[:-1]]
    ffn_layers += [layers.Dense(units=hidden_units[-1]), layers.Dropout(dropout_rate)]
    return keras.Sequential(ffn_layers)


def _cross_attention_module(latent_dim, data_dim, projection_dim, ffn_units, dropout_rate):
    inputs = {"latent_array": layers.Input(shape=(latent_dim, projection_dim)),
              "data_array": layers.Input(shape=(data_dim, projection_dim))}
    latent_array = layers.LayerNormalization(epsilon=1e-6)(inputs["latent_array"])
    data_array = layers.LayerNormalization(epsilon=1e-6)(inputs["data_array"])
    query = layers.Dense(units=projection_dim)(latent_array)
    key = layers.Dense(units=projection_dim)(data_array)
    value = layers.Dense(units=projection_dim)(data_array)
    attention_output = layers.Attention(use_scale=True, dropout=0.1)([query, key, value], return_attention_scores=False)
    attention_output = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([attention_output, latent_array]))
    outputs = layers.Add()([_ffn(ffn_units, dropout_rate)(attention_output), attention_output])
    return keras.Model(inputs=inputs, outputs=outputs)


def _transformer_module(latent_dim, projection_dim, num_heads, num_transformer_blocks, ffn_units, dropout_rate):
    inputs = layers.Input(shape=(latent_dim, projection_dim))
    x0 = inputs
    for _ in range(num_transformer_blocks):
        x1 = layers.LayerNormalization(epsilon=1e-6)(x0)
        attention_output = layers.MultiHeadAttention(num_heads=num_heads, key_dim=projection_dim, dropout=0.1)(x1, x1)
        x2 = layers.Add()([attention_output, x0])
        x3 = _ffn(ffn_units, dropout_rate)(layers.LayerNormalization(epsilon=1e-6)(x2))
        x0 = layers.Add()([x3, x2])
    return keras.Model(inputs=inputs, outputs=x0)


class Perceiver(keras.Model):
    """A subclassed model: a learned latent array cross-attends to the image patches, then a
    Transformer over the latents, `num_iterations` times with shared weights."""

    def __init__(self, patch_size, data_dim, latent_dim, projection_dim, num_heads, num_transformer_blocks,
                 ffn_units, dropout_rate, num_iterations, classifier_units, **kw):
        super().__init__(**kw)
        self.latent_dim, self.data_dim, self.patch_size = latent_dim, data_dim, patch_size
        self.projection_dim, self.num_heads, self.num_transformer_blocks = projection_dim, num_heads, num_transformer_blocks
        self.ffn_units, self.dropout_rate, self.num_iterations = ffn_units, dropout_rate, num_iterations
        self.classifier_units = classifier_units

    def get_config(self):
        """Not in the listing (Keras cannot save that model either); the port's float64 copy needs it."""
        names = ("patch_size", "data_dim", "latent_dim", "projection_dim", "num_heads", "num_transformer_blocks",
                 "ffn_units", "dropout_rate", "num_iterations", "classifier_units")
        return {**super().get_config(), **{k: getattr(self, k) for k in names}}

    def build(self, input_shape):
        self.latent_array = self.add_weight(shape=(self.latent_dim, self.projection_dim),
                                            initializer="random_normal", trainable=True)
        self.patcher = MixerPatches(self.patch_size)
        self.patch_encoder = PatchEncoder(self.data_dim, self.projection_dim)
        self.cross_attention = _cross_attention_module(self.latent_dim, self.data_dim, self.projection_dim,
                                                       self.ffn_units, self.dropout_rate)
        self.transformer = _transformer_module(self.latent_dim, self.projection_dim, self.num_heads,
                                               self.num_transformer_blocks, self.ffn_units, self.dropout_rate)
        self.global_average_pooling = layers.GlobalAveragePooling1D()
        self.classification_head = _ffn(hidden_units=self.classifier_units, dropout_rate=self.dropout_rate)
        super().build(input_shape)

    def call(self, inputs):
        encoded_patches = self.patch_encoder(self.patcher(inputs))
        cross_attention_inputs = {"latent_array": ops.expand_dims(self.latent_array, 0), "data_array": encoded_patches}
        for _ in range(self.num_iterations):
            latent_array = self.transformer(self.cross_attention(cross_attention_inputs))
            cross_attention_inputs["latent_array"] = latent_array
        return self.classification_head(self.global_average_pooling(latent_array))


def perceiver(image_size=8, patch_size=2, latent_dim=4, projection_dim=8):
    """vision/perceiver_image_classification.py (64x64, patch 2, 256 latents, dim 256, 2 iterations there),
    the subclassed Perceiver called in a functional model (the port reads functional graphs)."""
    data_dim = (image_size // patch_size) ** 2
    inputs = keras.Input((image_size, image_size, 3))
    model = Perceiver(patch_size, data_dim, latent_dim, projection_dim, num_heads=2, num_transformer_blocks=1,
                      ffn_units=[projection_dim, projection_dim], dropout_rate=0.1, num_iterations=2,
                      classifier_units=[projection_dim, 4])
    return keras.Model(inputs, model(inputs))

# --- vision/swin_transformers.py -----------------------------------------------
# The listing's tf.reshape / tf.transpose / tf.gather / tf.roll / tf.Variable as keras.ops and keras.Variable.
def window_partition(x, window_size):
    _, height, width, channels = x.shape
    patch_num_y, patch_num_x = height // window_size, width // window_size
    x = ops.reshape(x, (-1, patch_num_y, window_size, patch_num_x, window_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, window_size, window_size, channels))  # the batch merged with the windows


def window_reverse(windows, window_size, height, width, channels):
    patch_num_y, patch_num_x = height // window_size, width // window_size
    x = ops.reshape(windows, (-1, patch_num_y, patch_num_x, window_size, window_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height, width, channels))


class DropPath(layers.Layer):
    """The listing's DropPath draws at inference too (no training branch): at_inference=True
    keeps that (the port refuses it: random in Keras itself); False draws in training only."""

    def __init__(self, drop_prob=None, at_inference=False, **kw):
        super().__init__(**kw)
        self.drop_prob, self.at_inference = drop_prob, at_inference
        self.seed_generator = keras.random.SeedGenerator(7)

    def call(self, x, training=None):
        if not (training or self.at_inference):
            return x
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        random_tensor = (1 - self.drop_prob) + keras.random.uniform(shape, dtype=x.dtype, seed=self.seed_generator)
        return ops.divide(x, 1 - self.drop_prob) * ops.floor(random_tensor)


class WindowAttention(layers.Layer):
    def __init__(self, dim, window_size, num_heads, qkv_bias=True, dropout_rate=0.0, **kw):
        super().__init__(**kw)
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = layers.Dense(dim * 3, use_bias=qkv_bias)
        self.dropout = layers.Dropout(dropout_rate)
        self.proj = layers.Dense(dim)

    def build(self, input_shape):
        num_window_elements = (2 * self.window_size[0] - 1) * (2 * self.window_size[1] - 1)
        self.relative_position_bias_table = self.add_weight(shape=(num_window_elements, self.num_heads),
                                                            initializer="zeros", trainable=True)
        coords = np.stack(np.meshgrid(np.arange(self.window_size[0]), np.arange(self.window_size[1]), indexing="ij"))
        coords_flatten = coords.reshape(2, -1)
        relative_coords = (coords_flatten[:, :, None] - coords_flatten[:, None, :]).transpose([1, 2, 0])
        relative_coords[:, :, 0] += self.window_size[0] - 1
        relative_coords[:, :, 1] += self.window_size[1] - 1
        relative_coords[:, :, 0] *= 2 * self.window_size[1] - 1
        index = relative_coords.sum(-1)
        self.relative_position_index = self.add_weight(shape=index.shape, initializer=keras.initializers.Constant(index),
                                                       trainable=False, dtype="int32", name="relative_position_index")

    def call(self, x, mask=None):
        _, size, channels = x.shape
        head_dim = channels // self.num_heads
        x_qkv = ops.reshape(self.qkv(x), (-1, size, 3, self.num_heads, head_dim))
        x_qkv = ops.transpose(x_qkv, (2, 0, 3, 1, 4))
        q, k, v = x_qkv[0], x_qkv[1], x_qkv[2]
        q = q * self.scale
        attn = q @ ops.transpose(k, (0, 1, 3, 2))
        num_window_elements = self.window_size[0] * self.window_size[1]
        relative_position_bias = ops.take(self.relative_position_bias_table,
                                          ops.reshape(self.relative_position_index, (-1,)), axis=0)
        relative_position_bias = ops.reshape(relative_position_bias, (num_window_elements, num_window_elements, -1))
        attn = attn + ops.expand_dims(ops.transpose(relative_position_bias, (2, 0, 1)), axis=0)
        if mask is not None:
            n_w = mask.shape[0]
            # the listing casts to tf.float32: here the attention's dtype, or a float64 copy cannot be built
            mask_float = ops.cast(ops.expand_dims(ops.expand_dims(mask, axis=1), axis=0), attn.dtype)
            attn = ops.reshape(attn, (-1, n_w, self.num_heads, size, size)) + mask_float
            attn = ops.reshape(attn, (-1, self.num_heads, size, size))
        attn = self.dropout(keras.activations.softmax(attn, axis=-1))
        x_qkv = ops.transpose(attn @ v, (0, 2, 1, 3))
        return self.dropout(self.proj(ops.reshape(x_qkv, (-1, size, channels))))


class SwinTransformer(layers.Layer):
    def __init__(self, dim, num_patch, num_heads, window_size=7, shift_size=0, num_mlp=1024, qkv_bias=True,
                 dropout_rate=0.0, drop_path_at_inference=False, **kw):
        super().__init__(**kw)
        self.dim, self.num_patch, self.num_heads = dim, num_patch, num_heads
        self.window_size, self.shift_size, self.num_mlp = window_size, shift_size, num_mlp
        self.norm1 = layers.LayerNormalization(epsilon=1e-5)
        self.attn = WindowAttention(dim, window_size=(window_size, window_size), num_heads=num_heads,
                                    qkv_bias=qkv_bias, dropout_rate=dropout_rate)
        self.drop_path = DropPath(dropout_rate, at_inference=drop_path_at_inference)
        self.norm2 = layers.LayerNormalization(epsilon=1e-5)
        self.mlp = keras.Sequential([layers.Dense(num_mlp), layers.Activation(keras.activations.gelu),
                                     layers.Dropout(dropout_rate), layers.Dense(dim), layers.Dropout(dropout_rate)])
        if min(self.num_patch) < self.window_size:
            self.shift_size, self.window_size = 0, min(self.num_patch)

    def build(self, input_shape):
        if self.shift_size == 0:
            self.attn_mask = None
            return
        height, width = self.num_patch
        cuts = (slice(0, -self.window_size), slice(-self.window_size, -self.shift_size), slice(-self.shift_size, None))
        mask_array = np.zeros((1, height, width, 1))
        count = 0
        for h in cuts:
            for w in cuts:
                mask_array[:, h, w, :] = count
                count += 1
        mask_windows = ops.reshape(window_partition(ops.convert_to_tensor(mask_array), self.window_size),
                                   (-1, self.window_size * self.window_size))
        attn_mask = ops.expand_dims(mask_windows, axis=1) - ops.expand_dims(mask_windows, axis=2)
        attn_mask = ops.where(attn_mask != 0, -100.0, attn_mask)
        attn_mask = ops.where(attn_mask == 0, 0.0, attn_mask)
        self.attn_mask = self.add_weight(shape=attn_mask.shape, trainable=False, name="attn_mask",
                                         initializer=keras.initializers.Constant(ops.convert_to_numpy(attn_mask)))

    def call(self, x):
        height, width = self.num_patch
        _, num_patches_before, channels = x.shape
        x_skip = x
        x = ops.reshape(self.norm1(x), (-1, height, width, channels))
        shifted_x = ops.roll(x, shift=[-self.shift_size, -self.shift_size], axis=[1, 2]) if self.shift_size > 0 else x
        x_windows = ops.reshape(window_partition(shifted_x, self.window_size),
                                (-1, self.window_size * self.window_size, channels))
        attn_windows = self.attn(x_windows, mask=self.attn_mask)
        attn_windows = ops.reshape(attn_windows, (-1, self.window_size, self.window_size, channels))
        shifted_x = window_reverse(attn_windows, self.window_size, height, width, channels)
        x = ops.roll(shifted_x, shift=[self.shift_size, self.shift_size], axis=[1, 2]) if self.shift_size > 0 else shifted_x
        x = x_skip + self.drop_path(ops.reshape(x, (-1, height * width, channels)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbedding(layers.Layer):
    def __init__(self, num_patch, embed_dim, **kw):
        super().__init__(**kw)
        self.num_patch = num_patch
        self.proj = layers.Dense(embed_dim)
        self.pos_embed = layers.Embedding(input_dim=num_patch, output_dim=embed_dim)

    def call(self, patch):
        return self.proj(patch) + self.pos_embed(ops.arange(start=0, stop=self.num_patch, step=1))


class PatchMerging(layers.Layer):
    def __init__(self, num_patch, embed_dim, **kw):
        super().__init__(**kw)
        self.num_patch, self.embed_dim = num_patch, embed_dim
        self.linear_trans = layers.Dense(2 * embed_dim, use_bias=False)

    def call(self, x):
        height, width = self.num_patch
        _, _, c = x.shape
        x = ops.reshape(x, (-1, height, width, c))
        x0, x1, x2, x3 = x[:, 0::2, 0::2, :], x[:, 1::2, 0::2, :], x[:, 0::2, 1::2, :], x[:, 1::2, 1::2, :]
        x = ops.reshape(ops.concatenate((x0, x1, x2, x3), axis=-1), (-1, (height // 2) * (width // 2), 4 * c))
        return self.linear_trans(x)


def swin(image_size=8, patch=2, embed_dim=8, num_heads=2, window_size=2, shift_size=1, drop_path_at_inference=False):
    """vision/swin_transformers.py (32x32, patch 2, dim 64, 8 heads there): two SwinTransformer
    blocks (plain, then shifted windows with the attention mask), PatchMerging."""
    n = image_size // patch
    inputs = layers.Input((image_size, image_size, 3))
    x = layers.RandomFlip("horizontal")(inputs)
    x = MixerPatches(patch)(x)  # the listing's PatchExtract: the same extract_patches + reshape
    x = PatchEmbedding(n * n, embed_dim)(x)
    for shift in (0, shift_size):
        x = SwinTransformer(dim=embed_dim, num_patch=(n, n), num_heads=num_heads, window_size=window_size,
                            shift_size=shift, num_mlp=16, dropout_rate=0.03,
                            drop_path_at_inference=drop_path_at_inference)(x)
    x = layers.GlobalAveragePooling1D()(PatchMerging((n, n), embed_dim=embed_dim)(x))
    return keras.Model(inputs, layers.Dense(4, activation="softmax")(x))
