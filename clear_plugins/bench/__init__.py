"""MMD-Bench (App. B): build degraded copies of a VQA set per level, and draw the Fig. 6 grid.

- :mod:`~clear_plugins.bench.config`: :class:`BenchBuildConfig`, the builder's settings.
- :mod:`~clear_plugins.bench.sources` / :mod:`~clear_plugins.bench.writers`: read and write JSONL/JSON, CSV,
  VLMEvalKit-style TSV, parquet and ``datasets`` folders; :mod:`~clear_plugins.bench.columns` finds the columns.
- :mod:`~clear_plugins.bench.plan`: which type, level and seed each row gets (deterministic per row id).
- :mod:`~clear_plugins.bench.worker`: one shard's work (decode, degrade, encode); never imports torch.
- :mod:`~clear_plugins.bench.builder`: :func:`build_benchmark`, sharded, parallel and resumable;
  :mod:`~clear_plugins.bench.manifest` holds its records on disk.
- :mod:`~clear_plugins.bench.grid`: the Fig. 6 picture (rows = types, columns = clean / low / mid / hard).

Nothing is imported here, so ``import clear_plugins.bench`` stays light.
"""
