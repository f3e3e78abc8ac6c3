"""Initialisation of new layers as data: a list of ``(glob pattern, init)`` rules.

A network's pretrained params (e.g. ResNet-101) cover the backbone; every other parameter
(RPN, heads, offset convs, ...) is filled by the first rule whose pattern matches its name
(``fnmatch``, case-sensitive). A parameter that no rule covers is an error, so a backbone param
missing from the pretrained file is reported instead of being silently initialised.

Example (an entry point; input shapes as the loader provides them)::

    arg_params, aux_params = load_param(cfg.network.pretrained, cfg.network.pretrained_epoch)
    arg_shapes, aux_shapes = infer_param_shapes(sym, {"data": (1, 3, 600, 1000), ...})
    arg_params, aux_params = init_params(
        arg_shapes, arg_params, aux_params, DEFAULT_NEW_LAYER_RULES, aux_shapes=aux_shapes)
    check_parameter_shapes(arg_shapes, aux_shapes, arg_params, aux_params)

An architecture with other new layers extends the list, e.g.
``[("my_head_weight", normal(0.001))] + DEFAULT_NEW_LAYER_RULES`` (first match wins).
Unlike the original's ``init_weight``, which overwrote these layers unconditionally, params
already present are kept, so fine-tuning from a full detection checkpoint keeps its heads.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mxnet as mx

__all__ = [
    "DEFAULT_NEW_LAYER_RULES",
    "HEAD_PATTERNS",
    "Init",
    "bilinear",
    "check_parameter_shapes",
    "compare_params",
    "constant",
    "find_rule",
    "from_mx",
    "infer_param_shapes",
    "init_params",
    "normal",
    "ones",
    "zeros",
]

logger = logging.getLogger(__name__)

Shape = tuple[int, ...]
#: ``init(name, shape) -> NDArray`` on the CPU.
Init = Callable[[str, Shape], mx.nd.NDArray]
Rule = tuple[str, Init]


def constant(value: float) -> Init:
    def init(name: str, shape: Shape) -> mx.nd.NDArray:
        return mx.nd.full(shape, value)

    init.__qualname__ = f"constant({value})"
    return init


def zeros() -> Init:
    return constant(0.0)


def ones() -> Init:
    return constant(1.0)


def normal(sigma: float, mean: float = 0.0) -> Init:
    """N(mean, sigma^2) from MXNet's RNG (reproducible with ``mx.random.seed``), as the original."""

    def init(name: str, shape: Shape) -> mx.nd.NDArray:
        return mx.nd.random.normal(mean, sigma, shape=shape)

    init.__qualname__ = f"normal({sigma})"
    return init


def from_mx(initializer: mx.init.Initializer) -> Init:
    """Wraps an MXNet initializer, applied as a weight initializer whatever the name's suffix."""

    def init(name: str, shape: Shape) -> mx.nd.NDArray:
        arr = mx.nd.zeros(shape)
        initializer._init_weight(mx.init.InitDesc(name), arr)
        return arr

    init.__qualname__ = f"from_mx({initializer.dumps()})"
    return init


def bilinear() -> Init:
    """Bilinear-upsampling kernel (DeepLab's ``upsampling_weight``), as ``mx.init.Bilinear``."""
    return from_mx(mx.init.Bilinear())


#: Layers that the original initialises N(0, 0.01) with zero bias: RPN, R-FCN / Faster R-CNN /
#: FPN heads, DeepLab's fc6 and score.
HEAD_PATTERNS = (
    "rpn_*",
    "conv_new_*",
    "fc_new_*",
    "rfcn_*",
    "cls_score",
    "bbox_pred",
    "fpn_*",
    "fc6",
    "score",
)

#: Rules common to all architectures here: offset convs/FCs zero (so a deformable layer starts
#: as a plain one), head weights N(0, 0.01), head biases zero, DeepLab's upsampling bilinear.
#: Backbone params (conv1, res*, bn*) are not covered on purpose: they come from the pretrained
#: model, and a missing one is an error.
DEFAULT_NEW_LAYER_RULES: list[Rule] = [
    ("*offset*_weight", zeros()),
    ("*offset*_bias", zeros()),
    ("upsampling_weight", bilinear()),
    *[(f"{p}_weight", normal(0.01)) for p in HEAD_PATTERNS],
    *[(f"{p}_bias", zeros()) for p in HEAD_PATTERNS],
]


def find_rule(name: str, rules: Sequence[Rule]) -> Rule | None:
    """The first rule whose pattern matches ``name`` (``fnmatchcase``), or None."""
    for rule in rules:
        if fnmatch.fnmatchcase(name, rule[0]):
            return rule
    return None


