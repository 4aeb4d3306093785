"""The restore loop and text decoding give the outputs recorded before their rewrite (same seed, fp32, rounding).

``tests/data/bagel_golden.safetensors`` (tensors) and ``tests/data/bagel_golden.json`` (texts, token ids) were
written by this module's ``__main__`` from the code *before* the restore-loop rewrite (maskless attention, batched
guidance branches, one KV copy per decoded token, routing once per forward). Every case runs on the tiny random
Bagel in fp32 with fixed seeds; tensors must agree within fp32 rounding and texts exactly.

Regenerate only when a change is *meant* to alter outputs: ``python tests/test_bagel_golden.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from adapter_contract import photo
from bagel_helpers import QUESTION, SYSTEM, build_tiny_bagel, ids, scripted, tiny_adapter
from safetensors.torch import load_file, save_file

from clear_plugins.adapters.bagel.generation import score_text
from clear_plugins.adapters.bagel.guidance import BagelGuidance
from clear_plugins.bridge import BridgeMode
from clear_plugins.flow import SDEConfig
from clear_plugins.injection import InjectionOptions, inject
from clear_plugins.pipeline import PipelineConfig

DATA = Path(__file__).parent / "data"
TENSORS = DATA / "bagel_golden.safetensors"
TEXTS = DATA / "bagel_golden.json"
STEPS = 4
FIRST = "<think> The sign is blurred. </think><image_restore>"
AGAIN = "<think> Still soft. </think><image_restore>"
SECOND = "<think> Now it reads EXIT. </think><answer> EXIT </answer>"
RTOL, ATOL = 1e-4, 1e-5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _thought(adapter: Any, context: Any, text: str) -> Any:
    with scripted(adapter.model, ids(adapter.tokenizer, text)):
        result = adapter.generate_text(context, max_new_tokens=40, stop=["<image_restore>"])
    assert result.stopped_on == "<image_restore>"
    return result.context


@torch.no_grad()
def _restores(tensors: dict[str, torch.Tensor]) -> None:
    adapter = tiny_adapter()
    image = photo(48)
    start = adapter.start_context(image, QUESTION, system_prompt=SYSTEM)
    tensors["plain"] = adapter.restore(start, num_steps=STEPS, generator=_gen(0)).latent.tokens[0]
    context = _thought(adapter, start, FIRST)
    guided = adapter.restore(context, num_steps=STEPS, guidance=BagelGuidance(), generator=_gen(1))
    tensors["guided"] = guided.latent.tokens[0]
    global_guidance = BagelGuidance(
        text_scale=3.0, image_scale=1.5, interval=(0.4, 1.0), renorm_type="global"
    )
    tensors["guided_global"] = adapter.restore(
        context, num_steps=STEPS + 2, guidance=global_guidance, generator=_gen(2)
    ).latent.tokens[0]
    sde = adapter.restore(context, num_steps=STEPS, sde=SDEConfig(num_timesteps=STEPS), generator=_gen(3))
    tensors["sde_latent"] = sde.latent.tokens[0]
    tensors["sde_log_probs"] = torch.stack([step.log_prob for step in sde.steps])
    bridged = adapter.bridge(guided.latent, context, BridgeMode.DECODE_REENCODE)
    again = _thought(adapter, bridged, AGAIN)
    tensors["second_guided"] = adapter.restore(
        again, num_steps=STEPS, guidance=BagelGuidance(), generator=_gen(4)
    ).latent.tokens[0]
    tensors["scored_logits"] = score_text(adapter, again, ids(adapter.tokenizer, SECOND))[0]


@torch.no_grad()
def _answers(tensors: dict[str, torch.Tensor], texts: dict[str, Any]) -> None:
    model, tokenizer = build_tiny_bagel()
    # Pinned to what the golden values were recorded with: Bagel's editing guidance and single-token tags (the
    # defaults are now the clear_eval preset and tags as plain text).
    config = PipelineConfig(num_steps=STEPS, system_prompt=SYSTEM, guidance=BagelGuidance())
    inject(model, tokenizer, options=InjectionOptions(pipeline=config, tag_mode="token"))
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    script = [*ids(tokenizer, FIRST), *ids(tokenizer, SECOND), eos]
    torch.manual_seed(5)  # the pipeline's restore draws its noise from torch's global generator
    with scripted(model, script):
        out = model.generate(images=photo(48), questions=QUESTION, decode_restored=True)
    texts["scripted_answer"] = out.answer
    tensors["pipeline_restored"] = out.restore_results[0].latent.tokens[0]
    free = model.generate(images=photo(40), questions="And now?", max_new_tokens=12)
    texts["free_text"] = free.text
    adapter = tiny_adapter()
    context = adapter.start_context(photo(48), QUESTION, system_prompt=SYSTEM)
    result = adapter.generate_text(context, max_new_tokens=16)
    texts["free_token_ids"] = result.token_ids
    tail = (
        result.context if result.context.segment_open else result.context.push_text([adapter.token_ids.bos])
    )
    tensors["free_next_logits"] = adapter.runner.ensure_logits(
        tail.push_text([adapter.token_ids.eos])
    ).next_logits


def compute() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every golden case, computed by the code as it is now."""
    torch.set_num_threads(1)
    tensors: dict[str, torch.Tensor] = {}
    texts: dict[str, Any] = {}
    _restores(tensors)
    _answers(tensors, texts)
    return {k: v.detach().float().contiguous() for k, v in tensors.items()}, texts


@pytest.fixture(scope="module")
def computed():
    return compute()


def test_restored_latents_and_logits_are_unchanged(computed):
    tensors, _ = computed
    golden = load_file(TENSORS)
    assert set(tensors) == set(golden)
    for name, expected in golden.items():
        torch.testing.assert_close(
            tensors[name], expected, rtol=RTOL, atol=ATOL, msg=lambda m, n=name: f"{n}: {m}"
        )


def test_answers_and_decoded_tokens_are_unchanged(computed):
    _, texts = computed
    assert texts == json.loads(TEXTS.read_text())


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    values, words = compute()
    DATA.mkdir(exist_ok=True)
    save_file(values, str(TENSORS))
    TEXTS.write_text(json.dumps(words, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {TENSORS} ({len(values)} tensors) and {TEXTS}")
