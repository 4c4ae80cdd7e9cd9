"""Application logging: loguru JSON lines, redaction of secrets, correlation ids.

* :func:`setup_logging` writes one JSON object per line to ``paths.app_logs`` (one file a day,
  rotated at midnight, files older than 30 days removed).
* Every string that goes into a line — message, exception text, extra values, file paths — passes
  through :func:`redact` first. loguru's ``serialize=True`` is not used because it writes the
  traceback unredacted (see shared/STACK-NOTES.md).
* :func:`correlation` binds an id to the current context (``contextvars``) for the duration of a
  user action; every record logged inside it carries that id, asyncio tasks created inside it too.

This module is Qt-free.
"""

from __future__ import annotations

import contextvars
import json
import logging as std_logging
import os
import re
import secrets as _random
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from loguru import logger

from isengard_desktop.core.paths import AppPaths

__all__ = [
    "LOG_FILE_PATTERN", "LOG_RETENTION", "LOG_RETENTION_DAYS", "LOG_ROTATION", "REDACTED",
    "add_redaction_value", "correlation", "current_correlation_id", "new_correlation_id",
    "prune_old_logs", "redact", "setup_logging", "shutdown_logging",
]

REDACTED = "[REDACTED]"
LOG_FILE_PATTERN = "isengard_{time:YYYY-MM-DD}.jsonl"
LOG_GLOB = "isengard_*.jsonl"
LOG_ROTATION = "00:00"          # a new file every day at midnight
LOG_RETENTION_DAYS = 30
LOG_RETENTION = f"{LOG_RETENTION_DAYS} days"

# Shortest value add_redaction_value accepts: masking "ab" everywhere would garble every line.
_MIN_REDACTION_VALUE = 4
_LINE_KEY = "_isengard_json_line"

# --------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------

_KEY_WORDS = r"(?:token|password|passwd|pwd|secret|api[_-]?key|apikey|access[_-]?key|auth[_-]?key)"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Hugging Face tokens.
    (re.compile(r"hf_[A-Za-z0-9]{20,}"), REDACTED),
    # OpenAI / Anthropic / Civitai-style "sk-..." keys.
    (re.compile(r"sk-[A-Za-z0-9_-]{16,}"), REDACTED),
    # "Authorization: Bearer xyz" (and Basic / Token schemes).
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token)?\s*)[^\s\"'&,]+"),
     r"\1" + REDACTED),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1" + REDACTED),
    # 40-hex keys (W&B) — ONLY after a key/token/api/secret/password/wandb word, so that a bare
    # git commit hash stays readable. Covers WANDB_API_KEY=<hex>, api_key: <hex>,
    # "token": "<hex>", wandb key <hex>.
    (re.compile(r"(?i)(\b\w*(?:key|token|api|secret|password|wandb)\w*"
                r"[\"']?\s*(?:[:=]\s*|\s+)[\"']?)[0-9a-f]{40}(?![0-9a-f])"),
     r"\1" + REDACTED),
    # name=value / name: value where the name ends in a secret-ish word:
    # token=..., password=..., api_key=..., secret=..., HF_TOKEN=..., "password": "...".
    (re.compile(r"(?i)(\b[\w.-]*" + _KEY_WORDS + r"[\"']?\s*[:=]\s*[\"']?)"
                r"(?!\[REDACTED\])[^\s\"'&]+"),
     r"\1" + REDACTED),
)

_values_lock = threading.Lock()
_redaction_values: set[str] = set()
_values_regex: re.Pattern[str] | None = None
_home_cache: tuple[str, re.Pattern[str] | None] | None = None


def add_redaction_value(secret: str) -> None:
    """Mask this exact string in every log line from now on (e.g. a key the user just typed).

    Values shorter than 4 characters are ignored (they would mask ordinary text).
    """
    global _values_regex
    value = (secret or "").strip()
    if len(value) < _MIN_REDACTION_VALUE:
        return
    with _values_lock:
        if value in _redaction_values:
            return
        _redaction_values.add(value)
        ordered = sorted(_redaction_values, key=len, reverse=True)
        _values_regex = re.compile("|".join(re.escape(v) for v in ordered))


