"""Bagel restoration: ODE/SDE agreement, reproducible rollouts rescored from their records, guidance rules."""

from __future__ import annotations

import pytest
import torch
from adapter_contract import photo
from bagel_helpers import QUESTION, SYSTEM, forward_lengths, ids, scripted, tiny_adapter

from clear_plugins.adapters.bagel.guidance import BagelGuidance, guided_velocity
from clear_plugins.adapters.bagel.packing import TokenKind
from clear_plugins.adapters.bagel.restore import BagelRestoreConfig, velocity
from clear_plugins.errors import ClearConfigError
from clear_plugins.flow import SDEConfig, sde_step

STEPS = 4


@pytest.fixture(scope="module")
def adapter():
    return tiny_adapter()


@pytest.fixture(scope="module")
def image():
    return photo(48)


@pytest.fixture
def context(adapter, image):
    """System prompt, image, question, and an assistant segment ending in <image_restore><|im_end|>."""
    script = ids(adapter.tokenizer, "<think> blurred </think><image_restore>")
    with torch.no_grad(), scripted(adapter.model, script):
        ctx = adapter.start_context(image, QUESTION, system_prompt=SYSTEM)
        result = adapter.generate_text(ctx, max_new_tokens=20, stop=["<image_restore>"])
    assert result.stopped_on == "<image_restore>"
    return result.context


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
@pytest.mark.parametrize("guidance", [None, BagelGuidance()])
def test_ode_and_sde_with_zero_sigma_give_the_same_latent(adapter, context, image, guidance):
    ode = adapter.restore(context, image, num_steps=STEPS, guidance=guidance, generator=_gen(1))
    sde = adapter.restore(
        context,
        image,
        num_steps=STEPS,
        sde=SDEConfig(sigma=0.0, num_timesteps=STEPS),
        guidance=guidance,
        generator=_gen(1),
    )
    assert ode.latent.grids == [(3, 3)] and ode.latent.tokens[0].shape == (9, 64)
    torch.testing.assert_close(ode.latent.tokens[0], sde.latent.tokens[0], rtol=0, atol=0)
    assert ode.steps is None and len(sde.steps) == STEPS - 1
    assert torch.allclose(ode.timesteps, torch.tensor([1.0, 6 / 7, 0.6, 0.0]))  # 4 points, shift 3


@torch.no_grad()
def test_restores_are_reproducible_from_a_seed(adapter, context, image):
    a = adapter.restore(
        context, image, num_steps=STEPS, sde=SDEConfig(num_timesteps=STEPS), generator=_gen(5)
    )
    b = adapter.restore(
        context, image, num_steps=STEPS, sde=SDEConfig(num_timesteps=STEPS), generator=_gen(5)
    )
    c = adapter.restore(
        context, image, num_steps=STEPS, sde=SDEConfig(num_timesteps=STEPS), generator=_gen(6)
    )
    assert torch.equal(a.latent.tokens[0], b.latent.tokens[0])
    assert not torch.allclose(a.latent.tokens[0], c.latent.tokens[0])
    adapter.restore_config = BagelRestoreConfig(seed=11)
    try:
        first = adapter.restore(context, image, num_steps=STEPS).latent.tokens[0]
        assert torch.equal(first, adapter.restore(context, image, num_steps=STEPS).latent.tokens[0])
    finally:
        adapter.restore_config = BagelRestoreConfig()


@torch.no_grad()
@pytest.mark.parametrize(
    "sde", [SDEConfig(sigma=0.5, num_timesteps=5), SDEConfig("flow_grpo", num_timesteps=5)]
)
def test_no_guidance_rollouts_are_rescored_from_their_records(adapter, context, image, sde):
    result = adapter.restore(context, image, num_steps=5, sde=sde, generator=_gen(2))
    grid = result.latent.grids[0]
    index = torch.zeros(grid[0] * grid[1], dtype=torch.long)
    for k, record in enumerate(result.steps):
        assert record.log_prob.shape == (1,) and torch.isfinite(record.log_prob).all()
        if k + 1 < len(result.steps):
            assert torch.equal(record.x_next, result.steps[k + 1].x_t)
        v = velocity(adapter.runner, context, record.x_t, record.t, grid)  # the training forward's velocity
        rescored = sde_step(
            record.x_t,
            v,
            record.t,
            record.t_next,
            sde.sigma_at(float(record.t), float(record.t_next)),
            prev_sample=record.x_next,
            index=index,
        )
        torch.testing.assert_close(rescored.log_prob, record.log_prob, rtol=0, atol=1e-5)
        assert torch.exp(rescored.log_prob - record.log_prob).item() == pytest.approx(1.0, abs=1e-4)
    assert torch.equal(result.steps[-1].x_next, result.latent.tokens[0])


