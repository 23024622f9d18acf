"""keras.io-style models with custom layers, sizes shrunk, for the port tests
(tests/test_port_kerasio.py; issue 20's "a dozen keras.io-style models").

Each builder reproduces the model code of one official keras.io example
(keras-team/keras-io, `examples/...`, named in its docstring) as the Keras 3
version publishes it: the custom `keras.layers.Layer` subclasses call the
same Keras layers and keras.ops in the same order (ops.image.extract_patches,
ops.arange, ops.transpose, ops.split, ops.fft2, ops.matmul, ops.einsum, ...),
so the port meets what a user meets. They are written anew here, shortened
(no get_config, no plotting), with the sizes shrunk so that each ports in a
few seconds; where an example still calls tf.* (the older CCT and involution
listings) the keras.ops twin named in a comment takes its place.

BUILDERS maps a model name to (builder, keras.io example path); every builder
returns a keras.Model with float32 weights of the default initialisers
(tests randomise them: port_helpers.randomise).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

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


# --- vision/image_classification_with_vision_transformer.py ----------------
class Patches(layers.Layer):
    def __init__(self, patch_size, **kw):
        super().__init__(**kw)
        self.patch_size = patch_size

    def call(self, images):
        input_shape = ops.shape(images)
        batch_size, height, width, channels = input_shape[0], input_shape[1], input_shape[2], input_shape[3]
        num_patches_h = height // self.patch_size
        num_patches_w = width // self.patch_size
        patches = keras.ops.image.extract_patches(images, size=self.patch_size)
        return ops.reshape(patches, (batch_size, num_patches_h * num_patches_w, self.patch_size * self.patch_size * channels))


class PatchEncoder(layers.Layer):
    def __init__(self, num_patches, projection_dim, **kw):
        super().__init__(**kw)
        self.num_patches = num_patches
        self.projection = layers.Dense(units=projection_dim)
        self.position_embedding = layers.Embedding(input_dim=num_patches, output_dim=projection_dim)

    def call(self, patch):
        positions = ops.expand_dims(ops.arange(start=0, stop=self.num_patches, step=1), axis=0)
        projected_patches = self.projection(patch)
        return projected_patches + self.position_embedding(positions)


def _mlp(x, hidden_units, dropout_rate):
    for units in hidden_units:
        x = layers.Dense(units, activation=keras.activations.gelu)(x)
        x = layers.Dropout(dropout_rate)(x)
    return x


def vit(image_size=8, patch_size=4, projection_dim=8, num_heads=2, transformer_layers=2):
    """vision/image_classification_with_vision_transformer.py (72x72 images,
    patch 6, 8 layers there); its augmentation kept as Normalization and
    RandomFlip (Resizing to the same size left out)."""
    num_patches = (image_size // patch_size) ** 2
    inputs = keras.Input(shape=(image_size, image_size, 3))
    augmented = keras.Sequential([layers.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.05, 0.06, 0.07]),
                                  layers.RandomFlip("horizontal")], name="data_augmentation")(inputs)
    encoded_patches = PatchEncoder(num_patches, projection_dim)(Patches(patch_size)(augmented))
    for _ in range(transformer_layers):
        x1 = layers.LayerNormalization(epsilon=1e-6)(encoded_patches)
        attention_output = layers.MultiHeadAttention(num_heads=num_heads, key_dim=projection_dim, dropout=0.1)(x1, x1)
        x2 = layers.Add()([attention_output, encoded_patches])
        x3 = layers.LayerNormalization(epsilon=1e-6)(x2)
        x3 = _mlp(x3, hidden_units=[projection_dim * 2, projection_dim], dropout_rate=0.1)
        encoded_patches = layers.Add()([x3, x2])
    representation = layers.LayerNormalization(epsilon=1e-6)(encoded_patches)
    representation = layers.Dropout(0.5)(layers.Flatten()(representation))
    features = _mlp(representation, hidden_units=[16, 8], dropout_rate=0.5)
    return keras.Model(inputs=inputs, outputs=layers.Dense(4)(features))


# --- vision/mlp_image_classification.py (MLP-Mixer, FNet, gMLP) ------------
class MixerPatches(layers.Layer):
    """That example's own Patches: the sizes read from the patches' shape."""

    def __init__(self, patch_size, **kw):
        super().__init__(**kw)
        self.patch_size = patch_size

    def call(self, x):
        patches = keras.ops.image.extract_patches(x, self.patch_size)
        batch_size = keras.ops.shape(patches)[0]
        num_patches = keras.ops.shape(patches)[1] * keras.ops.shape(patches)[2]
        patch_dim = keras.ops.shape(patches)[3]
        return keras.ops.reshape(patches, (batch_size, num_patches, patch_dim))


class PositionEmbedding(layers.Layer):
    """A learned table sliced to the input's length and broadcast to its shape."""

    def __init__(self, sequence_length, initializer="glorot_uniform", **kw):
        super().__init__(**kw)
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.position_embeddings = self.add_weight(name="embeddings", shape=[self.sequence_length, input_shape[-1]],
                                                   initializer=self.initializer, trainable=True)
        super().build(input_shape)

    def call(self, inputs, start_index=0):
        shape = keras.ops.shape(inputs)
        feature_length, sequence_length = shape[-1], shape[-2]
        position_embeddings = keras.ops.convert_to_tensor(self.position_embeddings)
        position_embeddings = keras.ops.slice(position_embeddings, (start_index, 0), (sequence_length, feature_length))
        return keras.ops.broadcast_to(position_embeddings, shape)

    def compute_output_shape(self, input_shape):
        return input_shape


