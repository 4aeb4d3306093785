"""Export a tiny CLEAR model and load it elsewhere with AutoModel(trust_remote_code=True): same answers, no pickles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from adapter_contract import photo
from bagel_helpers import QUESTION, SYSTEM, build_tiny_bagel, ids
from safetensors.torch import load_file

import clear_plugins
from clear_plugins.hub_cards.checks import export_problems, pickle_files
from clear_plugins.hub_cards.export import ExportOptions, export_model
from clear_plugins.injection import InjectionOptions, inject
from clear_plugins.pipeline import PipelineConfig

REPO = Path(__file__).resolve().parents[1]
FIRST = "<think> The sign is blurred. </think><image_restore>"
MAX_NEW_TOKENS = 24
IMAGE_SIZE = 48

# Runs in a fresh interpreter (-I: no cwd, no PYTHONPATH, no user site on sys.path). It never imports clear_plugins
# itself: transformers imports it through the exported remote code. The forward hook forces the first segment's
# tokens (test scaffolding, as in bagel_helpers.scripted) so the answer goes through restore and the bridge.
LOADER = r"""
import json, sys
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

folder, forced_json, image_path, question, result_path = sys.argv[1:6]
repo = sys.argv[6]
assert "" not in sys.path and repo not in sys.path and not any(p.startswith(repo) for p in sys.path), sys.path
assert "clear_plugins" not in sys.modules

from transformers import AutoModel

model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
assert "clear_plugins" in sys.modules
forced = json.loads(forced_json)
image = Image.open(image_path).convert("RGB")
results, latents = {}, {}
torch.manual_seed(0)
free = model.generate(images=image, questions=question)  # unforced greedy decoding
seen = []

def hook(_module, _inputs, output):
    if output.ndim != 1 or len(seen) >= len(forced):
        return output
    bias = torch.zeros_like(output)
    bias[forced[len(seen)]] = 1e4
    seen.append(1)
    return output + bias

model.language_model.lm_head.register_forward_hook(hook)
torch.manual_seed(0)
restore = model.generate(images=image, questions=question)
for name, out in (("direct", free), ("restore", restore)):
    results[name] = {"text": out.text, "answer": out.answer, "num_restores": out.num_restores}
    for i, r in enumerate(out.restore_results):
        latents[f"{name}{i}"] = r.latent.tokens[0].contiguous()
save_file(latents, result_path + ".safetensors")
resaved = Path(result_path).parent / "resaved"
model.save_pretrained(resaved)  # a user's own save after a remote-code load
results["resaved"] = sorted(p.name for p in resaved.iterdir())
results["class"] = type(model).__name__
results["clear_plugins_file"] = sys.modules["clear_plugins"].__file__
Path(result_path).write_text(json.dumps(results))
"""


def _forced_ids(tokenizer) -> list[int]:
    return ids(tokenizer, FIRST)


def _answer(model, image, forced: list[int]):
    """Answer with the injected model, forcing the first segment like the loader script does."""
    seen = []

    def hook(_module, _inputs, output):
        if output.ndim != 1 or len(seen) >= len(forced):
            return output
        bias = torch.zeros_like(output)
        bias[forced[len(seen)]] = 1e4
        seen.append(1)
        return output + bias

    handle = model.language_model.lm_head.register_forward_hook(hook)
    try:
        torch.manual_seed(0)
        return model.generate(images=image, questions=QUESTION)
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny injected Bagel, its answers (direct and restoring), and its export (sharded)."""
    model, tokenizer = build_tiny_bagel()
    pipeline = PipelineConfig(num_steps=3, system_prompt=SYSTEM, max_new_tokens=MAX_NEW_TOKENS)
    # single-token tags, so the forced first segment fits the small token budget
    inject(model, tokenizer, options=InjectionOptions(pipeline=pipeline, tag_mode="token"))
    image = photo(IMAGE_SIZE)
    forced = _forced_ids(tokenizer)
    before = {"direct": _answer(model, image, []), "restore": _answer(model, image, forced)}
    out = tmp_path_factory.mktemp("export") / "tiny-clear"
    result = export_model(model, tokenizer, out, options=ExportOptions(max_shard_size="300KB"))
    image_path = tmp_path_factory.mktemp("inputs") / "degraded.png"
    image.save(image_path)
    return {
        "model": model,
        "tokenizer": tokenizer,
        "before": before,
        "result": result,
        "forced": forced,
        "image_path": image_path,
        "out": out,
    }


