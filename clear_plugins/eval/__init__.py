"""``clear-plugins eval``: measure a model on clean and degraded benchmarks and write the paper's tables.

- :mod:`~clear_plugins.eval.items`: the rows of a benchmark built by ``clear-plugins bench build``, per level
  (clean = the source it was built from), with question kind, prompt, options and answer.
- :mod:`~clear_plugins.eval.models`: the models evaluated: a :class:`~clear_plugins.pipeline.ClearPipeline`
  over any adapter, a transformers ``image-text-to-text`` pipeline, or an OpenAI-compatible endpoint.
- :mod:`~clear_plugins.eval.scoring`: prompts, multiple-choice / yes-no / open-ended scores, circular groups.
- :mod:`~clear_plugins.eval.runner`: batched, resumable runs (one JSONL line per finished row).
- :mod:`~clear_plugins.eval.metrics`, :mod:`~clear_plugins.eval.report`, :mod:`~clear_plugins.eval.plots`:
  Tables 1/9, 2, 4, 10, 11 and the Fig. 5 and clean-to-hard plots; :mod:`~clear_plugins.eval.compare`: two
  runs with paired bootstrap confidence intervals.
- :mod:`~clear_plugins.eval.iqa` and :mod:`~clear_plugins.eval.niqe`: BRISQUE, NIQE, PSNR, SSIM, offline.
- :mod:`~clear_plugins.eval.vlmeval`: a VLMEvalKit model class over any of the models above.

Nothing is imported here, so ``import clear_plugins.eval`` stays light.
"""
