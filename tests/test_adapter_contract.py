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
