"""The PyTorch side. Never imports TensorFlow or Keras.

Mirrors keras_impl/ file for file and name for name.
"""
