"""Exit codes keep their meaning (shared/core/user_code.py, compare.py main): an error
raised by the user's own code is exit 2 with one line naming the user's
file:line, function and exception; out of memory is exit 4, also when the
handler itself runs out; only a bug of this tool is exit 3; never 1 for any of
them. And --torch-weights (torch_impl/weights.py load_state_file) loads a
.safetensors state into modules whose `_load_from_state_dict` reads the version."""

from __future__ import annotations

import torch  # noqa: F401  (torch before TensorFlow)

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

import compare
from shared.cli import show
from shared.core import user_code

REPO = Path(compare.__file__).resolve().parent
KERAS = str(REPO / "tests" / "verify_models" / "keras_cnn.py") + ":build"


def _main(*args):
    """compare.main in this process: (exit code, stdout, stderr)."""
    from helpers import run_cli

    return subprocess.CompletedProcess(args, *run_cli(*args))


def _write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


def _as_project_code(fn, file: str = "shared/cli/show.py"):
    """fn, its code marked as this project's file: a bug of the tool, not of a user's module."""
    fn.__code__ = fn.__code__.replace(co_filename=str(REPO / file))
    return fn


def _one_user_line(r, file: Path, function: str, exc: str) -> str:
    """The last stderr line, checked: it names the file (with its line), the function and the exception."""
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == compare.EXIT_USAGE, r.stdout + r.stderr
    assert re.search(rf"^error: your code raised {exc} at \S*{re.escape(file.name)}:\d+ {re.escape(function)}", last), last
    assert "not in keras-torch-parity" in last
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    return last


# ---------------------------------------------------------------- the user's errors: exit 2
def test_user_model_function_raising_is_exit_2_naming_file_function_exception(tmp_path):
    f = _write(tmp_path / "my_model.py", '''
        import keras

        def build():
            units = -3
            if units < 0:
                raise ValueError(f"units must be positive, got {units}")
            return keras.Sequential([keras.layers.Dense(units)])
    ''')
    r = _main("port", f"{f}:build", "--out", tmp_path / "out")
    last = _one_user_line(r, f, "in build()", "ValueError")
    assert "my_model.py:7 in build(): units must be positive, got -3" in last
    assert not (tmp_path / "out").exists()


def test_keras_error_inside_the_users_layer_call_is_the_users(tmp_path):
    """Raised inside Keras, called from the user's function: the user's line is named."""
    f = _write(tmp_path / "shapes.py", '''
        import keras

        def build():
            i = keras.Input((4,))
            x = keras.layers.Dense(3)(i)
            return keras.Model(i, keras.layers.Add()([i, x]))
    ''')
    last = _one_user_line(_main("port", f"{f}:build", "--out", tmp_path / "out"), f, "in build()", "ValueError")
    assert "shapes.py:7 in build()" in last


def test_plugin_raising_on_import_is_exit_2(tmp_path):
    plugin = _write(tmp_path / "broken_plugin.py", '''
        import keras

        CONVERTERS = {}
        raise RuntimeError("plugin misconfigured: no converters found")
    ''')
    r = _main("port", f"{KERAS}", "--plugin", plugin, "--out", tmp_path / "out")
    last = _one_user_line(r, plugin, "(while importing it)", "RuntimeError")
    assert last.startswith(f"error: your code raised RuntimeError at {plugin}:5 (while importing it): "
                           "plugin misconfigured: no converters found") or "broken_plugin.py:5 (while importing it)" in last


def test_syntax_error_in_the_users_file_is_exit_2(tmp_path):
    f = _write(tmp_path / "typo.py", "def build(:\n    pass\n")
    r = _main("verify", KERAS, f"{f}:build")
    assert r.returncode == compare.EXIT_USAGE and "Traceback" not in r.stderr
    assert re.search(r"your code raised SyntaxError at \S*typo\.py:1 \(while importing it\)", r.stderr), r.stderr


def test_keras_file_whose_custom_object_fails_is_exit_2(tmp_path):
    plugin = _write(tmp_path / "fragile_layer.py", '''
        import keras

        @keras.saving.register_keras_serializable(package="ktp_test_exit_codes")
        class Fragile(keras.layers.Layer):
            def call(self, x):
                return x * 2.0

            @classmethod
            def from_config(cls, config):
                raise KeyError("Fragile needs a 'factor' in its config")
    ''')
    from keras_impl.port import import_plugin

    import keras

    layer_cls = import_plugin(str(plugin)).Fragile
    i = keras.Input((4,))
    keras.Model(i, keras.layers.Dense(2)(layer_cls()(i))).save(tmp_path / "m.keras")
    r = _main("port", tmp_path / "m.keras", "--plugin", plugin, "--out", tmp_path / "out")
    last = _one_user_line(r, plugin, "in from_config()", "KeyError")
    assert "fragile_layer.py:11 in from_config(): \"Fragile needs a 'factor' in its config\"" in last


