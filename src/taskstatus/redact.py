"""Secrets kept out of output and logs: passwords in database URLs and connection strings.

`mask` is applied to every line the CLI prints about an error and, through `MaskingFilter`,
to every log record; ``postgresql://app:s3cret@db/tasks`` becomes ``postgresql://app:***@db/tasks``
and ``password=s3cret`` becomes ``password=***``. No I/O.
"""

from __future__ import annotations

import logging
import re

__all__ = ["MaskingFilter", "mask"]

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*):[^/?#\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)", re.I)


def mask(text: str) -> str:
    """`text` with every password in a URL or a ``password=`` setting replaced by ***."""
    if "@" in text:
        text = _URL_PASSWORD.sub(r"\g<head>:***@", text)
    if "assword" in text or "ASSWORD" in text:
        text = _KEYWORD_PASSWORD.sub(r"\g<key>***", text)
    return text


class MaskingFilter(logging.Filter):
    """Masks the passwords in a log record's message and in its traceback."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask(self._formatter.formatException(record.exc_info))
        return True