class MLPMixerLayer(layers.Layer):
    def __init__(self, num_patches, hidden_units, dropout_rate, **kw):
        super().__init__(**kw)
        self.mlp1 = keras.Sequential([layers.Dense(units=num_patches, activation="gelu"),
                                      layers.Dense(units=num_patches), layers.Dropout(rate=dropout_rate)])
        self.mlp2 = keras.Sequential([layers.Dense(units=num_patches, activation="gelu"),
                                      layers.Dense(units=hidden_units), layers.Dropout(rate=dropout_rate)])
        self.normalize = layers.LayerNormalization(epsilon=1e-6)

    def call(self, inputs):
        x = self.normalize(inputs)
        x_channels = keras.ops.transpose(x, axes=(0, 2, 1))  # (batch, hidden, patches)
        mlp1_outputs = keras.ops.transpose(self.mlp1(x_channels), axes=(0, 2, 1))
        x = mlp1_outputs + inputs
        x_patches = self.normalize(x)  # the same LayerNormalization twice, as published
        return x + self.mlp2(x_patches)


class FNetLayer(layers.Layer):
    def __init__(self, embedding_dim, dropout_rate, **kw):
        super().__init__(**kw)
        self.ffn = keras.Sequential([layers.Dense(units=embedding_dim, activation="gelu"),
                                     layers.Dropout(rate=dropout_rate), layers.Dense(units=embedding_dim)])
        self.normalize1 = layers.LayerNormalization(epsilon=1e-6)
        self.normalize2 = layers.LayerNormalization(epsilon=1e-6)

    def call(self, inputs):
        real_part = inputs
        im_part = keras.ops.zeros_like(inputs)
        x = keras.ops.fft2((real_part, im_part))[0]  # the real part of the 2-D FFT over (patches, channels)
        x = self.normalize1(x + inputs)
        return self.normalize2(x + self.ffn(x))