def test_users_forward_raising_during_verify_is_exit_2(tmp_path):
    f = _write(tmp_path / "my_port.py", '''
        from torch import nn

        class Port(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 2)

            def forward(self, x):
                raise NotImplementedError("forward is not written yet")
    ''')
    last = _one_user_line(_main("verify", KERAS, f"{f}:Port", "--steps", "0"), f, "in forward()", "NotImplementedError")
    assert "my_port.py:10 in forward(): forward is not written yet" in last


def test_type_error_inside_a_class_is_not_mistaken_for_missing_arguments(tmp_path):
    f = _write(tmp_path / "net.py", '''
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear("three", 2)
    ''')
    r = _main("port", f"{f}:Net", "--input-shape", "3", "--out", tmp_path / "out")
    last = _one_user_line(r, f, "in __init__()", "TypeError")
    assert "needs arguments" not in last
    # A class that does need arguments is still told so.
    g = _write(tmp_path / "needy.py", "from torch import nn\nclass Needy(nn.Module):\n    def __init__(self, width):\n        super().__init__()\n")
    r = _main("port", f"{g}:Needy", "--input-shape", "3", "--out", tmp_path / "out")
    assert r.returncode == compare.EXIT_USAGE and "Needy() needs arguments" in r.stderr


def test_code_outside_the_project_is_the_users(monkeypatch):
    def users_bug(args):  # defined in this (test) file, outside shared/, keras_impl/, torch_impl/: the user's
        raise ValueError("bad column")

    monkeypatch.setattr(show, "data_command", users_bug)
    r = _main("data", "digits")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--verbose" not in r.stderr  # data has no --verbose
    assert re.search(r"your code raised ValueError at \S*test_exit_codes\.py:\d+ in users_bug\(\): bad column", r.stderr)


def test_run_verbose_adds_the_traceback_of_the_users_error(monkeypatch, tmp_path):
    def users_bug(cases, opts, out):
        raise ValueError("my model diverged")

    monkeypatch.setattr(compare, "run_checks", users_bug)
    r = _main("--task", "multiclass", "--model", "mlp", "--out", tmp_path / "r")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().endswith("not in keras-torch-parity; --verbose shows the traceback)")
    r = _main("--task", "multiclass", "--model", "mlp", "--out", tmp_path / "r", "--verbose")
    assert r.returncode == 2 and "Traceback" in r.stderr and 'raise ValueError("my model diverged")' in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: your code raised ValueError")


# ---------------------------------------------------------------- out of memory: exit 4, never 1
@pytest.mark.parametrize("exc", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)"),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    type("ResourceExhaustedError", (Exception,), {})("OOM when allocating tensor with shape[4096,4096,64]"),
], ids=["MemoryError", "torch-cpu", "torch-cuda", "tf-ResourceExhausted"])
def test_out_of_memory_is_exit_4_with_a_hint(monkeypatch, exc):
    def oom(args):
        raise exc

    monkeypatch.setattr(show, "data_command", _as_project_code(oom))
    r = _main("data", "digits")
    assert r.returncode == compare.EXIT_OOM == 4, r.stderr
    line = r.stderr.strip()
    assert line.startswith("error: ran out of memory") and "smaller --batch-size" in line and "\n" not in line
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr


def test_out_of_memory_wrapped_by_another_error_is_exit_4(monkeypatch):
    def oom(args):
        try:
            raise MemoryError("numpy: unable to allocate 64 GiB")
        except MemoryError as e:
            raise RuntimeError("a check failed to run") from e

    monkeypatch.setattr(show, "data_command", _as_project_code(oom))
    assert _main("data", "digits").returncode == compare.EXIT_OOM


def test_handler_running_out_of_memory_is_not_exit_1(monkeypatch):
    """The internal-error handler formats a traceback; should that run out of memory, still not 1."""
    import traceback

    def bug(args):
        raise RuntimeError("a bug")

    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(show, "data_command", _as_project_code(bug))
    monkeypatch.setattr(traceback, "print_exception", no_memory)
    r = _main("data", "digits")
    assert r.returncode == compare.EXIT_OOM and r.stderr.startswith("error: ran out of memory")


# ---------------------------------------------------------------- a bug of this tool: exit 3
def test_internal_bug_is_still_exit_3_with_traceback(monkeypatch):
    def bug(args):
        return {}["missing key"]  # raised "in" shared/cli/show.py

    monkeypatch.setattr(show, "data_command", _as_project_code(bug))
    r = _main("data", "digits")
    assert r.returncode == compare.EXIT_INTERNAL
    assert "Traceback" in r.stderr and "KeyError: 'missing key'" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("internal error: the traceback above is a bug in keras-torch-parity")


def test_library_error_called_by_this_project_is_internal(monkeypatch):
    """json raising under a call of this project's code: the tool's bug, not the user's."""
    def bug(args):
        return json.loads("{not json")

    monkeypatch.setattr(show, "data_command", _as_project_code(bug))
    assert _main("data", "digits").returncode == compare.EXIT_INTERNAL


