"""Log capture for tests: the records of asgiri's loggers, and access-log lines, waited for
without sleeping.
"""

from __future__ import annotations

import logging
import threading
import time

TIMEOUT = 10.0


class LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            self.records.append(record)

    def messages(self) -> list[str]:
        with self.guard:
            return [r.getMessage() for r in self.records]

    def wait_for(self, *fragments: str, timeout: float = TIMEOUT) -> str:
        """The first ERROR message containing every fragment (polled, not slept)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.guard:
                for record in self.records:
                    message = record.getMessage()
                    if record.levelno >= logging.ERROR and all(f in message for f in fragments):
                        return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no error log with {fragments}: {self.messages()}")
            time.sleep(0.01)


class AccessLines(LogRecords):
    """The ``asgiri.access`` lines of in-process servers (run them with ``log_level="info"``)."""

    def matching(self, fragment: str) -> list[str]:
        return [message for message in self.messages() if fragment in message]

    def wait_for(self, *fragments: str, timeout: float = 10.0) -> str:
        """The first line containing every fragment (polled with a deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages():
                if all(fragment in message for fragment in fragments):
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no access line with {fragments}: {self.messages()}")
            time.sleep(0.01)
