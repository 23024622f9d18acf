"""Framework-free core of keras-torch-parity.

Everything here uses numpy, pandas, Pillow, safetensors, scikit-learn and
matplotlib only: it imports neither TensorFlow, Keras nor torch, so that both
implementations consume exactly the same inputs and definitions.
"""
