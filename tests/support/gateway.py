"""Gateway fixtures others reuse: a running sandbox gateway and a gateway client pointed at it.

- ``sandbox``: a :class:`~ivrpay.sandbox.Sandbox` on a free port, faults cleared.
- ``gateway_client``: a :class:`~ivrpay.gateway.GatewayClient` on it with short test timeouts
  (``TEST_TIMEOUT_S``), no back-off pauses, ``reconcile_after_s`` as in production (300 s, so a
  fresh ``UNPROCESSED`` stays "unknown"; pass ``reconcile_after_s=0`` to ``reconcile`` to trust it).
- ``make_card(number, expiry=None, code="auto")``: a filled
  :class:`~ivrpay.card.holder.CardData` (expiry defaults to a date well in the future).
- the ``sandbox`` fixture fails any test after which a payment succeeded twice at the sandbox
  (``check_no_double_charges``); a test that does it on purpose adds the order id to
  ``sandbox.expected_double_charges``.
- ``charge(client, order_id, card, ...)`` / ``charge_stored`` / ``charge_and_register``: the
  gateway steps in the order the payment process sends them (open_transaction, ExecTran,
  settle_exec, TradedCard): the client has no composites, so tests run the production steps.
- ``alter(client, order_id, action)``: SearchTrade and the AlterTran it calls for.
- ``card_safe_logs``: captures every log line (before and after the masker) at debug level and
  fails the test if any test card number was logged.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog

from ivrpay import logging as ivrpay_logging
from ivrpay.card.holder import CardData
from ivrpay.gateway import GatewayClient, Outcome
from ivrpay.gateway.client import JobCd
from ivrpay.gateway.recovery import AlterAction
from ivrpay.sandbox import Sandbox, start_sandbox

TEST_TIMEOUT_S = 1.0
SHOP_ID, SHOP_PASS = "tshop00000001", "shoppass01"
SITE_ID, SITE_PASS = "tsite00000001", "sitepass0001"

# product.md "Sandbox gateway test cards".
APPROVED_CARDS = {
    "4111111111111111": "VISA",
    "5555555555554444": "MASTERCARD",
    "3530111333300000": "JCB",
    "378282246310005": "AMEX",
    "36227206271667": "DINERS",
}
DECLINED_CARDS = {
    "4000000000000002": ("declined", None, "42G020000"),
    "4000000000009995": ("declined", None, "42G030000"),
    "4000000000000069": ("input", "expiry", "42G830000"),
    "4000000000000127": ("input", "security_code", "42G440000"),
}
LOST_ANSWER_CARD = "4000000000000119"
GATEWAY_TIMEOUT_CARD = "4000000000000101"
TEST_CARD_NUMBERS = (*APPROVED_CARDS, *DECLINED_CARDS, LOST_ANSWER_CARD, GATEWAY_TIMEOUT_CARD)


def future_expiry(years: int = 3) -> str:
    """A keyed expiry (``MMYY``) some years ahead."""
    now = datetime.now()
    return f"{now.month:02d}{(now.year + years) % 100:02d}"


def make_card(number: str, expiry: str | None = None, code: str | None = "auto") -> CardData:
    """A filled holder; ``code="auto"`` is a code of the brand's length (4 for AMEX), ``None``
    leaves it out."""
    card = CardData()
    card.set_number(number)
    card.set_expiry(expiry or future_expiry())
    if code == "auto":
        code = "1234" if number[:2] in ("34", "37") else "123"
    if code is not None:
        card.set_security_code(code)
    return card


def make_gateway_client(sandbox: Sandbox, **overrides: Any) -> GatewayClient:
    options: dict[str, Any] = dict(
        timeout_s=TEST_TIMEOUT_S,
        connect_timeout_s=TEST_TIMEOUT_S,
        retry_backoff_s=(0.0, 0.0),
        reconcile_after_s=300.0,
    )
    options.update(overrides)
    return GatewayClient(sandbox.url, SHOP_ID, SHOP_PASS, SITE_ID, SITE_PASS, **options)


# -- the production steps, in order --------------------------------------------------------------
async def _open(
    client: GatewayClient, order_id: str, job_cd: JobCd, amount: int | None, tax: int | None
) -> Outcome | tuple[str, str]:
    entry = await client.open_transaction(order_id, job_cd, amount, tax)
    if not entry.ok:
        return entry
    assert entry.access_id is not None and entry.access_pass is not None
    return entry.access_id, entry.access_pass


async def charge(
    client: GatewayClient,
    order_id: str,
    card: CardData,
    *,
    job_cd: JobCd = "AUTH",
    amount: int | None,
    tax: int | None = None,
    method: int = 1,
    pay_times: int | None = None,
) -> Outcome:
    """EntryTran (recovered), ExecTran with a keyed card, settle_exec: as a call charges."""
    opened = await _open(client, order_id, job_cd, amount, tax)
    if isinstance(opened, Outcome):
        return opened
    executed = await client.exec_tran(order_id, *opened, card, method=method, pay_times=pay_times)
    return await client.settle_exec(executed)


async def charge_stored(
    client: GatewayClient,
    order_id: str,
    member_id: str,
    card_seq: int,
    *,
    job_cd: JobCd = "AUTH",
    amount: int | None,
    tax: int | None = None,
    security_code: CardData | None = None,
) -> Outcome:
    """As :func:`charge`, with a stored card."""
    opened = await _open(client, order_id, job_cd, amount, tax)
    if isinstance(opened, Outcome):
        return opened
    executed = await client.exec_tran_member(
        order_id, *opened, member_id, card_seq, security_code=security_code
    )
    return await client.settle_exec(executed)


async def charge_and_register(
    client: GatewayClient, order_id: str, member_id: str, card: CardData, *, amount: int
) -> tuple[Outcome, Outcome | None]:
    """:func:`charge`, then TradedCard of the charged card when the charge succeeded."""
    charged = await charge(client, order_id, card, amount=amount)
    if not charged.ok:
        return charged, None
    return charged, await client.store_traded_card(order_id, member_id)


async def alter(
    client: GatewayClient, order_id: str, action: AlterAction, amount: int | None = None
) -> Outcome:
    """SearchTrade, then the one AlterTran ``alter_step`` names (none when done or impossible):
    the steps the payment process sends for a capture (``amount``), void or refund."""
    trade = await client.search_trade(order_id)
    if not trade.ok:
        return trade
    step = client.alter_step(trade, action)
    if step.kind == "done":
        return dataclasses.replace(trade, reconciled=True)
    if step.kind == "refuse":
        return dataclasses.replace(trade, endpoint="AlterTran", kind="system", message=step.message)
    assert step.job is not None and trade.access_id and trade.access_pass
    return await client.alter_tran(
        trade.access_id, trade.access_pass, step.job, amount, order_id=order_id
    )


def check_no_double_charges(sandbox: Sandbox) -> None:
    """Fail when a payment (``<order_id>-NN`` family) succeeded more than once at the sandbox,
    unless the test put it in ``sandbox.expected_double_charges``."""
    charged = {
        family: n
        for family, n in sandbox.state.double_charges().items()
        if family not in sandbox.expected_double_charges
    }
    assert not charged, f"double charge at the sandbox gateway: {charged}"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    started = await start_sandbox(hold_s=60.0)
    started.clear_faults()
    try:
        yield started
    finally:
        await started.stop()
    # product.md: a second success for one payment is a test failure.
    check_no_double_charges(started)


@pytest.fixture
async def gateway_client(sandbox: Sandbox) -> AsyncIterator[GatewayClient]:
    async with make_gateway_client(sandbox) as client:
        yield client


# -- logs ----------------------------------------------------------------------------------------
_CARD_RUN = re.compile("|".join(TEST_CARD_NUMBERS))


def find_card_numbers(text: str) -> list[str]:
    """Test card numbers in ``text`` (a leak detector that must itself be able to fail)."""
    return sorted(set(_CARD_RUN.findall(text)))


class LogCapture:
    """Everything logged during a test: event dicts as the code logged them (``raw``, before the
    masker) and the rendered lines (``rendered``, after it)."""

    def __init__(self) -> None:
        self.raw: list[str] = []
        self.stream = io.StringIO()

    @property
    def rendered(self) -> str:
        return self.stream.getvalue()

    def events(self, name: str) -> list[str]:
        return [r for r in self.raw if f"'event': '{name}'" in r]

    def leaks(self) -> list[str]:
        return find_card_numbers("\n".join(self.raw) + "\n" + self.rendered)


class _RawHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.append(f"{record.name}: {record.getMessage()}")
        except Exception:  # a record that cannot format is not a leak
            self.sink.append(f"{record.name}: {record.msg!r}")


@pytest.fixture
def card_safe_logs() -> Iterator[LogCapture]:
    saved = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    capture = LogCapture()
    ivrpay_logging.configure(level="debug", fmt="json", stream=capture.stream)

    def grab(_logger: Any, _method: str, event_dict: Any) -> Any:
        capture.raw.append(repr(dict(event_dict)))
        return event_dict

    structlog.configure(processors=[grab, *structlog.get_config()["processors"]])
    raw_handler = _RawHandler(capture.raw)
    root.addHandler(raw_handler)
    try:
        yield capture
    finally:
        root.removeHandler(raw_handler)
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)
        structlog.configure(**saved)
    leaked = capture.leaks()
    assert not leaked, f"{len(leaked)} test card number(s) written to the log"
