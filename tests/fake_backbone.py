"""A minimal flow backbone used to exercise the adapter contract without Bagel.

It is a real (tiny) transformers model: patch "ViT" and patch "VAE" linear encoders, a latent→LLM connector,
an LLM body of two linear layers, a velocity head and an LM head. Contexts are plain tensors of embeddings.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel

from clear_plugins import hookimpl
from clear_plugins.adapters.base import (
    BackboneAdapter,
    Latent,
    RestoreResult,
    SDERecord,
    TextResult,
    Tokens,
    TrainingOutputs,
)
from clear_plugins.bridge import BridgeMode
from clear_plugins.flow import ode_step, sde_step, time_grid


class FakeConfig(PretrainedConfig):
    """Sizes of the fake backbone."""

    model_type = "clear_fake"

    def __init__(
        self, hidden_size=16, latent_dim=8, patch=4, vocab_size=32, image_size=8, script=(), **kwargs
    ):
        super().__init__(**kwargs)
        self.script = list(script)
        self.hidden_size, self.latent_dim, self.patch = hidden_size, latent_dim, patch
        self.vocab_size, self.image_size = vocab_size, image_size


class FakeModel(PreTrainedModel, GenerationMixin):
    """Tiny model with one module per role of a unified backbone."""

    config_class = FakeConfig
    base_model_prefix = "fake"

    def __init__(self, config: FakeConfig):
        super().__init__(config)
        pixels = 3 * config.patch * config.patch
        h, d = config.hidden_size, config.latent_dim
        self.embed_tokens = nn.Embedding(config.vocab_size, h)
        self.vit = nn.Linear(pixels, h)
        self.vae_encoder = nn.Linear(pixels, d)
        self.vae_decoder = nn.Linear(d, pixels)
        self.vae2llm = nn.Linear(d, h)
        self.time_embed = nn.Linear(1, h)
        self.body = nn.Sequential(nn.Linear(h, h), nn.Tanh(), nn.Linear(h, h))
        self.body_gen = nn.Sequential(nn.Linear(h, h), nn.Tanh(), nn.Linear(h, h))
        self.llm2vae = nn.Linear(h, d)
        self.lm_head = nn.Linear(h, config.vocab_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value


def _patches(images, config: FakeConfig) -> tuple[torch.Tensor, tuple[int, int]]:
    size, p = config.image_size, config.patch
    arrays = [
        np.asarray(img.convert("RGB").resize((size, size)), dtype=np.float32) / 127.5 - 1 for img in images
    ]
    x = torch.from_numpy(np.stack(arrays))  # [B, H, W, 3]
    grid = (size // p, size // p)
    x = x.reshape(len(images), grid[0], p, grid[1], p, 3).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(len(images), grid[0] * grid[1], 3 * p * p), grid


class FakeAdapter(BackboneAdapter):
    """Adapter of :class:`FakeModel`; contexts are ``[n, hidden]`` tensors."""

    model_types = ("clear_fake",)
    image_policy = "flow"

    def encode_understanding(self, images):
        x, grid = _patches(images, self.model.config)
        return Tokens(embeds=list(self.model.vit(x)), grids=[grid] * len(images))

    def encode_latent(self, images):
        x, grid = _patches(images, self.model.config)
        return Latent(tokens=list(self.model.vae_encoder(x)), grids=[grid] * len(images))

    def decode_latent(self, latent):
        p, out = self.model.config.patch, []
        for tokens, (rows, cols) in zip(latent.tokens, latent.grids, strict=True):
            pix = self.model.vae_decoder(tokens).reshape(rows, cols, p, p, 3).permute(0, 2, 1, 3, 4)
            pix = ((pix.reshape(rows * p, cols * p, 3) + 1) * 127.5).clamp(0, 255).round().to(torch.uint8)
            out.append(Image.fromarray(pix.detach().cpu().numpy()))
        return out

    def start_context(self, image, question, *, system_prompt):
        """Context = understanding tokens of the image plus one embedding per question character."""
        chars = torch.tensor([ord(c) % self.model.config.vocab_size for c in system_prompt[:8] + question])
        embeds = self.encode_understanding([image]).embeds[0]
        return {"embeds": torch.cat([embeds, self.model.embed_tokens(chars)]), "turn": 0, "seen": []}

    def generate_text(self, context, *, max_new_tokens, stop=(), sampling=None):
        """Scripted text (``config.script``): one piece per call, cut at the first stop string."""
        script = self.model.config.script
        piece = script[context["turn"]] if context["turn"] < len(script) else ""
        stopped_on = next((s for s in stop if s in piece), None)
        if stopped_on is not None:
            piece = piece[: piece.index(stopped_on) + len(stopped_on)]
        piece = piece[:max_new_tokens]
        context = dict(context, turn=context["turn"] + 1, seen=[*context["seen"], len(context["embeds"])])
        return TextResult(
            text=piece, token_ids=list(range(len(piece))), stopped_on=stopped_on, context=context
        )

    def _velocity(self, x, t, context):
        embeds = context["embeds"] if isinstance(context, dict) else context
        h = self.model.vae2llm(x) + self.model.time_embed(t.reshape(1, 1)) + embeds.mean(0)
        return self.model.llm2vae(self.model.body_gen(h))

    def restore(self, context, image, *, num_steps, sde=None, guidance=None):
        start = time.perf_counter()
        grid = self.encode_latent([image]).grids[0]
        x = torch.randn(grid[0] * grid[1], self.model.config.latent_dim)
        ts = time_grid(num_steps, shift=sde.shift if sde is not None else 1.0)
        steps = [] if sde is not None else None
        for t, t_next in itertools.pairwise(ts):
            v = self._velocity(x, t, context)
            if sde is None:
                x = ode_step(x, v, t, t_next)
                continue
            with torch.no_grad():
                step = sde_step(x, v, t, t_next, sde.sigma_at(t, t_next))
            steps.append(SDERecord(t, t_next, x.detach(), step.prev_sample.detach(), step.log_prob.detach()))
            x = step.prev_sample
        latent = Latent(tokens=[x], grids=[grid])
        return RestoreResult(latent=latent, steps=steps, timesteps=ts, seconds=time.perf_counter() - start)

    def bridge(self, latent, context, mode):
        mode = BridgeMode.parse(mode)
        if mode is BridgeMode.DECODE_REENCODE:
            new = self.encode_understanding(self.decode_latent(latent)).embeds[0]
        else:
            new = self.model.vae2llm(latent.tokens[0])
        if isinstance(context, dict):
            return dict(context, embeds=torch.cat([context["embeds"], new], dim=0))
        return torch.cat([context, new], dim=0)

    def _text_ids(self, text):
        vocab = self.model.config.vocab_size
        if isinstance(text, str):
            return [ord(c) % vocab for c in text]
        return [int(i) for i in text]

    def pack_training_samples(self, samples, options=None):
        """One row per sample: the assistant text's ids, the degraded image and the restore target image."""
        rows = []
        for index, sample in enumerate(samples):
            ids = self._text_ids(sample.prefix) + self._text_ids(sample.suffix)
            target = sample.image
            if sample.restore is not None and sample.restore.clean_image is not None:
                target = sample.restore.clean_image
            rows.append(
                {"input_ids": torch.tensor(ids), "image": sample.image, "target": target, "sample": index}
            )
        return rows

    def training_forward(self, batch):
        ids, image = batch["input_ids"], batch["image"]
        latent = self.encode_latent([batch.get("target", image)]).tokens[0].detach()
        noise, t = torch.randn_like(latent), torch.tensor(0.5)
        x_t = (1 - t) * latent + t * noise
        context = torch.cat([self.encode_understanding([image]).embeds[0], self.model.embed_tokens(ids)])
        hidden = self.model.body(context)
        velocity = self._velocity(x_t, t, context)
        sample = int(batch.get("sample", 0))
        return TrainingOutputs(
            text_logits=self.model.lm_head(hidden[-len(ids) : -1]),
            text_labels=ids[1:],
            image_output=velocity,
            image_target=noise - latent,
            hidden_states=(context, hidden),
            extra={
                "text_sample": torch.full((len(ids) - 1,), sample),
                "image_sample": torch.full((velocity.shape[0],), sample),
                "image_timesteps": torch.full((velocity.shape[0],), float(t)),
            },
        )

    def parameter_groups(self, model=None):
        model = model if model is not None else self.model
        prefixes = {
            "understanding": ("embed_tokens", "body.", "lm_head"),
            "generation": ("body_gen",),
            "bridge": ("vae2llm", "llm2vae", "time_embed"),
            "vision": ("vit",),
            "vae": ("vae_encoder", "vae_decoder"),
        }
        names = [n for n, _ in model.named_parameters()]
        return {g: [n for n in names if n.startswith(p)] for g, p in prefixes.items()}


class FakePlugin:
    """Registers :class:`FakeAdapter` the way a third-party package would."""

    @hookimpl
    def clear_register_adapters(self, register):
        register(FakeAdapter)


def build_fake(seed: int = 0, **config) -> tuple[FakeModel, None]:
    """A fresh fake model (no tokenizer needed)."""
    torch.manual_seed(seed)
    return FakeModel(FakeConfig(**config)).eval(), None
