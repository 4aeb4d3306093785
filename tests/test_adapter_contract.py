"""Every registered backbone adapter honours the contract of ``clear_plugins.adapters.base``."""

from __future__ import annotations

import pytest
import torch
from adapter_contract import CASE_FACTORIES, ContractCase, photo

from clear_plugins.adapters.base import (
    PARAMETER_GROUPS,
    BackboneAdapter,
    Latent,
    RestoreResult,
    Tokens,
    TrainingOutputs,
)
from clear_plugins.bridge import BridgeMode
from clear_plugins.flow import SDEConfig
from clear_plugins.plugins import load_plugins

CASES = [factory() for factory in CASE_FACTORIES]


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def case(request) -> ContractCase:
    return request.param


@pytest.fixture
def setup(case):
    model, tokenizer = case.build()
    plugins = load_plugins(extra=[case.plugin] if case.plugin else [])
    adapter = plugins.adapter_for(model)(model, tokenizer)
    return case, model, adapter, photo(case.image_size)


def test_every_registered_adapter_has_a_case():
    plugins = load_plugins(extra=[case.plugin for case in CASES if case.plugin])
    covered = set()
    for case in CASES:
        model, _ = case.build()
        covered.add(plugins.adapter_for(model))
    missing = [cls.__name__ for cls in plugins.adapters if cls not in covered]
    assert not missing, f"adapters without a ContractCase in tests/adapter_contract.py: {missing}"


def test_identity(setup):
    _, model, adapter, _ = setup
    assert isinstance(adapter, BackboneAdapter)
    assert adapter.model_types and model.config.model_type in adapter.model_types
    assert type(adapter).matches(model)
    assert adapter.image_policy in ("flow", "discrete")


def test_encode_understanding(setup):
    _, _, adapter, image = setup
    tokens = adapter.encode_understanding([image, image])
    assert isinstance(tokens, Tokens) and len(tokens.embeds) == 2 == len(tokens.grids)
    for embeds, (rows, cols) in zip(tokens.embeds, tokens.grids, strict=True):
        assert embeds.ndim == 2 and embeds.shape[0] == rows * cols
        assert torch.isfinite(embeds).all()
    torch.testing.assert_close(tokens.embeds[0], tokens.embeds[1])


def test_encode_decode_round_trip_shapes(setup):
    _, _, adapter, image = setup
    latent = adapter.encode_latent([image])
    assert isinstance(latent, Latent) and latent.kind == adapter.image_policy
    rows, cols = latent.grids[0]
    assert latent.tokens[0].shape[0] == rows * cols
    decoded = adapter.decode_latent(latent)
    assert len(decoded) == 1 and decoded[0].mode == "RGB"
    assert decoded[0].size[0] > 0 and decoded[0].size[1] > 0


@torch.no_grad()
def test_restore_ode_and_sde_with_zero_sigma_agree(setup):
    case, _, adapter, image = setup
    context = case.make_context(adapter, image)
    torch.manual_seed(0)
    ode = adapter.restore(context, image, num_steps=4)
    torch.manual_seed(0)
    sde = adapter.restore(context, image, num_steps=4, sde=SDEConfig(sigma=0.0, num_timesteps=4))
    assert isinstance(ode, RestoreResult) and ode.steps is None
    assert ode.latent.grids == adapter.encode_latent([image]).grids
    torch.testing.assert_close(ode.latent.tokens[0], sde.latent.tokens[0])


@torch.no_grad()
def test_restore_sde_records_every_step_without_graphs(setup):
    case, _, adapter, image = setup
    context = case.make_context(adapter, image)
    result = adapter.restore(context, image, num_steps=5, sde=SDEConfig(sigma=0.3, num_timesteps=5))
    assert result.steps is not None and len(result.steps) == 4
    previous = None
    for step in result.steps:
        assert step.t > step.t_next
        assert (
            not step.x_t.requires_grad and not step.x_next.requires_grad and not step.log_prob.requires_grad
        )
        assert torch.isfinite(step.log_prob).all()
        if previous is not None:
            torch.testing.assert_close(step.x_t, previous.x_next)
        previous = step
    torch.testing.assert_close(result.steps[-1].x_next, result.latent.tokens[0])


