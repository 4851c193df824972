"""Layered configuration: a dataclass schema, then YAML files, then ``key=value`` overrides.

Every command that takes a config builds it the same way::

    cfg = load_config(SampleConfig, files=["configs/sample/default.yaml", "my.yaml"],
                      overrides=["steps=30", "guidance=9"])

A YAML file may start from another with ``_base_: other.yaml`` (base ->
experiment). The dataclass is the schema: unknown keys are rejected with the closest known
key suggested, values are type-checked by OmegaConf, and the result is a plain
dataclass instance (``__post_init__`` validation included). The resolved config
is written next to every output with :func:`save_config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from vidgen.errors import ConfigError, InputError, TextEncodingError
from vidgen.io.text import read_text

T = TypeVar("T")

_CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"

# Integers beyond int64 fit no tensor, numpy array or most JSON readers.
INT_MAX = 2**63 - 1
# torch.Generator.manual_seed takes 0..2**64-1, and jobs derive seeds by adding small offsets (seed + j per
# --num-videos copy, seed + i per story clip): seeds are kept to int64, so every derived seed still fits.
SEED_MAX = INT_MAX


def number_problem(value: Any, *, integer: bool = False, minimum: float | None = None, maximum: float | None = None,
                   above: float | None = None) -> str | None:
    """What is wrong with ``value`` as a setting's number (``"must be an integer >= 1"``), or ``None`` when it fits.

    Every number must be finite (no NaN, no infinity) and, for integers, within int64.

    Args:
        value: the number (a bool is not one).
        integer: it must be an integer.
        minimum, maximum: inclusive bounds; ``above``: an exclusive lower bound.
    """
    kind = "an integer" if integer else "a finite number"
    if maximum is None and isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_MAX:
        maximum = INT_MAX  # named only where it was passed
    if minimum is not None and maximum is not None:
        wanted = f"must be {kind} from {_bound(minimum)} to {_bound(maximum)}"
    else:
        bounds = [f"{sign} {_bound(bound)}" for sign, bound in ((">=", minimum), (">", above), ("<=", maximum)) if bound is not None]
        wanted = f"must be {kind}" + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return wanted
    if integer and not isinstance(value, int):
        return wanted
    if not math.isfinite(value) or (isinstance(value, int) and abs(value) > INT_MAX):
        return wanted
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum) or (
            above is not None and value <= above):
        return wanted
    return None


def _bound(value: float) -> str:
    return "2**63-1" if value == INT_MAX else str(int(value)) if float(value).is_integer() else f"{value:g}"


def check_number(name: str, value: Any, **bounds: Any) -> Any:
    """``value`` when it is a fitting number (:func:`number_problem`'s ``bounds``), else an error naming ``name``.

    Raises:
        InputError: naming the setting, the rule and the value.
    """
    problem = number_problem(value, **bounds)
    if problem:
        raise InputError(f"{name} {problem}, got {value!r}")
    return value


def check_seed(name: str, value: Any) -> int:
    """A seed: an integer from 0 to :data:`SEED_MAX`.

    Raises:
        InputError: naming the setting and the value.
    """
    return check_number(name, value, integer=True, minimum=0, maximum=SEED_MAX)


def _check_numbers(data: Any, prefix: str = "") -> None:
    """Every number of a config layer finite, every integer within int64, every ``seed`` within :data:`SEED_MAX`:
    a NaN learning rate or a 2**80 seed is refused here, naming its key, before anything runs on it."""
    items = data.items() if isinstance(data, Mapping) else enumerate(data) if isinstance(data, (list, tuple)) else ()
    for key, value in items:
        name = f"{prefix}.{key}" if isinstance(key, str) and prefix else f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, (Mapping, list, tuple)):
            _check_numbers(value, name)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            problem = number_problem(value, **({"integer": True, "minimum": 0, "maximum": SEED_MAX}
                                               if key == "seed" and isinstance(value, int) else {}))
            if problem:
                raise ConfigError(f"{name} {problem}, got {value!r}")


def config_dir() -> Path:
    """The repository's ``configs/`` folder (bundled configs)."""
    return _CONFIG_ROOT


def _schema_keys(schema: type, prefix: str = "") -> tuple[list[str], list[str]]:
    """Dotted names of every field in a (nested) dataclass schema, and of its dict-typed
    fields (whose sub-keys are free-form)."""
    import typing

    keys, open_keys = [], []
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        name = f"{prefix}{field.name}"
        keys.append(name)
        ftype = hints.get(field.name)
        origin = typing.get_origin(ftype)
        members = [typing.get_origin(a) or a for a in typing.get_args(ftype)] if origin is typing.Union else []
        if ftype is dict or origin is dict or dict in members:
            open_keys.append(name)
        elif dataclasses.is_dataclass(ftype):
            sub_keys, sub_open = _schema_keys(ftype, name + ".")
            keys += sub_keys
            open_keys += sub_open
    return keys, open_keys


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        keys.append(name)
        if isinstance(value, Mapping):
            keys.extend(_flatten(value, name + "."))
    return keys


def _suggest(key: str, known: list[str]) -> str | None:
    """The known key ``key`` most likely meant: one with the same last part (``steps`` -> ``sampling.steps``,
    preferring the same section), else the closest spelling of its last part, else of the whole key."""
    leaf, section = key.rsplit(".", 1)[-1], key.rsplit(".", 1)[0] if "." in key else ""
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == leaf]
    if same_leaf:
        return min(same_leaf, key=lambda k: (not k.startswith(section + "."), k.count("."), k))
    leaves: dict[str, str] = {}
    for k in sorted(known, key=lambda k: (not k.startswith(section + "."), k.count("."))):
        leaves.setdefault(k.rsplit(".", 1)[-1], k)
    close = difflib.get_close_matches(leaf, sorted(leaves), n=1, cutoff=0.6)
    if close:
        return leaves[close[0]]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return close[0] if close else None


