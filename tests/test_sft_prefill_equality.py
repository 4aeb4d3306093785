"""SFT renders exactly the token sequence inference feeds (SPEC "Trajectory format"; issue item 3).

One restore row goes through ``ClearPipeline`` (text forced token by token, the restore returning the clean
image's latent) and through ``pack_training_samples`` + ``training_forward``. Leaving out what inference never
sees — the noise block (invisible, RoPE held) and the dropped ViT block — the two sequences have the same tokens,
the same RoPE positions, and the same logits at every assistant target.
"""

from __future__ import annotations

import pytest
import torch
from adapter_contract import photo
from bagel_helpers import QUESTION, SYSTEM, scripted, tiny_adapter

from clear_plugins.adapters.bagel.packing import AttnMode, TokenKind
from clear_plugins.adapters.base import RestoreResult
from clear_plugins.pipeline import ClearPipeline, PipelineConfig
from clear_plugins.training_sample import PackingOptions, TrainingSample
from clear_plugins.trajectory import format_restore

TRAJECTORY = format_restore("The sign is blurred.", "Now it reads EXIT.", "EXIT")


def _inference(adapter, image, clean, prefix_ids, suffix_ids):
    """Run the pipeline with the assistant text forced and the clean latent as the restore; the last context."""
    contexts = []
    generate = adapter.generate_text

    def recording(*args, **kwargs):
        result = generate(*args, **kwargs)
        contexts.append(result.context)
        return result

    clean_latent = adapter.encode_latent([adapter.vae_transform.resize(clean)])
    adapter.generate_text = recording
    adapter.restore = lambda *a, **k: RestoreResult(latent=clean_latent)
    script = [*prefix_ids, *suffix_ids, adapter.token_ids.eos]
    pipeline = ClearPipeline(adapter, PipelineConfig(system_prompt=SYSTEM, num_steps=2, max_new_tokens=200))
    with scripted(adapter.model, script):
        out = pipeline.answer(image, QUESTION)
    assert out.num_restores == 1 and out.parsed.well_formed, out.text
    return contexts[-1]


@pytest.mark.parametrize("tags_as_tokens", [False, True], ids=["text-tags", "token-tags"])
def test_sft_row_equals_what_inference_feeds(tags_as_tokens):
    adapter = tiny_adapter(tags=tags_as_tokens)
    adapter.model.config.vae_sample_posterior = False  # both sides encode deterministically
    image, clean = photo(48), photo(48).rotate(90)
    sample = TrainingSample.from_trajectory(
        image, QUESTION, TRAJECTORY, clean_image=clean, system_prompt=SYSTEM
    )
    encode = adapter.tokenizer.encode
    prefix_ids = encode(sample.prefix, add_special_tokens=False)
    suffix_ids = encode(sample.suffix, add_special_tokens=False)
    context = _inference(adapter, image, clean, prefix_ids, suffix_ids)

    options = PackingOptions(vit_drop_prob=1.0, attention="dense", generator=torch.Generator().manual_seed(0))
    (row,) = adapter.pack_training_samples([sample], options)
    with torch.no_grad():
        train = adapter.training_forward(row)
    layout = row.inputs.layout
    seen = ~((layout.mode == int(AttnMode.NOISE)) & (layout.kind == int(TokenKind.LATENT)))
    seen &= ~((layout.mode == int(AttnMode.NOISE)) & (layout.kind == int(TokenKind.TEXT)))  # its markers

    with torch.no_grad():
        main, hidden = adapter.runner.forward(adapter.runner.empty(), context.items)
    infer_layout = main.cache.layout
    assert int(seen.sum()) == len(infer_layout)
    assert torch.equal(layout.kind[seen], infer_layout.kind)
    assert torch.equal(layout.position[seen], infer_layout.position)
    text_seen = row.inputs.text_ids[seen[layout.kind == int(TokenKind.TEXT)]]
    assert text_seen.tolist() == [
        int(i) for i in torch.cat([torch.tensor(x) for x in _text_runs(context.items, adapter.token_ids)])
    ]
    # logits at every assistant target: the training row (noise block included) equals the inference context
    label_index = train.extra["label_index"]
    assert bool(seen[label_index].all())
    shift = torch.cumsum((~seen).long(), 0)[label_index]
    infer_logits = adapter.runner.logits(hidden[label_index - shift])
    assert len(label_index) == len(prefix_ids) + len(suffix_ids) + 2  # both segments' tokens and <|im_end|>s
    assert torch.allclose(train.text_logits.float(), infer_logits, atol=1e-4)


def _text_runs(items, token_ids):
    from clear_plugins.adapters.bagel.context import TextItem

    runs = []
    for item in items:
        if isinstance(item, TextItem):
            runs.append(list(item.ids))
        else:
            runs.append(
                [token_ids.start_of_image, token_ids.end_of_image]
            )  # the markers around an image block
    return runs
