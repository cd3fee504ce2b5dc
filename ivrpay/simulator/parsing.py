"""How Asterisk reads one AGI command line (``res_agi.c``), reproduced quirk for quirk.

The stand-in plays Asterisk, so it parses commands with Asterisk's rules, not with the server's
codec: words split on blanks and tabs; ``"`` toggles quoting anywhere in a word (a quote that
opens a word starts one, even an empty one: ``""``); ``\\`` makes the next character literal;
nothing else is special. The line is a C string: it ends at the first NUL, and a trailing CR is
kept as part of the last word (``NOOP\\r`` is an unknown command). Numbers are read the way
``atoi`` and ``sscanf("%d")`` read them.
"""

from __future__ import annotations

import re

MAX_ARGS = 128  # res_agi.c: words past the 127th are dropped
AGI_BUF_LEN = 2048  # res_agi.c reads a command into a buffer this long (NUL included)

_LEADING_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?\d+)")


def c_string(line: str) -> str:
    """The command as C code sees it: everything up to the first NUL."""
    return line.split("\0", 1)[0]


def parse_args(line: str) -> list[str]:
    """Asterisk's ``parse_args``: the words of one command line."""
    argv: list[str] = []
    quoted = escaped = False
    whitespace = True
    for ch in c_string(line):
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                if len(argv) < MAX_ARGS - 1:
                    argv.append("")
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        # An ordinary character (or an escaped one).
        if whitespace:
            if len(argv) >= MAX_ARGS - 1:
                continue  # "Too many arguments, truncating": the rest is lost
            argv.append("")
            whitespace = False
        argv[-1] += ch
        escaped = False
    return argv


def ascii_upper(word: str) -> str:
    """Upper case for ASCII letters only, as ``strcasecmp`` compares them."""
    return word.encode("latin-1", "replace").upper().decode("latin-1")


def atoi(text: str) -> int:
    """C ``atoi``: leading blanks, a sign, digits; anything else reads as 0."""
    m = _LEADING_INT.match(text)
    return int(m.group(1)) if m else 0


def scan_int(text: str) -> int | None:
    """C ``sscanf(text, "%d")``: the number, or None when the conversion fails."""
    m = _LEADING_INT.match(text)
    return int(m.group(1)) if m else None
