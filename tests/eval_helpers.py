"""Fixtures of the evaluation tests: tiny benchmarks built from real photos, and a tiny model that sees them.

* :func:`make_circular_tsv` writes a VLMEvalKit-style MMBench TSV whose questions come with rotated copies
  (indices ``i + k * 1e6``), so circular evaluation applies; :func:`make_open_jsonl` writes yes/no and open
  questions. :func:`build` runs ``bench build`` on them (sampled mode, low/mid/hard).
* :class:`PhotoAdapter` is the fake flow backbone of ``fake_backbone.py`` (a real tiny transformers model, the
  full restore-then-answer loop through ``ClearPipeline``) whose *text* is scripted from the image it is shown:
  it names the photo whose mean colour is nearest, and asks for restoration when that colour is far from every
  photo. So accuracy falls and the trigger rate rises with the degradation level, as in the paper, while every
  path (restore, bridge, decode) is the pipeline's own.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
from fake_backbone import FakeAdapter, build_fake
from PIL import Image

from clear_plugins.adapters.base import TextResult
from clear_plugins.bench.builder import build_benchmark
from clear_plugins.bench.config import BenchBuildConfig
from clear_plugins.eval.models import PipelineModel
from clear_plugins.pipeline import ClearPipeline, PipelineConfig

NAMES = ("astronaut", "cat", "coffee")
TRIGGER_DISTANCE = 20.0
"""Mean-colour distance (0-255 scale) beyond which the tiny model asks for restoration."""


def photos(side: int = 48) -> list[Image.Image]:
    """astronaut, chelsea (a cat) and coffee from scikit-image, shrunk to ``side`` pixels on the long side."""
    from skimage import data

    out = []
    for array in (data.astronaut(), data.chelsea(), data.coffee()):
        image = Image.fromarray(array)
        scale = side / max(image.size)
        out.append(image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS))
    return out


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def make_circular_tsv(folder: Path, questions: int = 6, rotations: int = 3) -> Path:
    """MMBench-style TSV: ``questions`` questions about photo ``i % 3``, each with ``rotations`` rotated copies."""
    folder.mkdir(parents=True, exist_ok=True)
    encoded = [_b64(p) for p in photos()]
    options = ["an astronaut", "a cat", "a cup of coffee"]
    path = folder / "MMBench_TOY.tsv"
    fields = ["index", "question", "hint", "A", "B", "C", "answer", "category", "image"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for k in range(rotations):
            for i in range(questions):
                rotated = options[k:] + options[:k]
                truth = "ABC"[rotated.index(options[i % 3])]
                row = {"index": i + k * 1_000_000, "question": "What is in the picture?", "hint": ""}
                row |= dict(zip("ABC", rotated, strict=True))
                row |= {"answer": truth, "category": ["objects", "animals"][i % 2], "image": encoded[i % 3]}
                writer.writerow(row)
    return path


def make_open_jsonl(folder: Path, rows: int = 6) -> Path:
    """Yes/no and open questions about the three photos (image files beside the JSONL)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, photo in enumerate(photos()):
        photo.save(folder / f"photo{n}.png")
    lines = []
    for i in range(rows):
        photo = i % 3
        if i % 2:
            asked = NAMES[(i // 2) % 3]
            row = {"question": f"Is this a {asked}?", "answer": "yes" if asked == NAMES[photo] else "no"}
        else:
            row = {"question": "What is shown? Answer in one word.", "answer": NAMES[photo]}
        lines.append(json.dumps({"id": f"q{i}", "image": f"photo{photo}.png", **row}))
    path = folder / "TOY_OPEN.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def build(source: Path, out: Path, mode: str = "sampled") -> Path:
    """``bench build`` of ``source`` into ``out`` (low/mid/hard); returns ``out``."""
    build_benchmark(BenchBuildConfig(source=str(source), output_dir=str(out), mode=mode, progress=False))
    return out


def tiny_benches(root: Path) -> list[Path]:
    """The two built benchmarks: MMBench_TOY (circular multiple choice) and TOY_OPEN (yes/no and open)."""
    return [
        build(make_circular_tsv(root / "src_mc"), root / "MMBench_TOY"),
        build(make_open_jsonl(root / "src_open"), root / "TOY_OPEN"),
    ]


class PhotoAdapter(FakeAdapter):
    """The fake backbone with image-dependent text (see the module docstring)."""

    references = np.array([np.asarray(p, np.float64).reshape(-1, 3).mean(0) for p in photos()])

    def start_context(self, image, question, *, system_prompt):
        context = super().start_context(image, question, system_prompt=system_prompt)
        distances = np.linalg.norm(
            self.references - np.asarray(image, np.float64).reshape(-1, 3).mean(0), axis=1
        )
        return {
            **context,
            "guess": int(distances.argmin()),
            "far": bool(distances.min() > TRIGGER_DISTANCE),
            "question": question,
        }

    def generate_text(self, context, *, max_new_tokens, stop=(), sampling=None):
        answer = self._answer(context)
        if context["turn"] == 0 and context["far"] and "<image_restore>" in stop:
            text = "<think> The image is degraded. </think> <image_restore>"
            stopped = "<image_restore>"
        else:
            text = f"<think> It looks like a {NAMES[context['guess']]}. </think> <answer> {answer} </answer>"
            stopped = None
        context = dict(context, turn=context["turn"] + 1)
        return TextResult(
            text=text, token_ids=list(range(len(text.split()))), stopped_on=stopped, context=context
        )

    @staticmethod
    def _answer(context) -> str:
        question, name = context["question"], NAMES[context["guess"]]
        if "Options:" in question:
            for line in question.splitlines():
                if line[:2] in ("A.", "B.", "C.") and name.split()[-1] in line:
                    return line[0]
            return "A"
        if question.startswith("Is this a"):
            return "yes" if name in question else "no"
        return name


def tiny_model(seed: int = 0, keep_restored: bool = False, name: str = "tiny-clear") -> PipelineModel:
    """A :class:`PipelineModel` over :class:`PhotoAdapter` (fake backbone, 16x16 images, 4-point restores)."""
    model, _ = build_fake(seed=seed, image_size=16)
    pipeline = ClearPipeline(PhotoAdapter(model), PipelineConfig(num_steps=4))
    return PipelineModel(pipeline, name=name, keep_restored=keep_restored)


def tiny_llava_pipeline(seed: int = 0):
    """A real transformers ``image-text-to-text`` pipeline over a tiny random LLaVA, built in-process (no Hub)."""
    import torch
    from tiny_tokenizer import tiny_tokenizer
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        pipeline,
    )

    tokenizer = tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
        "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}"
        "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}
        ),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=template,
        num_additional_image_tokens=1,
    )
    return pipeline("image-text-to-text", model=model, processor=processor)
