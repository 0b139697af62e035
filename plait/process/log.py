"""The process layer's logger: ``get_logger`` and ``log_to_stderr``, as in ``multiprocessing``.

``logging`` costs a child several milliseconds to import, so nothing here imports it
until a program asks for the logger; until then ``debug``/``info`` are a global lookup
and a ``None`` test. The logger is named ``plait`` and does not propagate to the root
logger (``multiprocessing`` does the same with its own logger). Records carry the plait
process name in ``%(processName)s`` (``logging`` itself only knows about
``multiprocessing``'s processes). Children started by spawn or forkserver inherit the
``log_to_stderr`` setting and the logger's effective level of their parent, as
``multiprocessing``'s children do.

The levels are ``multiprocessing.util``'s: ``SUBDEBUG`` (5) and ``SUBWARNING`` (25) beside
``logging``'s.
"""

from __future__ import annotations

# Annotations only: importing typing would cost every child ~10 ms (see spawn).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "LOGGER_NAME",
    "DEFAULT_LOGGING_FORMAT",
    "NOTSET",
    "SUBDEBUG",
    "DEBUG",
    "INFO",
    "SUBWARNING",
    "get_logger",
    "log_to_stderr",
    "sub_debug",
    "debug",
    "info",
    "sub_warning",
]

LOGGER_NAME = "plait"
DEFAULT_LOGGING_FORMAT = "[%(levelname)s/%(processName)s] %(message)s"

NOTSET = 0
SUBDEBUG = 5
DEBUG = 10
INFO = 20
SUBWARNING = 25

_logger = None
_stderr_level: int | str | None = None  # set once log_to_stderr was called; children copy it


def get_logger() -> Any:
    """Return the ``plait`` logger (a ``logging.Logger``), creating it on first call."""
    global _logger
    if _logger is None:
        import logging  # noqa: PLC0415 - see module docstring

        logger = logging.getLogger(LOGGER_NAME)
        logger.propagate = False
        _logger = logger
    return _logger


def log_to_stderr(level: int | str | None = None) -> Any:
    """Send the ``plait`` logger's records to stderr; set its level if given. Returns it.

    ``log_to_stderr(logging.INFO)`` shows plait's records of level INFO and above, from
    this process and from the children it starts afterwards.
    """
    global _stderr_level
    import logging  # noqa: PLC0415 - see module docstring

    logger = get_logger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(DEFAULT_LOGGING_FORMAT))
    handler.addFilter(_with_process_name)
    logger.addHandler(handler)
    if level:
        logger.setLevel(level)
    _stderr_level = level if level else logging.NOTSET
    return logger


def _main_process_name() -> str:
    return "MainProcess"


# The name of the running process, for records. ``process`` puts its own lookup here as
# it loads (it sits above this module, which it uses); the package imports it at once.
process_name: Callable[[], str] = _main_process_name


def _with_process_name(record: Any) -> bool:
    record.processName = process_name()
    return True


def effective_level() -> int | None:
    """The logger's effective level if a program created it (what children inherit)."""
    return None if _logger is None else _logger.getEffectiveLevel()


def adopt(level: int | None, stderr_level: int | str | None) -> None:
    """In a child: take the parent's logger level and ``log_to_stderr`` setting."""
    if stderr_level is not None and _stderr_level is None:  # a fork server may have done it
        log_to_stderr(stderr_level)
    if level is not None:
        get_logger().setLevel(level)


def sub_debug(msg: str, *args: object) -> None:
    """Log at SUBDEBUG level if a program created the logger."""
    if _logger is not None:
        _logger.log(SUBDEBUG, msg, *args, stacklevel=2)


def sub_warning(msg: str, *args: object) -> None:
    """Log at SUBWARNING level if a program created the logger."""
    if _logger is not None:
        _logger.log(SUBWARNING, msg, *args, stacklevel=2)


def debug(msg: str, *args: object) -> None:
    """Log at DEBUG level if a program created the logger."""
    if _logger is not None:
        _logger.debug(msg, *args, stacklevel=2)


def info(msg: str, *args: object) -> None:
    """Log at INFO level if a program created the logger."""
    if _logger is not None:
        _logger.info(msg, *args, stacklevel=2)
