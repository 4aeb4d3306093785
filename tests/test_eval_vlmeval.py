"""The VLMEvalKit bridge, checked against VLMEvalKit's model contract without VLMEvalKit installed.

A stand-in ``vlmeval`` package is put in ``sys.modules`` with what the bridge touches: ``vlmeval.vlm.base.
BaseModel`` (whose ``generate`` calls ``generate_inner(message, dataset)``, as VLMEvalKit's does),
``vlmeval.vlm`` (where ``run.py --config`` looks a ``class`` name up) and ``vlmeval.config.supported_VLM``.
It is a contract test: it shows our class fits that interface, not that a VLMEvalKit run passes.
"""

from __future__ import annotations

import importlib
import json
import sys
import types

import pytest
from eval_helpers import photos, tiny_model

from clear_plugins.errors import ClearConfigError


class StandInBaseModel:
    """VLMEvalKit's BaseModel, reduced to the contract: generate() delegates to generate_inner()."""

    INTERLEAVE = False

    def __init__(self):
        self.dump_image_func = None

    def generate(self, message, dataset=None):
        assert all(part["type"] in self.allowed_types for part in message)
        return self.generate_inner(message, dataset)


@pytest.fixture
def bridge(monkeypatch):
    vlmeval = types.ModuleType("vlmeval")
    vlm = types.ModuleType("vlmeval.vlm")
    base = types.ModuleType("vlmeval.vlm.base")
    config = types.ModuleType("vlmeval.config")
    base.BaseModel = StandInBaseModel
    config.supported_VLM = {}
    vlmeval.vlm, vlmeval.config, vlm.base = vlm, config, base
    for name, module in {
        "vlmeval": vlmeval,
        "vlmeval.vlm": vlm,
        "vlmeval.vlm.base": base,
        "vlmeval.config": config,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    module = importlib.reload(importlib.import_module("clear_plugins.eval.vlmeval"))
    yield module, vlmeval
    monkeypatch.undo()
    importlib.reload(module)


def test_generate_answers_a_vlmevalkit_message(bridge, tmp_path):
    module, _ = bridge
    path = tmp_path / "cat.png"
    photos()[1].save(path)
    model = module.ClearVLMEval(eval_model=tiny_model())
    assert isinstance(model, StandInBaseModel) and not model.use_custom_prompt("MMBench_DEV_EN")
    message = [
        {"type": "image", "value": str(path)},
        {"type": "text", "value": "Question: What is in the picture?\nOptions:\nA. a dog\nB. a cat"},
        {"type": "text", "value": "Answer with the option's letter from the given choices directly."},
    ]
    assert model.generate(message, dataset="MMBench_DEV_EN") == "B"
    assert model.last_answer.num_restores == 0


def test_config_json_builds_the_model_the_way_run_py_does(bridge, monkeypatch):
    module, vlmeval = bridge
    built = {}

    def fake_build(kind, model, **options):
        built.update(kind=kind, model=model, options=options)
        return tiny_model()

    monkeypatch.setattr(module, "_build_model", fake_build)
    module.register("CLEAR", kind="clear", model="/models/clear")
    cfg = json.loads(
        '{"model": {"CLEAR": {"class": "ClearVLMEval", "kind": "openai", "model": "served", '
        '"base_url": "http://127.0.0.1:9/v1"}}, "data": {}}'
    )
    entry = dict(cfg["model"]["CLEAR"])
    cls = getattr(vlmeval.vlm, entry.pop("class"))  # VLMEvalKit's build_model_from_config lookup
    instance = cls(**entry)
    assert built == {"kind": "openai", "model": "served", "options": {"base_url": "http://127.0.0.1:9/v1"}}
    assert isinstance(instance, module.ClearVLMEval)
    assert isinstance(vlmeval.config.supported_VLM["CLEAR"](), module.ClearVLMEval)
    assert built["model"] == "/models/clear"


def test_bad_messages_and_settings_are_clear_errors(bridge, tmp_path):
    module, _ = bridge
    model = module.ClearVLMEval(eval_model=tiny_model())
    with pytest.raises(ClearConfigError, match="exactly one image"):
        model.generate([{"type": "text", "value": "no image"}], dataset="MMVet")
    with pytest.raises(ClearConfigError, match="not one of"):
        module.ClearVLMEval(kind="nope", model="x")
    with pytest.raises(ClearConfigError, match="base_url"):
        module.ClearVLMEval(kind="openai", model="x")
    assert module.main([]) == 2
