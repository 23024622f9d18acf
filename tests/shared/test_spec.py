"""shared/core/spec.py: `path/file.py:NAME` / `package.module:NAME` resolved, every bad form a UsageError naming it."""

from __future__ import annotations

import pytest

from shared.core.errors import UsageError
from shared.core.spec import build_from_spec, load_object


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(
        "class Net:\n    def __init__(self):\n        self.width = 7\n\n"
        "def make():\n    return Net()\n\n"
        "def needs(width):\n    return Net()\n\n"
        "def wrong():\n    return 3\n"
    )
    return path


def test_class_and_factory_from_a_file(user_file):
    net = build_from_spec(f"{user_file}:Net", object, "an object")
    assert net.width == 7
    assert type(build_from_spec(f"{user_file}:make", object, "an object")).__name__ == "Net"


def test_from_an_importable_module():
    assert load_object("json:dumps")([1, 2]) == "[1, 2]"


@pytest.mark.parametrize("spec, message", [
    ("nets.py", "expected path/file.py:NAME or package.module:NAME"),
    ("{dir}/absent.py:Net", "no such file"),
    ("{file}:Missing", "has no class or function 'Missing'"),
    ("no_such_package_xyz:Net", "cannot import module 'no_such_package_xyz'"),
])
def test_bad_specs_name_what_is_wrong(user_file, spec, message):
    with pytest.raises(UsageError, match=message):
        load_object(spec.format(dir=user_file.parent, file=user_file))


def test_factory_needing_arguments_or_returning_the_wrong_type(user_file):
    with pytest.raises(UsageError, match=r"needs\(\) needs arguments"):
        build_from_spec(f"{user_file}:needs", object, "an object")
    with pytest.raises(UsageError, match="returned int, expected a Net"):
        build_from_spec(f"{user_file}:wrong", type(build_from_spec(f"{user_file}:Net", object, "x")), "a Net")
