"""Stage 0 of the demo: pre-train a small unified model (``clear-plugins demo --pretrain-base``).

The model is the Bagel architecture at toy size (:func:`~clear_plugins.adapters.bagel.testing.tiny_bagel_config`,
hidden 64, 2 layers) with the demo's word-level tokenizer. The schedule follows what the demo prototype measured
(``demo-prototype.md``): (1) fit the VAE to 64-px images on the posterior mean with a heavier loss on shape pixels,
then fit its latent shift/scale; (2) train restoration FIRST and alone (degraded image + question +
``<image_restore>`` → clean latent, flow matching with timestep shift 3; trained jointly from scratch the
restorer ignored its input); (3) train VQA on clean images jointly with restoration. A gate then checks on held-out
images that restored PSNR beats degraded PSNR for every degradation the demo uses.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .world import (
    DEMO_DEGRADATIONS,
    DEMO_SYSTEM_PROMPT,
    LEVELS,
    build_tokenizer,
    degrade,
    load_image,
    questions,
)

LOG = logging.getLogger("clear_plugins.demo")


@dataclass
class BaseTrainConfig:
    """Stage-0 schedule (defaults: the prototype's measured recipe, shortened to the CPU budget)."""

    seed: int = field(default=0, metadata={"help": "Seed of weights, sampling and degradations."})
    train_images: int = field(default=1000, metadata={"help": "easy-vqa train images used (of 4,000)."})
    vae_steps: int = field(
        default=450, metadata={"help": "VAE steps (prototype: 24.9 dB at 600, 26.6 at 800, batch 16)."}
    )
    vae_batch: int = field(default=16, metadata={"help": "Images per VAE step."})
    vae_lr: float = field(default=3e-3, metadata={"help": "VAE AdamW learning rate (prototype: 3e-3)."})
    shape_weight: float = field(
        default=10.0, metadata={"help": "Loss weight of shape pixels (without it colours came out wrong)."}
    )
    restore_steps: int = field(
        default=4000,
        metadata={"help": "Restoration-alone steps of 8 samples (prototype: learned by 500 steps of 32)."},
    )
    joint_steps: int = field(default=1200, metadata={"help": "Joint VQA + restoration steps afterwards."})
    samples_per_forward: int = field(default=8, metadata={"help": "Samples packed into one forward."})
    lr: float = field(default=3e-3, metadata={"help": "AdamW learning rate of the unified model."})
    timestep_shift: float = field(
        default=3.0,
        metadata={"help": "Training timestep shift; 1.0 never learned restoration in the prototype."},
    )
    oversample_kinds: int = field(
        default=3, metadata={"help": "Colour/shape questions weighted this many times."}
    )
    clean_restore_fraction: float = field(
        default=0.1,
        metadata={"help": "Share of restoration samples whose input is the clean image (identity)."},
    )
    gate_images: int = field(
        default=40, metadata={"help": "Held-out test images per degradation in the gate."}
    )
    restore_steps_inference: int = field(
        default=10, metadata={"help": "Euler steps of a restore at inference."}
    )

    def __post_init__(self) -> None:
        """Validate sizes (errors name the field and value)."""
        for name in (
            "train_images",
            "vae_batch",
            "samples_per_forward",
            "gate_images",
            "restore_steps_inference",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 1.")
        if not 0 <= self.clean_restore_fraction < 1:
            raise ValueError(f"clean_restore_fraction={self.clean_restore_fraction!r} must be in [0, 1).")

    @classmethod
    def quick(cls, seed: int = 0) -> BaseTrainConfig:
        """A seconds-long schedule for tests (the model learns little)."""
        return cls(
            seed=seed,
            train_images=48,
            vae_steps=20,
            restore_steps=20,
            joint_steps=20,
            gate_images=4,
            restore_steps_inference=4,
        )


def build_model(seed: int) -> tuple[Any, Any]:
    """A fresh demo model (Bagel classes, toy size) and the demo tokenizer; tags are tokens (tag mode ``token``)."""
    import torch

    from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
    from clear_plugins.adapters.bagel.testing import TINY_LLM2VAE_STD, tiny_bagel_config

    tokenizer = build_tokenizer()
    vocab = -(-len(tokenizer) // 8) * 8
    config = tiny_bagel_config(llm_config={"vocab_size": vocab}, vae_sample_posterior=False)
    config.clear_tag_mode = "token"
    torch.manual_seed(seed)
    model = BagelForConditionalGeneration(config)
    torch.nn.init.normal_(model.llm2vae.weight, std=TINY_LLM2VAE_STD)
    return model, tokenizer


def shape_mask(pixels: Any, threshold: float = 0.15) -> Any:
    """``[B, 1, H, W]`` mask of pixels that differ from the image's corner (background) colour."""
    corner = pixels[:, :, :1, :1]
    return ((pixels - corner).abs().amax(dim=1, keepdim=True) > threshold).float()


def train_vae(model: Any, pixels: Any, cfg: BaseTrainConfig, log: Any) -> None:
    """Fit the VAE on the posterior mean with shape pixels weighted ``cfg.shape_weight``, then its shift/scale."""
    import torch

    vae = model.vae
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    for step in range(cfg.vae_steps):
        batch = pixels[torch.randint(len(pixels), (cfg.vae_batch,), generator=gen)]
        recon = vae.decode(vae.encode(batch).latent_dist.mode()).sample
        weight = 1.0 + (cfg.shape_weight - 1.0) * shape_mask(batch)
        loss = (weight * (recon - batch) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == cfg.vae_steps - 1:
            log(f"vae step {step} loss {loss.item():.4f}")
    with torch.no_grad():
        z = torch.cat([vae.encode(pixels[i : i + 64]).latent_dist.mode() for i in range(0, len(pixels), 64)])
    shift, scale = float(z.mean()), float(1.0 / z.std())
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    model.config.vae_config = {**model.config.vae_config, "shift_factor": shift, "scaling_factor": scale}
    log(f"vae latent shift {shift:.4f} scale {scale:.4f}")
    for p in vae.parameters():
        p.requires_grad_(False)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two ``uint8`` images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


class Encoded:
    """Latent tokens and ViT pixels of a list of images, computed once through the adapter's transforms."""

    def __init__(self, adapter: Any, images: list[np.ndarray]) -> None:
        import torch

        model = adapter.model
        with torch.no_grad():
            pixels = torch.stack([adapter.vae_transform(im) for im in images])
            latents = torch.cat(
                [model.vae_encode(pixels[i : i + 64], sample=False) for i in range(0, len(pixels), 64)]
            )
        pairs = [model.latent_to_tokens(z) for z in latents]
        self.tokens = [p[0] for p in pairs]
        self.grid = pairs[0][1]
        self.vit = [adapter.vit_transform(im) for im in images]


def _text(tokenizer: Any, ids: Any, text: str) -> list[int]:
    return [ids.bos, *tokenizer.encode(text, add_special_tokens=False), ids.eos]


def vqa_sample(adapter: Any, enc: Encoded, i: int, question: str, answer: str) -> list[Any]:
    """Segments of one VQA sample: system prompt, clean VAE block, ViT block, question, answer (loss on the answer)."""
    from clear_plugins.adapters.bagel.batch import LatentImageSegment, TextSegment, VitImageSegment

    tok, ids = adapter.tokenizer, adapter.token_ids
    return [
        TextSegment(_text(tok, ids, DEMO_SYSTEM_PROMPT)),
        LatentImageSegment(enc.tokens[i], enc.grid),
        VitImageSegment(enc.vit[i]),
        TextSegment(_text(tok, ids, question)),
        TextSegment(_text(tok, ids, answer), loss=True),
    ]


def restore_sample(adapter: Any, src: Encoded, i: int, clean: Any, question: str, t: float) -> list[Any]:
    """Segments of one restoration sample: system prompt, degraded VAE + ViT blocks, question, ``<image_restore>``, noised clean
    latent at time ``t`` (velocity target ``noise − x0``)."""
    from clear_plugins.adapters.bagel.batch import LatentImageSegment, TextSegment, VitImageSegment
    from clear_plugins.trajectory import RESTORE_TAG

    tok, ids = adapter.tokenizer, adapter.token_ids
    return [
        TextSegment(_text(tok, ids, DEMO_SYSTEM_PROMPT)),
        LatentImageSegment(src.tokens[i], src.grid),
        VitImageSegment(src.vit[i]),
        TextSegment(_text(tok, ids, question)),
        TextSegment(_text(tok, ids, RESTORE_TAG)),
        LatentImageSegment(clean, src.grid, t=t),
    ]


class TrainingSet:
    """Clean and degraded encodings of the stage-0 training images with their questions."""

    def __init__(self, adapter: Any, cfg: BaseTrainConfig, images: dict[int, np.ndarray]) -> None:
        rng = random.Random(cfg.seed)
        self.ids = sorted(images)
        self.clean = Encoded(adapter, [images[i] for i in self.ids])
        self.degraded = {}
        for k, name in enumerate(DEMO_DEGRADATIONS):
            levels = [rng.choice(LEVELS) for _ in self.ids]
            degraded = [
                degrade(images[i], name, lv, seed=cfg.seed * 100003 + k * 7919 + i)
                for i, lv in zip(self.ids, levels, strict=True)
            ]
            self.degraded[name] = Encoded(adapter, degraded)
        by_image: dict[int, list[Any]] = {}
        for q in questions("train"):
            if q.image_id in images:
                by_image.setdefault(q.image_id, []).append(q)
        self.questions = [by_image[i] for i in self.ids]
        self.rng = rng
        self.oversample = cfg.oversample_kinds

    def question(self, j: int) -> Any:
        """A question of image ``j``, colour/shape weighted."""
        pool = self.questions[j]
        weights = [self.oversample if q.kind != "yes/no" else 1 for q in pool]
        return self.rng.choices(pool, weights=weights, k=1)[0]


def _batch_loss(adapter: Any, samples: list[list[Any]], gen: Any) -> tuple[Any, float, float]:
    import torch.nn.functional as F

    from clear_plugins.adapters.bagel.batch import build_packed_batch

    model = adapter.model
    batch = build_packed_batch(samples, adapter.token_ids, model.config.vit_config.patch_size, generator=gen)
    out = adapter.training_forward(batch)
    ce = F.cross_entropy(out.text_logits.float(), out.text_labels) if out.text_labels.numel() else None
    mse = F.mse_loss(out.image_output.float(), out.image_target.float()) if out.image_output.numel() else None
    parts = [x for x in (ce, mse) if x is not None]
    return sum(parts), _num(ce), _num(mse)


def train_unified(adapter: Any, data: TrainingSet, cfg: BaseTrainConfig, log: Any) -> None:
    """Restoration alone for ``restore_steps``, then VQA + restoration jointly for ``joint_steps``."""
    import torch

    from clear_plugins.adapters.bagel.batch import sample_timestep

    model = adapter.model
    params = [p for n, p in model.named_parameters() if not n.startswith("vae.")]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    rng = data.rng
    n = len(data.ids)

    def restore_one() -> list[Any]:
        j = rng.randrange(n)
        src = (
            data.clean
            if rng.random() < cfg.clean_restore_fraction
            else data.degraded[rng.choice(DEMO_DEGRADATIONS)]
        )
        t = sample_timestep(gen, shift=cfg.timestep_shift)
        return restore_sample(adapter, src, j, data.clean.tokens[j], data.question(j).question, t)

    def vqa_one() -> list[Any]:
        j = rng.randrange(n)
        q = data.question(j)
        return vqa_sample(adapter, data.clean, j, q.question, q.answer)

    model.train()
    total = cfg.restore_steps + cfg.joint_steps
    for step in range(total):
        joint = step >= cfg.restore_steps
        k = cfg.samples_per_forward
        samples = (
            [vqa_one() for _ in range(k // 2)] + [restore_one() for _ in range(k - k // 2)]
            if joint
            else [restore_one() for _ in range(k)]
        )
        loss, ce, mse = _batch_loss(adapter, samples, gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == total - 1:
            log(f"{'joint' if joint else 'restore'} step {step} ce {ce:.4f} mse {mse:.4f}")
    model.eval()


def restore_images(adapter: Any, images: list[np.ndarray], prompts: list[str], seed: int) -> list[np.ndarray]:
    """Restore each image through the adapter (prefill, ``<image_restore>``, denoise, decode), seeded."""
    import torch

    from clear_plugins.trajectory import RESTORE_TAG

    tok, ids = adapter.tokenizer, adapter.token_ids
    out = []
    with torch.no_grad():
        for k, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
            ctx = adapter.start_context(image, prompt, system_prompt=DEMO_SYSTEM_PROMPT)
            ctx = ctx.push_text(_text(tok, ids, RESTORE_TAG))
            gen = torch.Generator().manual_seed(seed + k)
            result = adapter.restore(ctx, generator=gen)
            out.append(np.asarray(adapter.decode_latent(result.latent)[0].convert("RGB"), dtype=np.uint8))
    return out


def restoration_gate(adapter: Any, cfg: BaseTrainConfig, log: Any) -> dict[str, Any]:
    """Held-out PSNR (dB) of degraded and restored images per degradation and level; passes when restored beats
    degraded at ``hard`` for every demo degradation. Also the VAE round trip of clean images."""
    import torch

    rng = random.Random(cfg.seed + 7)
    test_ids = rng.sample(sorted({q.image_id for q in questions("test")}), cfg.gate_images)
    clean = [load_image("test", i) for i in test_ids]
    with torch.no_grad():
        latent = adapter.encode_latent(clean, sample=False)
        recon = [np.asarray(im.convert("RGB"), dtype=np.uint8) for im in adapter.decode_latent(latent)]
    table: dict[str, Any] = {
        "vae_psnr": float(np.mean([psnr(r, c) for r, c in zip(recon, clean, strict=True)]))
    }
    passed = True
    for name in DEMO_DEGRADATIONS:
        for level in LEVELS:
            degraded = [degrade(im, name, level, seed=cfg.seed + 31 * k) for k, im in enumerate(clean)]
            restored = restore_images(adapter, degraded, ["what is the shape?"] * len(clean), cfg.seed)
            d = float(np.mean([psnr(x, c) for x, c in zip(degraded, clean, strict=True)]))
            r = float(np.mean([psnr(x, c) for x, c in zip(restored, clean, strict=True)]))
            table[f"{name}/{level}"] = {"degraded_psnr": d, "restored_psnr": r}
            log(f"gate {name}/{level}: degraded {d:.2f} dB -> restored {r:.2f} dB")
            if level == "hard" and not r > d:
                passed = False
    table["passed"] = passed
    log(f"gate {'PASSED' if passed else 'FAILED'} (hard level, restored PSNR > degraded PSNR per type)")
    return table


def pretrain_base(out: Path, cfg: BaseTrainConfig, command: str = "") -> dict[str, Any]:
    """Train stage 0 into ``out`` (``model.safetensors``, config, tokenizer, ``train_log.txt``, ``stage0.json``)."""
    import torch

    from clear_plugins.adapters.bagel.adapter import BagelAdapter

    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.txt"
    started = time.process_time()
    wall = time.time()

    def log(message: str) -> None:
        line = f"[{time.time() - wall:7.1f}s wall {time.process_time() - started:7.1f}s cpu] {message}"
        LOG.info(line)
        with log_path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    log_path.write_text("", encoding="utf-8")
    log(f"config {json.dumps(asdict(cfg))}; torch threads {torch.get_num_threads()}")
    model, tokenizer = build_model(cfg.seed)
    adapter = BagelAdapter(model, tokenizer, restore_config=restore_config(cfg))
    rng = random.Random(cfg.seed)
    ids = rng.sample(sorted({q.image_id for q in questions("train")}), cfg.train_images)
    images = {i: load_image("train", i) for i in ids}
    pixels = torch.stack([adapter.vae_transform(images[i]) for i in ids])
    train_vae(model, pixels, cfg, log)
    data = TrainingSet(adapter, cfg, images)
    log(f"encoded {len(ids)} images x {len(DEMO_DEGRADATIONS)} degradations")
    train_unified(adapter, data, cfg, log)
    gate = restoration_gate(adapter, cfg, log)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    record = {
        "command": command,
        "config": asdict(cfg),
        "gate": gate,
        "cpu_seconds": time.process_time() - started,
        "wall_seconds": time.time() - wall,
        "torch_threads": torch.get_num_threads(),
    }
    (out / "stage0.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    log("saved")
    return record


def restore_config(cfg: BaseTrainConfig) -> Any:
    """The restore defaults of the demo model: ``restore_steps_inference`` Euler steps, shift 3."""
    from clear_plugins.adapters.bagel.restore import BagelRestoreConfig

    return BagelRestoreConfig(
        num_timesteps=cfg.restore_steps_inference + 1, timestep_shift=cfg.timestep_shift
    )


def _num(x: Any) -> float:
    """A detached float of a loss term (NaN when absent)."""
    return float("nan") if x is None else float(x.detach())
