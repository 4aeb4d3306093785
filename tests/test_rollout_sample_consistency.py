"""A GRPO-form TrainingSample (recorded SDE step + the rollout's final latent) reproduces the rollout.

The rollout runs through ``ClearPipeline`` with a stochastic restore (no guidance); packing its record and running
``training_forward`` once gives, before any update, the same text logits at every assistant token (ratio 1) and
a velocity at the chosen step under which the recorded ``x_next`` has the recorded log-probability (ratio 1).
"""

from __future__ import annotations

import pytest
import torch
from adapter_contract import photo
from bagel_helpers import QUESTION, SYSTEM, scripted, tiny_adapter

from clear_plugins.adapters.bagel.packing import AttnMode
from clear_plugins.flow import SDEConfig, sde_step
from clear_plugins.pipeline import ClearPipeline, PipelineConfig
from clear_plugins.training_sample import PackingOptions, RestoreBlock, TrainingSample

FIRST = "<think> The sign is blurred. </think><image_restore>"
SECOND = "<think> Now it reads EXIT. </think><answer> EXIT </answer>"
STEPS = 4


@pytest.mark.parametrize("chosen", [0, STEPS - 2])
def test_rollout_sample_gives_ratio_one_for_text_and_image(chosen):
    adapter = tiny_adapter(tags=False)
    adapter.model.config.vae_sample_posterior = False
    image = photo(48)
    encode = adapter.tokenizer.encode
    first, second = encode(FIRST, add_special_tokens=False), encode(SECOND, add_special_tokens=False)
    contexts, restores = [], []
    generate, restore = adapter.generate_text, adapter.restore

    def recording_generate(*args, **kwargs):
        result = generate(*args, **kwargs)
        contexts.append(result.context)
        return result

    def recording_restore(*args, **kwargs):
        restores.append(restore(*args, generator=torch.Generator().manual_seed(3), **kwargs))
        return restores[-1]

    adapter.generate_text, adapter.restore = recording_generate, recording_restore
    sde = SDEConfig(num_timesteps=STEPS, sigma=0.3)
    config = PipelineConfig(system_prompt=SYSTEM, num_steps=STEPS, sde=sde, max_new_tokens=200)
    with scripted(adapter.model, [*first, *second, adapter.token_ids.eos]), torch.no_grad():
        out = ClearPipeline(adapter, config).answer(image, QUESTION)
    assert out.num_restores == 1
    record, step = restores[0], restores[0].steps[chosen]

    sample = TrainingSample(
        image, QUESTION, first, RestoreBlock(step=step, latent=record.latent), second, system_prompt=SYSTEM
    )
    (row,) = adapter.pack_training_samples([sample], PackingOptions(attention="dense"))
    with torch.no_grad():
        train = adapter.training_forward(row)
        main, hidden = adapter.runner.forward(adapter.runner.empty(), contexts[-1].items)
    layout = row.inputs.layout
    unseen = layout.mode == int(AttnMode.NOISE)
    label_index = train.extra["label_index"]
    shift = torch.cumsum(unseen.long(), 0)[label_index]
    infer = adapter.runner.logits(hidden[label_index - shift])
    assert len(main.cache.layout) == int((~unseen).sum())
    assert (train.text_logits.float().log_softmax(-1) - infer.log_softmax(-1)).abs().max() < 1e-4

    rescored = sde_step(
        step.x_t, train.image_output, float(step.t), float(step.t_next), sde.sigma_at(step.t, step.t_next),
        prev_sample=step.x_next, index=torch.zeros(step.x_t.shape[0], dtype=torch.long),
    )  # fmt: skip
    assert torch.allclose(rescored.log_prob, step.log_prob, atol=1e-4), (rescored.log_prob, step.log_prob)
