"""Every name the package promises at top level resolves, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import clear_plugins


@pytest.mark.parametrize("name", sorted(clear_plugins._EXPORTS))
def test_export_resolves(name):
    assert getattr(clear_plugins, name) is not None
    assert name in dir(clear_plugins)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = clear_plugins.no_such_name


def test_importing_the_package_imports_nothing_heavy():
    code = "import sys, clear_plugins; print(sorted(m for m in ('torch', 'trl', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
