"""Old call forms kept working for one release, with a DeprecationWarning."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def positional_deprecated(*old: str, renamed: dict[str, str] | None = None) -> Callable[[F], F]:
    """Accept the parameters named in ``old`` positionally after the first one, as the
    function took them before they became keyword-only, and old keyword names in
    ``renamed`` (``{old: new}``); both warn with a :class:`DeprecationWarning`."""
    renamed = renamed or {}

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(data: Any, *args: Any, **kwargs: Any) -> Any:
            if len(args) > len(old):
                raise TypeError(f"{fn.__name__}() takes 1 positional argument; pass the "
                                "others by keyword")
            if args:
                names = old[:len(args)]
                warnings.warn(f"{fn.__name__}(): pass {', '.join(names)} by keyword "
                              "(positional use is deprecated)", DeprecationWarning,
                              stacklevel=2)
                for name, value in zip(names, args, strict=True):
                    if name in kwargs:
                        raise TypeError(f"{fn.__name__}() got two values for {name!r}")
                    kwargs[name] = value
            for before, after in renamed.items():
                if before in kwargs:
                    warnings.warn(f"{fn.__name__}(): {before}= is now {after}=",
                                  DeprecationWarning, stacklevel=2)
                    kwargs[after] = kwargs.pop(before)
            return fn(data, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
