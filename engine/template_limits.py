"""Bounds on what one template render may build and how long it may take.

Jinja's sandbox stops a template from reaching Python's internals, not from
building a gigabyte (``'a' * 10**9``, ``'x' | center(10**9)``, a ``replace``
bomb, ``10 ** 10 ** 10``) or looping for hours (nested ``range`` loops, macros
that call themselves twice). Every such operation is checked *before* it
allocates, where the size can be known in advance, and every value a render
produces is checked after: nothing larger than :attr:`Limits.max_size`
characters (or items) is built, and a render that takes longer than
:attr:`Limits.seconds` is stopped. Either fails as a clean ``template`` error.

The time budget is a per-thread trace function that is active only while a
compiled template runs and only counts lines of template code (``<template>``),
so lookups rendered without Jinja cost nothing. It is not installed when another
tracer (a debugger, coverage) is active.

Rendered values must be JSON data: ``str``, ``int`` (64-bit), finite ``float``,
``bool``, ``None``, lists and mappings with string keys. A macro, a class or any
other object is a template error, never a ``repr`` in a request.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

__all__ = ["Limits", "LimitExceeded", "NotData", "limits_from_env", "budget", "check_data",
           "check_binop", "check_call", "guard_filter", "sized"]

#: Integers beyond the signed 64-bit range do not survive JSON in most of the services' clients.
MAX_INT = 2**63 - 1
#: A power may not compute an integer of more bits than this (then it is refused, not computed).
MAX_POWER_BITS = 4096
#: Digit runs this long in a format string are widths or precisions that build huge strings.
_WIDE = re.compile(r"\d{8,}")
#: String methods whose integer argument is the length of what they build.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
#: Filters whose integer arguments are the length of what they build.
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate"})


class Limits(NamedTuple):
    """``max_size``: characters of a string, items of a list (10 MB by default);
    ``seconds``: the time one render may take."""

    max_size: int = 10_000_000
    seconds: float = 0.5


def limits_from_env(environ: Mapping[str, str] = os.environ) -> Limits:
    """The limits, changed by ``RUNBOOK_TEMPLATE_MAX_SIZE`` and ``RUNBOOK_TEMPLATE_SECONDS``."""
    default = Limits()
    try:
        size = int(environ.get("RUNBOOK_TEMPLATE_MAX_SIZE", default.max_size))
        seconds = float(environ.get("RUNBOOK_TEMPLATE_SECONDS", default.seconds))
    except ValueError:
        return default
    return Limits(max(size, 1), seconds if seconds > 0 else default.seconds)


class LimitExceeded(Exception):
    """A render that would build too much or take too long."""


class NotData(Exception):
    """A rendered value that is not JSON data."""


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else 0


def sized(value: Any, limits: Limits) -> Any:
    """``value``, unless it is a string or collection over the limit."""
    if _size(value) > limits.max_size:
        raise LimitExceeded(f"a value of {_size(value):,} characters or items is over the limit of "
                            f"{limits.max_size:,} (RUNBOOK_TEMPLATE_MAX_SIZE)")
    return value


def _refuse(what: str, limits: Limits) -> LimitExceeded:
    return LimitExceeded(f"{what} would build more than {limits.max_size:,} characters or items "
                         "(RUNBOOK_TEMPLATE_MAX_SIZE)")


def _check_width(value: Any, limits: Limits, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > limits.max_size:
        raise _refuse(what, limits)


def _check_format(fmt: Any, limits: Limits, what: str) -> None:
    if isinstance(fmt, str) and _WIDE.search(fmt):
        raise _refuse(what, limits)


def _check_replace(text: Any, old: Any, new: Any, count: Any, limits: Limits) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * (len(new) - len(old)) > limits.max_size:
        raise _refuse("replace()", limits)


def check_binop(operator: str, left: Any, right: Any, limits: Limits) -> None:
    """Refuse ``*``, ``**``, ``+`` and ``%`` whose result would be over the limits."""
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if _size(seq) and isinstance(n, int) and _size(seq) * n > limits.max_size:
                raise _refuse(f"repeating a value {n:,} times", limits)
        if isinstance(left, int) and isinstance(right, int) and \
                left.bit_length() + right.bit_length() > MAX_POWER_BITS:
            raise LimitExceeded(f"a product of more than {MAX_POWER_BITS} bits is refused")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0 and \
                right * math.log2(abs(left)) > MAX_POWER_BITS:
            raise LimitExceeded(f"a power of more than {MAX_POWER_BITS} bits is refused")
    elif operator == "+":
        if _size(left) and _size(right) and _size(left) + _size(right) > limits.max_size:
            raise _refuse("joining two values", limits)
    elif operator == "%" and isinstance(left, str):
        _check_format(left, limits, "a % format with this width")
        for arg in right if isinstance(right, tuple) else (right,):
            _check_width(arg, limits, "a % format with this width")


def check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], limits: Limits) -> None:
    """Refuse a call of a string method that would build more than the limit."""
    obj = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format in a function of its own
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(obj, "__name__", "")
    if name in _WIDTH_METHODS:
        for arg in (*args, *kwargs.values()):
            _check_width(arg, limits, f"{name}()")
    elif name in ("format", "format_map"):
        _check_format(owner, limits, f"{name}() with this width")
        for arg in (*args, *kwargs.values()):
            _check_width(arg, limits, f"{name}() with this width")
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"), limits)


def guard_filter(name: str, func: Callable[..., Any], limits: Limits) -> Callable[..., Any]:
    """``func`` (a filter) refusing arguments that build too much, and results over the limit."""

    skip = 1 if hasattr(func, "jinja_pass_arg") else 0  # Jinja passes a context or environment first

    def guarded(*args: Any, **kwargs: Any) -> Any:
        value, params = (args[skip], args[skip + 1:]) if len(args) > skip else (None, ())
        if name in _WIDTH_FILTERS:
            for arg in (*params, *kwargs.values()):
                _check_width(arg, limits, f"the {name} filter")
        elif name == "replace" and len(params) >= 2:
            _check_replace(value, params[0], params[1], params[2] if len(params) > 2 else kwargs.get("count"),
                           limits)
        elif name == "format":
            _check_format(value, limits, "the format filter with this width")
            for arg in (*params, *kwargs.values()):
                _check_width(arg, limits, "the format filter with this width")
        return sized(func(*args, **kwargs), limits)

    for attr in ("jinja_pass_arg", "__name__", "__doc__"):  # how Jinja knows to pass the context
        if hasattr(func, attr):
            try:
                setattr(guarded, attr, getattr(func, attr))
            except (AttributeError, TypeError):
                pass
    return guarded


def check_data(value: Any, limits: Limits, _depth: int = 0) -> Any:
    """``value`` as JSON data (tuples become lists), or :class:`NotData` / :class:`LimitExceeded`."""
    if value is None or isinstance(value, (str, bool)):
        return sized(value, limits)
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise NotData("an integer outside the 64-bit range, which JSON clients cannot carry exactly "
                          "(render it as text: {{ n | string }})")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotData(f"{value!r}, which is not a JSON number")
        return value
    if _depth > 100:
        raise NotData("a value nested more than 100 levels deep")
    if isinstance(value, (list, tuple)):
        sized(value, limits)
        return [check_data(v, limits, _depth + 1) for v in value]
    if isinstance(value, dict):
        sized(value, limits)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise NotData(f"a mapping with the key {k!r}, which is not a string")
            out[k] = check_data(v, limits, _depth + 1)
        return out
    kind = type(value).__name__
    raise NotData(f"a {kind} object, which is not data (a string, number, boolean, null, list or mapping)")


@contextmanager
def budget(limits: Limits) -> Iterator[None]:
    """Stop template code running in this thread for longer than ``limits.seconds``."""
    if sys.gettrace() is not None:  # a debugger or coverage is tracing: leave it alone
        yield
        return
    deadline = time.monotonic() + limits.seconds
    lines = 0

    def local(frame: Any, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
            if lines & 1023 == 0 and time.monotonic() > deadline:
                raise LimitExceeded(f"the template ran for more than {limits.seconds:g}s "
                                    "(RUNBOOK_TEMPLATE_SECONDS)")
        return local

    def calls(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == "<template>" else None

    sys.settrace(calls)
    try:
        yield
    finally:
        sys.settrace(None)
