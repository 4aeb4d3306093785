"""Load the official BAGEL-7B-MoT download, unchanged, into :class:`BagelForConditionalGeneration`.

The directory is read as the official inference reads it (reference ``bagel-checkpoint.md`` §0–§3, §6):

- ``llm_config.json`` + ``vit_config.json`` → :meth:`BagelConfig.from_official`, which applies the official
  loader's overrides (QK-norm, untied head, MoT layers, ViT rope off and 27 → 26 layers, ``max_latent_size`` 64).
- ``config.json`` in that directory is **ignored**: the official code never reads it, it is not a transformers
  config of any installed class, and its ``max_latent_size`` (32) is stale where the released weights need 64.
- ``ema.safetensors`` (bf16, unprefixed Bagel module keys, 2-D Linear patch embedding, stored sin-cos tables) is
  memory-mapped with ``safe_open`` and renamed through :data:`EMA_KEY_MAP` (identity today, data so a renamed
  layout is a table edit). The model is built on the meta device (parameters only; buffers such as the rotary
  ``inv_freq`` are computed for real at construction) and filled with ``load_state_dict(assign=True)``, so the
  peak memory is one copy of the weights.
- ``ae.safetensors`` (FLUX VAE, BFL layout) is converted by diffusers' own converter with a local config (the
  shipped FLUX config or ``vae_config``), never the Hub, and loaded strictly as the ``vae`` child.

- A released derivative (the CLEAR weights: ``model.safetensors`` and/or ``ema.safetensors`` with Bagel keys, as the
  reference's FSDP training saves them) loads with ``weights=`` on top of the base directory's configs and VAE.
  The position-table sizes are read from the weight file's tables and the image transforms clipped to them.

Every mismatch (missing file, missing/unexpected key, wrong shape) raises :class:`CheckpointError` naming the
keys, the expected layout and the fix. After loading, ``save_pretrained``/``from_pretrained`` work as for any
transformers model (our ``clear_bagel`` format).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from safetensors import SafetensorError, safe_open
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

from clear_plugins.adapters.bagel.configuration_bagel import BagelConfig
from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
from clear_plugins.adapters.bagel.vae_conversion import (
    bfl_to_diffusers,
    expected_bfl_shapes,
    load_vae_config,
    strip_vae_prefix,
)
from clear_plugins.errors import CheckpointError

logger = logging.getLogger(__name__)

OFFICIAL_FILES: dict[str, str] = {
    "llm_config": "llm_config.json",
    "vit_config": "vit_config.json",
    "ema": "ema.safetensors",
    "vae": "ae.safetensors",
}
"""The files of the official download that the loader reads (reference §0); everything else is ignored."""

EMA_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"^language_model\.(.+)$", r"language_model.\1"),
    (r"^vit_model\.vision_model\.(.+)$", r"vit_model.vision_model.\1"),
    (r"^connector\.(.+)$", r"connector.\1"),
    (r"^time_embedder\.(.+)$", r"time_embedder.\1"),
    (r"^vae2llm\.(.+)$", r"vae2llm.\1"),
    (r"^llm2vae\.(.+)$", r"llm2vae.\1"),
    (r"^latent_pos_embed\.(.+)$", r"latent_pos_embed.\1"),
    (r"^vit_pos_embed\.(.+)$", r"vit_pos_embed.\1"),
)
"""Official ``ema.safetensors`` key pattern → our state-dict key; the first matching row wins.

