"""keras.io image models that cut images into patches or tokens (ViT, MLP-Mixer,
FNet, gMLP, ConvMixer, CCT, involution, TokenLearner, the masked autoencoder's
classifier), for tests/kerasio_models.py's registry; see its docstring."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

__all__ = ["MixerPatches", "PatchEncoder", "PositionEmbedding"]


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
