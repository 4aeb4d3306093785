"""inject(): tags as single tokens, spare rows reused before growing, idempotent, reversible."""

from __future__ import annotations

import torch
from fake_backbone import FakePlugin, build_fake
from tiny_tokenizer import tiny_tokenizer

from clear_plugins.injection import InjectionOptions, eject, inject
from clear_plugins.plugins import load_plugins

TAGS = ("<think>", "</think>", "<answer>", "</answer>", "<image_restore>")


def _setup(vocab_size):
    model, _ = build_fake(vocab_size=vocab_size)
    return model, tiny_tokenizer(), load_plugins(extra=[FakePlugin()])


def test_spare_rows_are_reused_before_growing():
    model, tokenizer, plugins = _setup(vocab_size=320)
    before = model.get_input_embeddings().weight.detach().clone()
    injection = inject(model, tokenizer, plugins=plugins, options=InjectionOptions(tags=TAGS))
    assert not injection.grew_embeddings
    assert model.get_input_embeddings().weight.shape[0] == 320
    torch.testing.assert_close(model.get_input_embeddings().weight, before)
    assert sorted(injection.tag_ids.values()) == list(range(300, 305))
    for tag, token_id in injection.tag_ids.items():
        assert tokenizer.encode(f"a {tag} b").count(token_id) == 1
        assert tag in tokenizer.decode([token_id], skip_special_tokens=True)


def test_embeddings_grow_when_no_spare_rows_remain_and_never_shrink():
    model, tokenizer, plugins = _setup(vocab_size=302)
    injection = inject(model, tokenizer, plugins=plugins, options=InjectionOptions(tags=TAGS))
    assert injection.grew_embeddings and injection.rows_after == 305 == len(tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == 305
    assert model.get_output_embeddings().weight.shape[0] == 305
    small, tokenizer2, _ = _setup(vocab_size=1000)
    inject(small, tokenizer2, plugins=plugins, options=InjectionOptions(tags=TAGS))
    assert small.get_input_embeddings().weight.shape[0] == 1000


def test_injection_is_idempotent():
    model, tokenizer, plugins = _setup(vocab_size=320)
    first = inject(model, tokenizer, plugins=plugins, options=InjectionOptions(tags=TAGS))
    second = inject(model, tokenizer, plugins=plugins, options=InjectionOptions(tags=TAGS))
    assert first is second
    assert len(tokenizer) == 305


def test_injection_is_reversible():
    model, tokenizer, plugins = _setup(vocab_size=302)
    original_generate = model.generate
    inject(model, tokenizer, plugins=plugins, options=InjectionOptions(tags=TAGS))
    assert model.generate is not original_generate
    assert eject(model)
    assert len(tokenizer) == 300 and "<think>" not in tokenizer.get_vocab()
    assert model.get_input_embeddings().weight.shape[0] == 302
    assert model.generate == original_generate
    assert not eject(model)


def test_a_backbone_plugin_can_take_over_injection():
    from clear_plugins import hookimpl

    class Custom:
        @hookimpl
        def clear_inject_model(self, model, tokenizer, adapter, options):
            return "custom"

    model, tokenizer, _ = _setup(vocab_size=320)
    plugins = load_plugins(extra=[FakePlugin(), Custom()])
    assert inject(model, tokenizer, plugins=plugins) == "custom"
    assert len(tokenizer) == 300
