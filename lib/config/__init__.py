"""Experiment configuration: one loader, strict keys, one conversion table, checked values.

A config is built fresh on every call, from four layers merged in order:

1. `DEFAULTS` (lib/config/defaults.py: every known key, with a comment each);
2. `ARCH_DEFAULTS[arch]`: the architecture's default deltas, as data. `arch` is given by the
   caller (an entry point knows its architecture) or inferred from the config's `symbol`
   (`infer_arch`: "deeplab" in the name selects DeepLab's defaults);
3. the experiment yaml (`yaml.safe_load`), merged recursively;
4. command-line overrides `KEY=VALUE`, each value parsed with `yaml.safe_load`.

Layers 2-4 may only set keys that exist in `DEFAULTS`, at every depth: anything else raises
`ValueError("unknown config key TRAIN.lr_stepp in <file>")`. Each value is checked against its
default's type (ints are fine for floats; numbers are turned into strings for string keys, so
`gpus: 0` and `lr_step: 8` work) or converted by `CONVERSIONS`, the one table of structured keys
(`SCALES: [600, 1000]` -> `[(600, 1000)]`, `PIXEL_MEANS` -> np.ndarray, ...). A wrong type raises
ValueError naming the key and the file.

The merged config is then checked against the values each key may take, `DOMAINS` and the
cross-key `RULES` of lib/config/defaults.py (counts >= 1, fractions and IoU thresholds in
[0, 1], positive scales, `TRAIN.BATCH_ROIS` -1 or a multiple of `TRAIN.BATCH_IMAGES`, ...),
and `dataset.CLASSES` against `dataset.NUM_CLASSES`. A value out of its domain raises
ValueError naming the key, where it was set (the yaml, or the `--set KEY=VALUE` item), the
allowed values and the value:
`bad value for config key TRAIN.BATCH_IMAGES in --set TRAIN.BATCH_IMAGES=0: expected an
integer >= 1, got 0`; a broken rule names its first key, the yaml (`<file> with overrides` when
there are overrides), the condition and the keys' values. `check_config` runs the same checks
on a config built or changed in code.

Example:
    >>> cfg = load_config("experiments/rfcn/cfgs/rfcn_coco_demo.yaml", ["TRAIN.lr=0.001"])
    >>> cfg.SCALES, cfg.network.PIXEL_MEANS, cfg.TRAIN.lr
    ([(600, 1000)], array([103.06, 115.9 , 123.15]), 0.001)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Union

import numpy as np
import yaml
from easydict import EasyDict

from lib.config.defaults import (
    ARCH_BY_SYMBOL,
    ARCH_DEFAULTS,
    DEFAULT_ARCH,
    DEFAULTS,
    DOMAINS,
    RULES,
    UNUSED_KEYS,
)

__all__ = [
    "ARCH_DEFAULTS",
    "CONVERSIONS",
    "DEFAULTS",
    "DOMAINS",
    "RULES",
    "add_config_args",
    "check_config",
    "config_from_args",
    "default_config",
    "dump_config",
    "infer_arch",
    "load_config",
    "save_config",
    "unused_settings",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


# ---------------------------------------------------------------------------------------------
# Conversion table. Each converter takes a yaml value (or an already converted one, so a saved
# config.yaml loads back) and returns a new object, or raises TypeError saying what it expected.


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(value: Any, length: int | None, what: str) -> list:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if (
        not isinstance(value, (list, tuple))
        or not value
        or (length is not None and len(value) != length)
        or not all(map(_is_number, value))
    ):
        raise TypeError(f"expected {what}")
    return list(value)


def _float_array(length: int) -> Callable[[Any], np.ndarray]:
    def convert(value: Any) -> np.ndarray:
        return np.array(_numbers(value, length, f"a list of {length} numbers"), dtype=np.float64)

    return convert


def _float_tuple(length: int) -> Callable[[Any], tuple]:
    def convert(value: Any) -> tuple:
        return tuple(float(x) for x in _numbers(value, length, f"a list of {length} numbers"))

    return convert


def _number_tuple(value: Any) -> tuple:
    return tuple(_numbers(value, None, "a non-empty list of numbers"))


def _is_scale_pair(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_int, value))


def _scales(value: Any) -> list:
    # The original yamls write one scale as a flat [short, long]; a list of pairs is also taken.
    if _is_scale_pair(value):
        return [tuple(value)]
    if isinstance(value, (list, tuple)) and value and all(map(_is_scale_pair, value)):
        return [tuple(pair) for pair in value]
    raise TypeError("expected [short, long] or a list of [short, long] integer pairs")


def _feat_stride(value: Any) -> int | list:
    # One stride, or one per pyramid level for FPN ([4, 8, 16, 32, 64]).
    if _is_int(value):
        return value
    if isinstance(value, (list, tuple)) and value and all(map(_is_int, value)):
        return list(value)
    raise TypeError("expected an integer or a non-empty list of integers")


def _str_list(value: Any) -> list:
    if isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
        return list(value)
    raise TypeError("expected a list of strings")


def _test_scales(value: Any) -> list:
    # [] (or null) means: test at SCALES[0].
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return []
    return _scales(value)


CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "SCALES": _scales,
    "TEST_SCALES": _test_scales,
    "network.PIXEL_MEANS": _float_array(3),
    "network.RPN_FEAT_STRIDE": _feat_stride,
    "network.FIXED_PARAMS": _str_list,
    "network.FIXED_PARAMS_SHARED": _str_list,
    "dataset.CLASSES": _str_list,
    "network.ANCHOR_SCALES": _number_tuple,
    "network.ANCHOR_RATIOS": _number_tuple,
    "TRAIN.BBOX_WEIGHTS": _float_array(4),
    # The original keeps these three as sequences (tuples by default); we always make tuples.
    "TRAIN.RPN_BBOX_WEIGHTS": _float_tuple(4),
    "TRAIN.BBOX_MEANS": _float_tuple(4),
    "TRAIN.BBOX_STDS": _float_tuple(4),
}


def _scalar(value: Any, default: Any) -> Any:
    """Checks a plain value against the type of its default."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise TypeError("expected true or false")
    if isinstance(default, int):
        if _is_int(value):
            return value
        raise TypeError("expected an integer")
    if isinstance(default, float):
        if _is_number(value):
            return float(value)
        raise TypeError("expected a number")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        if _is_number(value):  # gpus: 0, lr_step: 8
            return str(value)
        raise TypeError("expected a string")
    raise AssertionError(f"default of type {type(default).__name__} needs a CONVERSIONS entry")


