"""The gateway's error table: every ErrInfo code mapped to what ivrpay does about it.

This is the ONE place that decides whether an error is an input the caller can correct (and which
field), a decline, a system error, a busy gateway (retry) or an unknown outcome (reconcile).
The rules follow gmo-pg.md ("Errors") and product.md ("Gateway client shape"):

- listed codes first (exact, then by prefix);
- unlisted ``42G…`` = declined; ``42C…``, ``E90…``, ``E91…`` = unknown; anything else = system;
- of several ErrInfo values in one answer, a card-company code (``42…``) wins; among the
  deciding codes the most cautious kind wins (unknown, then system, busy, declined, input), so an
  answer that might mean "charged" is never read as "failed".

``busy`` outlasting its retries becomes ``system``: the client does that, the table only says busy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["ok", "input", "declined", "system", "busy", "unknown"]
Field = Literal["card_number", "expiry", "security_code"]

# Codes the client (not only the table) acts on.
ORDER_ID_USED = "E01040010"  # OrderID already used: maybe our own earlier EntryTran
TRADE_NOT_FOUND = "E01110002"  # no transaction for that ID/password (or OrderID)
CARD_NOT_FOUND = "E01240002"  # no stored card (SearchCard on a member without cards)
MEMBER_NOT_FOUND = "E01390002"
MEMBER_EXISTS = "E01390010"
ALREADY_SETTLED = "E11010001"
CONCURRENT_SITE_CALL = "E82010001"  # retried once only


@dataclass(frozen=True, slots=True)
class Rule:
    kind: Kind
    field: Field | None = None
    message: str = ""


def _input(field: Field, message: str) -> Rule:
    return Rule("input", field, message)


_NUMBER = "the card number was rejected"
_EXPIRY = "the expiry date was rejected"
_CODE = "the security code was rejected"

# Exact codes (gmo-pg.md "Errors"), checked before the prefixes below.
EXACT: dict[str, Rule] = {
    ORDER_ID_USED: Rule("system", None, "OrderID already used"),
    TRADE_NOT_FOUND: Rule("system", None, "no such transaction"),
    CARD_NOT_FOUND: Rule("system", None, "no such stored card"),
    MEMBER_NOT_FOUND: Rule("system", None, "no such member"),
    MEMBER_EXISTS: Rule("system", None, "member already exists"),
    "E41170002": _input("card_number", "card brand not supported by the gateway"),
    "E41170099": _input("card_number", _NUMBER),
    "42G650000": _input("card_number", _NUMBER),
    "42G830000": _input("expiry", _EXPIRY),
    "42G440000": _input("security_code", _CODE),
    "42G450000": _input("security_code", "the security code is missing"),
    "42G020000": Rule("declined", None, "insufficient balance"),
    "42G040000": Rule("declined", None, "insufficient balance"),
    "42G030000": Rule("declined", None, "over the card's limit"),
    "42G050000": Rule("declined", None, "over the card's limit"),
    "42G550000": Rule("declined", None, "over the card's limit"),
    **{
        code: Rule("declined", None, "the card cannot be used")
        for code in (
            "42G120000",
            "42G220000",
            "42G300000",
            "42G540000",
            "42G560000",
            "42G600000",
            "42G610000",
            "42G920000",
            "42G950000",
            "42G960000",
            "42G970000",
            "42G980000",
            "42G990000",
        )
    },
    CONCURRENT_SITE_CALL: Rule("busy", None, "concurrent calls for the same site"),
    "E92000001": Rule("busy", None, "gateway busy"),
    "E92000002": Rule("busy", None, "gateway busy"),
    "E90010001": Rule("unknown", None, "duplicate submission in progress"),
    "E91020001": Rule("unknown", None, "gateway communication timeout"),
    ALREADY_SETTLED: Rule("unknown", None, "transaction already settled"),
}

# Prefixes, longest first. The spec pins E01190…/E01460… as the security code (see the report:
# real GMO-PG uses E01190… for SiteID; E01460… is the security code format).
PREFIXES: tuple[tuple[str, Rule], ...] = (
    ("E01170", _input("card_number", _NUMBER)),
    ("E01180", _input("expiry", _EXPIRY)),
    ("E01190", _input("security_code", _CODE)),
    ("E01460", _input("security_code", _CODE)),
    ("E61", Rule("system", None, "merchant contract or configuration error")),
    # No E82/E92 prefixes: only the listed codes are busy, other unlisted codes are system.
    ("E90", Rule("unknown", None, "gateway processing, outcome unknown")),
    ("E91", Rule("unknown", None, "gateway system error, outcome unknown")),
    ("42C", Rule("unknown", None, "card network communication failure")),
    ("42G", Rule("declined", None, "the card was declined")),
)

DEFAULT = Rule("system", None, "gateway error")

# Higher wins when several codes decide one answer.
_CAUTION: dict[Kind, int] = {
    "unknown": 5,
    "system": 4,
    "busy": 3,
    "declined": 2,
    "input": 1,
    "ok": 0,
}


def rule_for(info: str) -> Rule:
    """The rule for one ErrInfo code."""
    info = info.strip().upper()
    exact = EXACT.get(info)
    if exact is not None:
        return exact
    for prefix, rule in PREFIXES:
        if info.startswith(prefix):
            return rule
    return DEFAULT


def is_card_company(info: str) -> bool:
    """Card-company codes look like ``42G020000`` (digits, then the class letter)."""
    return len(info) >= 3 and info[:2].isdigit()


@dataclass(frozen=True, slots=True)
class Classification:
    kind: Kind
    field: Field | None
    code: str  # the deciding ErrInfo
    message: str


def classify(pairs: Sequence[tuple[str, str]]) -> Classification:
    """Decide one answer's ``(ErrCode, ErrInfo)`` pairs. An empty list is an unreadable error."""
    infos = [info.strip().upper() for _code, info in pairs if info.strip()]
    if not infos:
        return Classification("unknown", None, "", "error answer without ErrInfo")
    deciding = [i for i in infos if is_card_company(i)] or infos
    best = deciding[0]
    best_rule = rule_for(best)
    for info in deciding[1:]:
        rule = rule_for(info)
        if _CAUTION[rule.kind] > _CAUTION[best_rule.kind]:
            best, best_rule = info, rule
    return Classification(best_rule.kind, best_rule.field, best, best_rule.message)
