"""Checkpoints in the original format, written atomically.

Files (original names, epoch index = number of completed epochs):

* ``<prefix>-%04d.params``: ``mx.nd.save`` dict with ``arg:<name>`` / ``aux:<name>`` keys;
* ``<prefix>-symbol.json``: the training symbol (one per prefix);
* ``<prefix>-%04d.states``: optimizer state, ``pickle((updater_states, optimizer))`` as written
  by MXNet's ``Updater.get_states(dump_optimizer=True)`` (momentum *and* update counters; the
  original's files hold the updater states alone and load too).

Every file is written to a temporary file in the same directory (``.<final name>.XXXXXXXX.tmp``,
see ``_temp_path``), fsynced and renamed over the final name, so a crash leaves either the old
file or the new one, never a partial one. The ``.params`` file is renamed last: it is the commit
point of an epoch (:func:`latest_epoch`). A process killed mid-write (``kill -9``) leaves its
hidden temp file behind; :func:`remove_stale_temp_files` deletes those at the next start.

A truncated or corrupt ``.params`` / ``.states`` file raises ``ValueError`` naming the path.

Detection checkpoints also carry the bbox-regression weights with the target normalisation
folded in, as extra ``*_test`` params (:func:`add_test_params`); test code loads them with
``load_param(..., process=True)``, which renames ``X_test`` over ``X``, so inference can apply
``bbox_pred`` to the raw network output without de-normalising.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mxnet as mx
import numpy as np

__all__ = [
    "RCNN_BBOX_PRED",
    "RFCN_BBOX_PRED",
    "BboxPredSpec",
    "add_test_params",
    "atomic_write",
    "do_checkpoint",
    "latest_complete_epoch",
    "latest_epoch",
    "list_checkpoints",
    "load_checkpoint",
    "load_optimizer_states",
    "load_param",
    "load_params_file",
    "params_path",
    "remove_stale_temp_files",
    "save_checkpoint",
    "states_path",
    "symbol_path",
]

logger = logging.getLogger(__name__)

Params = dict[str, mx.nd.NDArray]


def params_path(prefix: str, epoch: int) -> str:
    return f"{prefix}-{epoch:04d}.params"


def states_path(prefix: str, epoch: int) -> str:
    return f"{prefix}-{epoch:04d}.states"


def symbol_path(prefix: str) -> str:
    return f"{prefix}-symbol.json"


# ---------------------------------------------------------------------------------------------
# Atomic writes


def _fsync_dir(path: str) -> None:
    # Makes the rename itself durable; not possible on every platform / file system.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_path(final_path: str) -> str:
    # ``.<base>.<random>.tmp``: hidden, beside the final file (same file system, so os.replace
    # is atomic). remove_stale_temp_files relies on this pattern (_TEMP_RANDOM_RE).
    d, base = os.path.split(os.path.abspath(final_path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=d)
    os.close(fd)
    return tmp


# The random part mkstemp puts between its prefix and suffix (8 characters of [a-z0-9_]).
_TEMP_RANDOM_RE = r"[A-Za-z0-9_]+"


def _write_temp(final_path: str, write: Callable[[str], None]) -> str:
    """Writes ``final_path``'s content to a fsynced temp file beside it and returns its path.

    ``write(tmp_path)`` produces the content. On any error the temp file is removed.
    """
    tmp = _temp_path(final_path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return tmp


def _write_bytes(data: bytes) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "wb") as f:
            f.write(data)

    return write


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Atomically (re)places ``path`` with the file that ``write(tmp_path)`` produces."""
    tmp = _write_temp(path, write)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


# ---------------------------------------------------------------------------------------------
# Save / load


