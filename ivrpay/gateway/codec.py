"""The wire format of the GMO-PG protocol: cp932 form requests, key-aware ``Key=Value&…`` answers.

Answers are NOT percent-encoded: a value may hold spaces, ``&`` or ``=``. So an answer is split on
``&`` only where the next piece starts with a key this endpoint is known to send (or, after a
structured field, with something shaped like a key, so that a field the gateway adds later does
not corrupt its neighbour). Free-text fields (member and holder names, client fields) keep any
``&`` that is not followed by a known key.

Nothing here raises with a request or answer body in its message.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

ENCODING = "cp932"
# The gateway's clock is Japan's; TranDate/ProcessDate carry no offset.
JST = timezone(timedelta(hours=9), "JST")


class EncodeError(ValueError):
    """A request value cannot be written in cp932 (the message names the key only)."""


class MalformedAnswer(ValueError):
    """The answer is not a protocol answer (the message never holds the body)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    keys: frozenset[str]  # every key this endpoint is known to answer
    required: tuple[str, ...]  # keys a success answer must carry
    mutating: bool  # False: a lookup, nothing changes at the gateway
    free_text: frozenset[str] = frozenset()

    @property
    def path(self) -> str:
        return f"/payment/{self.name}.idPass"


_ERR = frozenset({"ErrCode", "ErrInfo"})
_CLIENT_FIELDS = frozenset({"ClientField1", "ClientField2", "ClientField3"})
_TRADE = frozenset({"AccessID", "AccessPass", "Forward", "Approve", "TranID", "TranDate"})


def _ep(
    name: str,
    keys: Iterable[str],
    required: Iterable[str],
    mutating: bool,
    free_text: Iterable[str] = (),
) -> Endpoint:
    return Endpoint(
        name,
        frozenset(keys) | _ERR,
        tuple(required),
        mutating,
        frozenset(free_text),
    )


ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        _ep("EntryTran", ("AccessID", "AccessPass"), ("AccessID", "AccessPass"), True),
        _ep(
            "ExecTran",
            {
                "ACS",
                "ACSUrl",
                "PaReq",
                "MD",
                "RedirectUrl",
                "OrderID",
                "Forward",
                "Method",
                "PayTimes",
                "Approve",
                "TranID",
                "TranDate",
                "CheckString",
                *_CLIENT_FIELDS,
            },
            ("ACS", "OrderID", "Forward", "Approve", "TranID", "TranDate", "CheckString"),
            True,
            {*_CLIENT_FIELDS, "ACSUrl", "RedirectUrl"},
        ),
        _ep("AlterTran", _TRADE, sorted(_TRADE), True),
        _ep(
            "SearchTrade",
            {
                "OrderID",
                "Status",
                "ProcessDate",
                "JobCd",
                "ItemCode",
                "Amount",
                "Tax",
                "SiteID",
                "MemberID",
                "CardNo",
                "Expire",
                "Method",
                "PayTimes",
                "PayType",
                *_TRADE,
                *_CLIENT_FIELDS,
            },
            ("OrderID", "Status"),
            False,
            _CLIENT_FIELDS,
        ),
        _ep("SaveMember", ("MemberID",), ("MemberID",), True),
        _ep(
            "SearchMember",
            ("MemberID", "MemberName", "DeleteFlag"),
            ("MemberID",),
            False,
            ("MemberName",),
        ),
        _ep("SaveCard", ("CardSeq", "CardNo", "Forward", "Brand"), ("CardSeq",), True),
        _ep("TradedCard", ("CardSeq", "CardNo", "Forward", "Brand"), ("CardSeq",), True),
        _ep(
            "SearchCard",
            (
                "CardSeq",
                "DefaultFlag",
                "CardName",
                "CardNo",
                "Expire",
                "HolderName",
                "DeleteFlag",
                "Brand",
            ),
            ("CardSeq",),
            False,
            ("CardName", "HolderName"),
        ),
        _ep("DeleteCard", ("CardSeq",), ("CardSeq",), True),
    )
}

# What a request/answer dump may show of each sensitive field.
_CARD_FIELDS = frozenset({"CardNo"})
_HIDDEN_FIELDS = frozenset({"Expire", "SecurityCode", "ShopPass", "SitePass", "AccessPass"})


# -- requests ------------------------------------------------------------------------------------
def encode_request(params: Mapping[str, str | int | None]) -> bytes:
    """``application/x-www-form-urlencoded`` in cp932; ``None`` values are left out."""
    items: list[tuple[str, bytes]] = []
    for key, value in params.items():
        if value is None:
            continue
        try:
            items.append((key, str(value).encode(ENCODING)))
        except UnicodeEncodeError:
            raise EncodeError(f"{key}: not representable in cp932") from None
    return urlencode(items).encode("ascii")


def byte_length(value: str) -> int:
    """Length as the gateway counts it (cp932 bytes)."""
    return len(value.encode(ENCODING, "replace"))