def _convert(key: str, value: Any, default: Any, source: str) -> Any:
    convert = CONVERSIONS.get(key)
    try:
        return convert(value) if convert else _scalar(value, default)
    except TypeError as err:
        raise ValueError(
            f"bad value for config key {key} in {source}: {err}, got {value!r}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Merging.


def _merge(
    base: dict,
    update: Mapping,
    source: str,
    prefix: str = "",
    origins: dict[str, str] | None = None,
) -> None:
    """Merges `update` into `base` in place, checking and converting every leaf.

    `origins`, when given, records `source` for each leaf set (dotted key -> source), so that a
    value out of its domain is reported where it was set.
    """
    for name, value in update.items():
        key = f"{prefix}{name}"
        if not isinstance(name, str) or name not in base:
            raise ValueError(f"unknown config key {key} in {source}")
        if isinstance(base[name], dict):
            if value is None:  # a section whose keys are all commented out
                continue
            if not isinstance(value, Mapping):  # a config error, so ValueError
                raise ValueError(  # noqa: TRY004
                    f"bad value for config key {key} in {source}: expected a mapping, got {value!r}"
                )
            _merge(base[name], value, source, key + ".", origins)
        else:
            base[name] = _convert(key, value, base[name], source)
            if origins is not None:
                origins[key] = source


def _fresh(tree: Mapping, prefix: str = "") -> dict:
    """A new copy of a defaults tree with every leaf converted (no object shared with `tree`)."""
    out = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            out[name] = _fresh(value, key + ".")
        else:
            out[name] = _convert(key, value, value, "lib/config/defaults.py")
    return out


def _check_classes(dataset: dict, arch: str, source: str) -> None:
    """``dataset.CLASSES`` against ``dataset.NUM_CLASSES`` (see lib/config/defaults.py)."""
    names = list(dataset["CLASSES"])
    if not names:
        return
    detection = arch != "deeplab"
    if detection and names[0] == "__background__":
        names = names[1:]
    if len({n.lower() for n in names}) != len(names) or not all(n.strip() for n in names):
        raise ValueError(
            f"bad value for config key dataset.CLASSES in {source}: names must be non-empty and "
            f"distinct (case-insensitively), got {names}"
        )
    expected = len(names) + 1 if detection else len(names)
    if dataset["NUM_CLASSES"] != expected:
        counted = f"{len(names)} classes + background" if detection else f"{len(names)} classes"
        raise ValueError(
            f"config keys dataset.NUM_CLASSES and dataset.CLASSES disagree in {source}: "
            f"NUM_CLASSES is {dataset['NUM_CLASSES']} but CLASSES lists {counted} = {expected} "
            f"({', '.join(names)})"
        )


def _get(tree: Mapping, key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def _check(
    tree: Mapping,
    source: str,
    arch: str = DEFAULT_ARCH,
    origins: Mapping[str, str] | None = None,
) -> None:
    """The value checks, run once on the merged config: `DOMAINS`, then `RULES` (which may
    assume in-domain values, e.g. BATCH_IMAGES >= 1 before a modulo), then the class list.

    A bad value is reported in `origins[key]` (where it was set) if known, else in `source`.
    """
    origins = origins or {}
    for key, domain in DOMAINS.items():
        value = _get(tree, key)
        if not domain.check(value):
            raise ValueError(
                f"bad value for config key {key} in {origins.get(key, source)}: expected "
                f"{domain.describe()}, got {_plain(value)!r}"
            )
    for rule in RULES:
        values = [_get(tree, key) for key in rule.keys]
        if not rule.holds(*values):
            got = ", ".join(f"{key}={_plain(v)!r}" for key, v in zip(rule.keys, values))
            raise ValueError(
                f"bad value for config key {rule.keys[0]} in {source}: expected "
                f"{rule.expected}, got {got}"
            )
    _check_classes(tree["dataset"], arch, source)


def check_config(cfg: Mapping, source: str = "<config>", arch: str | None = None) -> None:
    """Runs the checks of `load_config` on a config built or changed in code.

    Args:
        cfg: a full config (e.g. from `load_config` or `default_config`).
        source: names the config in error messages.
        arch: a key of `ARCH_DEFAULTS`; None infers it from `cfg.symbol` (see `infer_arch`).

    Raises:
        ValueError: a value out of its domain (lib/config/defaults.py's `DOMAINS`), a broken
            `RULES` condition, or `dataset.CLASSES` disagreeing with `dataset.NUM_CLASSES`.
    """
    arch = infer_arch(str(cfg.get("symbol", ""))) if arch is None else arch
    _check(cfg, source, arch)


def infer_arch(symbol: str) -> str:
    """Returns the `ARCH_DEFAULTS` key for a symbol name, by `ARCH_BY_SYMBOL` substrings."""
    for needle, arch in ARCH_BY_SYMBOL:
        if needle in symbol:
            return arch
    return DEFAULT_ARCH


def _defaults_tree(arch: str) -> dict:
    if arch not in ARCH_DEFAULTS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCH_DEFAULTS)}")
    tree = _fresh(DEFAULTS)
    _merge(tree, ARCH_DEFAULTS[arch], f"ARCH_DEFAULTS[{arch!r}]")
    return tree


