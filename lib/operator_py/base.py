"""What the Python CustomOps share: attribute parsing, and errors that never kill the process.

MXNet 1.9.1 drives a ``CustomOpProp`` through ctypes callbacks (``mxnet/operator.py``), and
where an exception is raised decides what the user sees:

- the constructor runs inside ``creator``, the one callback without a ``try``: an exception
  there is printed as "Exception ignored on calling ctypes callback function" and the process
  then dies with "Segmentation fault: 11" (``tests/lib/test_custom_op_errors.py`` shows it);
- ``list_arguments``, ``list_outputs``, ``infer_shape``, ``infer_type`` and
  ``create_operator`` run in the thread that builds (``mx.sym.Custom`` / ``mx.nd.Custom``),
  infers or binds the symbol: an exception there is printed to stdout and the call raises an
  ``MXNetError`` whose own text only says "Check failed: ... callbacks[...]";
- ``forward`` / ``backward`` run on an engine thread while training: an exception there
  surfaces (at best) as an ``MXNetError`` at some later, unrelated call.

So the ops here subclass :class:`CheckedProp`:

- ``parse`` reads and checks every attribute (its signature lists them, with their defaults);
  the constructor keeps an error instead of raising it, and ``list_arguments``, the first
  callback after it (while the symbol node is built), raises it;
- ``infer_shape`` checks the input shapes as soon as they are known (it is also called with
  unknown shapes, ``()``, during partial inference);
- each such error is logged at ERROR level, since MXNet's exception does not carry it;
- ``forward`` / ``backward`` are left nothing to reject: what only the data can show (an image
  smaller than one feature cell, a class id the network does not have) is handled there
  without raising, with a warning.

The symbol builders (``proposal_symbol``, ``proposal_target_symbol``, ``box_annotator_ohem_symbol``)
call :func:`check_attrs` first, so a bad value is a plain ValueError naming the op and the
attribute before MXNet is involved. The attribute domains are the config's
(:mod:`lib.config.defaults`), so the messages read alike.
"""

from __future__ import annotations

import ast
import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Callable, ClassVar, NoReturn

import mxnet as mx
import numpy as np

from lib.config.defaults import Num

__all__ = [
    "CheckedProp",
    "bool_attr",
    "check_attrs",
    "float_attr",
    "floats_attr",
    "int_attr",
    "parse_bool",
    "parse_floats",
]

logger = logging.getLogger(__name__)

Shape = Sequence[int]


