"""Who is calling: the channel the stand-in plays, and the ``agi_*`` block Asterisk 22 sends for it.

Keys, order and formatting are those of the fixtures (``res_agi.c`` ``setup_env``, preceded by
``agi_network`` and ``agi_network_script`` for FastAGI). Values are written as UTF-8 bytes, raw —
Asterisk escapes nothing.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace

ASTERISK_VERSION = "22.10.1"

_counter = itertools.count(1)


@dataclass(frozen=True)
class ChannelSpec:
    """The channel's identity. ``None`` fields are made up per call (channel, uniqueid, threadid);
    tests replaying a transcript set them to the transcript's values."""

    channel: str | None = None  # e.g. PJSIP/caller-0000002a
    language: str = "ja"
    type: str | None = None  # None: the channel technology (the part before "/")
    uniqueid: str | None = None
    version: str = ASTERISK_VERSION
    callerid: str = "unknown"
    calleridname: str = "unknown"
    callingpres: int = 0
    callingani2: int = 0
    callington: int = 0
    callingtns: int = 0
    dnid: str = "unknown"
    rdnis: str = "unknown"
    context: str = "ivrpay"
    extension: str = "s"
    priority: int = 1
    enhanced: bool = False
    accountcode: str = ""
    threadid: int | None = None
    request: str | None = None  # the whole agi:// URL; None: built from host, port, script, query

    def resolved(self) -> ChannelSpec:
        """A copy with every made-up field filled in."""
        n = next(_counter)
        channel = self.channel or f"PJSIP/caller-{n:08x}"
        return replace(
            self,
            channel=channel,
            type=self.type or channel.split("/", 1)[0],
            uniqueid=self.uniqueid or f"{int(time.time())}.{n}",
            threadid=self.threadid if self.threadid is not None else 140000000000000 + n,
        )


def build_request(host: str, port: int, script: str, query: str | None = None) -> str:
    where = f"[{host}]" if ":" in host else host
    return f"agi://{where}:{port}/{script}" + (f"?{query}" if query else "")


def network_script(request: str) -> str:
    """Everything after ``host[:port]/`` — the script name with its ``?query``."""
    rest = request.split("://", 1)[-1]
    return rest.split("/", 1)[1] if "/" in rest else ""


def environment(spec: ChannelSpec, request: str, args: tuple[str, ...]) -> list[tuple[str, str]]:
    """The ``agi_*`` pairs in Asterisk's order (``spec`` must be :meth:`~ChannelSpec.resolved`)."""
    pairs = [("agi_network", "yes")]
    script = network_script(request)
    if script:  # Asterisk sends it only when not empty
        pairs.append(("agi_network_script", script))
    pairs += [
        ("agi_request", request),
        ("agi_channel", str(spec.channel)),
        ("agi_language", spec.language),
        ("agi_type", str(spec.type)),
        ("agi_uniqueid", str(spec.uniqueid)),
        ("agi_version", spec.version),
        ("agi_callerid", spec.callerid),
        ("agi_calleridname", spec.calleridname),
        ("agi_callingpres", str(spec.callingpres)),
        ("agi_callingani2", str(spec.callingani2)),
        ("agi_callington", str(spec.callington)),
        ("agi_callingtns", str(spec.callingtns)),
        ("agi_dnid", spec.dnid),
        ("agi_rdnis", spec.rdnis),
        ("agi_context", spec.context),
        ("agi_extension", spec.extension),
        ("agi_priority", str(spec.priority)),
        ("agi_enhanced", "1.0" if spec.enhanced else "0.0"),
        ("agi_accountcode", spec.accountcode),
        ("agi_threadid", str(spec.threadid)),
    ]
    pairs += [(f"agi_arg_{i}", str(a)) for i, a in enumerate(args, start=1)]
    for key, value in pairs:
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"{key}: a value may not hold CR, LF or NUL")
    return pairs


def environment_block(pairs: list[tuple[str, str]]) -> list[bytes]:
    """The lines of the block, the closing blank line included (without their newlines)."""
    return [f"{k}: {v}".encode() for k, v in pairs] + [b""]


def wire_text(value: str) -> str:
    """A value as the stand-in handles wire text: its UTF-8 bytes, one character per byte."""
    return value.encode("utf-8").decode("latin-1")
