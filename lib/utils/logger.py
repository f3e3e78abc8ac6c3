"""Logging setup for entry points: one log file per run plus the console, on the root logger.

Library modules only do ``logger = logging.getLogger(__name__)``; an entry point calls
:func:`create_logger` (original layout of output directories) or :func:`setup_logger` once.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping

from lib.config import dump_config, save_config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Marks the handlers installed here, so a second call replaces them instead of adding more.
_HANDLER_TAG = "_dcn_logger_handler"

logger = logging.getLogger(__name__)


def experiment_output_path(root_output_path: str, cfg_path: str, image_set: str) -> str:
    """``root_output_path/<cfg basename without extension>/<image sets joined by '_'>``.

    E.g. ``('./output/rfcn/coco', 'cfgs/x.yaml', 'train2014+val2014')`` gives
    ``./output/rfcn/coco/x/train2014_val2014``. Test drivers use it to find the training output
    (the original prefix is ``<this path with the *train* image set>/<model_prefix>``).
    """
    cfg_name = os.path.splitext(os.path.basename(cfg_path))[0]
    return os.path.join(root_output_path, cfg_name, "_".join(image_set.split("+")))


def _operator_library_info() -> str:
    try:
        from lib import ops

        info = ops.build_info()
    except (ImportError, RuntimeError, AttributeError, OSError) as e:
        return f"not loaded ({type(e).__name__}: {e})"
    if isinstance(info, Mapping):
        return ", ".join(f"{k}={v}" for k, v in info.items())
    return str(info)


def setup_logger(
    output_dir: str,
    log_prefix: str,
    cfg: Mapping | None = None,
    level: int = logging.INFO,
    save: bool = True,
) -> logging.Logger:
    """Log to ``<output_dir>/<log_prefix>_<YYYY-mm-dd-HH-MM-SS>.log`` and to stderr.

    Handlers go on the root logger, so every ``logging.getLogger(__name__)`` reaches both. A
    second call in the same process (e.g. test after train) closes the previous file and
    console handlers installed here and installs new ones: one console handler, and the log
    switches to the new file. Then the MXNet version, the operator library's build info and, if
    ``cfg`` is given, the merged config are logged, and (with ``save``) the config is saved as
    ``<output_dir>/config.yaml``.

    Returns:
        The root logger.
    """
    os.makedirs(output_dir, exist_ok=True)
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, _HANDLER_TAG, False)]:
        root.removeHandler(h)
        h.close()

    log_file = os.path.join(output_dir, f"{log_prefix}_{time.strftime('%Y-%m-%d-%H-%M-%S')}.log")
    formatter = logging.Formatter(LOG_FORMAT)
    for handler in (logging.FileHandler(log_file), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_TAG, True)
        root.addHandler(handler)
    root.setLevel(level)

    import mxnet as mx

    logger.info("log file: %s", log_file)
    logger.info("mxnet version: %s", mx.__version__)
    logger.info("operator library: %s", _operator_library_info())
    if cfg is not None:
        logger.info("config:\n%s", dump_config(cfg))
        if save:
            logger.info("config saved to %s", save_config(cfg, output_dir))
    return root


def current_log_file() -> str | None:
    """The log file of the last :func:`setup_logger` call (None if it was never called)."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, _HANDLER_TAG, False) and isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


def create_logger(
    root_output_path: str,
    cfg_path: str,
    image_set: str,
    cfg: Mapping | None = None,
    save: bool = True,
) -> tuple[logging.Logger, str]:
    """Original ``create_logger``: make the experiment output dir and log into it.

    Args:
        root_output_path: ``cfg.output_path``, e.g. ``./output/rfcn/coco``.
        cfg_path: the yaml the run was started with; its basename names the subdirectory and the
            log file.
        image_set: ``'+'``-separated image sets, e.g. ``2007_trainval+2012_trainval``.
        cfg: the merged config to log and (with ``save``) save as ``config.yaml`` (optional).

    Returns:
        ``(root logger, final_output_path)`` where the path is
        :func:`experiment_output_path` and the log file is
        ``<cfg basename>_<YYYY-mm-dd-HH-MM-SS>.log`` inside it.
    """
    final_output_path = experiment_output_path(root_output_path, cfg_path, image_set)
    cfg_name = os.path.splitext(os.path.basename(cfg_path))[0]
    return setup_logger(final_output_path, cfg_name, cfg, save=save), final_output_path
