"""Backbone adapters: the contract (:mod:`.base`) and the built-in backbones (one sub-package each).

Nothing heavy is imported here; ``clear_plugins.adapters.bagel`` is imported only when it is asked for.
"""