def _clear_redaction_values() -> None:
    """For tests: forget the values registered with :func:`add_redaction_value`."""
    global _values_regex
    with _values_lock:
        _redaction_values.clear()
        _values_regex = None


def _home_regex() -> re.Pattern[str] | None:
    global _home_cache
    try:
        home = str(Path.home())
    except (RuntimeError, KeyError):
        return None
    cached = _home_cache
    if cached is not None and cached[0] == home:
        return cached[1]
    stripped = home.rstrip("/\\")
    if len(stripped) < 2:            # home is "/" or empty: nothing sensible to mask
        regex = None
    else:
        variants = {stripped, stripped.replace("\\", "/")}
        alternatives = "|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True))
        flags = re.IGNORECASE if os.name == "nt" else 0
        # Only at a path boundary: "/home/al" must not eat the start of "/home/alex".
        regex = re.compile(f"(?:{alternatives})(?![\\w.-])", flags)
    _home_cache = (home, regex)
    return regex


def redact(text: str) -> str:
    """Return ``text`` with tokens, keys, passwords and the home folder masked.

    Masks: ``hf_…`` tokens, ``sk-…`` keys, ``Authorization: Bearer …``, 40-hex keys that follow a
    key/token/api/secret/password/wandb word (a bare git hash is kept), values of ``token=``,
    ``password=``, ``api_key=``, ``secret=`` (up to whitespace, a quote or ``&``), every value
    registered with :func:`add_redaction_value`, and the user's home folder (→ ``~``).
    """
    if not text:
        return text
    values = _values_regex
    if values is not None:
        text = values.sub(REDACTED, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    home = _home_regex()
    if home is not None:
        text = home.sub("~", text)
    return text


# --------------------------------------------------------------------------------------------
# Correlation ids
# --------------------------------------------------------------------------------------------

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "isengard_correlation_id", default=None)


def new_correlation_id() -> str:
    """A short random id (12 hex characters) for one user action."""
    return _random.token_hex(6)


def current_correlation_id() -> str | None:
    """The id bound by the innermost :func:`correlation` block, or None outside any."""
    return _correlation_id.get()


@contextmanager
def correlation(cid: str | None = None) -> Iterator[str]:
    """Bind a correlation id for the duration of a user action and yield it.

    With ``cid`` given, that id is bound. Without it, an id already bound by an outer block is
    kept (a service called inside a user action continues that action); with none bound, a new
    one is made. The previous id is restored on exit.
    """
    if cid is None:
        cid = _correlation_id.get() or new_correlation_id()
    token = _correlation_id.set(cid)
    try:
        yield cid
    finally:
        _correlation_id.reset(token)


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------

def _redact_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    return redact(repr(value))


def _exception_text(record: dict[str, Any]) -> str | None:
    exc = record["exception"]
    if not exc:
        return None
    type_, value, tb = exc
    if type_ is None:
        return None
    return "".join(traceback.format_exception(type_, value, tb))


def _record_to_json(record: dict[str, Any]) -> str:
    """One redacted JSON line (no newline) for a loguru record."""
    extra = dict(record["extra"])
    cid = extra.pop("correlation_id", None) or _correlation_id.get()
    payload: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": redact(record["message"]),
        "name": record["name"],
        "module": record["module"],
        "function": record["function"],
        "line": record["line"],
        "file": redact(record["file"].path),
        "process": record["process"].id,
        "thread": record["thread"].name,
        "correlation_id": cid,
    }
    public = {str(k): _redact_value(v) for k, v in extra.items() if not str(k).startswith("_")}
    if public:
        payload["extra"] = public
    exc_text = _exception_text(record)
    if exc_text is not None:
        payload["exception"] = redact(exc_text)
    return json.dumps(payload, ensure_ascii=False, default=str)


def _json_format(record: dict[str, Any]) -> str:
    # loguru calls this before writing; the finished, redacted line is handed back through
    # ``extra`` so that loguru's own markup parser never sees the text.
    record["extra"][_LINE_KEY] = _record_to_json(record)
    return "{extra[" + _LINE_KEY + "]}\n"


