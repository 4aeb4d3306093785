"""Model cards, export and upload for the Hub.

- :mod:`.export` — ``export_model`` / ``export_checkpoint``: safetensors, remote code, tokenizer, card;
- :mod:`.inference` — ``ClearInferenceMixin``: ``generate(images=..., questions=...)`` on a loaded model;
- :mod:`.remote_code` — the small modules named by ``config.json``'s ``auto_map``;
- :mod:`.loading` — the checkpoint formats an export reads; :mod:`.checks` — completeness and pickle checks;
- :mod:`.metadata` — ``clear_training.json`` and ``clear_eval_report.json`` (formats documented there);
- :mod:`.cards` — the model card; :mod:`.trainer` — the trainers' hooks; :mod:`.upload` — the Hub upload.

Submodules import torch/transformers only inside functions where they can, so this package stays light.
"""
