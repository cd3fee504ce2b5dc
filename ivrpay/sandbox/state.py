"""The sandbox gateway's protocol logic and in-memory state (no HTTP here).

:meth:`SandboxState.handle` takes one endpoint's request parameters and returns its answer
pairs, in the GMO-PG protocol's terms: the same keys, the same error codes (``ErrCode`` and
``ErrInfo``, several joined by ``|``), masked card numbers, ``|``-joined multi-card answers,
CheckString made with the ShopPass the EntryTran carried. Every OrderID counts its executions
(every ExecTran that reached it) and successes; a second success in one family of OrderIDs
(``<order_id>-NN``) is logged as a double charge and listed by
:meth:`SandboxState.double_charges`.

Card numbers are kept (it is a gateway) but never shown: views and answers carry masked numbers.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog

from ivrpay.sandbox.cards import TEST_CARDS, brand_of, luhn_ok, mask, security_code_length

log = structlog.get_logger(__name__)

JST = timezone(timedelta(hours=9), "JST")
ENDPOINT_NAMES = (
    "EntryTran",
    "ExecTran",
    "AlterTran",
    "SearchTrade",
    "SaveMember",
    "SearchMember",
    "SaveCard",
    "TradedCard",
    "SearchCard",
    "DeleteCard",
)
ENTRY_JOBS = ("CHECK", "CAPTURE", "AUTH", "SAUTH")
EXECUTED = ("CHECK", "CAPTURE", "AUTH", "SAUTH", "SALES")
ALTER_FROM = {
    "VOID": ("AUTH", "CAPTURE", "SALES", "SAUTH"),
    "RETURN": ("CAPTURE", "SALES"),
    "RETURNX": ("CAPTURE", "SALES"),
    "SALES": ("AUTH", "SAUTH"),
}
MAX_CARDS = 5
_CLIENT_FIELD_FORBIDDEN = frozenset("{}|^`~&<>\"'")  # gmo-pg.md: never in a ClientField
FORWARD = "2a99661"

Pairs = list[tuple[str, str]]


@dataclass
class Order:
    order_id: str
    shop_id: str
    shop_pass: str
    job_cd: str
    amount: int
    tax: int
    access_id: str
    access_pass: str
    status: str = "UNPROCESSED"
    process_date: str = ""
    forward: str = ""
    approve: str = ""
    tran_id: str = ""
    tran_date: str = ""
    method: str = ""
    pay_times: str = ""
    site_id: str = ""
    member_id: str = ""
    client_fields: tuple[str, str, str] = ("", "", "")
    executions: int = 0
    successes: int = 0
    _card_no: str = field(default="", repr=False)
    _expire: str = field(default="", repr=False)


@dataclass
class StoredCard:
    seq: int
    holder_name: str
    card_name: str
    default: bool = False
    deleted: bool = False
    _card_no: str = field(default="", repr=False)
    _expire: str = field(default="", repr=False)


@dataclass
class Member:
    site_id: str
    member_id: str
    name: str
    cards: list[StoredCard] = field(default_factory=list)


@dataclass(frozen=True)
class Reply:
    pairs: Pairs
    lost: bool = False  # the request was processed but its answer must never arrive


class _Errors:
    """Collects ErrInfo codes; GMO answers every parameter error at once."""

    def __init__(self) -> None:
        self.infos: list[str] = []

    def add(self, info: str) -> None:
        self.infos.append(info)

    def __bool__(self) -> bool:
        return bool(self.infos)


def error_pairs(*infos: str) -> Pairs:
    """``ErrCode=E01|G02&ErrInfo=E01040001|42G020000``: the class of each code, by position."""
    codes = [i[2:5] if i[:2].isdigit() else i[:3] for i in infos]
    return [("ErrCode", "|".join(codes)), ("ErrInfo", "|".join(infos))]


def _cp932_len(value: str) -> int:
    return len(value.encode("cp932", "replace"))


def _digits(value: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes ``①`` or ``１``, which ``int`` then rejects."""
    return value.isascii() and value.isdigit()


def _alnum(value: str) -> bool:
    return value.isascii() and value.isalnum()


