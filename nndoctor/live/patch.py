"""Wrapping a method for the Monitor's lifetime, where PyTorch has no global hook (``Tensor.backward``,
``Optimizer.__init__``): the wrapper calls ``before``/``after`` with the same arguments and changes nothing
else; the returned function puts the original back."""
from __future__ import annotations

import functools
from typing import Any, Callable


def wrap(owner: type, name: str, *, before: Callable | None = None, after: Callable | None = None) -> Callable[[], None]:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            before(*args, **kwargs)
        result = original(*args, **kwargs)
        if after is not None:
            after(*args, **kwargs)
        return result

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, original)