def _load_elsewhere(tmp_path: Path, folder: Path, image_path: Path, forced: list[int]) -> tuple[dict, dict]:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(parents=True)
    script = elsewhere / "load_exported.py"
    script.write_text(LOADER, encoding="utf-8")
    result_path = elsewhere / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            str(script),
            str(folder),
            json.dumps(forced),
            str(image_path),
            QUESTION,
            str(result_path),
            str(REPO),
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(result_path.read_text()), load_file(str(result_path) + ".safetensors")


def test_export_writes_a_complete_sharded_pickle_free_folder(exported):
    out, result = exported["out"], exported["result"]
    assert result.sharded and len(list(out.glob("model-*.safetensors"))) >= 2
    assert export_problems(out) == []
    assert pickle_files(out) == []
    assert not [p for p in out.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_clear.BagelConfig",
        "AutoModel": "modeling_clear.ClearBagelForConditionalGeneration",
    }
    assert config["clear_tag_mode"] == "token"
    inference = config["clear_inference"]
    assert inference["num_steps"] == 3 and inference["system_prompt"] == SYSTEM
    assert inference["guidance_preset"] == "clear_eval" and inference["max_new_tokens"] == MAX_NEW_TOKENS
    assert json.loads((out / "generation_config.json").read_text())["max_new_tokens"] == MAX_NEW_TOKENS
    for module in ("configuration_clear.py", "modeling_clear.py"):
        text = (out / module).read_text()
        assert f'MIN_CLEAR_PLUGINS_VERSION = "{clear_plugins.__version__}"' in text
        assert "pip install" in text and "clear-plugins" in text
    assert not list(out.parent.glob(".*partial*"))  # the temporary folder is gone
    # the caller's model config is left as it was
    assert "auto_map" not in exported["model"].config.__dict__


def test_fresh_process_elsewhere_answers_like_before_export(exported, tmp_path):
    before = exported["before"]
    assert before["restore"].num_restores == 1
    after, latents = _load_elsewhere(tmp_path, exported["out"], exported["image_path"], exported["forced"])
    assert after["class"] == "ClearBagelForConditionalGeneration"
    assert not after["clear_plugins_file"].startswith(str(tmp_path))  # the installed package, not a copy
    for name in ("direct", "restore"):  # unforced greedy decoding, and a forced first segment then free text
        assert after[name]["text"] == before[name].text and after[name]["answer"] == before[name].answer
        assert after[name]["num_restores"] == before[name].num_restores
        for i, result in enumerate(before[name].restore_results):
            torch.testing.assert_close(latents[f"{name}{i}"], result.latent.tokens[0])
    assert after["restore"]["num_restores"] == 1
    # saving again writes the two small modules, not copies of clear-plugins' source files
    assert [n for n in after["resaved"] if n.endswith(".py")] == [
        "configuration_clear.py",
        "modeling_clear.py",
    ]


def test_with_clear_plugins_imported_no_remote_code_is_needed(exported):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(exported["out"]).eval()  # no trust_remote_code
    assert type(model).__module__ == "clear_plugins.adapters.bagel.modeling_bagel"
    before = exported["before"]["restore"]
    again = _answer(model, photo(IMAGE_SIZE), exported["forced"])
    assert again.text == before.text
    torch.testing.assert_close(
        again.restore_results[0].latent.tokens[0], before.restore_results[0].latent.tokens[0]
    )


def test_pipeline_settings_can_be_overridden_after_loading(exported):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(exported["out"]).eval()
    injection = model.clear_setup(max_restores=0)
    assert injection.options.pipeline.max_restores == 0 and injection.options.pipeline.system_prompt == SYSTEM
    no_restore = _answer(model, photo(IMAGE_SIZE), exported["forced"])
    assert no_restore.num_restores == 0 and no_restore.text.startswith(
        "<think> The sign is blurred. </think>"
    )
    model.clear_setup(max_restores=1)
    assert _answer(model, photo(IMAGE_SIZE), exported["forced"]).text == exported["before"]["restore"].text