def family(order_id: str) -> str:
    """``ORDER-7-03`` → ``ORDER-7``: the payment an attempt OrderID belongs to."""
    m = re.fullmatch(r"(.+)-\d{2}", order_id)
    return m.group(1) if m else order_id


class SandboxState:
    """Orders, members and cards of the sandbox gateway, and its counters."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(JST))
        self._orders: dict[tuple[str, str], Order] = {}
        self._by_access: dict[str, Order] = {}
        self._members: dict[tuple[str, str], Member] = {}
        self.requests: Counter[str] = Counter()

    # -- views (read-only: no card numbers) -------------------------------------------------------
    def orders(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """Each OrderID (of one payment's family when ``prefix`` is given) with its status and
        execution count."""
        return [
            self._order_view(o)
            for o in self._orders.values()
            if prefix is None or o.order_id == prefix or family(o.order_id) == prefix
        ]

    def order(self, order_id: str) -> dict[str, Any] | None:
        for o in self._orders.values():
            if o.order_id == order_id:
                return self._order_view(o)
        return None

    def successes(self, prefix: str) -> int:
        """Successful executions of one payment (its ``<prefix>-NN`` OrderIDs)."""
        return sum(o["successes"] for o in self.orders(prefix))

    def executions(self, prefix: str) -> int:
        return sum(o["executions"] for o in self.orders(prefix))

    def double_charges(self) -> dict[str, int]:
        """Payments (OrderID families) with more than one successful execution: always a bug."""
        per: Counter[str] = Counter()
        for o in self._orders.values():
            per[family(o.order_id)] += o.successes
        return {k: v for k, v in per.items() if v > 1}

    def members(self) -> list[dict[str, Any]]:
        return [
            {
                "site_id": m.site_id,
                "member_id": m.member_id,
                "name": m.name,
                "cards": [
                    {
                        "card_seq": c.seq,
                        "card_no": mask(c._card_no),
                        "default": c.default,
                        "deleted": c.deleted,
                    }
                    for c in m.cards
                ],
            }
            for m in self._members.values()
        ]

    @staticmethod
    def _order_view(o: Order) -> dict[str, Any]:
        return {
            "order_id": o.order_id,
            "shop_id": o.shop_id,
            "status": o.status,
            "job_cd": o.job_cd,
            "amount": o.amount,
            "tax": o.tax,
            "executions": o.executions,
            "successes": o.successes,
            "card_no": mask(o._card_no) if o._card_no else "",
            "tran_id": o.tran_id,
            "approve": o.approve,
            "member_id": o.member_id,
        }

    # -- protocol ---------------------------------------------------------------------------------
    def handle(self, endpoint: str, params: Mapping[str, str]) -> Reply:
        """Answer one request of the protocol endpoint ``endpoint`` (counted by the server)."""
        handler = getattr(self, f"_{endpoint}", None)
        if endpoint not in ENDPOINT_NAMES or handler is None:
            return Reply(error_pairs("E91099997"))  # the API does not exist
        reply: Reply = handler(params)
        return reply

    def _now(self) -> datetime:
        return self._clock().astimezone(JST)

    def _stamp(self) -> str:
        return self._now().strftime("%Y%m%d%H%M%S")

    @staticmethod
    def _shop(p: Mapping[str, str], errs: _Errors) -> None:
        shop_id, shop_pass = p.get("ShopID", ""), p.get("ShopPass", "")
        if not shop_id:
            errs.add("E01010001")
        elif _cp932_len(shop_id) > 13 or not _alnum(shop_id):
            errs.add("E01010008")
        if not shop_pass:
            errs.add("E01020001")
        elif _cp932_len(shop_pass) > 10 or not _alnum(shop_pass):
            errs.add("E01020008")

    @staticmethod
    def _site(p: Mapping[str, str], errs: _Errors) -> None:
        # Any site is accepted, but it must be named and within SiteID ≤ 13, SitePass ≤ 20 bytes
        # (E01190… is kept for the security code, as the spec has it).
        site_id, site_pass = p.get("SiteID", ""), p.get("SitePass", "")
        if not site_id or not site_pass or _cp932_len(site_id) > 13 or _cp932_len(site_pass) > 20:
            errs.add("E01210002")

    @staticmethod
    def _member_id(p: Mapping[str, str], errs: _Errors) -> None:
        member_id = p.get("MemberID", "")
        if not member_id:
            errs.add("E01220001")
        elif _cp932_len(member_id) > 60:
            errs.add("E01220005")
        elif not re.fullmatch(r"[A-Za-z0-9_.@-]+", member_id):
            errs.add("E01220008")

    @staticmethod
    def _card_fields(p: Mapping[str, str], errs: _Errors, with_code: bool) -> None:
        number, expire = p.get("CardNo", ""), p.get("Expire", "")
        if not number:
            errs.add("E01170001")
        elif not _digits(number):
            errs.add("E01170006")
        elif not 10 <= len(number) <= 16:
            errs.add("E01170011")
        if not expire:
            errs.add("E01180001")
        elif len(expire) != 4:
            errs.add("E01180003")
        elif not _digits(expire):
            errs.add("E01180006")
        elif not 1 <= int(expire[2:]) <= 12:
            errs.add("E01180008")
        if with_code:
            SandboxState._security_code(p, errs)

    @staticmethod
    def _security_code(p: Mapping[str, str], errs: _Errors) -> None:
        code = p.get("SecurityCode")
        if code and (not _digits(code) or len(code) not in (3, 4)):
            errs.add("E01460008")

    def _card_checks(self, number: str, expire: str, code: str | None) -> str | None:
        """What the card network says about a well-formed card (an ErrInfo, or None = fine)."""
        if not luhn_ok(number):
            return "E41170099"
        brand = brand_of(number)
        if brand is None:
            return "E41170002"
        if code and len(code) != security_code_length(brand):
            return "E01460008"
        now = self._now()
        if (2000 + int(expire[:2]), int(expire[2:])) < (now.year, now.month):
            return "42G830000"
        return None

    def _order_by_access(self, p: Mapping[str, str], errs: _Errors) -> Order | None:
        if not p.get("AccessID"):
            errs.add("E01090001")
        if not p.get("AccessPass"):
            errs.add("E01100001")
        if errs:
            return None
        order = self._by_access.get(p["AccessID"])
        if order is None or order.access_pass != p["AccessPass"]:
            errs.add("E01110002")
            return None
        return order

    @staticmethod
    def _amount(value: str | None, missing: str | None, errs: _Errors, prefix: str) -> int:
        if not value:
            if missing:
                errs.add(missing)
            return 0
        if not _digits(value):
            errs.add(f"{prefix}006")
            return 0
        if len(value) > 7:
            errs.add(f"{prefix}005")
            return 0
        return int(value)

    # EntryTran -----------------------------------------------------------------------------------
    def _EntryTran(self, p: Mapping[str, str]) -> Reply:
        errs = _Errors()
        self._shop(p, errs)
        order_id, job = p.get("OrderID", ""), p.get("JobCd", "")
        if not order_id:
            errs.add("E01040001")
        elif _cp932_len(order_id) > 27:
            errs.add("E01040003")
        elif not re.fullmatch(r"[A-Za-z0-9-]+", order_id):
            errs.add("E01040013")
        if not job:
            errs.add("E01050001")
        elif job not in ENTRY_JOBS:
            errs.add("E01050002")
        amount = self._amount(
            p.get("Amount"), None if job == "CHECK" else "E01060001", errs, "E01060"
        )
        tax = self._amount(p.get("Tax"), None, errs, "E01070")
        if not errs and job != "CHECK" and not 1 <= amount + tax <= 9_999_999:
            errs.add("E01490005")
        if not errs and (p["ShopID"], order_id) in self._orders:
            errs.add("E01040010")
        if errs:
            return Reply(error_pairs(*errs.infos))
        order = Order(
            order_id=order_id,
            shop_id=p["ShopID"],
            shop_pass=p["ShopPass"],
            job_cd=job,
            amount=amount,
            tax=tax,
            access_id=secrets.token_hex(16),
            access_pass=secrets.token_hex(16),
            process_date=self._stamp(),
        )
        self._orders[(order.shop_id, order_id)] = order
        self._by_access[order.access_id] = order
        return Reply([("AccessID", order.access_id), ("AccessPass", order.access_pass)])

    # ExecTran ------------------------------------------------------------------------------------
    def _ExecTran(self, p: Mapping[str, str]) -> Reply:
        errs = _Errors()
        order = self._order_by_access(p, errs)
        if order is None:
            return Reply(error_pairs(*errs.infos))
        order.executions += 1
        if not p.get("OrderID"):
            errs.add("E01040001")
        elif p["OrderID"] != order.order_id:
            errs.add("E01110002")
        method, pay_times = p.get("Method", ""), p.get("PayTimes", "")
        if not method:
            errs.add("E01260001")
        elif method not in ("1", "2", "3", "4", "5"):
            errs.add("E01260002")
        elif method in ("2", "4"):
            if not pay_times:
                errs.add("E01270001")
            elif not _digits(pay_times):
                errs.add("E01270006")
        for i, code in ((1, "E01320012"), (2, "E01330012"), (3, "E01340012")):
            value = p.get(f"ClientField{i}", "")
            if _cp932_len(value) > 100 or any(ch in _CLIENT_FIELD_FORBIDDEN for ch in value):
                errs.add(code)
        stored = bool(p.get("MemberID") or p.get("CardSeq"))
        card: StoredCard | None = None
        if stored:
            self._site(p, errs)
            self._member_id(p, errs)
            self._security_code(p, errs)
            if not errs:
                member = self._members.get((p["SiteID"], p["MemberID"]))
                if member is None:
                    errs.add("E01390002")
                else:
                    card = self._find_card(member, p.get("CardSeq", ""), errs)
        else:
            self._card_fields(p, errs, with_code=True)
        if errs:
            return Reply(error_pairs(*errs.infos))
        if order.status != "UNPROCESSED":
            return Reply(error_pairs("E11010001"))  # executed already
        number = card._card_no if card else p["CardNo"]
        expire = card._expire if card else p["Expire"]
        problem = self._card_checks(number, expire, p.get("SecurityCode"))
        if problem:
            return Reply(error_pairs(problem))
        special = TEST_CARDS.get(number)
        if special and special.effect in ("decline", "gateway_timeout"):
            return Reply(error_pairs(special.err_info))
        # Approved: the charge happens now, whatever becomes of the answer.
        order.status = order.job_cd
        order.forward = FORWARD
        order.approve = f"{secrets.randbelow(10**7):07d}"
        order.tran_id = "".join(str(secrets.randbelow(10)) for _ in range(28))
        order.tran_date = order.process_date = self._stamp()
        order.method = method
        order.pay_times = pay_times if method in ("2", "4") else ""
        order.client_fields = (
            p.get("ClientField1", ""),
            p.get("ClientField2", ""),
            p.get("ClientField3", ""),
        )
        order._card_no, order._expire = number, expire
        if card is not None:
            order.site_id, order.member_id = p["SiteID"], p["MemberID"]
        order.successes += 1
        payment = family(order.order_id)
        charged = sum(o.successes for o in self._orders.values() if family(o.order_id) == payment)
        if charged > 1:
            log.warning("sandbox_double_charge", order_family=payment, successes=charged)
        check = hashlib.md5(
            (
                order.order_id
                + order.forward
                + order.method
                + order.pay_times
                + order.approve
                + order.tran_id
                + order.tran_date
                + order.shop_pass
            ).encode("cp932"),
            usedforsecurity=False,
        ).hexdigest()
        pairs = [
            ("ACS", "0"),
            ("OrderID", order.order_id),
            ("Forward", order.forward),
            ("Method", order.method),
            ("PayTimes", order.pay_times),
            ("Approve", order.approve),
            ("TranID", order.tran_id),
            ("TranDate", order.tran_date),
            ("CheckString", check),
        ]
        return Reply(pairs, lost=bool(special and special.effect == "lost_answer"))

    @staticmethod
    def _find_card(member: Member, seq: str, errs: _Errors) -> StoredCard | None:
        if not seq:
            errs.add("E01230001")
            return None
        if not _digits(seq):
            errs.add("E01230006")
            return None
        for c in member.cards:
            if c.seq == int(seq) and not c.deleted:
                return c
        errs.add("E01240002")
        return None

    # AlterTran -----------------------------------------------------------------------------------
    def _AlterTran(self, p: Mapping[str, str]) -> Reply:
        errs = _Errors()
        self._shop(p, errs)
        job = p.get("JobCd", "")
        if not job:
            errs.add("E01050001")
        elif job not in ALTER_FROM:
            errs.add("E01050002")
        order = self._order_by_access(p, errs) if not errs else None
        if order is None:
            return Reply(error_pairs(*errs.infos))
        if order.shop_id != p["ShopID"]:
            return Reply(error_pairs("E01110002"))
        if order.status not in ALTER_FROM[job]:
            return Reply(error_pairs("E01050004"))
        if job == "SALES":
            amount = self._amount(p.get("Amount"), "E01060001", errs, "E01060")
            if not errs and amount != order.amount:
                errs.add("E01060010")
            if errs:
                return Reply(error_pairs(*errs.infos))
        order.status = job
        order.approve = order.approve or f"{secrets.randbelow(10**7):07d}"
        order.tran_id = "".join(str(secrets.randbelow(10)) for _ in range(28))
        order.tran_date = order.process_date = self._stamp()
        return Reply(
            [
                ("AccessID", order.access_id),
                ("AccessPass", order.access_pass),
                ("Forward", order.forward),
                ("Approve", order.approve),
                ("TranID", order.tran_id),
                ("TranDate", order.tran_date),
            ]
        )

    # SearchTrade ---------------------------------------------------------------------------------
    def _SearchTrade(self, p: Mapping[str, str]) -> Reply:
        errs = _Errors()
        self._shop(p, errs)
        if not p.get("OrderID"):
            errs.add("E01040001")
        if errs:
            return Reply(error_pairs(*errs.infos))
        order = self._orders.get((p["ShopID"], p["OrderID"]))
        if order is None:
            return Reply(error_pairs("E01110002"))
        return Reply(
            [
                ("OrderID", order.order_id),
                ("Status", order.status),
                ("ProcessDate", order.process_date),
                ("JobCd", order.job_cd),
                ("AccessID", order.access_id),
                ("AccessPass", order.access_pass),
                ("ItemCode", "0000990"),
                ("Amount", str(order.amount)),
                ("Tax", str(order.tax)),
                ("SiteID", order.site_id),
                ("MemberID", order.member_id),
                ("CardNo", mask(order._card_no) if order._card_no else ""),
                ("Expire", order._expire),
                ("Method", order.method),
                ("PayTimes", order.pay_times),
                ("Forward", order.forward),
                ("TranID", order.tran_id),
                ("Approve", order.approve),
                ("ClientField1", order.client_fields[0]),
                ("ClientField2", order.client_fields[1]),
                ("ClientField3", order.client_fields[2]),
                ("PayType", "0"),
            ]
        )

    # members and cards ---------------------------------------------------------------------------
    def _member(self, p: Mapping[str, str], errs: _Errors) -> Member | None:
        self._site(p, errs)
        self._member_id(p, errs)
        if errs:
            return None
        member = self._members.get((p["SiteID"], p["MemberID"]))
        if member is None:
            errs.add("E01390002")
        return member

    def _SaveMember(self, p: Mapping[str, str]) -> Reply:
        errs = _Errors()
        self._site(p, errs)
        self._member_id(p, errs)
        name = p.get("MemberName", "")
        if _cp932_len(name) > 255:
            errs.add("E01430012")
        if not errs and (p["SiteID"], p["MemberID"]) in self._members:
            errs.add("E01390010")
        if errs:
            return Reply(error_pairs(*errs.infos))
        self._members[(p["SiteID"], p["MemberID"])] = Member(p["SiteID"], p["MemberID"], name)
        return Reply([("MemberID", p["MemberID"])])

    def _SearchMember(self, p: Mapping[str, str]) -> Reply:
        errs = _Errors()
        member = self._member(p, errs)
        if member is None:
            return Reply(error_pairs(*errs.infos))
        return Reply(
            [("MemberID", member.member_id), ("MemberName", member.name), ("DeleteFlag", "0")]
        )

    def _store_card(
        self, member: Member, number: str, expire: str, p: Mapping[str, str]
    ) -> StoredCard:
        default = p.get("DefaultFlag") == "1" or not any(not c.deleted for c in member.cards)
        if default:
            for c in member.cards:
                c.default = False
        card = StoredCard(
            seq=len(member.cards),  # logical mode: a sequence number is never reused
            holder_name=p.get("HolderName", ""),
            card_name=p.get("CardName", ""),
            default=default,
            _card_no=number,
            _expire=expire,
        )
        member.cards.append(card)
        return card

    @staticmethod
    def _card_room(member: Member | None, p: Mapping[str, str], errs: _Errors) -> None:
        if p.get("DefaultFlag", "0") not in ("0", "1"):
            errs.add("E01250008")
        if _cp932_len(p.get("HolderName", "")) > 50:
            errs.add("E01480008")
        if member is not None and sum(not c.deleted for c in member.cards) >= MAX_CARDS:
            errs.add("E01230009")

    def _SaveCard(self, p: Mapping[str, str]) -> Reply:
        errs = _Errors()
        member = self._member(p, errs)
        self._card_fields(p, errs, with_code=False)
        self._card_room(member, p, errs)
        if errs or member is None:
            return Reply(error_pairs(*errs.infos))
        number, expire = p["CardNo"], p["Expire"]
        problem = self._card_checks(number, expire, None)
        if problem:
            return Reply(error_pairs(problem))
        special = TEST_CARDS.get(number)
        if special and special.effect in ("decline", "gateway_timeout"):
            return Reply(error_pairs(special.err_info))
        card = self._store_card(member, number, expire, p)
        return Reply(
            [("CardSeq", str(card.seq)), ("CardNo", mask(number)), ("Forward", FORWARD)],
            lost=bool(special and special.effect == "lost_answer"),
        )

    def _TradedCard(self, p: Mapping[str, str]) -> Reply:
        errs = _Errors()
        self._shop(p, errs)
        if not p.get("OrderID"):
            errs.add("E01040001")
        member = self._member(p, errs)
        self._card_room(member, p, errs)
        if errs or member is None:
            return Reply(error_pairs(*errs.infos))
        order = self._orders.get((p["ShopID"], p["OrderID"]))
        if order is None:
            return Reply(error_pairs("E01110002"))
        if order.status not in EXECUTED or not order._card_no:
            return Reply(error_pairs("E01110010"))  # the transaction is not completed
        card = self._store_card(member, order._card_no, order._expire, p)
        return Reply(
            [("CardSeq", str(card.seq)), ("CardNo", mask(card._card_no)), ("Forward", FORWARD)]
        )

    def _SearchCard(self, p: Mapping[str, str]) -> Reply:
        errs = _Errors()
        member = self._member(p, errs)
        if p.get("SeqMode", "0") not in ("0", "1"):
            errs.add("E01470008")
        seq = p.get("CardSeq", "")
        if seq and not _digits(seq):
            errs.add("E01230006")
        if errs or member is None:
            return Reply(error_pairs(*errs.infos))
        cards = [c for c in member.cards if not seq or c.seq == int(seq)]
        if not cards:
            return Reply(error_pairs("E01240002"))

        def joined(values: list[str]) -> str:
            return "|".join(values)

        return Reply(
            [
                ("CardSeq", joined([str(c.seq) for c in cards])),
                ("DefaultFlag", joined(["1" if c.default else "0" for c in cards])),
                ("CardName", joined([c.card_name for c in cards])),
                ("CardNo", joined([mask(c._card_no) for c in cards])),
                ("Expire", joined([c._expire for c in cards])),
                ("HolderName", joined([c.holder_name for c in cards])),
                ("DeleteFlag", joined(["1" if c.deleted else "0" for c in cards])),
            ]
        )

    def _DeleteCard(self, p: Mapping[str, str]) -> Reply:
        errs = _Errors()
        member = self._member(p, errs)
        if p.get("SeqMode", "0") not in ("0", "1"):
            errs.add("E01470008")
        if errs or member is None:
            return Reply(error_pairs(*errs.infos))
        card = self._find_card(member, p.get("CardSeq", ""), errs)
        if card is None:
            return Reply(error_pairs(*errs.infos))
        card.deleted = True
        card.default = False
        return Reply([("CardSeq", str(card.seq))])