def default_config(arch: str = DEFAULT_ARCH) -> EasyDict:
    """Returns a fresh config holding only the defaults of `arch` (a key of `ARCH_DEFAULTS`)."""
    return EasyDict(_defaults_tree(arch))


def _parse_override(item: str) -> dict:
    """Turns "TRAIN.lr=0.001" into {"TRAIN": {"lr": 0.001}}; an empty value means ''."""
    if not isinstance(item, str):
        raise TypeError(f"override {item!r} is not a KEY=VALUE string")
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {item!r} is not KEY=VALUE")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as err:
        raise ValueError(f"override {item!r}: cannot parse the value: {err}") from None
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def load_config(
    path: PathLike,
    overrides: Sequence[str] | None = None,
    arch: str | None = None,
) -> EasyDict:
    """Loads an experiment yaml over the defaults and returns a new config.

    Args:
        path: The experiment yaml.
        overrides: `KEY=VALUE` strings applied after the yaml, e.g. `["TRAIN.lr=0.001",
            "SCALES=[[300,500]]"]`; keys are dotted paths, values are parsed with yaml.
        arch: A key of `ARCH_DEFAULTS` ("rfcn", "faster_rcnn", "fpn", "deeplab") choosing the
            default deltas; None infers it from the config's `symbol` (see `infer_arch`).

    Returns:
        A fresh EasyDict; no object in it is shared with another load or with the defaults.

    Raises:
        ValueError: an empty file or one that does not hold a mapping (raised before anything
            is merged, so callers fail before creating output folders); an unknown key at any
            depth, a value of the wrong type, a malformed override, a value out of its domain
            or inconsistent keys (`DOMAINS`, `RULES`); the message names the dotted key, the
            file or override, the allowed values and the value.
    """
    source = os.fspath(path)
    with open(source, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    # An empty file (or only comments) would silently train the defaults (symbol '').
    if data is None:
        raise ValueError(
            f"config file {source} is empty; it must hold a mapping of config keys "
            "(e.g. 'symbol: resnet_v1_101_rfcn_dcn')"
        )
    if not isinstance(data, Mapping):
        raise ValueError(  # noqa: TRY004 (a config error, like the others)
            f"config file {source} must hold a mapping, got {type(data).__name__}"
        )
    if isinstance(overrides, str):
        raise TypeError(f"overrides must be a list of KEY=VALUE strings, got {overrides!r}")
    updates = [(_parse_override(item), f"--set {item}") for item in overrides or ()]

    if arch is None:
        symbol = data.get("symbol", "")
        for update, _ in updates:
            symbol = update.get("symbol", symbol)
        arch = infer_arch(symbol if isinstance(symbol, str) else "")
    tree = _defaults_tree(arch)
    origins: dict[str, str] = {}
    _merge(tree, data, source, origins=origins)
    for update, update_source in updates:
        _merge(tree, update, update_source, origins=origins)
    _check(tree, source + (" with overrides" if updates else ""), arch, origins)
    cfg = EasyDict(tree)
    unused = unused_settings(cfg, arch)
    if unused:
        logger.warning(
            "config %s sets keys that %s does not use (they have no effect): %s",
            source,
            arch,
            ", ".join(unused),
        )
    return cfg


def _leaves(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_leaves(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def _same(a: Any, b: Any) -> bool:
    return bool(np.array_equal(a, b)) if isinstance(a, np.ndarray) else a == b


def unused_settings(cfg: Mapping, arch: str | None = None) -> list[str]:
    """The keys of ``cfg`` set away from their defaults that ``arch`` never reads.

    ``arch`` defaults to the one of ``cfg.symbol`` (:func:`infer_arch`). The table is
    ``lib.config.defaults.UNUSED_KEYS``; a section there (``TRAIN.ALTERNATE``) covers its keys.
    """
    arch = infer_arch(str(cfg.get("symbol", ""))) if arch is None else arch
    prefixes = UNUSED_KEYS.get(arch, ())
    defaults = _leaves(_defaults_tree(arch))
    return [
        key
        for key, value in _leaves(cfg).items()
        if any(key == p or key.startswith(p + ".") for p in prefixes)
        and key in defaults
        and not _same(value, defaults[key])
    ]


# ---------------------------------------------------------------------------------------------
# Saving.


def _plain(value: Any) -> Any:
    """Turns a config into yaml-safe builtins (arrays and tuples become lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def dump_config(cfg: Mapping) -> str:
    """Returns the config as yaml text that `load_config` reads back to an equal config."""
    return yaml.safe_dump(_plain(cfg), sort_keys=False, default_flow_style=None, width=100)


def save_config(cfg: Mapping, output_dir: PathLike) -> str:
    """Writes `cfg` to `<output_dir>/config.yaml` atomically and returns that path.

    The file is written to a temporary name in the same directory and moved into place with
    `os.replace`, so a reader never sees a half-written config.
    """
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "config.yaml")
    text = dump_config(cfg)
    fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".yaml.tmp", dir=output_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    logger.info("wrote config to %s", path)
    return path


# ---------------------------------------------------------------------------------------------
# Command line.


def add_config_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds `--cfg FILE` (required) and repeatable `--set KEY=VALUE` to `parser`."""
    parser.add_argument("--cfg", required=True, help="experiment config yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set TRAIN.lr=0.001 (repeatable)",
    )
    return parser


def config_from_args(args: argparse.Namespace, arch: str | None = None) -> EasyDict:
    """Loads the config named by arguments from `add_config_args`."""
    return load_config(args.cfg, overrides=args.overrides, arch=arch)
