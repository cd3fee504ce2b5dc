"""FastAGI test support: transcript loading, a replaying Asterisk peer, a server factory.

Fixtures (registered through tests/conftest.py):

- ``fixture_transcript(name)`` -> :class:`Transcript` of ``tests/fixtures/agi/<name>[.txt]``.
- ``agi_server(handlers, **kwargs)`` -> a started :class:`~ivrpay.agi.server.FastAGIServer` on
  127.0.0.1:0, stopped after the test.

:class:`ReplayPeer` plays Asterisk from a transcript: it sends the environment, reads each line the
server sends and answers with the transcript's ``A>`` lines. Unprompted ``HANGUP`` lines (those that
follow a reply before the next ``S>`` line) wait until the test calls :meth:`ReplayPeer.release`, so
a test decides deterministically whether the server has seen the hang-up before its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ivrpay.agi.server import FastAGIServer, Handler

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "agi"

_ESCAPE = re.compile(r"\\(\\|r|t|x[0-9A-Fa-f]{2})")


def unescape(text: str) -> bytes:
    """A transcript line's content back to wire bytes (``\\\\ \\r \\t \\xNN``; else latin-1)."""

    def sub(m: re.Match[str]) -> str:
        code = m.group(1)
        if code == "\\":
            return "\\"
        if code == "r":
            return "\r"
        if code == "t":
            return "\t"
        return chr(int(code[1:], 16))

    return _ESCAPE.sub(sub, text).encode("latin-1")


@dataclass(frozen=True)
class Event:
    """``kind``: ``A`` (Asterisk sent ``data``), ``S`` (the server sent ``data``), ``server_eof``
    (the server shut down its sending side), ``asterisk_close`` (Asterisk closed), ``comment``."""

    kind: str
    data: bytes = b""
    text: str = ""


@dataclass
class Transcript:
    name: str
    events: list[Event] = field(default_factory=list)
    agistatus: str | None = None

    @property
    def env_block(self) -> bytes:
        """The ``A>`` lines before the first ``S>`` line, blank line included, as sent."""
        out = bytearray()
        for ev in self.events:
            if ev.kind == "S":
                break
            if ev.kind == "A":
                out += ev.data + b"\n"
                if ev.data == b"":
                    break
        return bytes(out)

    @property
    def server_lines(self) -> list[bytes]:
        """Every ``S>`` line with its ``\\n``, in order."""
        return [ev.data + b"\n" for ev in self.events if ev.kind == "S"]

    @property
    def asterisk_lines(self) -> list[bytes]:
        return [ev.data + b"\n" for ev in self.events if ev.kind == "A"]


def parse_transcript(text: str, name: str = "") -> Transcript:
    t = Transcript(name)
    for raw in text.split("\n"):
        if raw.startswith("A> ") or raw.startswith("S> "):
            t.events.append(Event(raw[0], unescape(raw[3:])))
        elif raw.startswith("## "):
            comment = raw[3:]
            if comment.startswith("AGISTATUS="):
                t.agistatus = comment.split("=", 1)[1]
            elif comment.startswith("server shuts down its sending side"):
                t.events.append(Event("server_eof", text=comment))
            elif comment.startswith(("asterisk then closed its side", "connection closed by")):
                t.events.append(Event("asterisk_close", text=comment))
            else:
                t.events.append(Event("comment", text=comment))
        elif raw.strip():
            raise ValueError(f"{name}: unreadable transcript line {raw!r}")
    return t


def load_transcript(name: str) -> Transcript:
    path = FIXTURES / (name if name.endswith(".txt") else name + ".txt")
    return parse_transcript(path.read_text(encoding="latin-1"), path.stem)


def transcript_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.txt"))


