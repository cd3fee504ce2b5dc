"""An AMI stand-in over a real socket: Asterisk 22's banner, Login, actions with ActionID, their
responses and events, as manager.c writes them. It can refuse logins, drop every link, hold the
answer to an action until the test lets it go, and run a hook when an action arrives (the e2e test
hangs up the AGI of a redirected channel, as Asterisk does).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

BANNER = b"Asterisk Call Manager/9.0.0\r\n"

Hook = Callable[[dict[str, str]], Awaitable[None] | None]


@dataclass
class Received:
    """One action as the stand-in read it (header names as sent)."""

    headers: dict[str, str]
    session: int

    @property
    def name(self) -> str:
        return self.headers.get("Action", "")

    def __getitem__(self, key: str) -> str:
        return self.headers[key]


@dataclass
class AmiStandIn:
    username: str = "ivrpay"
    secret: str = "s3cret"
    channels: set[str] = field(default_factory=set)  # channels that exist (Redirect, Setvar)
    # channel -> BridgeID for the channels in a bridge (Status lists them with it)
    bridges: dict[str, str] = field(default_factory=dict)
    # channel -> PJSIP_DTMF_MODE() (Getvar); rfc4733 when absent, as Asterisk's default
    dtmf_modes: dict[str, str] = field(default_factory=dict)
    # channel -> the application it runs (Status: Application); a dual Redirect into
    # [ivrpay-spy] starts ChanSpy on the extra channel, as the shipped dialplan does
    applications: dict[str, str] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)  # actions answered "Response: Error"
    refuse_logins: bool = False
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        self.actions: list[Received] = []
        self.logins = 0  # accepted
        self.refused = 0
        self.sessions = 0
        self.variables: dict[tuple[str, str], str] = {}
        self.hooks: dict[str, Hook] = {}
        self._held: dict[str, asyncio.Event] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- test API -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ami://{self.username}:{self.secret}@{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def drop(self) -> None:
        """Close every link (the PBX restarted or a firewall cut it)."""
        for w in list(self._writers):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()
        self._writers.clear()

    def hold(self, action: str) -> asyncio.Event:
        """The answer to the next ``action``s waits until the returned event is set."""
        gate = self._held[action.lower()] = asyncio.Event()
        return gate

    def on(self, action: str, hook: Hook) -> None:
        self.hooks[action.lower()] = hook

    def named(self, action: str) -> list[Received]:
        return [a for a in self.actions if a.name.lower() == action.lower()]

    async def until(self, predicate: Callable[[AmiStandIn], bool]) -> None:
        """Wait (no sleeping) until ``predicate(self)`` holds."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def send_event(self, event: str, **headers: str) -> None:
        for w in list(self._writers):
            w.write(_message({"Event": event, "Privilege": "system,all", **headers}))
            await w.drain()

    # -- the wire -----------------------------------------------------------------------------
    async def _bump(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        session = self.sessions
        self._writers.add(writer)
        authed = False
        try:
            writer.write(BANNER)
            await writer.drain()
            while True:
                try:
                    block = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                headers = _parse(block)
                received = Received(headers, session)
                self.actions.append(received)
                await self._bump()
                name = received.name.lower()
                aid = {"ActionID": headers["ActionID"]} if "ActionID" in headers else {}
                if name == "login":
                    if self.refuse_logins or (
                        headers.get("Username") != self.username
                        or headers.get("Secret") != self.secret
                    ):
                        self.refused += 1
                        await self._bump()
                        writer.write(
                            _message(
                                {"Response": "Error", **aid, "Message": "Authentication failed"}
                            )
                        )
                        await writer.drain()
                        return  # Asterisk ends the session after a failed login
                    authed = True
                    self.logins += 1
                    await self._bump()
                    writer.write(
                        _message(
                            {"Response": "Success", **aid, "Message": "Authentication accepted"}
                        )
                    )
                    writer.write(
                        _message(
                            {
                                "Event": "FullyBooted",
                                "Privilege": "system,all",
                                "Uptime": "12",
                                "LastReload": "12",
                                "Status": "Fully Booted",
                            }
                        )
                    )
                    await writer.drain()
                    continue
                if not authed:
                    writer.write(
                        _message({"Response": "Error", **aid, "Message": "Permission denied"})
                    )
                    await writer.drain()
                    continue
                task = asyncio.create_task(self._answer(writer, name, headers, aid))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(
        self, writer: asyncio.StreamWriter, name: str, headers: dict[str, str], aid: dict
    ) -> None:
        gate = self._held.get(name)
        if gate is not None:
            await gate.wait()
        hook = self.hooks.get(name)
        replies = self._replies(name, headers, aid)
        if writer.is_closing():
            return
        for reply in replies:
            writer.write(_message(reply))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        if hook is not None and replies[0].get("Response") == "Success":
            result = hook(headers)
            if inspect.isawaitable(result):
                await result

    def _replies(self, name: str, h: dict[str, str], aid: dict) -> list[dict[str, str]]:
        def error(message: str) -> list[dict[str, str]]:
            return [{"Response": "Error", **aid, "Message": message}]

        if name == "ping":
            return [{"Response": "Success", **aid, "Ping": "Pong", "Timestamp": "1.0"}]
        if name == "setvar":
            if h.get("Channel") not in self.channels:
                return error(f"No such channel: {h.get('Channel')}")
            self.variables[(h["Channel"], h.get("Variable", ""))] = h.get("Value", "")
            return [{"Response": "Success", **aid, "Message": "Variable Set"}]
        if name in self.refuse:
            return error(f"{h.get('Action')} refused by the test")
        if name == "muteaudio":
            # res_mutestream: the channel must exist; direction in | out | all, state on | off
            if h.get("Channel") not in self.channels:
                return error("No such channel")
            if h.get("Direction") not in ("in", "out", "all"):
                return error("Invalid direction")
            return [{"Response": "Success", **aid}]
        if name == "getvar":
            channel, variable = h.get("Channel", ""), h.get("Variable", "")
            if channel not in self.channels:
                return error("No such channel")
            if variable == "PJSIP_DTMF_MODE()":
                value = self.dtmf_modes.get(channel, "rfc4733")
            else:
                value = self.variables.get((channel, variable), "")
            return [{"Response": "Success", **aid, "Variable": variable, "Value": value}]
        if name == "redirect":
            if not h.get("Channel"):
                return error("Channel not specified")
            if h["Channel"] not in self.channels:
                return error(f"Channel does not exist: {h['Channel']}")
            extra = h.get("ExtraChannel")
            if extra is not None:
                # manager.c: a dual redirect checks both channels before moving either.
                if extra not in self.channels:
                    return error(f"ExtraChannel does not exist: {extra}")
                for name_ in ("ExtraContext", "ExtraExten", "ExtraPriority"):
                    if not h.get(name_):
                        return error(f"{name_} not specified")
                self.bridges.pop(extra, None)
                self.bridges.pop(h["Channel"], None)
                if h.get("ExtraContext") == "ivrpay-spy":
                    self.applications[extra] = "ChanSpy"
                self.applications[h["Channel"]] = "AGI"

                return [{"Response": "Success", **aid, "Message": "Dual Redirect successful"}]
            self.bridges.pop(h["Channel"], None)
            return [{"Response": "Success", **aid, "Message": "Redirect successful"}]
        if name == "status":
            # manager.c action_status: an event list, one Status event per channel.
            replies = [
                {
                    "Response": "Success",
                    **aid,
                    "EventList": "start",
                    "Message": "Channel status will follow",
                }
            ]
            wanted = h.get("Channel")
            if wanted and wanted not in self.channels:
                return error("No such channel")
            for channel in sorted(self.channels):
                if wanted and channel != wanted:
                    continue
                replies.append(
                    {
                        "Event": "Status",
                        "Privilege": "Call",
                        "Channel": channel,
                        "ChannelState": "6",
                        "ChannelStateDesc": "Up",
                        "Uniqueid": f"1733.{len(replies)}",
                        "BridgeID": self.bridges.get(channel, ""),
                        "Application": self.applications.get(channel, ""),
                        **aid,
                    }
                )
            replies.append(
                {
                    "Event": "StatusComplete",
                    **aid,
                    "EventList": "Complete",
                    "ListItems": str(len(replies) - 1),
                    "Items": str(len(replies) - 1),
                }
            )
            return replies
        if name == "originate":
            replies = [{"Response": "Success", **aid, "Message": "Originate successfully queued"}]
            if h.get("Async", "").lower() == "true":
                replies.append({"Event": "OriginateResponse", **aid, "Response": "Success"})
            return replies
        return error("Invalid/unknown command")


def _parse(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        if ": " in line:
            k, v = line.split(": ", 1)
            headers[k] = v
    return headers


def _message(headers: dict[str, Any]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n"


@pytest.fixture
async def ami_standin() -> AsyncIterator[AmiStandIn]:
    standin = AmiStandIn(channels={"PJSIP/caller-00000001"})
    await standin.start()
    try:
        yield standin
    finally:
        await standin.stop()