class gMLPLayer(layers.Layer):  # noqa: N801  (the example's name)
    def __init__(self, num_patches, embedding_dim, dropout_rate, **kw):
        super().__init__(**kw)
        self.channel_projection1 = keras.Sequential([layers.Dense(units=embedding_dim * 2, activation="gelu"),
                                                     layers.Dropout(rate=dropout_rate)])
        self.channel_projection2 = layers.Dense(units=embedding_dim)
        self.spatial_projection = layers.Dense(units=num_patches, bias_initializer="Ones")
        self.normalize1 = layers.LayerNormalization(epsilon=1e-6)
        self.normalize2 = layers.LayerNormalization(epsilon=1e-6)

    def spatial_gating_unit(self, x):
        u, v = keras.ops.split(x, indices_or_sections=2, axis=2)
        v = self.normalize2(v)
        v_channels = keras.ops.transpose(v, axes=(0, 2, 1))
        v_projected = keras.ops.transpose(self.spatial_projection(v_channels), axes=(0, 2, 1))
        return u * v_projected

    def call(self, inputs):
        x = self.normalize1(inputs)
        x_spatial = self.spatial_gating_unit(self.channel_projection1(x))
        return x + self.channel_projection2(x_spatial)


def _mlp_classifier(blocks, image_size=8, patch_size=2, embedding_dim=8, positional_encoding=False):
    """build_classifier of vision/mlp_image_classification.py (64x64, patch 8, dim 256, 4 blocks there)."""
    num_patches = (image_size // patch_size) ** 2
    inputs = layers.Input(shape=(image_size, image_size, 3))
    x = layers.Dense(units=embedding_dim)(MixerPatches(patch_size)(inputs))
    if positional_encoding:
        x = x + PositionEmbedding(sequence_length=num_patches)(x)
    x = blocks(num_patches, embedding_dim)(x)
    representation = layers.Dropout(rate=0.2)(layers.GlobalAveragePooling1D()(x))
    return keras.Model(inputs=inputs, outputs=layers.Dense(4)(representation))


def mlp_mixer():
    return _mlp_classifier(lambda n, d: keras.Sequential([MLPMixerLayer(n, d, 0.2) for _ in range(2)]))


def fnet():
    return _mlp_classifier(lambda n, d: keras.Sequential([FNetLayer(d, 0.2) for _ in range(2)]), positional_encoding=True)


def gmlp():
    return _mlp_classifier(lambda n, d: keras.Sequential([gMLPLayer(n, d, 0.2) for _ in range(2)]))


# --- vision/convmixer.py -----------------------------------------------------
def convmixer(image_size=8, filters=8, depth=2, kernel_size=3, patch_size=2):
    """vision/convmixer.py's get_conv_mixer_256_8 (32x32, 256 filters, depth 8 there): functional,
    its blocks written as functions (no custom layer class)."""

    def activation_block(x):
        return layers.BatchNormalization()(layers.Activation("gelu")(x))

    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Rescaling(scale=1.0 / 255)(inputs)
    x = activation_block(layers.Conv2D(filters, kernel_size=patch_size, strides=patch_size)(x))
    for _ in range(depth):
        x0 = x
        x = activation_block(layers.DepthwiseConv2D(kernel_size=kernel_size, padding="same")(x))
        x = layers.Add()([activation_block(x), x0])  # residual, as the example's conv_mixer_block
        x = activation_block(layers.Conv2D(filters, kernel_size=1)(x))
    x = layers.GlobalAvgPool2D()(x)
    return keras.Model(inputs, layers.Dense(4, activation="softmax")(x))


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


# --- vision/cct.py ------------------------------------------------------------
class CCTTokenizer(layers.Layer):
    def __init__(self, kernel_size=3, stride=1, padding=1, pooling_kernel_size=3, pooling_stride=2,
                 num_conv_layers=2, num_output_channels=(8, 8), **kw):
        super().__init__(**kw)
        self.conv_model = keras.Sequential()
        for i in range(num_conv_layers):
            self.conv_model.add(layers.Conv2D(num_output_channels[i], kernel_size, stride, padding="valid",
                                              use_bias=False, activation="relu", kernel_initializer="he_normal"))
            self.conv_model.add(layers.ZeroPadding2D(padding))
            self.conv_model.add(layers.MaxPooling2D(pooling_kernel_size, pooling_stride, "same"))

    def call(self, images):
        outputs = self.conv_model(images)
        # the listing's tf.reshape(outputs, (-1, h * w, c)) as keras.ops
        return keras.ops.reshape(outputs, (-1, keras.ops.shape(outputs)[1] * keras.ops.shape(outputs)[2],
                                           keras.ops.shape(outputs)[-1]))


class StochasticDepth(layers.Layer):
    """Drops the residual branch per sample in training; the identity at inference."""

    def __init__(self, drop_prop, **kw):
        super().__init__(**kw)
        self.drop_prob = drop_prop
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, x, training=None):
        if training:
            keep_prob = 1 - self.drop_prob
            shape = (keras.ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
            random_tensor = keep_prob + keras.random.uniform(shape, 0, 1, seed=self.seed_generator)
            return (x / keep_prob) * keras.ops.floor(random_tensor)
        return x


class SequencePooling(layers.Layer):
    """CCT's attention pooling (the listing's tf.matmul(..., transpose_a=True) as transpose + matmul)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.attention = layers.Dense(1)

    def call(self, x):
        attention_weights = keras.ops.softmax(self.attention(x), axis=1)
        attention_weights = keras.ops.transpose(attention_weights, axes=(0, 2, 1))
        weighted_representation = keras.ops.matmul(attention_weights, x)
        return keras.ops.squeeze(weighted_representation, -2)


def cct(image_size=12, projection_dim=8, num_heads=2, transformer_layers=2, stochastic_depth_rate=0.1):
    """vision/cct.py (32x32 CIFAR images, 128 channels, 2 layers there); positional embedding on."""
    inputs = layers.Input((image_size, image_size, 3))
    augmented = keras.Sequential([layers.Rescaling(scale=1.0 / 255), layers.RandomFlip("horizontal")],
                                 name="data_augmentation")(inputs)
    encoded_patches = CCTTokenizer(num_output_channels=(projection_dim, projection_dim))(augmented)
    encoded_patches = PositionEmbedding(sequence_length=encoded_patches.shape[1])(encoded_patches) + encoded_patches
    dpr = [x for x in np.linspace(0, stochastic_depth_rate, transformer_layers)]
    for i in range(transformer_layers):
        x1 = layers.LayerNormalization(epsilon=1e-5)(encoded_patches)
        attention_output = layers.MultiHeadAttention(num_heads=num_heads, key_dim=projection_dim, dropout=0.1)(x1, x1)
        x2 = layers.Add()([StochasticDepth(dpr[i])(attention_output), encoded_patches])
        x3 = layers.LayerNormalization(epsilon=1e-5)(x2)
        x3 = _mlp(x3, hidden_units=[projection_dim, projection_dim], dropout_rate=0.1)
        encoded_patches = layers.Add()([StochasticDepth(dpr[i])(x3), x2])
    representation = layers.LayerNormalization(epsilon=1e-5)(encoded_patches)
    return keras.Model(inputs=inputs, outputs=layers.Dense(4)(SequencePooling()(representation)))


# --- vision/involution.py -----------------------------------------------------
class Involution(layers.Layer):
    """Kernels generated per pixel, applied to the input's K x K patches
    (the listing's tf.image.extract_patches / tf.multiply / tf.reduce_sum as keras.ops)."""

    def __init__(self, channel, group_number, kernel_size, stride, reduction_ratio, name):
        super().__init__(name=name)
        self.channel, self.group_number, self.kernel_size = channel, group_number, kernel_size
        self.stride, self.reduction_ratio = stride, reduction_ratio

    def build(self, input_shape):
        (_, height, width, num_channels) = input_shape
        height, width = height // self.stride, width // self.stride
        self.stride_layer = (layers.AveragePooling2D(pool_size=self.stride, strides=self.stride, padding="same")
                             if self.stride > 1 else (lambda t: t))
        self.kernel_gen = keras.Sequential([
            layers.Conv2D(filters=self.channel // self.reduction_ratio, kernel_size=1),
            layers.BatchNormalization(), layers.ReLU(),
            layers.Conv2D(filters=self.kernel_size * self.kernel_size * self.group_number, kernel_size=1)])
        k2, g = self.kernel_size * self.kernel_size, self.group_number
        self.kernel_reshape = layers.Reshape(target_shape=(height, width, k2, 1, g))
        self.input_patches_reshape = layers.Reshape(target_shape=(height, width, k2, num_channels // g, g))
        self.output_reshape = layers.Reshape(target_shape=(height, width, num_channels))

    def call(self, x):
        kernel = self.kernel_reshape(self.kernel_gen(self.stride_layer(x)))  # B, H, W, K*K, 1, G
        input_patches = keras.ops.image.extract_patches(x, size=self.kernel_size, strides=self.stride, padding="same")
        input_patches = self.input_patches_reshape(input_patches)  # B, H, W, K*K, C//G, G
        output = keras.ops.sum(keras.ops.multiply(kernel, input_patches), axis=3)  # B, H, W, C//G, G
        return self.output_reshape(output), kernel


def involution(image_size=8):
    """vision/involution.py's involution model (32x32, three Involution layers there)."""
    inputs = keras.Input(shape=(image_size, image_size, 3))
    x, _ = Involution(channel=3, group_number=1, kernel_size=3, stride=1, reduction_ratio=2, name="inv_1")(inputs)
    x = layers.MaxPooling2D((2, 2))(layers.ReLU()(x))
    x, _ = Involution(channel=3, group_number=1, kernel_size=3, stride=2, reduction_ratio=1, name="inv_2")(x)
    x = layers.Flatten()(layers.ReLU()(x))
    x = layers.Dense(8, activation="relu")(x)
    return keras.Model(inputs=[inputs], outputs=[layers.Dense(4)(x)], name="inv_model")


# --- vision/token_learner.py ------------------------------------------------------
def _token_learner(inputs, number_of_tokens=4):
    """The example's token_learner module (a function): spatial attention maps from a conv
    stack (ops.gelu activations, a sigmoid), each map multiplied with the input, averaged."""
    x = layers.LayerNormalization(epsilon=1e-6)(inputs)  # (B, H, W, C)
    attention_maps = keras.Sequential([
        layers.Conv2D(number_of_tokens, (3, 3), activation=ops.gelu, padding="same", use_bias=False),
        layers.Conv2D(number_of_tokens, (3, 3), activation=ops.gelu, padding="same", use_bias=False),
        layers.Conv2D(number_of_tokens, (3, 3), activation="sigmoid", padding="same", use_bias=False),
        layers.Reshape((-1, number_of_tokens)), layers.Permute((2, 1))])(x)  # (B, tokens, H*W)
    num_filters = inputs.shape[-1]
    inputs = layers.Reshape((1, -1, num_filters))(inputs)  # (B, 1, H*W, C)
    attended_inputs = ops.expand_dims(attention_maps, axis=-1) * inputs  # (B, tokens, H*W, C)
    return ops.mean(attended_inputs, axis=2)  # (B, tokens, C)


def token_learner(image_size=8):
    """vision/token_learner.py (ViT with TokenLearner after its 2nd block, 32x32 there): patches
    by a strided conv, the module, one attention block."""
    inputs = keras.Input((image_size, image_size, 3))
    tokens = _token_learner(layers.Conv2D(8, 2, strides=2)(inputs))
    x1 = layers.LayerNormalization(epsilon=1e-6)(tokens)
    x = layers.Add()([layers.MultiHeadAttention(num_heads=2, key_dim=4)(x1, x1), tokens])
    return keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling1D()(x)))


class EinsumTokenLearner(layers.Layer):
    """The same module as a custom layer, its multiply-and-average written as one
    keras.ops.einsum (the form keras-hub and Keras' own attention use)."""

    def __init__(self, num_tokens=4, **kw):
        super().__init__(**kw)
        self.num_tokens = num_tokens
        self.norm = layers.LayerNormalization(epsilon=1e-6)
        self.attention = keras.Sequential([layers.Conv2D(num_tokens, 3, padding="same", use_bias=False),
                                           layers.Activation("gelu"),
                                           layers.Conv2D(num_tokens, 3, padding="same", use_bias=False)])

    def call(self, inputs):
        maps = keras.ops.sigmoid(self.attention(self.norm(inputs)))  # (B, H, W, tokens)
        b, h, w, c = keras.ops.shape(inputs)
        maps = keras.ops.reshape(keras.ops.transpose(maps, (0, 3, 1, 2)), (b, self.num_tokens, h * w))
        feats = keras.ops.reshape(inputs, (b, h * w, c))
        return keras.ops.einsum("bts,bsc->btc", maps, feats) / (h * w)  # the mean over the cells


def einsum_token_learner(image_size=8):
    inputs = keras.Input((image_size, image_size, 3))
    tokens = EinsumTokenLearner(num_tokens=4)(layers.Conv2D(8, 2, strides=2)(inputs))
    return keras.Model(inputs, layers.Dense(3)(layers.Flatten()(tokens)))


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


# --- vision/masked_image_modeling.py -----------------------------------------
class MAEPatches(layers.Layer):
    """The masked autoencoder's Patches: extract_patches then a reshape to (batch, patches, dim)."""

    def __init__(self, patch_size=2, **kw):
        super().__init__(**kw)
        self.patch_size = patch_size
        self.resize = layers.Reshape((-1, patch_size * patch_size * 3))  # the example's own reshape layer

    def call(self, images):
        patches = keras.ops.image.extract_patches(images, size=self.patch_size)
        return self.resize(patches)


class MAEPatchEncoder(layers.Layer):
    """Projection plus position embedding; in downstream mode (the fine-tuned classifier) no masking."""

    def __init__(self, patch_size=2, projection_dim=8, downstream=True, **kw):
        super().__init__(**kw)
        self.patch_size, self.projection_dim, self.downstream = patch_size, projection_dim, downstream
        self.mask_token = self.add_weight(shape=(1, patch_size * patch_size * 3), initializer="random_normal",
                                          trainable=True, name="mask_token")

    def build(self, input_shape):
        (_, self.num_patches, self.patch_area) = input_shape
        self.projection = layers.Dense(units=self.projection_dim)
        self.position_embedding = layers.Embedding(input_dim=self.num_patches, output_dim=self.projection_dim)

    def call(self, patches):
        batch_size = keras.ops.shape(patches)[0]
        positions = keras.ops.arange(start=0, stop=self.num_patches, step=1)
        pos_embeddings = self.position_embedding(positions[None, ...])
        pos_embeddings = keras.ops.tile(pos_embeddings, [batch_size, 1, 1])  # (B, num_patches, projection_dim)
        patch_embeddings = self.projection(patches) + pos_embeddings
        if self.downstream:
            return patch_embeddings
        raise NotImplementedError("the pretraining branch shuffles patches at random (keras.random.uniform)")


def mae_classifier(image_size=8, patch_size=2, dim=8):
    """vision/masked_image_modeling.py's downstream classifier (patches, encoder in downstream mode,
    a transformer layer, pooling, head)."""
    inputs = keras.Input((image_size, image_size, 3))
    x = MAEPatchEncoder(patch_size, dim, downstream=True)(MAEPatches(patch_size)(inputs))
    x1 = layers.LayerNormalization(epsilon=1e-6)(x)
    x = layers.Add()([layers.MultiHeadAttention(num_heads=2, key_dim=dim, dropout=0.1)(x1, x1), x])
    x = layers.BatchNormalization()(layers.GlobalAveragePooling1D()(x))
    return keras.Model(inputs, layers.Dense(4)(x))


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
