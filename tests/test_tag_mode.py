"""Tag modes: 'text' (tags are BPE text, nothing added) and 'token' (one added token per tag), recorded in the
config, kept through save_pretrained / from_pretrained in a fresh process; sampling stays in the trained vocabulary."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from adapter_contract import photo
from bagel_helpers import QUESTION, SYSTEM, build_tiny_bagel

from clear_plugins.adapters.bagel.adapter import BagelAdapter
from clear_plugins.adapters.bagel.configuration_bagel import BagelConfig
from clear_plugins.adapters.base import TextSampling
from clear_plugins.errors import ClearConfigError
from clear_plugins.injection import InjectionOptions, eject, inject
from clear_plugins.tags import sampling_vocabulary, tag_mode
from clear_plugins.trajectory import SPECIAL_TAGS

FORBIDDEN_BIAS = 1e4

RELOAD = textwrap.dedent(
    """
    import json, sys
    from clear_plugins.adapters.bagel.checkpoint import load_official_tokenizer
    from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
    from clear_plugins.injection import inject
    path = sys.argv[1]
    model = BagelForConditionalGeneration.from_pretrained(path)
    tokenizer = load_official_tokenizer(path)
    recorded = model.config.clear_tag_mode
    length = len(tokenizer)
    injection = inject(model, tokenizer)
    print(json.dumps({
        "recorded": recorded, "injected": injection.tag_mode, "length_before": length,
        "length_after": len(tokenizer),
        "pieces": {tag: len(tokenizer.encode(tag, add_special_tokens=False)) for tag in injection.tag_ids or
                   ["<think>", "</think>", "<answer>", "</answer>", "<image_restore>"]},
    }))
    """
)


def _saved(mode: str, tmp_path) -> tuple[str, int]:
    model, tokenizer = build_tiny_bagel()
    base = len(tokenizer)
    injection = inject(model, tokenizer, options=InjectionOptions(tag_mode=mode))
    assert injection.tag_mode == mode == model.config.clear_tag_mode
    path = tmp_path / mode
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path), base


@pytest.mark.parametrize("mode", ["text", "token"])
def test_mode_survives_save_and_reload_in_a_fresh_process(mode, tmp_path):
    path, base = _saved(mode, tmp_path)
    assert json.loads((tmp_path / mode / "config.json").read_text())["clear_tag_mode"] == mode
    done = subprocess.run(
        [sys.executable, "-c", RELOAD, path], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["recorded"] == report["injected"] == mode
    assert report["length_after"] == report["length_before"]  # re-injecting adds nothing
    if mode == "token":
        assert report["length_before"] == base + len(SPECIAL_TAGS)
        assert set(report["pieces"].values()) == {1}
    else:
        assert report["length_before"] == base
        assert all(n > 1 for n in report["pieces"].values())


def test_bagel_defaults_to_text_and_adds_nothing():
    model, tokenizer = build_tiny_bagel()
    rows, length = model.get_input_embeddings().weight.shape[0], len(tokenizer)
    injection = inject(model, tokenizer)
    assert injection.tag_mode == "text" and injection.tag_ids == {}
    assert len(tokenizer) == length and model.get_input_embeddings().weight.shape[0] == rows
    assert "<think>" not in tokenizer.get_vocab()
    eject(model)
    assert model.config.clear_tag_mode == "text"


def test_eject_restores_the_recorded_mode():
    model, tokenizer = build_tiny_bagel()
    inject(model, tokenizer, options=InjectionOptions(tag_mode="token"))
    assert tag_mode(model.config) == "token"
    eject(model)
    assert tag_mode(model.config) == "text" and "<think>" not in tokenizer.get_vocab()


def test_bad_modes_are_named():
    with pytest.raises(ClearConfigError, match=r"InjectionOptions\.tag_mode='bpe'"):
        inject(*build_tiny_bagel(), options=InjectionOptions(tag_mode="bpe"))
    with pytest.raises(ClearConfigError, match="clear_tag_mode='tokens'"):
        BagelConfig(clear_tag_mode="tokens")


def test_sampling_vocabulary_follows_the_mode():
    _, tokenizer = build_tiny_bagel()
    tokenizer.add_tokens(list(SPECIAL_TAGS))
    text, token = sampling_vocabulary(tokenizer, "text"), sampling_vocabulary(tokenizer, "token")
    assert token.size == text.size == len(tokenizer) and token.excluded == ()
    assert len(text.excluded) == len(SPECIAL_TAGS) and text.base_size == len(tokenizer) - len(SPECIAL_TAGS)


@pytest.mark.parametrize("mode", ["text", "token"])
@torch.no_grad()
def test_sampling_never_leaves_the_trained_vocabulary(mode):
    """The spare rows (and, in text mode, stray tag tokens) get a huge logit; sampling still never picks them."""
    model, tokenizer = build_tiny_bagel()
    tokenizer.add_tokens(
        list(SPECIAL_TAGS)
    )  # present in the tokenizer either way; trained only in token mode
    model.config.clear_tag_mode = mode
    rows = model.get_input_embeddings().weight.shape[0]
    vocabulary = sampling_vocabulary(tokenizer, mode)
    forbidden = [*range(vocabulary.size, rows), *vocabulary.excluded]
    assert vocabulary.size < rows and forbidden
    bias = torch.zeros(rows)
    bias[forbidden] = FORBIDDEN_BIAS
    handle = model.language_model.lm_head.register_forward_hook(lambda _m, _i, out: out + bias)
    try:
        adapter = BagelAdapter(model, tokenizer)
        context = adapter.start_context(photo(48), QUESTION, system_prompt=SYSTEM)
        sampling = TextSampling(do_sample=True, temperature=1.0, seed=0)
        result = adapter.generate_text(context, max_new_tokens=40, sampling=sampling)
    finally:
        handle.remove()
    assert result.token_ids and not set(result.token_ids) & set(forbidden)
    assert max(result.token_ids) < vocabulary.size
    tag_ids = {tokenizer.convert_tokens_to_ids(tag) for tag in SPECIAL_TAGS}
    if mode == "text":
        assert not tag_ids & set(result.token_ids)