def _check_keys(schema: type, data: Mapping[str, Any], source: str) -> None:
    known_keys, open_keys = _schema_keys(schema)
    known = set(known_keys)
    open_prefixes = tuple(k + "." for k in open_keys)
    for key in _flatten(data):
        if key in known or key.startswith(open_prefixes):
            continue
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        if parent and parent not in known:
            continue  # the parent is reported already
        close = _suggest(key, sorted(known))
        hint = f"; did you mean {close!r}?" if close else ""
        raise ConfigError(f"unknown config key {key!r} in {source}{hint}")


def _upgrade(schema: type, data: dict[str, Any], source: str) -> dict[str, Any]:
    """Configs written before a key moved still load: the schema's ``RENAMED`` (old dotted key -> new dotted key,
    or ``(new key, function of the old value)``) moves them, with a warning; its ``REMOVED`` (old key -> the value
    that changed nothing) drops a removed option left at that value and refuses one that was set."""
    renamed, removed = getattr(schema, "RENAMED", {}), getattr(schema, "REMOVED", {})
    if not (renamed or removed):
        return data
    import copy
    import logging

    data = copy.deepcopy(data)
    for key in _flatten(data):
        if key not in renamed and key not in removed:
            continue
        *parents, leaf = key.split(".")
        holder = data
        for part in parents:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if not isinstance(holder, dict) or leaf not in holder:
            continue
        value = holder.pop(leaf)
        if key in removed:
            if value != removed[key]:
                raise ConfigError(f"config key {key!r} in {source} was removed (an unshipped experiment; see "
                                  "docs/toyworld.md); delete it from the config")
            continue
        target, convert = renamed[key] if isinstance(renamed[key], tuple) else (renamed[key], None)
        *new_parents, new_leaf = target.split(".")
        place = data
        for part in new_parents:
            place = place.setdefault(part, {})
        place.setdefault(new_leaf, convert(value) if convert else value)
        logging.getLogger("vidgen").warning("config key %r in %s is now %r; it was read as that", key, source, target)
    return data


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested mapping, values parsed as YAML.

    Raises:
        ConfigError: an item without ``=`` or with an empty key.
    """
    from omegaconf import OmegaConf

    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if "=" not in item or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)), resolve=False)  # type: ignore[return-value]
    except Exception as exc:  # omegaconf raises several grammar errors
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {exc}") from None


def _read_yaml(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read one YAML layer; a ``_base_: other.yaml`` key (relative to the file) is read first and merged under it."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {str(path)!r}")
    if path.resolve() in _chain:
        raise ConfigError(f"config file {str(path)!r} includes itself through _base_")
    try:
        text = read_text(path)
    except TextEncodingError as exc:
        raise ConfigError(str(exc)) from None
    try:
        data = OmegaConf.to_container(OmegaConf.load(io.StringIO(text)), resolve=False)
    except Exception as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    base = data.pop("_base_", None)
    if base is None:
        return data
    parent = _read_yaml(path.parent / str(base), _chain + (path.resolve(),))
    merged = OmegaConf.merge(OmegaConf.create(parent), OmegaConf.create(data))
    return OmegaConf.to_container(merged, resolve=False)  # type: ignore[return-value]


def load_config(
    schema: type[T],
    files: Sequence[str | os.PathLike | Mapping[str, Any]] = (),
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> T:
    """Build a ``schema`` instance from defaults, YAML ``files`` (in order) and ``overrides``.

    Args:
        schema: a dataclass type; its defaults are the base layer.
        files: YAML files merged in order (later wins); a mapping in the list is
            a layer given directly.
        overrides: ``key=value`` strings (dotted keys for nested sections) or a
            mapping, applied last.

    Returns:
        An instance of ``schema``.

    Raises:
        ConfigError: a missing/unreadable file, an unknown key (with the closest
            known key suggested), a value of the wrong type, or a value that the
            schema's ``__post_init__`` rejects.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"schema must be a dataclass type, got {schema!r}")
    layers: list[tuple[str, dict]] = [("defaults", dict(f)) if isinstance(f, Mapping) else (repr(str(f)), _read_yaml(f))
                                      for f in files]
    if isinstance(overrides, Mapping):
        layers.append(("overrides", dict(overrides)))
    elif overrides:
        layers.append(("command-line overrides", parse_overrides(overrides)))
    cfg = OmegaConf.structured(schema)
    for source, data in layers:
        data = _upgrade(schema, data, source)
        _check_keys(schema, data, source)
        try:
            cfg = OmegaConf.merge(cfg, data)
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None)
            msg = str(exc).splitlines()[0]
            where = f" for key {key!r}" if key else ""
            raise ConfigError(f"bad value{where} in {source}: {msg}") from None
    _check_numbers(OmegaConf.to_container(cfg, resolve=False))  # as the schema typed them: "nan" is a float here
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"incomplete config: {str(exc).splitlines()[0]}" + (f" (key {key!r})" if key else "")) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def to_yaml(cfg: Any) -> str:
    """The YAML text of a dataclass config (or mapping)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(cfg) if dataclasses.is_dataclass(cfg) else OmegaConf.create(cfg))


def save_config(cfg: Any, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write the resolved config as YAML (atomically)."""
    from vidgen.io.files import atomic_write_text

    return atomic_write_text(path, to_yaml(cfg), overwrite=overwrite)
