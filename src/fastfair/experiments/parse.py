"""Parsers of the values of a grid: radii and seeds (lists and ranges), names, training settings, solver options.

Each parser takes a raw value (from YAML, TOML, JSON or the command line) and ``where`` -- the value's place in
the config, e.g. ``datasets[1].radii`` -- and returns the value in canonical form, or raises a one-line
:class:`~fastfair.errors.FastfairError` that starts with ``where``. They are pure: no files, no data.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..config import check_setting
from ..errors import FastfairError, require
from ..vocabulary import BASELINE, SOLVERS, round_radius

#: Most values one ``start:stop[:step]`` range may hold (its length is computed before it is built).
MAX_RANGE_VALUES = 100_000


def parse_radii(value: Any, where: str = "radii") -> tuple[float, ...]:
    """Radii from a number, a ``"start:stop:step"`` range (stop included), or a list of either.

    Each radius is positive and finite, and canonical (:func:`fastfair.vocabulary.round_radius`), so that
    0.1 + 3·0.01 from a range and 0.13 written out are the same radius; no duplicates.
    """
    return _parse_values(value, where, _radius, _float_range)


def parse_seeds(value: Any, where: str = "seeds") -> tuple[int, ...]:
    """Seeds from an integer, a ``"start:stop"`` range (stop excluded), or a list of either; no duplicates."""
    return _parse_values(value, where, _seed, _int_range)


def _parse_values(
    value: Any, where: str, one: Callable[[Any, str], Any], many: Callable[[str, str], list[Any]]
) -> tuple[Any, ...]:
    """A value or a non-empty list of values, each parsed by ``one``, or by ``many`` when it is a range string
    (it contains ``:``); no duplicates."""
    items = value if isinstance(value, (list, tuple)) else [value]
    require(len(items) > 0, f"{where} must not be empty")
    out: list[Any] = []
    for item in items:
        if isinstance(item, str) and ":" in item:
            out.extend(many(item, where))
        else:
            out.append(one(item, where))
    no_duplicates(out, where)
    return tuple(out)


def _from_text(item: Any, where: str, convert: Callable[[str], Any], expected: str) -> Any:
    """A string item read by ``convert`` (``float`` or ``int``: YAML and the command line may give numbers as
    text), any other item as it is."""
    if not isinstance(item, str):
        return item
    try:
        return convert(item)
    except ValueError:
        raise FastfairError(f"{where}: {item!r} is not {expected}") from None


def _radius(item: Any, where: str) -> float:
    item = _from_text(item, where, float, "a number or a start:stop:step range")
    require(
        isinstance(item, (int, float)) and not isinstance(item, bool),
        f"{where} must be numbers, got {item!r}",
    )
    value = float(item)
    require(math.isfinite(value) and value > 0, f"{where}: radius must be positive and finite, got {item!r}")
    return round_radius(value)


def _float_range(text: str, where: str) -> list[float]:
    parts = text.split(":")
    require(
        len(parts) == 3, f"{where}: malformed range {text!r}; expected start:stop:step, e.g. 0.10:0.20:0.01"
    )
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise FastfairError(f"{where}: malformed range {text!r}; expected start:stop:step numbers") from None
    require(
        all(math.isfinite(v) for v in (start, stop, step)) and step > 0 and stop >= start,
        f"{where}: range {text!r} needs finite start <= stop and step > 0",
    )
    steps = (stop - start) / step  # may overflow to inf: compare before converting to an integer
    count = math.floor(steps + 1e-9) + 1 if steps < MAX_RANGE_VALUES else MAX_RANGE_VALUES + 1
    require(
        count <= MAX_RANGE_VALUES,
        f"{where}: range {text!r} has more than {MAX_RANGE_VALUES:,} values",
    )
    return [_radius(start + k * step, where) for k in range(count)]


def _seed(item: Any, where: str) -> int:
    item = _from_text(item, where, int, "an integer or a start:stop range")
    require(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0,
        f"{where} must be non-negative integers, got {item!r}",
    )
    return int(item)


def _int_range(text: str, where: str) -> list[int]:
    try:
        start, stop = (int(p) for p in text.split(":"))
    except ValueError:
        raise FastfairError(f"{where}: malformed range {text!r}; expected start:stop, e.g. 0:5") from None
    require(0 <= start < stop, f"{where}: range {text!r} needs 0 <= start < stop")
    require(
        stop - start <= MAX_RANGE_VALUES,
        f"{where}: range {text!r} has {stop - start:,} values, more than {MAX_RANGE_VALUES:,}",
    )
    return list(range(start, stop))


def parse_names(value: Any, where: str, allowed: Sequence[str], kind: str) -> tuple[str, ...]:
    """A name or a non-empty list of names, each one of ``allowed`` (a ``kind``, e.g. "solver"); no duplicates."""
    items = [value] if isinstance(value, str) else value
    require(isinstance(items, (list, tuple)), f"{where} must be a list of names, got {value!r}")
    require(len(items) > 0, f"{where} must not be empty")
    for item in items:
        require(isinstance(item, str), f"{where} must be names, got {item!r}")
        require(item in allowed, f"{where}: unknown {kind} {item!r}; choose from {', '.join(allowed)}")
    no_duplicates(items, where)
    return tuple(items)


def no_duplicates(items: Sequence[Any], where: str) -> None:
    """Refuse a list that holds a value twice."""
    seen = set()
    for item in items:
        require(item not in seen, f"{where}: duplicate value {item!r}")
        seen.add(item)


def check_keys(obj: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse a key that is not a string or not ``allowed``, suggesting the closest allowed key."""
    allowed = list(allowed)
    for key in obj:
        require(isinstance(key, str), f"{where}: keys must be strings, got {key!r}")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; allowed: {', '.join(allowed)}"
            raise FastfairError(f"{where}: unknown key {key!r}{hint}")


def parse_setting(key: str, value: Any, where: str, *, dtype: str = "float32") -> Any:
    """One training setting of a config file, checked by :func:`fastfair.config.check_setting` and named by
    its place ``where`` (e.g. ``datasets[0].batch_size``); ``dtype`` bounds the radius and the learning rate.

    A number written ``1e-2`` reaches us as a string (YAML 1.1 reads a float only with a dot in its mantissa):
    for the real-valued ``lr`` and ``clean_weight`` such a string is read as the number it spells.
    """
    if key in ("lr", "clean_weight") and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return check_setting(key, value, dtype=dtype, name=where)


def parse_solver_options(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """Per-solver options: a mapping of robust solver name to a mapping of option name (``-`` read as ``_``) to
    plain value. Whether a solver takes an option is checked later, when the cells are validated."""
    require(isinstance(value, Mapping), f"{where} must be a mapping of solver name to options, got {value!r}")
    out: dict[str, dict[str, Any]] = {}
    for solver, options in value.items():
        require(solver in SOLVERS, f"{where}: unknown solver {solver!r}; choose from {', '.join(SOLVERS)}")
        require(solver != BASELINE, f"{where}: solver 'none' takes no options")
        require(
            isinstance(options, Mapping), f"{where}.{solver} must be a mapping of options, got {options!r}"
        )
        for key in options:
            require(isinstance(key, str), f"{where}.{solver}: option names must be strings, got {key!r}")
        out[solver] = {k.replace("-", "_"): plain_value(v) for k, v in options.items()}
    return out


def plain_value(value: Any) -> Any:
    """Check that an option value is plain JSON data (so that it hashes and travels); return it."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise FastfairError(
            f"option value {value!r} is not plain data (numbers, strings, booleans, lists)"
        ) from None
    return value