def test_bad_input_of_this_project_stays_exit_2_with_its_message(tmp_path):
    r = _main("verify", KERAS, f"{tmp_path / 'absent.py'}:Net")
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path / 'absent.py'}:Net: no such file {tmp_path / 'absent.py'}"


def test_the_rule_in_isolation(tmp_path):
    f = _write(tmp_path / "userlib.py", '''
        import json

        def parse():
            return json.loads("{bad")
    ''')
    from shared.core.spec import load_object

    with pytest.raises(json.JSONDecodeError) as info:
        load_object(f"{f}:parse")()
    fault = user_code.user_fault(info.value)
    assert (Path(fault.file).name, fault.line, fault.function, fault.exc_type) == ("userlib.py", 5, "parse", "JSONDecodeError")
    assert not user_code.is_out_of_memory(info.value)
    with pytest.raises(json.JSONDecodeError) as info:
        _as_project_code(lambda: json.loads("{bad"), "compare.py")()
    assert user_code.user_fault(info.value) is None


# ---------------------------------------------------------------- --torch-weights: one loader, versioned modules
VERSIONED = '''
    import torch


    class Versioned(torch.nn.Module):
        """Mimics torchvision's MNASNet: a versioned `_load_from_state_dict` that needs the version."""

        _version = 2

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kw):
            version = local_metadata.get("version", None)
            if version not in (1, 2):
                raise ValueError(f"version should be set to 1 or 2 instead of {version}")
            super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kw)
'''


@pytest.fixture
def versioned(tmp_path):
    """(path/versioned.py, the Versioned class)."""
    from shared.core.spec import load_object

    f = _write(tmp_path / "versioned.py", VERSIONED)
    return f, load_object(f"{f}:Versioned")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_state_file_loads_into_a_versioned_module(tmp_path, versioned, suffix):
    from safetensors.torch import load_file, save_file

    from torch_impl.port import load_module

    f, Versioned = versioned
    src = Versioned()
    path = tmp_path / f"w{suffix}"
    save_file(src.state_dict(), path) if suffix == ".safetensors" else torch.save({"state_dict": src.state_dict()}, path)
    if suffix == ".safetensors":
        with pytest.raises(ValueError, match="instead of None"):  # what safetensors alone gives
            Versioned().load_state_dict(load_file(path))
    dst = load_module(f"{f}:Versioned", str(path))  # the reverse port's loader; verify's is the same function
    assert torch.equal(dst.fc.weight, src.fc.weight) and torch.equal(dst.fc.bias, src.fc.bias)


def test_state_file_that_does_not_fit_is_exit_2(tmp_path, versioned):
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.zeros(5, 3)}, tmp_path / "w.safetensors")
    r = _main("port", f"{versioned[0]}:Versioned", "--input-shape", "3", "--torch-weights", tmp_path / "w.safetensors",
              "--out", tmp_path / "out")
    assert r.returncode == 2 and "--torch-weights" in r.stderr and "does not fit the torch model" in r.stderr
    assert "size mismatch for fc.weight" in r.stderr and "Missing key(s) in state_dict: \"fc.bias\"" in r.stderr


def test_mnasnet_safetensors_weights(tmp_path):
    from tests.tv import torchvision_or_skip

    tv = torchvision_or_skip()
    from safetensors.torch import save_file

    from torch_impl.weights import load_state_file

    src = tv.models.mnasnet0_5()
    save_file(src.state_dict(), tmp_path / "mnasnet.safetensors")
    dst = load_state_file(tv.models.mnasnet0_5(), str(tmp_path / "mnasnet.safetensors"))
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


def test_bench_part_out_of_memory_is_exit_4(monkeypatch, tmp_path):
    """bench's parts run in child processes: their error text tells an out-of-memory part from a failed one."""
    from shared.bench import orchestrate as bench

    assert user_code.mentions_out_of_memory("exit status 1\nTraceback ...\nMemoryError: Unable to allocate 8.0 GiB")
    assert not user_code.mentions_out_of_memory("exit status 1\nValueError: shapes differ")
    monkeypatch.setattr(bench, "run_part", lambda module, pair, settings, work: {
        "error": "exit status 1", "tail": "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"})
    r = _main("bench", "--tiny", "--skip-harness", "--out", tmp_path / "b")
    assert r.returncode == compare.EXIT_OOM, r.stdout + r.stderr
    monkeypatch.setattr(bench, "run_part", lambda module, pair, settings, work: {"error": "exit status 1", "tail": "ValueError"})
    assert _main("bench", "--tiny", "--skip-harness", "--out", tmp_path / "b").returncode == 1  # a part failed


def test_a_spec_naming_a_standard_library_module_makes_none_of_it_the_users():
    """`json:dumps` as a spec: json's own errors stay a library's (they once became 'your code raised')."""
    from shared.core.spec import load_object

    assert load_object("json:dumps")([1]) == "[1]"
    with pytest.raises(json.JSONDecodeError) as info:
        _as_project_code(lambda: json.loads("{bad"), "compare.py")()
    assert user_code.user_fault(info.value) is None
