"""``ivrpay call``: one simulated caller against a FastAGI server, printed as it went.

One line per prompt played (``♪ ja ivrpay/welcome``) and per key entry (``⌨ ************1111#``:
card-length runs masked), then the variables the server set (``IVRPAY_STATUS=SUCCEEDED``), how the
call ended, and any missing prompt or protocol error. Exit 0 when the script ended the normal way,
whatever its status; 1 when the server broke the protocol, went silent or could not be reached;
2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import TextIO

from ivrpay.config import ConfigError, HostPort, Settings
from ivrpay.simulator.call import place_call
from ivrpay.simulator.keys import KeySyntaxError, mask_digits, parse_keys
from ivrpay.simulator.record import CallRecord, KeyEntry, Note, Prompt
from ivrpay.simulator.sounds import has_prompts

_ASCII = str.maketrans({"♪": "~", "⌨": "#", "—": "-", "·": "*"})
_LANGUAGE = re.compile(r"[A-Za-z0-9_-]{1,20}")


def main_call(args: argparse.Namespace, agi: HostPort) -> int:
    """Entry point for ``ivrpay call`` (``args``: keys, code, transferrer, language, script)."""
    return run_call(args, agi)


def run_call(
    args: argparse.Namespace,
    agi: HostPort,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    settings: Settings | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        entries = parse_keys(args.keys)
    except KeySyntaxError as exc:
        _emit(err, f"ivrpay call: --keys: {exc}")
        return 2
    if not _LANGUAGE.fullmatch(args.language):
        _emit(err, f"ivrpay call: --language: {args.language!r} is not a language code")
        return 2
    try:
        settings = settings or Settings.from_env()
    except ConfigError as exc:
        _emit(err, f"ivrpay call: {exc}")
        return 2
    # Prompts are checked only when the sounds directory has files for the caller's language.
    sounds_dir = settings.sounds_dir if has_prompts(settings.sounds_dir, args.language) else None
    # The server may be quiet while the gateway (and its reconcile) runs.
    silence = max(30.0, 2 * settings.gateway_timeout_s + 10)
    try:
        record = asyncio.run(
            place_call(
                agi.host,
                agi.port,
                script=args.script,
                args=(args.code, args.transferrer),
                keys=entries,
                language=args.language,
                sounds_dir=sounds_dir,
                silence_timeout=silence,
            )
        )
    except ValueError as exc:  # a value the agi_* block cannot carry
        _emit(err, f"ivrpay call: {exc}")
        return 2
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        _emit(err, f"ivrpay call: cannot reach the FastAGI server at {agi}: {reason}")
        return 1
    report(record, out, checked_prompts=sounds_dir is not None)
    return 0 if record.ok else 1


def report(record: CallRecord, out: TextIO, *, checked_prompts: bool = True) -> None:
    """The call as a person reads it; never a card number."""
    for item in record.timeline:
        if isinstance(item, Prompt):
            note = ""
            if item.missing:
                note = " (missing)"
            elif item.played_from is not None:
                note = f" (played from {item.played_from or 'no language'})"
            _emit(out, f"♪ {item.language} {mask_digits(item.file)}{note}")
        elif isinstance(item, KeyEntry):
            shown = {"_": "_ (silence)", "!": "! (hangs up)", "~!": "~! (hangs up)"}
            _emit(out, f"⌨ {shown.get(item.keys, item.keys)}")
        elif isinstance(item, Note):
            _emit(out, f"· {item.text}")
    for name, value in record.variables.items():
        _emit(out, f"{mask_digits(name)}={mask_digits(value)}")
    if not record.variables:
        _emit(out, "(no variables set)")
    _emit(out, f"— call ended: {record.ended}, AGISTATUS={record.agistatus}")
    for path in record.missing_prompts:
        _emit(out, f"! missing prompt: {mask_digits(path)}")
    for path in record.fallback_prompts:
        _emit(out, f"! prompt not in the caller's language: {mask_digits(path)}")
    if not checked_prompts:
        _emit(out, "! prompt files not checked (no sounds for this language)")
    for error in record.protocol_errors:
        _emit(out, f"! protocol error: {error}")
    for index in record.card_like_commands:
        _emit(out, f"! command {index} carries card-like digits")


def _emit(stream: TextIO, text: str) -> None:
    try:
        stream.write(text + "\n")
    except UnicodeEncodeError:  # a terminal that cannot show the glyphs
        plain = text.translate(_ASCII).encode("ascii", "replace").decode("ascii")
        stream.write(plain + "\n")
    stream.flush()
