"""structlog set-up and the last-line card-number masker.

Everything the process logs (structlog and the standard library's loggers, aiohttp and asyncpg
included) goes through one processor chain that ends with :func:`mask_card_numbers`: every run of
12–19 digits not joined to other digits is replaced, in every value, except in the fields of an
explicit allow-list of identifiers that are known not to be card data. Tracebacks are rendered
without local variables; uncaught exceptions (process and threads) are logged through the same
chain, and a record that cannot be formatted is reported without its message or arguments.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

# Fields whose digit runs are identifiers, never card data (gateway TranID/TranDate, Asterisk
# uniqueid and thread id). Keep this list short and explicit.
ALLOWED_DIGIT_FIELDS = frozenset(
    {"tran_id", "tran_date", "uniqueid", "agi_uniqueid", "threadid", "agi_threadid", "thread_id"}
)

_DIGIT_RUN = re.compile(r"(?<!\d)\d{12,19}(?!\d)")
MASK = "[card?]"


def mask_text(text: str) -> str:
    """Replace every run of 12–19 digits not joined to other digits."""
    return _DIGIT_RUN.sub(MASK, text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, bytes | bytearray):
        return mask_text(bytes(value).decode("latin-1"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        # A float renders with its integer digits too: 4111111111111111.0.
        return MASK if _DIGIT_RUN.search(repr(value)) else value
    if isinstance(value, dict):
        # Keys are rendered as well as values.
        return {_mask_value(k): _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_value(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    return mask_text(str(value))


def mask_card_numbers(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the last line of defence against card numbers in logs."""
    for key in list(event_dict):
        if key in ALLOWED_DIGIT_FIELDS:
            continue
        value = _mask_value(event_dict[key])
        masked_key = mask_text(key) if isinstance(key, str) else key
        if masked_key != key:
            del event_dict[key]
        event_dict[masked_key] = value
    return event_dict


def _exception_formatter(
    exc_info: Any,
) -> str:  # pragma: no cover - thin wrapper, exercised through logs
    # Plain traceback text without locals: local variables may hold card data.
    import traceback

    return "".join(traceback.format_exception(*exc_info))


class _Handler(logging.StreamHandler):
    """A stream handler whose own error report never shows the record's message or arguments
    (logging's default prints both raw on stderr, card data included)."""

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[0]
        note = f"logging error in {record.name}: {error.__name__ if error else 'unknown'}"
        try:
            self.stream.write(mask_text(note) + "\n")
            self.flush()
        except Exception:  # a broken stream: nothing more can be done
            pass


def _shared_processors() -> list[Callable[..., Any]]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
    ]


class _QuietOutage(logging.Filter):
    """asyncpg's pool logs a traceback each time it fails to reconnect while the database is away;
    the workers already say once when an outage begins and ends (issue 13.5). Other failures of
    the pool (a refused password) are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        module = type(exc).__module__
        away = isinstance(exc, ConnectionError | TimeoutError) or (
            module.startswith("asyncpg")
            and type(exc).__name__
            in {
                "ObjectNotInPrerequisiteStateError",
                "CannotConnectNowError",
                "AdminShutdownError",
                "CrashShutdownError",
                "TooManyConnectionsError",
                "ConnectionDoesNotExistError",
                "ConnectionFailureError",
                "InterfaceError",
                "InternalClientError",
            }
        )
        return not away


def configure(level: str = "info", fmt: str | None = None, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library logging to one masked output.

    ``fmt`` is ``json`` or ``console``; ``None`` picks console on a terminal, JSON otherwise.
    """
    stream = stream or sys.stderr
    if fmt is None:
        fmt = "console" if stream.isatty() else "json"
    if fmt == "json":
        renderer: Any = structlog.processors.JSONRenderer(ensure_ascii=False)
        exc: list[Any] = [structlog.processors.ExceptionRenderer(_exception_formatter)]
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
        exc = [structlog.processors.ExceptionRenderer(_exception_formatter)]
    final = [*exc, mask_card_numbers, renderer]

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log is noise at info on a busy IVR; keep it at warning.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, _QuietOutage) for f in pool_log.filters):
        pool_log.addFilter(_QuietOutage())

    # A crash would print its traceback with Python's own hooks, around the masker: log it instead.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread

    structlog.configure(
        processors=[
            # Drop what the level hides before any processor runs: a call logs every AGI
            # command at debug, and formatting those for nothing costs real CPU per call.
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("ivrpay").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("ivrpay").critical(
        "uncaught exception in thread %s",
        args.thread.name if args.thread is not None else "?",
        exc_info=args.exc_value,
    )


def get_logger(name: str | None = None, **initial: Any) -> Any:
    return structlog.get_logger(name, **initial)