A key no row matches is *unexpected*. The official layout equals ours today, so every row is an identity on its
prefix; a checkpoint with renamed modules needs only new rows here.
"""

VAE_CHILD = "vae"
"""Attribute name of the diffusers ``AutoencoderKL`` inside the model (its keys are ``vae.*``)."""

MAX_LISTED_KEYS = 10
"""How many keys an error lists before summarising the rest as a count."""

EMA_LAYOUT = (
    "unprefixed Bagel module keys: language_model.model.layers.N.* (und weights and their *_moe_gen twins), "
    "language_model.model.{embed_tokens,norm,norm_moe_gen}, language_model.lm_head, vit_model.vision_model.* "
    "(2-D Linear patch_embedding, no head), connector.*, time_embedder.mlp.{0,2}, vae2llm, llm2vae, "
    "latent_pos_embed.pos_embed, vit_pos_embed.pos_embed — the full 7B list is "
    "clear_plugins/adapters/bagel/resources/official_keys.json"
)
AE_LAYOUT = (
    "the FLUX VAE in BFL layout without prefix: encoder.{conv_in,down.I.block.J,down.I.downsample.conv,mid.*,"
    "norm_out,conv_out}, decoder.{conv_in,mid.*,up.I.block.J,up.I.upsample.conv,norm_out,conv_out}, no quant_conv"
)


def _list_keys(keys: Sequence[str]) -> str:
    shown = ", ".join(sorted(keys)[:MAX_LISTED_KEYS])
    more = len(keys) - MAX_LISTED_KEYS
    return f"{shown}, … and {more} more" if more > 0 else shown


def check_layout(
    file: Path,
    expected: Mapping[str, Sequence[int]],
    found: Mapping[str, Sequence[int]],
    layout: str,
    fix: str,
) -> None:
    """Raise :class:`CheckpointError` unless ``found`` has exactly the keys and shapes of ``expected``."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [
        f"{k} (file {list(found[k])}, model {list(expected[k])})"
        for k in expected
        if k in found and tuple(found[k]) != tuple(expected[k])
    ]
    if not (missing or unexpected or wrong):
        return
    parts = [f"{file} does not match the model built from the configuration:"]
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            parts.append(f"  {len(keys)} {label}: {_list_keys(keys)}")
    parts.append(f"Expected layout: {layout}.")
    parts.append(f"Fix: {fix}")
    raise CheckpointError("\n".join(parts))


def map_official_key(key: str, table: Sequence[tuple[str, str]] = EMA_KEY_MAP) -> str | None:
    """Our key for an official ``ema.safetensors`` key, or ``None`` when no row of ``table`` matches."""
    for pattern, replacement in table:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def _require_files(path: Path, roles: Sequence[str]) -> dict[str, Path]:
    files = {role: path / OFFICIAL_FILES[role] for role in roles}
    absent = [p.name for p in files.values() if not p.is_file()]
    if not path.is_dir() or absent:
        raise CheckpointError(
            f"{path} is not an official BAGEL checkpoint directory: missing {', '.join(absent) or 'the directory'}. "
            f"Expected the files {', '.join(OFFICIAL_FILES.values())} as downloaded from ByteDance-Seed/BAGEL-7B-MoT "
            "(pass load_vae=False to load without ae.safetensors; a directory written by save_pretrained loads "
            "with BagelForConditionalGeneration.from_pretrained instead)."
        )
    return files


WEIGHT_FILES: dict[bool, str] = {False: "model.safetensors", True: "ema.safetensors"}
"""The Bagel weight file of a training folder (the reference's FSDP save): raw weights, or their EMA (``ema``)."""

TABLE_KEYS: dict[str, str] = {
    "max_latent_size": "latent_pos_embed.pos_embed",
    "vit_max_num_patch_per_side": "vit_pos_embed.pos_embed",
}
"""Config field → the position table (our key, ``[side², hidden]``) whose rows give it."""


def resolve_weights(base: Path, weights: str | Path | None = None, ema: bool | None = None) -> Path:
    """The Bagel weight file to load: ``weights`` itself when it is a file; else a file of the ``weights`` folder:
    ``ema.safetensors`` with ``ema=True``, ``model.safetensors`` with ``ema=False``, and with ``ema=None``
    ``model.safetensors`` when present (the reference's default, ``is_ema=False``), else ``ema.safetensors``.
    Without ``weights``: ``base``'s ``ema.safetensors`` (what BAGEL-7B-MoT ships; ``ema=False``: its
    ``model.safetensors``)."""
    folder = Path(weights) if weights is not None else base
    if folder.is_file():
        return folder
    if ema is not None or weights is None:
        names = [WEIGHT_FILES[True if ema is None else ema]]
    else:
        names = [WEIGHT_FILES[False], WEIGHT_FILES[True]]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(
        f"{folder} holds no Bagel weight file: missing {' and '.join(names)}. Expected the BAGEL-7B-MoT download "
        "(ByteDance-Seed/BAGEL-7B-MoT, its ema.safetensors) or, with weights=, the folder of a released checkpoint "
        "(model.safetensors and/or ema.safetensors, e.g. the CUDAOUTOFMEMORY/CLEAR download) or the .safetensors "
        "file itself."
    )


