"""The small remote-code modules an export writes next to the weights, and the ``auto_map`` pointing at them.

Each module only checks that clear-plugins is installed (at least :func:`minimum_version`) and re-exports the
installed class; ``config.json``'s ``auto_map`` names them, so ``AutoConfig`` / ``AutoModel.from_pretrained(...,
trust_remote_code=True)`` work wherever clear-plugins is installed, without the user importing it. With
clear-plugins imported, the ``AutoConfig.register`` / ``AutoModel.register`` calls of the backbone make the remote
code unnecessary (transformers then prefers the registered classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from clear_plugins.errors import ClearConfigError

CONFIG_MODULE = "configuration_clear"
"""File stem of the remote configuration module written into an export."""

MODEL_MODULE = "modeling_clear"
"""File stem of the remote model module written into an export."""

TEMPLATE = "remote_module.py.jinja"


@dataclass(frozen=True)
class RemoteModule:
    """One remote-code module: its file stem, the auto class it serves, and the installed class it re-exports."""

    stem: str
    auto_class: str
    role: str
    cls: type

    @property
    def filename(self) -> str:
        """The file name written into the export folder."""
        return f"{self.stem}.py"

    @property
    def reference(self) -> str:
        """The ``auto_map`` value: ``module.ClassName``."""
        return f"{self.stem}.{self.cls.__name__}"


def minimum_version() -> str:
    """The clear-plugins version the remote code requires: the version that exported (the classes it re-exports
    are those of this version)."""
    from clear_plugins import __version__

    return __version__


def auto_model_class(config: Any) -> type:
    """The class ``AutoModel`` maps ``config``'s type to; it must carry the CLEAR inference API."""
    from transformers import AutoModel

    from clear_plugins.hub_cards.inference import ClearInferenceMixin

    try:
        cls = AutoModel._model_mapping[type(config)]
    except KeyError as err:
        raise ClearConfigError(
            f"no AutoModel class is registered for {type(config).__name__} (model_type "
            f"{getattr(config, 'model_type', None)!r}); register one with AutoModel.register(ConfigClass, "
            "ModelClass), where ModelClass subclasses clear_plugins.hub_cards.inference.ClearInferenceMixin."
        ) from err
    if not issubclass(cls, ClearInferenceMixin):
        raise ClearConfigError(
            f"AutoModel maps {type(config).__name__} to {cls.__name__}, which lacks the CLEAR inference API; "
            "register a subclass of ClearInferenceMixin and the model class instead."
        )
    return cls


def remote_modules(config: Any) -> tuple[RemoteModule, RemoteModule]:
    """The configuration and model modules of an export of a model with this ``config``."""
    return (
        RemoteModule(CONFIG_MODULE, "AutoConfig", "configuration", type(config)),
        RemoteModule(MODEL_MODULE, "AutoModel", "model", auto_model_class(config)),
    )


def names_remote_modules(auto_map: Any) -> bool:
    """Whether an ``auto_map`` points at the modules an export writes."""
    stems = {CONFIG_MODULE, MODEL_MODULE}
    return isinstance(auto_map, dict) and any(str(v).split(".")[0] in stems for v in auto_map.values())


def render_module(module: RemoteModule) -> str:
    """The source of one remote-code module (rendered from ``templates/remote_module.py.jinja``)."""
    import jinja2

    from clear_plugins import __version__

    text = resources.files(__package__).joinpath("templates", TEMPLATE).read_text(encoding="utf-8")
    return jinja2.Template(text, keep_trailing_newline=True, undefined=jinja2.StrictUndefined).render(
        exported_with=__version__,
        min_version=minimum_version(),
        auto_class=module.auto_class,
        role=module.role,
        module=module.cls.__module__,
        class_name=module.cls.__name__,
    )


def write_remote_code(config: Any, folder: Path) -> dict[str, str]:
    """Write the remote modules into ``folder``; return the ``auto_map`` to store in ``config.json``."""
    auto_map = {}
    for module in remote_modules(config):
        (folder / module.filename).write_text(render_module(module), encoding="utf-8")
        auto_map[module.auto_class] = module.reference
    return auto_map
