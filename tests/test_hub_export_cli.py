"""clear-plugins export from folders on disk: official layout, save_pretrained folders, refusals, remote-code errors."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import pytest
import torch
from bagel_helpers import build_tiny_bagel
from bagel_official_files import TINY_OVERRIDES, write_official_checkpoint

import clear_plugins
from clear_plugins.adapters.bagel.checkpoint import from_official_checkpoint, load_official_tokenizer
from clear_plugins.adapters.bagel.testing import TINY_VAE_CONFIG
from clear_plugins.cli import main
from clear_plugins.errors import ClearConfigError
from clear_plugins.hub_cards.checks import export_problems
from clear_plugins.hub_cards.export import ExportOptions, export_checkpoint, export_model
from clear_plugins.hub_cards.metadata import record_training_stage


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A save_pretrained folder (model + tokenizer) with a training record, as a trainer leaves it."""
    model, tokenizer = build_tiny_bagel()
    folder = tmp_path_factory.mktemp("trained") / "checkpoint"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    record_training_stage(
        folder,
        stage="sft",
        trainer="ClearSFTTrainer",
        hyperparameters={"learning_rate": 2e-05},
        dataset={"num_rows": 12, "trace_source": "offline"},
        base_model="ByteDance-Seed/BAGEL-7B-MoT",
        run_id="sft-cli-1",
    )
    return folder, model


def test_official_layout_exports_and_loads_with_the_same_weights(tmp_path, capsys):
    official = write_official_checkpoint(tmp_path / "official").path
    vae_config = tmp_path / "vae_config.json"
    vae_config.write_text(json.dumps(TINY_VAE_CONFIG))
    out = tmp_path / "out"
    overrides = json.dumps(TINY_OVERRIDES)
    code = main(
        ["export", str(official), str(out), "--config-overrides", overrides, "--vae-config", str(vae_config)]
    )
    assert code == 0, capsys.readouterr().err
    assert "no pickles" in capsys.readouterr().out
    assert export_problems(out) == []
    from transformers import AutoModel, AutoTokenizer

    loaded = AutoModel.from_pretrained(out)
    reference = from_official_checkpoint(
        official, config_overrides=TINY_OVERRIDES, vae_config=TINY_VAE_CONFIG
    )
    ours, theirs = loaded.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert ours["language_model.lm_head.weight"].dtype == torch.bfloat16  # the file's dtype is kept
    tokenizer, original = AutoTokenizer.from_pretrained(out), load_official_tokenizer(official)
    text = "<|im_start|>The restored image is clear<|im_end|>"
    assert tokenizer.encode(text) == original.encode(text) and len(tokenizer) == len(original)
    assert "(official layout)" not in (out / "README.md").read_text()  # the card states facts, not the loader


def test_save_pretrained_folder_exports_with_its_training_record(saved, tmp_path):
    folder, model = saved
    out = tmp_path / "out"
    result = export_checkpoint(folder, out, options=ExportOptions(repo_id="me/tiny"))
    assert not result.sharded and "clear_training.json" in result.files
    card = (out / "README.md").read_text()
    assert "sft-cli-1" in card and "| `learning_rate` | 2e-05 |" in card and "offline trace writer" in card
    assert 'AutoModel.from_pretrained("me/tiny"' in card
    assert not (folder / "README.md").exists()  # the checkpoint is never written to
    from transformers import AutoModel

    again = AutoModel.from_pretrained(out)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_reexport_keeps_settings_and_overwrite_replaces_only_exports(saved, tmp_path):
    folder, _ = saved
    first = tmp_path / "first"
    export_checkpoint(
        folder, first, options=ExportOptions(system_prompt="Be brief.", guidance_preset="clear_demo")
    )
    second = tmp_path / "second"
    export_checkpoint(first, second)
    settings = json.loads((second / "config.json").read_text())["clear_inference"]
    assert settings["system_prompt"] == "Be brief." and settings["guidance_preset"] == "clear_demo"
    with pytest.raises(ClearConfigError, match="--overwrite"):
        export_checkpoint(folder, second)
    export_checkpoint(folder, second, options=ExportOptions(overwrite=True))
    assert (
        json.loads((second / "config.json").read_text())["clear_inference"]["guidance_preset"] == "clear_eval"
    )
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    with pytest.raises(ClearConfigError, match="exists and is not empty"):
        export_checkpoint(folder, precious, options=ExportOptions(overwrite=True))
    assert (precious / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_overlapping_the_checkpoint_is_refused(saved, where):
    folder, _ = saved
    out = folder if where == "same" else folder / "export"
    with pytest.raises(ClearConfigError, match="overlaps the checkpoint"):
        export_checkpoint(folder, out)
    assert not (folder / "export").exists()


def test_unknown_folders_get_a_clear_message(tmp_path, capsys):
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter_config.json").write_text("{}")
    (tmp_path / "run" / "checkpoint-10").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    for name, message in (
        ("lora", "merge_and_unload"),
        ("run", "checkpoint-10"),
        ("empty", "neither a save_pretrained folder"),
        ("missing", "not a directory"),
    ):
        assert main(["export", str(tmp_path / name), str(tmp_path / f"out-{name}")]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not (tmp_path / f"out-{name}").exists()


def test_remote_code_names_the_package_to_install(tmp_path):
    model, tokenizer = build_tiny_bagel()
    out = tmp_path / "out"
    export_model(model, tokenizer, out)
    # clear_plugins hidden from the interpreter: the module's own message, naming pip install clear-plugins
    blocker = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'clear_plugins':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"runpy.run_path({str(out / 'modeling_clear.py')!r})\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", blocker], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "clear-plugins package, which is not installed" in proc.stderr
    assert f'pip install "clear-plugins>={clear_plugins.__version__}"' in proc.stderr


def test_remote_code_refuses_an_older_clear_plugins(tmp_path, monkeypatch):
    model, tokenizer = build_tiny_bagel()
    out = tmp_path / "out"
    export_model(model, tokenizer, out)
    monkeypatch.setattr(clear_plugins, "__version__", "0.0.1")
    with pytest.raises(ImportError, match=r"needs clear-plugins >= .*0\.0\.1 is installed"):
        runpy.run_path(str(out / "configuration_clear.py"))
    monkeypatch.undo()
    namespace = runpy.run_path(str(out / "configuration_clear.py"))
    assert namespace["BagelConfig"] is type(model.config)


def test_a_failed_export_leaves_nothing_under_the_output_name(saved, tmp_path, monkeypatch):
    import clear_plugins.hub_cards.cards as cards

    folder, _ = saved

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cards, "write_model_card", broken)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        export_checkpoint(folder, out)
    assert list(tmp_path.iterdir()) == []  # neither the output nor the temporary folder