def parse_bool(value: Any) -> bool:
    """A CustomOp attribute (``'True'``, ``'false'``, ``'1'``, ``True``) as a bool."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValueError(f"expected a boolean attribute, got {value!r}")
    return bool(value)


def parse_floats(value: Any) -> tuple[float, ...]:
    """A CustomOp attribute such as ``'(0.5, 1, 2)'``, ``'[8]'`` or ``'8'`` as floats."""
    if isinstance(value, str):
        value = ast.literal_eval(value.strip())
    return tuple(float(v) for v in np.atleast_1d(np.asarray(value, dtype=np.float64)))


def _attr(name: str, text: Any, parse: Callable[[Any], Any], ok: Callable[[Any], bool],
          expected: str) -> Any:  # fmt: skip
    try:
        value = parse(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = None
    else:
        if ok(value):
            return value
    raise ValueError(f"attribute {name} must be {expected}, got {text!r}")


def int_attr(name: str, text: Any, domain: Num) -> int:
    """Attribute ``name`` as an integer in ``domain`` (e.g. ``Int(min=1)``), else ValueError."""
    return _attr(name, text, int, domain.check, domain.describe())


def float_attr(name: str, text: Any, domain: Num) -> float:
    """Attribute ``name`` as a number in ``domain`` (e.g. ``Num(min=0, max=1)``)."""
    return _attr(name, text, float, domain.check, domain.describe())


def floats_attr(name: str, text: Any, item: Num, length: int | None = None) -> tuple[float, ...]:
    """Attribute ``name`` as a tuple of numbers, each in ``item``; ``length`` of them, or at
    least one."""

    def ok(values: tuple[float, ...]) -> bool:
        right_length = len(values) == length if length is not None else len(values) > 0
        return right_length and all(item.check(v) for v in values)

    count = str(length) if length is not None else "one or more"
    return _attr(name, text, parse_floats, ok, f"{count} {item.describe(plural=True)}")


def bool_attr(name: str, text: Any) -> bool:
    """Attribute ``name`` as a bool (``True``/``False``/``1``/``0``)."""
    return _attr(name, text, parse_bool, lambda _: True, "True or False")


def known(shape: Shape) -> bool:
    """Whether every dimension of ``shape`` is known (MXNet passes ``()`` or 0 for unknown)."""
    return len(shape) > 0 and all(d > 0 for d in shape)


class CheckedProp(mx.operator.CustomOpProp):
    """A ``CustomOpProp`` whose attribute and shape errors are Python errors, never a crash.

    Subclasses set ``op_type`` and ``arguments``, read their attributes in ``parse`` (keyword
    arguments with string defaults, as MXNet passes them) and check shapes with
    :meth:`expect_shape` / :meth:`fail` in ``infer_shape``.
    """

    #: The registered op type, naming the op in messages.
    op_type: ClassVar[str] = ""
    #: The inputs, in order (``list_arguments``).
    arguments: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **attrs: str) -> None:
        super().__init__(need_top_grad=False)
        self.error: str | None = None
        # MXNet's own attributes (__ctx_group__, __lr_mult__, ... from an AttrScope) are not
        # the op's.
        attrs = {k: v for k, v in attrs.items() if not k.startswith("__")}
        try:
            _check_names(self.parse, attrs)
            self.parse(**attrs)
        except Exception as err:  # noqa: BLE001 (raising here kills the process; see above)
            self.error = f"{self.op_type}: {err}"

    def parse(self, **attrs: str) -> None:
        """Reads and checks the attributes; raises ValueError naming a bad one."""
        raise NotImplementedError

    def fail(self, message: str) -> NoReturn:
        """Logs and raises ``ValueError('<op_type>: <message>')`` (for the MXNet callbacks)."""
        message = f"{self.op_type}: {message}"
        logger.error("%s", message)
        raise ValueError(message)

    def expect_shape(self, name: str, shape: Shape, expected: Sequence[int | None],
                     layout: str) -> None:  # fmt: skip
        """Fails unless ``shape`` has ``len(expected)`` dimensions and equals ``expected``
        where both are known (None: any); ``layout`` describes it, e.g. ``'(R, 4 * 2)'``."""
        if not shape:
            return
        if len(shape) != len(expected) or any(
            want is not None and got > 0 and got != want for got, want in zip(shape, expected)
        ):
            self.fail(f"{name} must have shape {layout}, got {tuple(shape)}")

    def list_arguments(self) -> list[str]:
        # The first callback after the constructor: an attribute error surfaces here.
        if self.error is not None:
            logger.error("%s", self.error)
            raise ValueError(self.error)
        return list(self.arguments)

    def declare_backward_dependency(self, out_grad, in_data, out_data):
        return []


def _check_names(parse: Callable[..., None], attrs: Mapping[str, Any]) -> None:
    params = inspect.signature(parse).parameters
    unknown = sorted(set(attrs) - set(params))
    if unknown:
        raise ValueError(
            f"unknown attribute {', '.join(unknown)} (attributes: {', '.join(params)})"
        )
    missing = [n for n, p in params.items() if p.default is p.empty and n not in attrs]
    if missing:
        raise ValueError(f"missing attribute {', '.join(missing)}")


def check_attrs(prop_cls: type[CheckedProp], attrs: Mapping[str, Any]) -> None:
    """Raises the ValueError that ``prop_cls`` would report for ``attrs`` (the keyword
    arguments of ``mx.sym.Custom``, which MXNet turns into strings with ``str``)."""
    prop = prop_cls(**{name: str(value) for name, value in attrs.items()})
    if prop.error is not None:
        raise ValueError(prop.error)