@pytest.mark.parametrize("mode", list(BridgeMode))
def test_bridge_modes_add_no_parameters(setup, mode):
    case, model, adapter, image = setup
    before = {name: p.shape for name, p in model.named_parameters()}
    context = case.make_context(adapter, image)
    with torch.no_grad():
        restored = adapter.restore(context, image, num_steps=3)
        latent = adapter.encode_latent([image]) if mode is BridgeMode.DEGRADED_LATENT else restored.latent
        updated = adapter.bridge(latent, context, mode)
    assert updated is not None
    assert {name: p.shape for name, p in model.named_parameters()} == before


def test_training_forward_is_finite_and_differentiable(setup):
    case, model, adapter, image = setup
    model.train()
    out = adapter.training_forward(case.make_training_batch(adapter, image))
    assert isinstance(out, TrainingOutputs)
    assert out.text_logits is not None and torch.isfinite(out.text_logits).all()
    assert out.text_logits.shape[0] == out.text_labels.shape[0]
    assert out.image_output is not None and out.image_output.shape == out.image_target.shape
    loss = torch.nn.functional.cross_entropy(out.text_logits, out.text_labels)
    loss = loss + torch.nn.functional.mse_loss(out.image_output, out.image_target)
    loss.backward()
    groups = adapter.parameter_groups()
    params = dict(model.named_parameters())
    for group in ("understanding", "generation", "bridge"):
        grads = [params[n].grad for n in groups[group] if params[n].grad is not None]
        assert grads, f"no gradient reached the {group} group"
        assert all(torch.isfinite(g).all() for g in grads)


def test_parameter_groups_partition_the_model(setup):
    _, model, adapter, _ = setup
    groups = adapter.parameter_groups()
    assert set(groups) == set(PARAMETER_GROUPS)
    names = [n for n, _ in model.named_parameters()]
    flat = [n for group in groups.values() for n in group]
    assert sorted(flat) == sorted(names), "every parameter must be in exactly one group"


def _samples(image):
    from clear_plugins.training_sample import TrainingSample
    from clear_plugins.trajectory import format_direct, format_restore

    direct = TrainingSample.from_trajectory(
        image, "What is it?", format_direct("clear enough", "a car"), system_prompt="Be brief.", index=0
    )
    restore = TrainingSample.from_trajectory(
        image,
        "What does the sign say?",
        format_restore("too blurry", "now clear", "EXIT"),
        clean_image=image,
        system_prompt="Be brief.",
        index=1,
    )
    return [direct, restore]


def test_pack_training_samples_feeds_training_forward(setup):
    from clear_plugins.training_sample import PackingOptions

    _, model, adapter, image = setup
    model.train()
    options = PackingOptions(generator=torch.Generator().manual_seed(0), output_hidden_states=True)
    rows = adapter.pack_training_samples(_samples(image), options)
    assert rows
    text_samples, image_samples = set(), set()
    for row in rows:
        out = adapter.training_forward(row)
        assert out.text_logits.shape[0] == out.text_labels.shape[0] == out.extra["text_sample"].shape[0]
        assert torch.isfinite(out.text_logits).all()
        assert out.image_output.shape[0] == out.extra["image_sample"].shape[0]
        text_samples |= set(out.extra["text_sample"].tolist())
        image_samples |= set(out.extra["image_sample"].tolist())
    assert text_samples == {0, 1}, "every sample's assistant text must be a text target"
    assert 1 in image_samples, "the restore sample must produce image-policy outputs"


def test_pack_training_samples_accepts_a_recorded_rollout_step(setup):
    from clear_plugins.adapters.base import SDERecord
    from clear_plugins.training_sample import RestoreBlock, TrainingSample

    case, _, adapter, image = setup
    with torch.no_grad():
        context = case.make_context(adapter, image)
        result = adapter.restore(context, image, num_steps=3, sde=SDEConfig(num_timesteps=3))
    step: SDERecord = result.steps[0]
    sample = TrainingSample(
        image,
        "What does the sign say?",
        "<think> blurry </think><image_restore>",
        RestoreBlock(step=step, latent=result.latent),
        "<think> clear </think><answer> EXIT </answer>",
    )
    rows = adapter.pack_training_samples([sample])
    out = adapter.training_forward(rows[0])
    assert out.image_output.shape[0] == step.x_t.shape[0]
    assert torch.isfinite(out.image_output).all()


def test_default_trainable_parameters_leave_vae_frozen(setup):
    _, _, adapter, _ = setup
    groups = adapter.parameter_groups()
    trainable = set(adapter.default_trainable_parameters())
    assert trainable and not trainable & set(groups["vae"])
    assert set(groups["generation"]) <= trainable and set(groups["understanding"]) <= trainable
