"""Griffe extension: show private constants' values, not their names, as defaults.

``EnkryptClient(max_retries=DEFAULT_MAX_RETRIES)`` reads well in the code, but
``DEFAULT_MAX_RETRIES`` lives in a private module, so the API reference shows its
value instead (``max_retries: int = 2``). A default that names a private object and
cannot be replaced this way is logged as a warning, which fails ``mkdocs build
--strict``. Loaded by mkdocs.yml (mkdocstrings' ``extensions`` option).
"""

from __future__ import annotations

import logging
from typing import Any

from griffe import Attribute, Expr, ExprName, Extension, Function, GriffeLoader

# Under "mkdocs.", so that a warning counts for `mkdocs build --strict`.
logger = logging.getLogger("mkdocs.plugins.griffe_public_defaults")


def _is_private(path: str, loader: GriffeLoader) -> bool:
    """Whether a path is in a private module and not re-exported by its package."""
    package, *parts = path.split(".")
    if not any(part.startswith("_") for part in parts):
        return False
    root = loader.modules_collection.members.get(package)
    exports = root.exports if root is not None else None
    return parts[-1] not in {str(name) for name in exports or ()}


class PublicDefaults(Extension):
    """Replace each default naming a private module's constant by its value."""

    def on_function(
        self, *, func: Function, loader: GriffeLoader, **kwargs: Any
    ) -> None:
        """Rewrite the defaults of one function once the object tree is complete."""
        for parameter in func.parameters:
            default = parameter.default
            if isinstance(default, ExprName) and _is_private(
                default.canonical_path, loader
            ):
                try:
                    target = loader.modules_collection.get_member(
                        default.canonical_path
                    )
                except KeyError:
                    target = None
                if isinstance(target, Attribute) and target.value is not None:
                    parameter.default = default = target.value
            if not isinstance(default, Expr) or not func.is_public:
                continue
            private = [
                name.canonical_path
                for name in default.iterate(flat=True)
                if isinstance(name, ExprName)
                and _is_private(name.canonical_path, loader)
            ]
            if private:
                logger.warning(
                    "%s: the default of %s names %s, not public",
                    func.path,
                    parameter.name,
                    ", ".join(private),
                )