CLIENT_FIELD_MAX_BYTES = 100
CLIENT_FIELD_FORBIDDEN = frozenset("{}|^`~&<>\"'")


def client_field_problem(value: str) -> str | None:
    """Why the gateway would refuse this ClientField value (None: it would not). The reason never
    quotes the value."""
    try:
        size = len(value.encode(ENCODING))
    except UnicodeEncodeError:
        return "not representable in cp932"
    if size > CLIENT_FIELD_MAX_BYTES:
        return f"longer than {CLIENT_FIELD_MAX_BYTES} bytes"
    if any(ch in CLIENT_FIELD_FORBIDDEN for ch in value):
        return "holds a character the gateway refuses ({}|^`~&<>\"')"
    return None


# -- answers -------------------------------------------------------------------------------------
_KEYLIKE = re.compile(r"[A-Z][A-Za-z0-9]{0,39}")


@dataclass(frozen=True, slots=True)
class Answer:
    fields: dict[str, str]  # known keys
    extra: dict[str, str]  # keys this client does not know (kept, never interpreted)

    @property
    def is_error(self) -> bool:
        return "ErrCode" in self.fields or "ErrInfo" in self.fields

    def errors(self) -> tuple[tuple[str, str], ...]:
        """``(ErrCode, ErrInfo)`` pairs, paired by position; a missing side is ``""``."""
        codes = _split_multi(self.fields.get("ErrCode", ""))
        infos = _split_multi(self.fields.get("ErrInfo", ""))
        n = max(len(codes), len(infos))
        codes += [""] * (n - len(codes))
        infos += [""] * (n - len(infos))
        return tuple((c.strip(), i.strip()) for c, i in zip(codes, infos, strict=True))


def _split_multi(value: str) -> list[str]:
    return value.split("|") if value else []


def split_multi(value: str | None) -> list[str]:
    """Values of several cards come back ``|``-joined."""
    return _split_multi(value or "")


def decode_answer(body: bytes, endpoint: Endpoint) -> Answer:
    """Split one answer body by the endpoint's known keys."""
    if not body or not body.strip():
        raise MalformedAnswer("empty answer")
    try:
        text = body.decode(ENCODING)
    except UnicodeDecodeError:
        raise MalformedAnswer("answer is not cp932") from None
    text = text.strip("\r\n")
    if text.lstrip().startswith("<"):
        raise MalformedAnswer("answer is markup, not a protocol answer")
    fields: dict[str, str] = {}
    extra: dict[str, str] = {}
    current: tuple[dict[str, str], str] | None = None
    for piece in text.split("&"):
        key, eq, value = piece.partition("=")
        if eq and key in endpoint.keys:
            target = fields
        elif (
            eq
            and _KEYLIKE.fullmatch(key)
            and (current is None or current[1] not in endpoint.free_text)
        ):
            target = extra
        elif current is not None:
            # ``&`` inside a value: glue it back on.
            store, name = current
            store[name] += "&" + piece
            continue
        else:
            raise MalformedAnswer("answer does not start with a key")
        if key in target:
            raise MalformedAnswer(f"key {key} repeated in the answer")
        target[key] = value
        current = (target, key)
    if not fields:
        raise MalformedAnswer(f"no {endpoint.name} keys in the answer")
    return Answer(fields, extra)


def missing_keys(answer: Answer, endpoint: Endpoint) -> list[str]:
    return [k for k in endpoint.required if k not in answer.fields]


# -- CheckString and dates -----------------------------------------------------------------------
def check_string(
    order_id: str,
    forward: str,
    method: str,
    pay_times: str,
    approve: str,
    tran_id: str,
    tran_date: str,
    shop_pass: str,
) -> str:
    """MD5 (hex) of OrderID+Forward+Method+PayTimes+Approve+TranID+TranDate+ShopPass."""
    joined = order_id + forward + method + pay_times + approve + tran_id + tran_date + shop_pass
    return hashlib.md5(joined.encode(ENCODING), usedforsecurity=False).hexdigest()


def parse_gateway_time(value: str | None) -> datetime | None:
    """``yyyyMMddHHmmss`` (JST) → aware datetime; ``None`` when absent or not such a stamp."""
    if not value or not re.fullmatch(r"\d{14}", value):
        return None
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=JST)
    except ValueError:
        return None


# -- dumps for logs ------------------------------------------------------------------------------
def _mask_card_no(value: str) -> str:
    # SearchCard may answer several |-joined numbers: keep the last 4 of each at most.
    return "|".join("*" + re.sub(r"\D", "", v)[-4:] if v else "" for v in value.split("|"))


def masked(params: Mapping[str, object]) -> dict[str, str]:
    """A copy safe to log: card number reduced to its last 4, expiry, code and passwords hidden."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        text = str(value)
        if key in _CARD_FIELDS:
            out[key] = _mask_card_no(text)
        elif key in _HIDDEN_FIELDS:
            out[key] = "***" if text else ""
        else:
            out[key] = text
    return out