def _console_sink(message: Any) -> None:
    # The final text (message + loguru's traceback) is redacted as one string.
    stream = sys.stderr
    if stream is None:
        return
    stream.write(redact(str(message)))
    stream.flush()


_CID_KEY = "_isengard_cid"


def _console_format(record: dict[str, Any]) -> str:
    extra = record["extra"]
    extra[_CID_KEY] = extra.get("correlation_id") or _correlation_id.get() or "-"
    return ("{time:HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} | "
            "{extra[" + _CID_KEY + "]} | {message}\n{exception}")


# --------------------------------------------------------------------------------------------
# Standard library logging → loguru
# --------------------------------------------------------------------------------------------

class InterceptHandler(std_logging.Handler):
    """Forwards records from Python's ``logging`` module (warnings and up) into loguru."""

    def emit(self, record: std_logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        # Find the caller outside the logging module so name/function/line are the origin's.
        frame: FrameType | None = sys._getframe(0)
        depth = 0
        logging_file = std_logging.__file__
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging_file):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).bind(stdlib_logger=record.name).log(
            level, record.getMessage())


# --------------------------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------------------------

_setup_lock = threading.Lock()
_handler_ids: list[int] = []
_intercept: InterceptHandler | None = None


def prune_old_logs(folder: Path, days: int = LOG_RETENTION_DAYS) -> list[Path]:
    """Delete app log files in ``folder`` last written more than ``days`` ago; return them.

    loguru applies ``retention`` only when it rotates, which never happens for a session that
    does not run past midnight, so this also runs at every :func:`setup_logging`.
    """
    removed: list[Path] = []
    cutoff = time.time() - days * 86400
    if not folder.is_dir():
        return removed
    for path in folder.glob(LOG_GLOB):
        try:
            if path.is_file() and path.stat().st_mtime <= cutoff:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


def _remove_own_handlers() -> None:
    global _intercept
    while _handler_ids:
        handler_id = _handler_ids.pop()
        try:
            logger.remove(handler_id)
        except ValueError:
            pass
    if _intercept is not None:
        std_logging.getLogger().removeHandler(_intercept)
        _intercept = None


def setup_logging(paths: AppPaths, *, level: str = "INFO", console: bool = False) -> None:
    """Send the app's logs to ``paths.app_logs`` as redacted JSON lines.

    Safe to call again: handlers added by an earlier call are removed first. loguru's default
    stderr handler is removed; with ``console=True`` a redacted human-readable stderr handler
    is added instead. Python ``logging`` warnings and errors are routed into loguru too.
    Writes are synchronous (``enqueue=False``) and line-buffered, so a line is on disk when the
    logging call returns.
    """
    global _intercept
    level = level.upper()
    with _setup_lock:
        _remove_own_handlers()
        try:
            logger.remove(0)          # loguru's default stderr handler, if still there
        except ValueError:
            pass

        folder = paths.app_logs
        folder.mkdir(parents=True, exist_ok=True)
        prune_old_logs(folder)

        file_id = logger.add(
            str(folder / LOG_FILE_PATTERN),
            level=level,
            format=_json_format,  # type: ignore[arg-type]  # loguru's Record TypedDict, read as a dict
            rotation=LOG_ROTATION,
            retention=LOG_RETENTION,
            encoding="utf-8",
            enqueue=False,
            backtrace=False,
            diagnose=False,
            colorize=False,
            catch=True,
            buffering=1,
        )
        _handler_ids.append(file_id)

        if console:
            console_id = logger.add(
                _console_sink,
                level=level,
                format=_console_format,  # type: ignore[arg-type]  # as above
                backtrace=False,
                diagnose=False,
                colorize=False,
                enqueue=False,
                catch=True,
            )
            _handler_ids.append(console_id)

        _intercept = InterceptHandler(level=std_logging.WARNING)
        std_logging.getLogger().addHandler(_intercept)


def shutdown_logging() -> None:
    """Remove every handler :func:`setup_logging` added and close the log file."""
    with _setup_lock:
        _remove_own_handlers()
