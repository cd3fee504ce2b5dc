"""The Asterisk stand-in: plays the PBX side of the FastAGI wire for ``ivrpay call`` and the tests.

It is Asterisk 22 as the transcripts in ``tests/fixtures/agi/`` show it, byte for byte: the
``agi_*`` block, every reply form (multi-line 520 included), the out-of-band ``HANGUP`` lines,
missing prompt files, keys that land in the next command. It imports nothing of ivrpay but config.

- :func:`place_call` — one scripted call, its :class:`CallRecord` when it ends;
- :class:`SimulatedCall` — for tests that act mid-call (pause at a command, press, hang up);
- :mod:`.keys` — the caller's key syntax (``4111111111111111# 1231 _ ! ~5``);
- :mod:`.transcript` — the transcript file reader used by the tests.
"""

from ivrpay.simulator.call import Breakpoint, Command, SimulatedCall, place_call
from ivrpay.simulator.env import ChannelSpec
from ivrpay.simulator.keys import Entry, KeySyntaxError, mask_digits, parse_keys
from ivrpay.simulator.record import CallRecord, Ending, KeyEntry, Note, Prompt

__all__ = [
    "Breakpoint",
    "CallRecord",
    "ChannelSpec",
    "Command",
    "Ending",
    "Entry",
    "KeyEntry",
    "KeySyntaxError",
    "Note",
    "Prompt",
    "SimulatedCall",
    "mask_digits",
    "parse_keys",
    "place_call",
]
