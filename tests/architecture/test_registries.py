"""One registry mechanism for the four port directions: a key registered twice is an error."""

import pytest

from shared.graph.registries import DuplicateRegistrationError, Registry


def test_duplicate_key_is_refused_naming_both_functions():
    reg = Registry("@thing")

    @reg.register("A", "B")
    def first(x):
        return 1

    with pytest.raises(DuplicateRegistrationError) as e:
        @reg.register("B")
        def second(x):
            return 2

    msg = str(e.value)
    assert "@thing('B') is already registered by" in msg and "first" in msg and "second" in msg and "replace=True" in msg
    assert reg["B"] is first and reg["A"] is first


def test_replace_true_replaces_on_purpose_and_same_function_twice_is_harmless():
    reg = Registry("@thing")

    def f(x):
        return 1

    reg.register("A")(f)
    reg.register("A")(f)  # a module imported twice registers the same function: no conflict
    g = reg.register("A", replace=True)(lambda x: 2)
    assert reg["A"] is g and reg["A"](0) == 2


def test_builtin_registries_import_without_duplicates():
    """Importing every family module registers each key once (a duplicate would raise here)."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    import keras_impl.read  # noqa: F401  (every converter family)
    import keras_impl.write.ops  # noqa: F401  (the writers and readers load their families lazily)
    import keras_impl.write.tensor_ops  # noqa: F401
    import torch_impl.write.registry  # noqa: F401
    import torch_impl.read.ops  # noqa: F401
    import torch_impl.read.tensor_ops  # noqa: F401
    from keras_impl.read.registry import CONVERTERS
    from keras_impl.write import WRITERS
    from torch_impl.write.registry import EMITTERS
    from torch_impl.read import READERS

    assert all(isinstance(r, Registry) for r in (CONVERTERS, WRITERS, EMITTERS, READERS))
    # GlobalAveragePooling1D was registered twice (pooling and sequence): the masked one serves it now.
    assert CONVERTERS["GlobalAveragePooling1D"].__module__ == "keras_impl.read.sequence"
    assert len(CONVERTERS) > 100 and len(EMITTERS) > 40 and len(READERS) > 40 and len(WRITERS) > 20