def init_params(
    arg_shapes: Mapping[str, Shape],
    arg_params: Mapping[str, mx.nd.NDArray],
    aux_params: Mapping[str, mx.nd.NDArray],
    rules: Sequence[Rule],
    aux_shapes: Mapping[str, Shape] | None = None,
) -> tuple[dict[str, mx.nd.NDArray], dict[str, mx.nd.NDArray]]:
    """Fills every parameter missing from ``arg_params``/``aux_params`` by the first matching rule.

    Params already present (pretrained) are left as they are, whatever their shape (see
    :func:`check_parameter_shapes`). The inputs are not modified.

    Args:
        arg_shapes: parameter name -> shape, *without* data/label inputs (see
            :func:`infer_param_shapes`).
        arg_params, aux_params: the loaded (pretrained) params.
        rules: ``(glob pattern, init)`` pairs, first match wins.
        aux_shapes: auxiliary-state name -> shape, filled the same way (optional).

    Returns:
        New ``(arg_params, aux_params)`` dicts with every name of the shape dicts.

    Raises:
        ValueError: listing every missing parameter that no rule covers.
    """
    out_arg, out_aux = dict(arg_params), dict(aux_params)
    uncovered = []
    for shapes, out in ((arg_shapes, out_arg), (aux_shapes or {}, out_aux)):
        for name, shape in shapes.items():
            if name in out:
                continue
            rule = find_rule(name, rules)
            if rule is None:
                uncovered.append(f"{name} {tuple(shape)}")
                continue
            out[name] = rule[1](name, tuple(shape))
            logger.info(
                "init %s %s with %s (rule %r)", name, tuple(shape), rule[1].__qualname__, rule[0]
            )
    if uncovered:
        raise ValueError(
            "no pretrained value and no initialisation rule for: "
            + ", ".join(uncovered)
            + " (add a (pattern, init) rule, or check the pretrained model)"
        )
    return out_arg, out_aux


def infer_param_shapes(
    symbol: mx.sym.Symbol, input_shapes: Mapping[str, Shape]
) -> tuple[dict[str, Shape], dict[str, Shape]]:
    """``(arg_shapes, aux_shapes)`` of ``symbol`` for the given inputs, inputs excluded."""
    arg_shape, _, aux_shape = symbol.infer_shape(**input_shapes)
    if arg_shape is None:
        raise ValueError(f"cannot infer the parameter shapes from inputs {dict(input_shapes)}")
    args = {
        n: tuple(s) for n, s in zip(symbol.list_arguments(), arg_shape) if n not in input_shapes
    }
    auxs = {n: tuple(s) for n, s in zip(symbol.list_auxiliary_states(), aux_shape)}
    return args, auxs


def compare_params(
    arg_shapes: Mapping[str, Shape],
    aux_shapes: Mapping[str, Shape],
    arg_params: Mapping[str, mx.nd.NDArray],
    aux_params: Mapping[str, mx.nd.NDArray],
) -> dict[str, Any]:
    """Compares a checkpoint's params with a network's, by name and shape.

    A ``<name>_test`` arg (the de-normalised bbox weights of ``lib.core.checkpoint``) is
    expected when ``<name>`` is a parameter, with its shape.

    Returns:
        ``{'missing': [..], 'unexpected': [..], 'mismatched': {name: {'expected', 'got'}},
        'test_params': [..]}``; names carry an ``arg:`` / ``aux:`` prefix, lists are sorted.
    """
    expected = {f"arg:{n}": tuple(s) for n, s in arg_shapes.items()}
    expected.update({f"aux:{n}": tuple(s) for n, s in aux_shapes.items()})
    got = {f"arg:{n}": tuple(v.shape) for n, v in arg_params.items()}
    got.update({f"aux:{n}": tuple(v.shape) for n, v in aux_params.items()})
    test_params = sorted(
        k for k in got if k.startswith("arg:") and k.endswith("_test") and k[:-5] in expected
    )
    want = {k: expected[k] if k in expected else expected[k[:-5]] for k in got
            if k in expected or k in test_params}  # fmt: skip
    mismatched = {
        k: {"expected": list(want[k]), "got": list(got[k])}
        for k in sorted(want)
        if got[k] != want[k]
    }
    return {
        "missing": sorted(k for k in expected if k not in got),
        "unexpected": sorted(k for k in got if k not in expected and k not in test_params),
        "mismatched": mismatched,
        "test_params": test_params,
    }


def _listed(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def check_parameter_shapes(
    arg_shapes: Mapping[str, Shape],
    aux_shapes: Mapping[str, Shape],
    arg_params: Mapping[str, mx.nd.NDArray],
    aux_params: Mapping[str, mx.nd.NDArray],
    source: str = "the checkpoint",
    network: str = "the network",
) -> None:
    """Stops when params do not fit a network exactly (:func:`compare_params`).

    Missing params, params of another shape, and params the network does not have (a checkpoint
    of another network: a plain network would silently drop a deformable one's offsets) are all
    errors.

    Args:
        source: what the params are, for the message (a checkpoint file).
        network: the network's name, for the message (the config's ``symbol``).

    Raises:
        ValueError: naming ``source`` and ``network``, listing every missing, unexpected and
            mis-shaped name (``arg a: expected shape (2, 3), got (3, 2)``).
    """
    diff = compare_params(arg_shapes, aux_shapes, arg_params, aux_params)
    problems = []
    for kind in ("arg", "aux"):
        missing = [k[4:] for k in diff["missing"] if k.startswith(kind)]
        if missing:
            problems.append(f"missing {kind} params ({len(missing)}): {_listed(missing)}")
        unexpected = [k[4:] for k in diff["unexpected"] if k.startswith(kind)]
        if unexpected:
            problems.append(
                f"{kind} params the network does not have ({len(unexpected)}): "
                f"{_listed(unexpected)}"
            )
    for name, shapes in diff["mismatched"].items():
        problems.append(
            f"{name[:3]} {name[4:]}: expected shape {tuple(shapes['expected'])}, "
            f"got {tuple(shapes['got'])}"
        )
    if problems:
        raise ValueError(
            f"{source} does not fit {network} (is it a checkpoint of another network or "
            "config?):\n  " + "\n  ".join(problems)
        )
