"""The package's top-level names resolve, lazily, to the real objects."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import rtms_fast


@pytest.mark.parametrize("name", sorted(rtms_fast._EXPORTS))
def test_every_export_resolves_to_its_module_object(name: str) -> None:
    module = importlib.import_module(rtms_fast._EXPORTS[name])
    assert getattr(rtms_fast, name) is getattr(module, name)


def test_all_lists_exactly_the_exports() -> None:
    assert set(rtms_fast.__all__) == {*rtms_fast._EXPORTS, "__version__"}


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = rtms_fast.Nope  # type: ignore[attr-defined]


def test_import_is_light() -> None:
    code = "import sys, rtms_fast; print('trio' in sys.modules, 'rtms_fast._native' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
