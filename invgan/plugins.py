"""User extensions: modules that register methods and operators when imported.

A plugin is any importable module that calls ``invgan.register_method`` and/or
``invgan.register_physics`` at import time. invgan imports, once per process, before it lists or
looks up a name:

- the modules named in the environment variable ``INVGAN_PLUGINS`` (comma-separated), and
- the entry points of the group ``invgan.plugins`` of installed packages
  (``[project.entry-points."invgan.plugins"] mine = "my_package.invgan_plugin"``).

So a registered method shows in ``invgan cs --help``, is accepted by ``invgan cs --methods`` and
runs in sweeps.
"""

from __future__ import annotations

import importlib
import os

from invgan.errors import InvganError

ENV = "INVGAN_PLUGINS"
_loaded: set[str] = set()


def load_plugins() -> list[str]:
    """Import every plugin not yet imported; returns the names imported so far."""
    from importlib.metadata import entry_points

    names = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    for name in names:
        if name in _loaded:
            continue
        _loaded.add(name)
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise InvganError(f"plugin {name!r} (from {ENV}) failed to import: {type(exc).__name__}: {exc}") from None
    for ep in entry_points(group="invgan.plugins"):
        key = f"entry point {ep.name}"
        if key in _loaded:
            continue
        _loaded.add(key)
        try:
            ep.load()
        except Exception as exc:
            raise InvganError(f"plugin entry point {ep.name!r} ({ep.value}) failed to import: {exc}") from None
    return sorted(_loaded)