def _save_dict(arg_params: Mapping[str, mx.nd.NDArray], aux_params: Mapping[str, mx.nd.NDArray]):
    save_dict = {f"arg:{k}": v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    save_dict.update({f"aux:{k}": v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    return save_dict


def save_checkpoint(
    prefix: str,
    epoch: int,
    arg_params: Mapping[str, mx.nd.NDArray],
    aux_params: Mapping[str, mx.nd.NDArray],
    symbol: mx.sym.Symbol | None = None,
    optimizer_states: bytes | None = None,
) -> str:
    """Writes ``<prefix>-%04d.params`` (+ ``-symbol.json``, ``-%04d.states``) atomically.

    All temp files are written and fsynced first; then they are renamed over the final names,
    ``.states`` and the symbol before ``.params``. A failure while writing leaves every
    existing file untouched and no temp file behind.

    Args:
        prefix: path prefix, e.g. ``output/rfcn/.../rfcn_voc``; its directory is created.
        epoch: number of completed epochs (the original passes ``epoch + 1``).
        arg_params, aux_params: name -> NDArray (any context).
        symbol: saved as ``<prefix>-symbol.json`` when given.
        optimizer_states: bytes from ``MutableModule.get_optimizer_states()``.

    Returns:
        The path of the ``.params`` file.
    """
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    save_dict = _save_dict(arg_params, aux_params)

    final_and_writer: list[tuple[str, Callable[[str], None]]] = []
    if optimizer_states is not None:
        final_and_writer.append((states_path(prefix, epoch), _write_bytes(optimizer_states)))
    if symbol is not None:
        final_and_writer.append((symbol_path(prefix), _write_bytes(symbol.tojson().encode())))
    final_and_writer.append((params_path(prefix, epoch), lambda p: mx.nd.save(p, save_dict)))

    temps: list[tuple[str, str]] = []
    try:
        for final, write in final_and_writer:
            temps.append((_write_temp(final, write), final))
    except BaseException:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        raise
    for tmp, final in temps:
        os.replace(tmp, final)
    _fsync_dir(directory)
    logger.info('Saved checkpoint to "%s"', params_path(prefix, epoch))
    return params_path(prefix, epoch)


def _require(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")


def _mxnet_reason(err: mx.base.MXNetError) -> str:
    """The message of an MXNet error without its stack ('Invalid NDArray file format')."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    last = lines[-1] if lines else type(err).__name__
    return last.split("Check failed: ")[-1].removeprefix("MXNetError: ")


def load_params_file(path: str, what: str = "checkpoint") -> dict[str, mx.nd.NDArray]:
    """The ``arg:<name>`` / ``aux:<name>`` dict of a ``.params`` file of any name, keys as stored.

    Args:
        what: what the file is, for the messages ("checkpoint", "--params").

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not a file, MXNet cannot read it (not a ``.params`` file, truncated,
            empty), or it holds a list of arrays rather than a dict; the message names the file.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path}: no such file")
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path}: not a file")
    try:
        save_dict = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise ValueError(
            f"cannot read {what} {path} ({os.path.getsize(path)} bytes): not an MXNet .params "
            f"file, or truncated or corrupt (MXNet: {_mxnet_reason(err)})"
        ) from None
    if not isinstance(save_dict, dict):
        raise ValueError(f"{what} {path} holds a list of arrays, not an arg:/aux: dict")
    return save_dict


def load_checkpoint(prefix: str, epoch: int) -> tuple[Params, Params]:
    """Reads ``<prefix>-%04d.params`` into ``(arg_params, aux_params)`` (on the CPU).

    Raises:
        FileNotFoundError, ValueError: as :func:`load_params_file`; also ValueError for a key
            that is neither ``arg:<name>`` nor ``aux:<name>`` (the message names the path and
            the key).
    """
    path = params_path(prefix, epoch)
    save_dict = load_params_file(path)
    arg_params: Params = {}
    aux_params: Params = {}
    for key, value in save_dict.items():
        kind, _, name = key.partition(":")
        if kind == "arg":
            arg_params[name] = value
        elif kind == "aux":
            aux_params[name] = value
        else:
            raise ValueError(f"{path}: key {key!r} is neither 'arg:<name>' nor 'aux:<name>'")
    return arg_params, aux_params


def load_param(
    prefix: str,
    epoch: int,
    convert: bool = False,
    ctx: mx.Context | None = None,
    process: bool = False,
) -> tuple[Params, Params]:
    """The original ``load_param``.

    Args:
        convert: copy the arrays to ``ctx`` (default ``mx.cpu()``).
        process: rename every ``X_test`` param over ``X`` (the de-normalised bbox weights of
            :func:`add_test_params`, for testing). Only a ``_test`` *suffix* is renamed; the
            original replaced the substring anywhere in the name.
    """
    arg_params, aux_params = load_checkpoint(prefix, epoch)
    if convert:
        ctx = mx.cpu() if ctx is None else ctx
        arg_params = {k: v.as_in_context(ctx) for k, v in arg_params.items()}
        aux_params = {k: v.as_in_context(ctx) for k, v in aux_params.items()}
    if process:
        for name in [k for k in arg_params if k.endswith("_test")]:
            arg_params[name[: -len("_test")]] = arg_params.pop(name)
    return arg_params, aux_params


def load_optimizer_states(prefix: str, epoch: int) -> bytes:
    """The raw ``<prefix>-%04d.states`` bytes (see ``MutableModule.set_optimizer_states``).

    The bytes are unpickled once here, so that a damaged file fails with its name rather than
    deep inside the optimizer.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it does not unpickle (truncated, corrupt or not a states file); the message
            names the path.
    """
    path = states_path(prefix, epoch)
    _require(path, "optimizer states")
    with open(path, "rb") as f:
        data = f.read()
    try:
        pickle.loads(data)
    except Exception as err:  # UnpicklingError, EOFError, ValueError, ... on damaged data
        raise ValueError(
            f"cannot read optimizer states {path} ({len(data)} bytes): the file may be "
            f"truncated or corrupt ({type(err).__name__}: {err})"
        ) from err
    return data


def _epochs_with(prefix: str, suffix: str) -> set[int]:
    """Epochs N with an existing ``<prefix>-%04d<suffix>`` file."""
    epochs = set()
    for path in glob.glob(glob.escape(prefix) + "-*" + suffix):
        m = re.fullmatch(r"-(\d{4,})" + re.escape(suffix), path[len(prefix) :])
        # the equality drops names that %04d would not write, e.g. "-00003.params"
        if m and path == f"{prefix}-{int(m.group(1)):04d}{suffix}" and os.path.isfile(path):
            epochs.add(int(m.group(1)))
    return epochs


def latest_epoch(prefix: str) -> int | None:
    """The highest epoch with a ``<prefix>-%04d.params`` file, or None.

    A ``.params`` file exists only once its epoch is complete (it is written last, atomically),
    so this is the epoch to resume from after a crash.
    """
    epochs = _epochs_with(prefix, ".params")
    return max(epochs) if epochs else None


def latest_complete_epoch(prefix: str) -> int | None:
    """The highest epoch N with both ``<prefix>-%04d.params`` and ``.states``, or None.

    That is the latest checkpoint training can resume from with its optimizer state (momentum,
    update counts); :func:`latest_epoch` also counts ``.params`` written without states.
    """
    both = _epochs_with(prefix, ".params") & _epochs_with(prefix, ".states")
    return max(both) if both else None


def list_checkpoints(prefix: str) -> list[str]:
    """Sorted paths of the existing ``<prefix>-%04d.params``, ``.states`` and ``-symbol.json``.

    For an overwrite-protection message ("output/... already holds: ..."); temp files and
    other prefixes' files are not listed.
    """
    paths = [params_path(prefix, e) for e in _epochs_with(prefix, ".params")]
    paths += [states_path(prefix, e) for e in _epochs_with(prefix, ".states")]
    if os.path.isfile(symbol_path(prefix)):
        paths.append(symbol_path(prefix))
    return sorted(paths)


def remove_stale_temp_files(prefix: str) -> list[str]:
    """Deletes the temp files that interrupted checkpoint writes of ``prefix`` left behind.

    Only files of this module's own naming pattern for this prefix's files are touched, in the
    prefix's directory: ``.<base>-NNNN.params.<random>.tmp``, ``.<base>-NNNN.states.<random>.tmp``
    and ``.<base>-symbol.json.<random>.tmp`` (``base`` = the prefix's basename; see
    ``_temp_path``). Call it once at start-up, before this run writes checkpoints: a writer
    running concurrently on the same prefix would lose its temp file.

    Returns:
        The removed paths, sorted (each is logged at INFO).
    """
    directory = os.path.dirname(os.path.abspath(prefix))
    base = re.escape(os.path.basename(prefix))
    pattern = re.compile(
        rf"\.{base}-(?:\d{{4,}}\.(?:params|states)|symbol\.json)\.{_TEMP_RANDOM_RE}\.tmp"
    )
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    removed = []
    for name in sorted(names):
        path = os.path.join(directory, name)
        if pattern.fullmatch(name) and os.path.isfile(path) and not os.path.islink(path):
            try:
                os.remove(path)
            except FileNotFoundError:  # removed meanwhile
                continue
            logger.info("removed stale checkpoint temp file %s (an interrupted write)", path)
            removed.append(path)
    return removed


# ---------------------------------------------------------------------------------------------
# De-normalised bbox-regression params (*_test)


@dataclasses.dataclass(frozen=True)
class BboxPredSpec:
    """Where the bbox-regression layer's params are and how its outputs map to (class, coord).

    Output channel ``c`` predicts coordinate ``(c // spatial_repeat) % 4`` of class
    ``(c // spatial_repeat) // 4``, so it is scaled by ``stds_tiled[c // spatial_repeat]``.

    Attributes:
        weight: name of the weight, shape ``(C_out, ...)`` (conv or FC).
        bias: name of the bias, shape ``(C_out,)``.
        spatial_repeat: output channels per (class, coordinate): 49 for R-FCN's 7x7
            position-sensitive maps (channel layout ``ctop*49 + gh*7 + gw``), 1 for an FC.
    """

    weight: str
    bias: str
    spatial_repeat: int = 1


RFCN_BBOX_PRED = BboxPredSpec("rfcn_bbox_weight", "rfcn_bbox_bias", spatial_repeat=49)
RCNN_BBOX_PRED = BboxPredSpec("bbox_pred_weight", "bbox_pred_bias", spatial_repeat=1)


def add_test_params(
    arg_params: Mapping[str, mx.nd.NDArray],
    means: Sequence[float],
    stds: Sequence[float],
    spec: BboxPredSpec,
) -> Params:
    """Returns a copy of ``arg_params`` plus ``<weight>_test`` and ``<bias>_test``.

    ``weight_test[c] = weight[c] * s[c]`` and ``bias_test[c] = bias[c] * s[c] + m[c]`` with
    ``s = repeat(stds, spatial_repeat)``, ``m = repeat(means, spatial_repeat)``, so the layer
    with the ``_test`` params outputs ``delta * stds + means`` per (class, coordinate): the
    de-normalised deltas. (R-FCN: ``weight * repeat(stds_tiled, 49)``; Faster/FPN:
    ``(W.T * stds_tiled).T``, as in the original.)

    Args:
        means, stds: per (class, coordinate), i.e. ``BBOX_MEANS`` / ``BBOX_STDS`` tiled over the
            regression classes (2 if ``CLASS_AGNOSTIC`` else ``NUM_CLASSES``).
    """
    for name in (spec.weight, spec.bias):
        if name not in arg_params:
            raise KeyError(f"bbox-regression param {name!r} not in the checkpoint params")
    weight, bias = arg_params[spec.weight], arg_params[spec.bias]
    means_np = np.asarray(means, dtype=np.float64).ravel()
    stds_np = np.asarray(stds, dtype=np.float64).ravel()
    num_out = bias.shape[0]
    if means_np.shape != stds_np.shape or num_out != stds_np.size * spec.spatial_repeat:
        raise ValueError(
            f"{spec.bias} has {num_out} outputs, expected len(stds)={stds_np.size} x "
            f"spatial_repeat={spec.spatial_repeat} (and len(means)={means_np.size} == len(stds))"
        )
    if weight.shape[0] != num_out:
        raise ValueError(f"{spec.weight} shape {weight.shape} does not match {spec.bias} {num_out}")
    scale = mx.nd.array(np.repeat(stds_np, spec.spatial_repeat), ctx=weight.context)
    shift = mx.nd.array(np.repeat(means_np, spec.spatial_repeat), ctx=bias.context)
    out = dict(arg_params)
    bshape = (num_out,) + (1,) * (weight.ndim - 1)
    out[spec.weight + "_test"] = weight * scale.reshape(bshape).astype(weight.dtype)
    out[spec.bias + "_test"] = bias * scale.astype(bias.dtype) + shift.astype(bias.dtype)
    return out


def do_checkpoint(
    prefix: str,
    means: Sequence[float] | None = None,
    stds: Sequence[float] | None = None,
    bbox_spec: BboxPredSpec = RCNN_BBOX_PRED,
    module: Any = None,
    period: int = 1,
) -> Callable[[int, mx.sym.Symbol, Params, Params], None]:
    """Epoch-end callback saving ``<prefix>-%04d.params`` (epoch + 1) and the symbol.

    With ``means``/``stds`` it adds the ``*_test`` params of ``bbox_spec``
    (:func:`add_test_params`); with ``module`` (anything with ``get_optimizer_states()``, e.g.
    :class:`lib.core.module.MutableModule`) the optimizer states go into ``.states``, all in one
    atomic :func:`save_checkpoint`. It replaces the original's pair of callbacks
    (``mx.callback.module_checkpoint`` + ``callback.do_checkpoint``).
    """
    if (means is None) != (stds is None):
        raise ValueError("give both means and stds, or neither")

    def _callback(epoch: int, symbol: mx.sym.Symbol, arg: Params, aux: Params) -> None:
        if (epoch + 1) % period:
            return
        params = arg if means is None else add_test_params(arg, means, stds, bbox_spec)
        states = None
        if module is not None and getattr(module, "optimizer_initialized", False):
            states = module.get_optimizer_states()
        save_checkpoint(prefix, epoch + 1, params, aux, symbol, states)

    return _callback
