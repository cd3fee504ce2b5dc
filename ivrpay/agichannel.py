"""The FastAGI session as the flow's :class:`~ivrpay.flow.channel.Channel`: the one place where
the wire (``agi``) meets the conversation (``flow``). It passes every command through and maps
the session's errors to the channel's own: a hang-up to ``CallerGone``, any other to
``CommandFailed`` (the message names the command's verb at most, never its result)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ivrpay.agi.errors import AGIError, AGIHangup
from ivrpay.agi.session import AGISession
from ivrpay.flow.channel import (
    CallerGone,
    Channel,
    CommandFailed,
    DataOutcome,
    Environment,
    PlayOutcome,
)

_T = TypeVar("_T")


class AGIChannel:
    """A :class:`Channel` over one :class:`~ivrpay.agi.session.AGISession`."""

    def __init__(self, session: AGISession) -> None:
        self.session = session
        self.env: Environment = session.env
        self.hangup_event: asyncio.Event = session.hangup_event

    @property
    def hung_up(self) -> bool:
        return self.session.hung_up

    async def _run(self, command: Awaitable[_T]) -> _T:
        try:
            return await command
        except AGIHangup as exc:
            raise CallerGone(str(exc)) from None
        except AGIError as exc:
            raise CommandFailed(str(exc)) from None

    async def answer(self) -> bool:
        return await self._run(self.session.answer())

    async def stream_file(self, file: str, escape_digits: str = "") -> PlayOutcome:
        return await self._run(self.session.stream_file(file, escape_digits))

    async def get_data(self, file: str, timeout_ms: int, max_digits: int) -> DataOutcome:
        return await self._run(self.session.get_data(file, timeout_ms, max_digits))

    async def set_variable(self, name: str, value: str | int) -> None:
        await self._run(self.session.set_variable(name, value))

    async def set_music(self, on: bool, music_class: str | None = None) -> None:
        await self._run(self.session.set_music(on, music_class))

    async def noop(self) -> None:
        await self._run(self.session.noop())


def channel_handler(
    handler: Callable[[Channel], Awaitable[None]],
) -> Callable[[AGISession], Awaitable[None]]:
    """A FastAGI script handler running a flow handler over :class:`AGIChannel`."""

    async def run(session: AGISession) -> None:
        await handler(AGIChannel(session))

    return run


__all__: list[str] = ["AGIChannel", "channel_handler"]
