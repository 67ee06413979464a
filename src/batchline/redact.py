"""Secrets never reach an output: their values are replaced by ``***``.

A secret is the value of an environment variable that is declared secret (a workflow's
``secrets: [NAME, ...]``) or whose name says so (contains ``KEY``, ``TOKEN``, ``SECRET``
or ``PASSWORD``). Commands still receive the real values; what batchline writes or prints
(errors, the state store, ``show``, ``export``, ``--format json``, logs, progress lines,
OpenTelemetry spans) goes through a :class:`Redactor`.

Every layer may import this module (it imports nothing of batchline). The process-wide
redactor (:func:`register`, :func:`redact`, :func:`redact_data`) is what logs and spans
use; a workflow run registers its secrets there when it starts.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
#: Values that look like flags, not secrets, are never masked for a name match alone
#: (``TOKENIZERS_PARALLELISM=false`` must not turn every ``false`` into ``***``).
_MIN_GUESSED_LENGTH = 4
_NOT_SECRET = re.compile(r"(?i)(true|false|yes|no|on|off|none|null|\d{1,8})")

__all__ = [
    "MASK",
    "SECRET_NAME",
    "Redactor",
    "active",
    "is_secret_name",
    "redact",
    "redact_data",
    "register",
]


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name marks it secret by default."""
    return bool(SECRET_NAME.search(name))


class Redactor:
    """Replaces known secret values by ``***`` in text, data and exceptions.

    Args:
        values: the secret values (empty ones are ignored).
    """

    __slots__ = ("_pattern", "values")

    def __init__(self, values: Iterable[str] = ()) -> None:
        unique = {str(v) for v in values if v}
        self.values: tuple[str, ...] = tuple(sorted(unique, key=lambda v: (-len(v), v)))
        self._pattern = (
            re.compile("|".join(re.escape(v) for v in self.values)) if self.values else None
        )

    @classmethod
    def from_env(cls, env: Mapping[str, Any], declared: Iterable[str] = ()) -> Redactor:
        """Secrets of an environment: the ``declared`` names, and names that say secret."""
        names = set(declared)
        values = [str(env[name]) for name in names if env.get(name)]
        for name, value in env.items():
            text = str(value)
            if (
                name not in names
                and is_secret_name(str(name))
                and len(text) >= _MIN_GUESSED_LENGTH
                and not _NOT_SECRET.fullmatch(text)
            ):
                values.append(text)
        return cls(values)

    def __bool__(self) -> bool:
        return bool(self.values)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Redactor, (self.values,))

    def merged(self, other: Redactor) -> Redactor:
        """A redactor for the values of both."""
        return Redactor((*self.values, *other.values))

    def text(self, text: str) -> str:
        """``text`` with every secret value replaced."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def data(self, value: Any) -> Any:
        """A copy of plain data (dicts, lists, strings) with every secret value replaced."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


_LOCK = threading.Lock()
_ACTIVE = Redactor()
_FACTORY_INSTALLED = False


def active() -> Redactor:
    """The process-wide redactor (every secret registered so far)."""
    return _ACTIVE


def register(redactor: Redactor) -> None:
    """Add secrets to the process-wide redactor (used by logs, spans and the CLI)."""
    global _ACTIVE
    if not redactor:
        return
    with _LOCK:
        _ACTIVE = _ACTIVE.merged(redactor)
        _install_log_redaction()


def redact(text: str) -> str:
    """``text`` through the process-wide redactor."""
    return _ACTIVE.text(text)


def redact_data(value: Any) -> Any:
    """Plain data through the process-wide redactor."""
    return _ACTIVE.data(value)


def _install_log_redaction() -> None:
    """Redact batchline's log records (message, arguments and traceback) as they are made."""
    global _FACTORY_INSTALLED
    if _FACTORY_INSTALLED:
        return
    _FACTORY_INSTALLED = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name == "batchline" or record.name.startswith("batchline."):
            redactor = _ACTIVE
            if redactor:
                try:
                    message = record.getMessage()
                except Exception:  # a bad format string: logging reports it when emitting
                    message = None
                if message is not None:
                    record.msg = redactor.text(message)
                    record.args = ()
                if record.exc_info and record.exc_info[1] is not None:
                    record.exc_text = redactor.text(
                        logging.Formatter().formatException(record.exc_info)
                    )
        return record

    logging.setLogRecordFactory(factory)