@torch.no_grad()
def test_guidance_scale_one_or_an_empty_interval_is_no_guidance(adapter, context, image):
    rows, cols = context.degraded.latent_grid
    block = rows * cols + 2  # markers + latent tokens

    def run(guidance):
        """The latent, the noised forwards (one per step: the branches are batched) and the blocks they held."""
        with forward_lengths(adapter.model) as seen:
            latent = adapter.restore(context, image, num_steps=STEPS, guidance=guidance, generator=_gen(3))
        noised = [length for length, is_noised in seen if is_noised]
        assert all(length % block == 0 for length in noised)
        return latent.latent.tokens[0], len(noised), sum(length // block for length in noised)

    plain, plain_calls, plain_blocks = run(None)
    assert plain_calls == plain_blocks == STEPS - 1  # one velocity evaluation per interval, main branch only
    for off in (BagelGuidance(text_scale=1.0, image_scale=1.0), BagelGuidance(interval=(0.0, 0.0))):
        latent, calls, blocks = run(off)
        assert torch.equal(latent, plain) and calls == blocks == STEPS - 1
    guided, guided_calls, guided_blocks = run(BagelGuidance())
    assert (
        guided_calls == STEPS - 1 and guided_blocks == 3 * (STEPS - 1) and not torch.allclose(guided, plain)
    )
    text_only, text_calls, text_blocks = run(BagelGuidance(image_scale=1.0))
    assert (
        text_calls == STEPS - 1 and text_blocks == 2 * (STEPS - 1) and not torch.allclose(text_only, guided)
    )
    _, late_calls, late_blocks = run(BagelGuidance(interval=(0.8, 1.0)))  # only t = 1 and 6/7 are guided
    assert late_calls == STEPS - 1 and late_blocks == 3 * 2 + 1


@torch.no_grad()
def test_guidance_branches_drop_the_last_text_and_the_input_image(adapter, context, image):
    adapter.restore(context, image, num_steps=2, guidance=BagelGuidance())  # forwards the branches
    main, text_u, image_u = context.main.cache, context.text_uncond.cache, context.image_uncond.cache
    assert not context.main.pending and not context.image_uncond.pending
    image_kinds = (int(TokenKind.VIT), int(TokenKind.LATENT))
    assert not torch.isin(image_u.layout.kind, torch.tensor(image_kinds)).any()
    assert torch.isin(text_u.layout.kind, torch.tensor(image_kinds)).any()
    assistant = ids(adapter.tokenizer, "<think> blurred </think><image_restore>")
    bos, eos = adapter.token_ids.bos, adapter.token_ids.eos
    segment = [bos, *assistant, eos]
    assert len(main) - len(text_u) == len(segment)  # text-uncond = everything before the assistant segment
    assert context.text_ids[-len(segment) :] == segment
    assert len(image_u) == len(context.text_ids)  # every text token, no image block


def test_guided_velocity_matches_the_official_rules():
    g = torch.Generator().manual_seed(0)
    v, vt, vi = (torch.randn(6, 64, generator=g) for _ in range(3))
    assert guided_velocity(v, None, None, text_scale=1.0, image_scale=3.0) is v
    raw = vi + 2.0 * (vt + 4.0 * (v - vt) - vi)
    for renorm in ("global", "channel"):
        no_renorm = guided_velocity(
            v, vt, vi, text_scale=4.0, image_scale=2.0, renorm_type=renorm, renorm_min=1.0
        )
        torch.testing.assert_close(no_renorm, raw)
    bounded = guided_velocity(v, vt, vi, text_scale=4.0, image_scale=2.0, renorm_type="global")
    assert torch.linalg.vector_norm(bounded) <= torch.linalg.vector_norm(v) * (1 + 1e-6)
    torch.testing.assert_close(bounded, raw * torch.linalg.vector_norm(v) / torch.linalg.vector_norm(raw))
    per_token = guided_velocity(v, vt, vi, text_scale=4.0, image_scale=2.0, renorm_type="channel")
    assert (per_token.norm(dim=-1) <= v.norm(dim=-1) * (1 + 1e-6)).all()
    text = vt + 4.0 * (v - vt)
    text = text * (v.norm(dim=-1, keepdim=True) / text.norm(dim=-1, keepdim=True)).clamp(max=1.0)
    text_channel = guided_velocity(v, vt, None, text_scale=4.0, image_scale=1.0, renorm_type="text_channel")
    torch.testing.assert_close(text_channel, text)
    assert (text_channel.norm(dim=-1) <= v.norm(dim=-1) * (1 + 1e-6)).all()
    both = guided_velocity(v, vt, vi, text_scale=4.0, image_scale=2.0, renorm_type="text_channel")
    torch.testing.assert_close(both, vi + 2.0 * (text - vi))


def test_guidance_and_restore_settings_are_validated(adapter, context, image):
    with pytest.raises(ClearConfigError, match=r"text_scale=0\.5"):
        BagelGuidance(text_scale=0.5)
    with pytest.raises(ClearConfigError, match=r"interval=\(0\.9"):
        BagelGuidance(interval=(0.9, 0.1))
    with pytest.raises(ClearConfigError, match="renorm_type='nope'"):
        BagelGuidance(renorm_type="nope")
    with pytest.raises(ClearConfigError, match="guidance of type str"):
        BagelGuidance.coerce("strong")
    assert BagelGuidance.coerce({"text_scale": 2.0}).text_scale == 2.0
    assert BagelGuidance().scales_at(1.0) == (4.0, 2.0) and BagelGuidance(interval=(0.4, 1.0)).scales_at(
        0.4
    ) == (
        1.0,
        1.0,
    )
    with pytest.raises(ClearConfigError, match=r"num_steps=4 but sde.num_timesteps=30"):
        adapter.restore(context, image, num_steps=4, sde=SDEConfig())
    with pytest.raises(ClearConfigError, match="num_timesteps=1"):
        BagelRestoreConfig(num_timesteps=1)


@torch.no_grad()
def test_the_time_embedder_sees_bagels_shifted_grid_and_euler_steps_use_it(adapter, context, image):
    from clear_plugins.flow import time_grid

    seen: list[torch.Tensor] = []
    handle = adapter.model.time_embedder.register_forward_hook(
        lambda _m, args, _out: seen.append(args[0].clone())
    )
    try:
        result = adapter.restore(context, image, num_steps=4, generator=_gen(0))
    finally:
        handle.remove()
    grid = time_grid(4, shift=3.0)
    torch.testing.assert_close(result.timesteps, grid)
    noised = [t for t in seen if t.numel() and bool((t > 0).all())]  # the clean blocks embed t = 0
    assert [round(float(t.flatten()[0]), 4) for t in noised] == [round(float(t), 4) for t in grid[:-1]]
