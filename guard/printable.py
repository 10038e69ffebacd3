# pyright: strict
"""`printable`: text from agents and tools made safe to show a person, one line at a time.

Tool names, reasons, arguments and errors come from agents and the tools they call. Printed raw, a newline
forges a log line or a CLI row, an ESC sequence drives the reader's terminal (colours, cursor moves, window
title), and a bidirectional override reorders what a reviewer reads. Every human output (the console log,
the CLI's text output and errors, the reviewer page) passes its values through `printable`; JSON outputs
escape these characters by themselves.

Escaped: the C0 and C1 control characters and DEL (`\\n`, `\\r`, `\\t`, else `\\xNN`), the Unicode line and
paragraph separators and the bidirectional controls (`\\uNNNN`). Backslashes are left as they are, so a
text that already holds `\\n` reads the same as an escaped newline: this keeps paths and regexes readable,
and neither can start a new line or reach the terminal.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character escaped, so it stays one line and cannot steer a terminal.

    Text without such characters is returned as it is (the common case costs one regex scan).
    """
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)
