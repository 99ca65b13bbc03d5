"""The `posthog_driver` logger, set up on first use.

`logging` costs ~10 ms to import, so it is imported only when a record could be shown: always when
the script already uses `logging` (it may have configured our logger), else only for records at or
above POSTHOG_LOG_LEVEL (default WARNING). Without any logging configuration, records go to stderr.
Callers log method, path, status, duration and attempt: never a key, a body or a query string.
"""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~4 ms to import; annotations are strings anyway
    from typing import Any

NAME = "posthog_driver"
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_NAMES = {"DEBUG": DEBUG, "INFO": INFO, "WARNING": WARNING, "WARN": WARNING, "ERROR": ERROR,
          "CRITICAL": 50}
_configured = False


def env_level() -> int | None:
    raw = (os.environ.get("POSTHOG_LOG_LEVEL") or "").strip().upper()
    if not raw:
        return None
    if raw.isdigit():
        return int(raw)
    return _NAMES.get(raw, WARNING)


def logger() -> Any:
    """The configured `logging.Logger` (imports logging)."""
    import logging

    global _configured
    log = logging.getLogger(NAME)
    if not _configured:
        _configured = True
        level = env_level()
        if level is not None:
            log.setLevel(level)
        if not log.handlers and not logging.getLogger().handlers:
            # Nobody configured logging: ours go to stderr, once (not also through the root).
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("posthog_driver %(levelname)s %(message)s"))
            log.addHandler(handler)
            log.propagate = False
            if level is None:
                log.setLevel(WARNING)
    return log


def log(level: int, message: str, *args: Any) -> None:
    if "logging" not in sys.modules and level < (env_level() or WARNING):
        return  # nothing could show it: skip importing logging
    logger().log(level, message, *args)


def enabled(level: int) -> bool:
    if "logging" not in sys.modules and level < (env_level() or WARNING):
        return False
    return bool(logger().isEnabledFor(level))
