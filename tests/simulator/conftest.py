"""Fixtures for the Asterisk stand-in's tests: a sounds directory and a tiny raw FastAGI server."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "agi"
IO_TIMEOUT = 5.0  # a generous bound on any single read: a stuck test fails instead of hanging

# File lengths in 8 kHz samples. beep matches the transcripts (endpos=3520); demo-instruct is long
# enough for a hang-up 1.52 s in (endpos=12160).
SOUNDS = {
    "en/beep": 3520,
    "en/demo-instruct": 24000,
    **{f"en/digits/{d}": 4000 for d in range(10)},
    "ja/ivrpay/welcome": 8000,
    "ja/ivrpay/enter_card": 8000,
    "ja/ivrpay/card_invalid": 6400,
    "en/ivrpay/welcome": 8000,
}


def write_wav(path: Path, frames: int, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * frames)


@pytest.fixture(scope="session")
def sounds_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """en: beep, demo-instruct, digits/0-9 (as installed with Asterisk's core sounds) plus a few
    ivrpay prompts in ja and en. ``nonexistent_prompt`` exists nowhere."""
    base = tmp_path_factory.mktemp("sounds")
    for name, frames in SOUNDS.items():
        write_wav(base / f"{name}.wav", frames)
    return base


class Peer:
    """The server's end of one FastAGI connection, driven line by line by a test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.env: dict[str, str] = {}

    async def read_env(self) -> dict[str, str]:
        while True:
            line = await self.line()
            if not line:
                return self.env
            key, _, value = line.partition(": ")
            self.env[key] = value

    async def raw_line(self) -> bytes:
        async with asyncio.timeout(IO_TIMEOUT):
            return await self.reader.readline()

    async def line(self) -> str:
        raw = await self.raw_line()
        assert raw.endswith(b"\n"), f"connection closed (got {raw!r})"
        return raw[:-1].decode("latin-1")

    async def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode("latin-1")
        self.writer.write(data + b"\n")
        await self.writer.drain()

    async def reply(self) -> list[str]:
        """Lines up to the end of one reply: HANGUP lines before it, 100 and 520 blocks whole."""
        lines = [await self.line()]
        while lines[-1] == "HANGUP" or lines[-1].startswith(("100 ", "520-")):
            if lines[-1].startswith("520-"):
                while not lines[-1].startswith("520 "):
                    lines.append(await self.line())
                break
            lines.append(await self.line())
        return lines

    async def command(self, line: str | bytes) -> list[str]:
        await self.send(line)
        return await self.reply()

    async def result(self, line: str) -> str:
        """The one reply line of a command that gets one."""
        (answer,) = await self.command(line)
        return answer

    async def finish(self) -> bytes:
        """Half-close like a polite server and read what Asterisk still sends until it closes."""
        self.writer.write_eof()
        async with asyncio.timeout(IO_TIMEOUT):
            rest = await self.reader.read()
        self.writer.close()
        return rest

    async def rest(self) -> bytes:
        """Read until the stand-in closes (without closing first)."""
        async with asyncio.timeout(IO_TIMEOUT):
            return await self.reader.read()


class AgiServer:
    """A raw listener on 127.0.0.1:<free port>; each connection becomes a :class:`Peer`."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._peers: asyncio.Queue[Peer] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        await self._peers.put(Peer(reader, writer))

    async def accept(self, read_env: bool = True) -> Peer:
        async with asyncio.timeout(IO_TIMEOUT):
            peer = await self._peers.get()
        if read_env:
            await peer.read_env()
        return peer

    async def close(self) -> None:
        for w in self._writers:
            w.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def raw_server() -> AsyncIterator[AgiServer]:
    server = AgiServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
