"""The plugin spine: a fresh manager per call, built-ins as plugins, third-party plugins, typos, allow-list."""

from __future__ import annotations

import sys
import types

import pluggy
import pytest

from clear_plugins import hookimpl
from clear_plugins.errors import AdapterNotFoundError, PluginError, UnknownNameError
from clear_plugins.plugins import BUILTIN_PLUGINS, Plugins, get_plugin_manager, load_plugins


class ThirdPartyDegradation:
    """A third-party plugin as a user would write it, registered in-process."""

    @hookimpl
    def clear_register_degradations(self, register):
        register("invert", lambda image, intensity, rng: 255 - image, category="custom")


def test_each_call_builds_a_new_manager():
    first, second = get_plugin_manager(), get_plugin_manager()
    assert first is not second
    assert isinstance(first, pluggy.PluginManager)
    assert first.project_name == "clear_plugins"


def test_builtins_are_registered_as_ordinary_plugins():
    pm = get_plugin_manager(entry_point_group=None)
    for path in BUILTIN_PLUGINS:
        assert pm.get_plugin(path) is sys.modules[path]
    assert get_plugin_manager(builtins=False, entry_point_group=None).get_plugins() == set()


def test_third_party_plugin_registered_in_process_is_found_and_used():
    import numpy as np

    plugins = load_plugins(extra=[ThirdPartyDegradation()])
    spec = plugins.degradation("invert")
    assert spec.category == "custom"
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    assert (spec.fn(image, 0.5, np.random.default_rng(0)) == 255).all()


def test_a_typo_in_a_hook_name_is_rejected():
    class Typo:
        @hookimpl
        def clear_register_degradation(self, register):  # missing "s"
            pass

    with pytest.raises(PluginError, match="clear_register_degradation"):
        get_plugin_manager(extra=[Typo()])


def test_duplicate_names_are_rejected():
    plugins = load_plugins(extra=[ThirdPartyDegradation(), ThirdPartyDegradation()])
    with pytest.raises(PluginError, match="invert"):
        _ = plugins.degradations


def test_unknown_name_lists_the_registered_ones():
    plugins = load_plugins(extra=[ThirdPartyDegradation()])
    with pytest.raises(UnknownNameError, match=r"registered degradations: .*invert"):
        plugins.degradation("does-not-exist")


def test_adapter_lookup_by_model_type_and_by_matches():
    from clear_plugins.adapters.base import BackboneAdapter

    class ToyAdapter(BackboneAdapter):
        model_types = ("toy",)

        @classmethod
        def matches(cls, model):
            return getattr(model, "is_toy", False)

    for name in (
        "encode_understanding",
        "encode_latent",
        "restore",
        "bridge",
        "decode_latent",
        "training_forward",
        "parameter_groups",
    ):
        setattr(ToyAdapter, name, lambda self, *a, **k: None)
    ToyAdapter.__abstractmethods__ = frozenset()

    class Plugin:
        @hookimpl
        def clear_register_adapters(self, register):
            register(ToyAdapter)

    plugins = load_plugins(extra=[Plugin()])
    assert plugins.adapter_for("toy") is ToyAdapter
    config = types.SimpleNamespace(model_type="toy")
    assert plugins.adapter_for(types.SimpleNamespace(config=config)) is ToyAdapter
    other = types.SimpleNamespace(config=types.SimpleNamespace(model_type="other"), is_toy=True)
    assert plugins.adapter_for(other) is ToyAdapter
    with pytest.raises(AdapterNotFoundError, match=r"'nope'.*toy"):
        plugins.adapter_for("nope")


def test_registering_a_non_adapter_is_an_error():
    class Plugin:
        @hookimpl
        def clear_register_adapters(self, register):
            register(object)

    with pytest.raises(PluginError, match="not a BackboneAdapter"):
        _ = load_plugins(extra=[Plugin()]).adapters


def _fake_entry_point(monkeypatch, name, value, loaded):
    class EntryPoint:
        def __init__(self):
            self.name, self.value, self.group = name, value, "clear_plugins"

        def load(self):
            return loaded()

    def fake_entry_points(group=None):
        return [EntryPoint()] if group == "clear_plugins" else []

    monkeypatch.setattr("clear_plugins.plugins.entry_points", fake_entry_points)


def test_entry_point_plugins_load_and_the_allow_list_restricts_them(monkeypatch):
    _fake_entry_point(monkeypatch, "thirdparty", "pkg.mod", ThirdPartyDegradation)
    assert "invert" in load_plugins(env={}).degradations
    assert "invert" in load_plugins(env={"CLEAR_PLUGINS": "thirdparty, other"}).degradations
    assert "invert" not in load_plugins(env={"CLEAR_PLUGINS": ""}).degradations
    assert "invert" not in load_plugins(env={"CLEAR_PLUGINS": "other"}).degradations


def test_a_broken_entry_point_names_the_plugin_and_the_fix(monkeypatch):
    def broken():
        raise ImportError("no module named 'missing_dependency'")

    _fake_entry_point(monkeypatch, "broken", "pkg.broken", broken)
    with pytest.raises(PluginError, match=r"'broken'.*missing_dependency.*CLEAR_PLUGINS"):
        load_plugins(env={})


def test_collections_are_gathered_lazily():
    calls = []

    class Counting:
        @hookimpl
        def clear_register_degradations(self, register):
            calls.append(1)

    plugins = Plugins(get_plugin_manager(extra=[Counting()]))
    assert calls == []
    _ = plugins.degradations
    _ = plugins.degradations
    assert calls == [1]