def infer_table_sizes(file: Path, key_map: Sequence[tuple[str, str]] = EMA_KEY_MAP) -> dict[str, int]:
    """``max_latent_size`` / ``vit_max_num_patch_per_side`` read from the position tables' shapes in ``file``
    (square tables: ``side²`` rows); a table the file lacks is left out (the strict load reports it)."""
    sizes: dict[str, int] = {}
    wanted = {table: name for name, table in TABLE_KEYS.items()}
    try:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                name = wanted.get(map_official_key(key, key_map) or "")
                if name is None:
                    continue
                rows = int(handle.get_slice(key).get_shape()[0])
                side = math.isqrt(rows)
                if side * side != rows:
                    raise CheckpointError(
                        f"{file}: {key} has {rows} rows, not a square number, so it is no 2-D position table; "
                        f"pass config_overrides={{'{name}': ...}} or use an unmodified checkpoint."
                    )
                sizes[name] = side
    except SafetensorError as err:
        raise CheckpointError(f"{file} is not a readable safetensors file ({err}); re-download it.") from err
    return sizes


def _read_official_json(path: Path) -> dict[str, dict[str, Any]]:
    files = _require_files(path, ("llm_config", "vit_config"))
    loaded = {}
    for role in ("llm_config", "vit_config"):
        try:
            loaded[role] = json.loads(files[role].read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{files[role]} is not valid JSON ({err}); re-download it.") from err
    return loaded


def read_official_config(
    path: str | Path,
    vae_config: Mapping[str, Any] | str | Path | None = None,
    **overrides: Any,
) -> BagelConfig:
    """The :class:`BagelConfig` of an official directory: its two JSON files + the official loader's overrides.

    Args:
        path: the downloaded directory (its ``config.json`` is ignored, see the module docstring).
        vae_config: diffusers ``AutoencoderKL`` kwargs (mapping, JSON file or directory); ``None`` = FLUX.
        **overrides: further :class:`BagelConfig` fields, e.g. ``max_latent_size`` for a non-official checkpoint.
    """
    loaded = _read_official_json(Path(path))
    return BagelConfig.from_official(
        loaded["llm_config"], loaded["vit_config"], vae_config=load_vae_config(vae_config), **overrides
    )


def _cast(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast floating tensors to ``dtype`` (no copy when it already matches); others are left as stored."""
    return tensor.to(dtype) if tensor.is_floating_point() else tensor


def _ema_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith(f"{VAE_CHILD}.")}


def load_ema_state_dict(
    file: Path,
    expected: Mapping[str, Sequence[int]],
    dtype: torch.dtype,
    device: str | torch.device,
    key_map: Sequence[tuple[str, str]] = EMA_KEY_MAP,
) -> dict[str, torch.Tensor]:
    """Read ``ema.safetensors`` memory-mapped, rename via ``key_map``, check strictly, cast to ``dtype``."""
    fix = (
        "use the unmodified ema.safetensors of BAGEL-7B-MoT with its own llm_config.json/vit_config.json. "
        "The ViT patch embedding must be the 2-D Linear form [hidden, P·P·3] with (py, px, c) columns (from a "
        "Conv2d weight: weight.permute(0, 2, 3, 1).flatten(1)). For a renamed layout pass key_map= with extra rows "
        "(see EMA_KEY_MAP); for other table sizes pass config_overrides= (max_latent_size, "
        "vit_max_num_patch_per_side)."
    )
    try:
        with safe_open(str(file), framework="pt", device=str(device)) as handle:
            names = {}
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                names[map_official_key(key, key_map) or f"<no key_map row matches> {key}"] = key
            found = {ours: handle.get_slice(key).get_shape() for ours, key in names.items()}
            check_layout(file, expected, found, EMA_LAYOUT, fix)
            return {ours: _cast(handle.get_tensor(key), dtype) for ours, key in names.items()}
    except SafetensorError as err:
        raise CheckpointError(f"{file} is not a readable safetensors file ({err}); re-download it.") from err


def load_vae_state_dict(
    file: Path,
    vae: torch.nn.Module,
    vae_config: Mapping[str, Any],
    dtype: torch.dtype,
    device: str | torch.device,
) -> dict[str, torch.Tensor]:
    """Read ``ae.safetensors`` (BFL layout), check it against ``vae``, convert with diffusers' converter."""
    expected = expected_bfl_shapes(vae, len(vae_config["block_out_channels"]))
    fix = (
        "use the unmodified ae.safetensors of BAGEL-7B-MoT (the FLUX.1 VAE); for another VAE pass vae_config= "
        "with its diffusers AutoencoderKL config."
    )
    try:
        with safe_open(str(file), framework="pt", device=str(device)) as handle:
            keys = list(handle.keys())
            prefix, stripped = strip_vae_prefix(keys)
            found = {s: handle.get_slice(k).get_shape() for s, k in zip(stripped, keys, strict=True)}
            check_layout(file, expected, found, AE_LAYOUT, fix)
            bfl = {s: _cast(handle.get_tensor(prefix + s), dtype) for s in stripped}
    except SafetensorError as err:
        raise CheckpointError(f"{file} is not a readable safetensors file ({err}); re-download it.") from err
    return bfl_to_diffusers(bfl, vae_config)


def _fresh_vae(vae: torch.nn.Module, dtype: torch.dtype, device: str | torch.device) -> None:
    """Give a meta-built VAE real, default-initialised weights (``load_vae=False``)."""
    vae.to_empty(device=device)
    for module in vae.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    vae.to(dtype)


def _assert_materialized(model: torch.nn.Module) -> None:
    on_meta = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if on_meta:
        raise CheckpointError(
            f"after loading, {len(on_meta)} tensors are still on the meta device: {_list_keys(on_meta)}. "
            "They are neither in the checkpoint nor computed at construction; the model class must create them "
            "as buffers in __init__ (please report this as a bug)."
        )


def from_official_checkpoint(
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    *,
    weights: str | Path | None = None,
    ema: bool | None = None,
    vae_config: Mapping[str, Any] | str | Path | None = None,
    device: str | torch.device = "cpu",
    load_vae: bool = True,
    vae_dtype: torch.dtype | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    key_map: Sequence[tuple[str, str]] = EMA_KEY_MAP,
) -> BagelForConditionalGeneration:
    """Build :class:`BagelForConditionalGeneration` from the official download directory, unchanged.

    Args:
        path: directory with ``llm_config.json``, ``vit_config.json``, ``ae.safetensors`` (and ``ema.safetensors``
            unless ``weights`` points elsewhere): the BAGEL-7B-MoT download.
        dtype: dtype of the Bagel weights (the file is bf16; ``torch.float32`` upcasts).
        weights: the weights to load on top of ``path``'s configs, VAE and tokenizer: a folder as the reference
            saves it (``model.safetensors`` and/or ``ema.safetensors``, Bagel keys; e.g. the CUDAOUTOFMEMORY/CLEAR
            download) or one ``.safetensors`` file. ``None``: ``path``'s own ``ema.safetensors``.
        ema: which file of a folder (:func:`resolve_weights`): ``True`` ``ema.safetensors``, ``False``
            ``model.safetensors``, ``None`` ``model.safetensors`` when present, else ``ema.safetensors``.
        vae_config: diffusers ``AutoencoderKL`` config (mapping, JSON file or directory); ``None`` = FLUX.1 VAE.
        device: where the weights are read to (``safe_open`` reads straight to that device).
        load_vae: ``False`` skips ``ae.safetensors`` and leaves the VAE with default random weights.
        vae_dtype: dtype of the VAE; ``None`` uses ``dtype`` so the whole model has one dtype. The file is fp32;
            pass ``torch.float32`` to keep it (diffusers' FLUX config sets ``force_upcast``).
        config_overrides: extra :class:`BagelConfig` fields for non-official sizes. ``max_latent_size`` and
            ``vit_max_num_patch_per_side`` default to the sizes of the tables in the weight file
            (:func:`infer_table_sizes`), and the image transforms are clipped to them.
        key_map: ``ema.safetensors`` key pattern → our key rows (:data:`EMA_KEY_MAP`); extend it for a checkpoint
            whose modules were renamed.

    With ``dtype`` equal to the file's (bf16) and ``device="cpu"``, the Bagel parameters are copy-on-write views of
    the memory-mapped file: loading takes well under a second and pages are read on first use (keep the file in
    place while the model lives). Another dtype or device copies each tensor once.

    Raises:
        CheckpointError: a file is missing or unreadable, or its keys/shapes differ from the configuration.
    """
    path = Path(path)
    files = _require_files(path, ("llm_config", "vit_config", *(("vae",) if load_vae else ())))
    weight_file = resolve_weights(path, weights, ema)
    vae_kwargs = load_vae_config(vae_config)
    loaded = _read_official_json(path)
    overrides = {**infer_table_sizes(weight_file, key_map), **dict(config_overrides or {})}
    config = BagelConfig.from_official(
        loaded["llm_config"], loaded["vit_config"], vae_config=vae_kwargs, **overrides
    )
    with init_empty_weights(include_buffers=False):
        model = BagelForConditionalGeneration(config)
    state = load_ema_state_dict(weight_file, _ema_shapes(model), dtype, device, key_map)
    vae = getattr(model, VAE_CHILD)
    if load_vae:
        converted = load_vae_state_dict(files["vae"], vae, vae_kwargs, vae_dtype or dtype, device)
        state |= {f"{VAE_CHILD}.{k}": v for k, v in converted.items()}
    else:
        logger.warning(
            "load_vae=False: the VAE of %s keeps random weights; do not encode or decode with it.", path
        )
        _fresh_vae(vae, vae_dtype or dtype, device)
        state |= {f"{VAE_CHILD}.{k}": v for k, v in vae.state_dict().items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the converted weights do not fit the model ({err}).") from err
    _assert_materialized(model)
    model.config.dtype = dtype
    return model.to(device).eval()


def load_official_tokenizer(path: str | Path, **kwargs: Any) -> PreTrainedTokenizerBase:
    """The tokenizer of an official directory (the Qwen2.5 files), offline.

    The class comes from ``tokenizer_config.json`` (``Qwen2Tokenizer`` for BAGEL-7B-MoT), or is the generic fast
    tokenizer over ``tokenizer.json``. ``AutoTokenizer`` is avoided on purpose: it would also read the stale
    ``config.json`` (a model type no transformers class knows). ``kwargs`` go to ``from_pretrained``.
    """
    path = Path(path)
    config_file = path / "tokenizer_config.json"
    name = None
    if config_file.is_file():
        try:
            name = json.loads(config_file.read_text(encoding="utf-8")).get("tokenizer_class")
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{config_file} is not valid JSON ({err}); re-download it.") from err
    cls = tokenizer_class_from_name(name) if name else None
    if cls is None and (path / "tokenizer.json").is_file():
        cls = PreTrainedTokenizerFast
    if cls is None:
        raise CheckpointError(
            f"{path} holds no usable tokenizer (tokenizer_class={name!r}, tokenizer.json "
            f"{'present' if (path / 'tokenizer.json').is_file() else 'absent'}); download the tokenizer files "
            "(tokenizer.json, vocab.json, merges.txt, tokenizer_config.json) with the checkpoint."
        )
    try:
        return cls.from_pretrained(str(path), local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"could not load the tokenizer in {path} ({err}); re-download its files."
        ) from err
