"""One way for a package to re-export names without importing them: the attribute loads on first use.

A package ``__init__`` that re-exports from modules which import Keras (``cnnkit``, ``cnnkit.models``,
``cnnkit.engines``, ``cnnkit.server``) would otherwise load TensorFlow as soon as anything in the package
is imported, and every late import elsewhere would be for nothing. So each such ``__init__`` says where
its names live and lets :func:`attach` write the module's ``__getattr__``, ``__dir__`` and ``__all__``
(PEP 562, as scientific Python's ``lazy_loader`` does)::

    __getattr__, __dir__, __all__ = attach(__name__, {"build_model": "cnnkit.models.build"})

Type checkers and readers see the real imports under ``if TYPE_CHECKING:`` beside it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def attach(package: str, names: Mapping[str, str], *,
           eager: tuple[str, ...] = ()) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``, whose ``names`` map to their modules.

    Args:
        package: the package's ``__name__``.
        names: public name -> the module that defines it (``"module:attribute"`` when the two differ); a
            name that is the module's own last part (``"explain": "cnnkit.explain"``) is that module.
        eager: names the package defines itself (constants), listed in ``__all__`` too.

    Example:
        >>> getattr_, dir_, all_ = attach("pkg", {"sqrt": "math", "root": "math:sqrt"})
        >>> getattr_("root")(9.0), all_
        (3.0, ['root', 'sqrt'])
    """
    targets = dict(names)
    everything = sorted({*targets, *eager})

    def __getattr__(name: str) -> Any:
        if name not in targets:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = targets[name].partition(":")
        loaded = importlib.import_module(module)
        value = loaded if not attribute and module.rpartition(".")[2] == name else getattr(loaded, attribute or name)
        owner = sys.modules.get(package)
        if owner is not None:
            setattr(owner, name, value)  # the next lookup is an ordinary attribute
        return value

    def __dir__() -> list[str]:
        return list(everything)

    return __getattr__, __dir__, everything