class ReplayPeer:
    """Asterisk's side of one transcript, played against a server on ``host:port``.

    After :meth:`run`: ``received`` holds the lines the server sent (compare with
    ``transcript.server_lines``), ``trailing`` whatever it sent after its last expected line,
    ``server_eof`` whether it half-closed where the transcript says so.
    """

    def __init__(self, transcript: Transcript, *, read_timeout: float = 10.0) -> None:
        self.transcript = transcript
        self.read_timeout = read_timeout
        self.received: list[bytes] = []
        self.trailing = b""
        self.server_eof = False
        self.command_seen = asyncio.Event()  # set whenever a server line arrives
        self._releases = asyncio.Semaphore(0)

    def release(self) -> None:
        """Let the next group of unprompted ``HANGUP`` lines go out."""
        self._releases.release()

    async def run(self, host: str, port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await self._play(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _readline(self, reader: asyncio.StreamReader) -> bytes:
        async with asyncio.timeout(self.read_timeout):
            return await reader.readline()

    async def _play(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        events = self.transcript.events
        writer.write(self.transcript.env_block)
        i = next((n for n, ev in enumerate(events) if ev.kind == "S"), len(events))
        after_reply = False  # an A> reply has been sent since the last S> line
        gated = False  # the current run of unprompted lines has been released
        eof_seen = False
        while i < len(events):
            ev = events[i]
            i += 1
            if ev.kind == "S":
                line = await self._readline(reader)
                self.received.append(line)
                self.command_seen.set()
                after_reply = gated = False
            elif ev.kind == "A":
                if after_reply and ev.data == b"HANGUP" and not eof_seen and not gated:
                    await writer.drain()
                    await self._releases.acquire()
                    gated = True
                writer.write(ev.data + b"\n")
                await writer.drain()
                after_reply = True
            elif ev.kind == "server_eof":
                rest = await self._read_to_eof(reader)
                self.trailing += rest
                self.server_eof = True
                eof_seen = True
            elif ev.kind == "asterisk_close":
                # Half-close, then read whatever the server still sends, to check it is nothing.
                if writer.can_write_eof():
                    writer.write_eof()
                if not eof_seen:
                    self.trailing += await self._read_to_eof(reader)
                return

    async def _read_to_eof(self, reader: asyncio.StreamReader) -> bytes:
        async with asyncio.timeout(self.read_timeout):
            return await reader.read()


async def replay(
    transcript: Transcript,
    server: FastAGIServer,
    peer: ReplayPeer | None = None,
) -> ReplayPeer:
    peer = peer or ReplayPeer(transcript)
    await peer.run("127.0.0.1", server.port)
    return peer


AgiServerFactory = Callable[..., Awaitable[FastAGIServer]]


@pytest.fixture
def fixture_transcript() -> Callable[[str], Transcript]:
    return load_transcript


@pytest.fixture
async def agi_server() -> AsyncIterator[AgiServerFactory]:
    servers: list[FastAGIServer] = []

    async def factory(handlers: Mapping[str, Handler], **kwargs: Any) -> FastAGIServer:
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
        server = FastAGIServer(handlers, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop(0.0)


# -- a hand-driven Asterisk ----------------------------------------------------------------------

_TEMPLATE_ENV: list[tuple[str, str]] = [
    ("agi_network", "yes"),
    ("agi_network_script", "{script}"),
    ("agi_request", "agi://127.0.0.1:4573/{script}"),
    ("agi_channel", "Local/s@tr-caller-00000015;1"),
    ("agi_language", "en"),
    ("agi_type", "Local"),
    ("agi_uniqueid", "1795788781.42"),
    ("agi_version", "22.10.1"),
    ("agi_callerid", "5551234"),
    ("agi_calleridname", "Transcript Probe"),
    ("agi_callingpres", "0"),
    ("agi_callingani2", "0"),
    ("agi_callington", "0"),
    ("agi_callingtns", "0"),
    ("agi_dnid", "unknown"),
    ("agi_rdnis", "unknown"),
    ("agi_context", "tr-ivr"),
    ("agi_extension", "s"),
    ("agi_priority", "2"),
    ("agi_enhanced", "0.0"),
    ("agi_accountcode", ""),
    ("agi_threadid", "140537309042368"),
]


def asterisk_env(
    script: str = "t", *args: str, **overrides: str | bytes
) -> list[tuple[str, str | bytes]]:
    """An environment as Asterisk 22 sends it, for ``script`` (may hold ``?query``) and ``args``."""
    env: list[tuple[str, str | bytes]] = [(k, v.format(script=script)) for k, v in _TEMPLATE_ENV]
    env += [(f"agi_arg_{n}", a) for n, a in enumerate(args, start=1)]
    keys = {k for k, _ in env}
    env = [(k, overrides.get(k, v)) for k, v in env]
    env += [(k, v) for k, v in overrides.items() if k not in keys]
    return env


class AsteriskPeer:
    """A raw FastAGI client the test drives line by line (Asterisk's side of the socket)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float = 5.0
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout

    @classmethod
    async def connect(
        cls,
        port: int,
        script: str | None = "t",
        *args: str,
        env: list[tuple[str, str | bytes]] | None = None,
        host: str = "127.0.0.1",
    ) -> AsteriskPeer:
        """Connect and (unless ``script`` is None and ``env`` not given) send the environment."""
        from ivrpay.agi.protocol import format_environment

        reader, writer = await asyncio.open_connection(host, port)
        peer = cls(reader, writer)
        if env is not None or script is not None:
            writer.write(
                format_environment(env if env is not None else asterisk_env(script or "", *args))
            )
            await writer.drain()
        return peer

    async def recv(self) -> bytes:
        """The next line the server sent (with its ``\\n``); ``b""`` at EOF."""
        async with asyncio.timeout(self.timeout):
            return await self.reader.readline()

    async def send(self, *lines: bytes | str) -> None:
        for line in lines:
            self.writer.write((line.encode() if isinstance(line, str) else line) + b"\n")
        await self.writer.drain()

    async def answer(self, *lines: bytes | str) -> bytes:
        """Read one command, reply with ``lines``; returns the command line."""
        command = await self.recv()
        await self.send(*lines)
        return command

    async def read_to_eof(self) -> bytes:
        async with asyncio.timeout(self.timeout):
            return await self.reader.read()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
