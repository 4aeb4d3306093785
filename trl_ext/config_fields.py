"""The field table of ``ClearSFTConfig`` that ``clear-plugins train sft`` turns into flags without importing TRL.

Regenerate after changing the config or upgrading TRL/transformers (a test fails when it is stale)::

    python -m clear_plugins.trl_ext.config_fields
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).resolve().parents[1] / "clear_plugins" / "resources" / "sft_config_fields.json"
"""Where the table lives in the source tree (``clear_plugins/resources``)."""


def _kind(annotation: Any) -> str:
    base = annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        base = args[0] if args else annotation
    if base is bool:
        return "bool"
    if typing.get_origin(base) is list or base is list:
        return "list"
    if base in (int, float):
        return base.__name__
    return "str"


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return None
    value = getattr(value, "value", value)
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value


def field_table(config_class: type | None = None) -> list[dict[str, Any]]:
    """One entry per init field of ``config_class`` (default ``ClearSFTConfig``): CLEAR's own fields first."""
    if config_class is None:
        from clear_plugins.trl_ext.sft_config import ClearSFTConfig as config_class
    hints = typing.get_type_hints(config_class)
    own = {
        f.name
        for f in dataclasses.fields(config_class)
        if f.name in vars(config_class).get("__annotations__", {})
    }
    rows = []
    for field in dataclasses.fields(config_class):
        if not field.init or field.name.startswith("_"):
            continue
        rows.append(
            {
                "name": field.name,
                "kind": _kind(hints.get(field.name, str)),
                "default": _default(field),
                "help": field.metadata.get("help", ""),
                "clear": field.name in own,
            }
        )
    return sorted(rows, key=lambda row: not row["clear"])


def write_table(path: Path = TABLE_PATH) -> Path:
    """Write the current :func:`field_table` as JSON."""
    path.write_text(json.dumps(field_table(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_table())
