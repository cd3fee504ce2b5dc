"""One method per GMO-PG endpoint: the request's fields, the answer's reading into an Outcome.

No endpoint here calls another; what needs several (recovery, card storage, settlement) is in
:mod:`ivrpay.gateway.recovery`. Card data comes in a :class:`~ivrpay.card.holder.CardData` and goes
no further than the request body. An ExecTran answer whose CheckString does not match is
``unknown``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Literal

from ivrpay.card.holder import CardData
from ivrpay.gateway.codec import (
    ENDPOINTS,
    Answer,
    check_string,
    client_field_problem,
    parse_gateway_time,
    split_multi,
)
from ivrpay.gateway.errors import Kind
from ivrpay.gateway.results import Outcome, StoredCard
from ivrpay.gateway.transport import GatewayTransport, log

JobCd = Literal["CHECK", "CAPTURE", "AUTH", "SAUTH"]


def _int(value: str | None) -> int | None:
    # ASCII only: ``str.isdigit`` also takes ``①``, which ``int`` rejects with an exception.
    return int(value) if value and value.isascii() and value.isdigit() else None


def _last4(card_no: str | None) -> str | None:
    digits = re.sub(r"\D", "", card_no or "")
    return digits[-4:] if len(digits) >= 4 else None


class GatewayEndpoints(GatewayTransport):
    """The shop's and site's credentials and one method per endpoint, over the transport."""

    # Set by the assembled client (``ivrpay.gateway.client.GatewayClient``).
    _shop_id: str
    _shop_pass: str
    _site_id: str
    _site_pass: str

    def _shop(self) -> dict[str, Any]:
        return {"ShopID": self._shop_id, "ShopPass": self._shop_pass}

    def _site(self) -> dict[str, Any]:
        return {"SiteID": self._site_id, "SitePass": self._site_pass}

    async def entry_tran(
        self, order_id: str, job_cd: JobCd, amount: int | None, tax: int | None = None
    ) -> Outcome:
        """Open a transaction. ``unknown`` here never means money moved (ExecTran was not sent):
        resend with the same OrderID; ``E01040010`` then means it had arrived (see
        ``GatewayRecovery.open_transaction``)."""
        params = {**self._shop(), "OrderID": order_id, "JobCd": job_cd}
        if job_cd != "CHECK" or amount is not None:
            params["Amount"] = amount
        params["Tax"] = tax
        out, ans = await self._call("EntryTran", params, order_id=order_id)
        if ans is None:
            return out
        f = ans.fields
        return dataclasses.replace(out, access_id=f["AccessID"], access_pass=f["AccessPass"])

    async def exec_tran(
        self,
        order_id: str,
        access_id: str,
        access_pass: str,
        card: CardData,
        *,
        method: int = 1,
        pay_times: int | None = None,
        client_fields: Sequence[str] = (),
    ) -> Outcome:
        """Charge a keyed card. The holder is read, never kept; the security code is optional."""
        if not (card.has_number and card.has_expiry):
            return Outcome(
                "ExecTran",
                "system",
                message="card data incomplete",
                order_id=order_id,
                refused_here=True,
            )
        params: dict[str, Any] = {
            "AccessID": access_id,
            "AccessPass": access_pass,
            "OrderID": order_id,
            "Method": method,
            "PayTimes": pay_times,
            "CardNo": card.reveal_number(),
            "Expire": card.reveal_expire_yymm(),
            "SecurityCode": card.reveal_security_code(),
        }
        for i, value in enumerate(client_fields[:3], start=1):
            problem = client_field_problem(value)
            if problem:
                out = Outcome(
                    "ExecTran",
                    "system",
                    message=f"ClientField{i}: {problem}",
                    order_id=order_id,
                    refused_here=True,
                )
                self._log(ENDPOINTS["ExecTran"], out, None, order_id)
                return out
            params[f"ClientField{i}"] = value
        out, ans = await self._call("ExecTran", params, order_id=order_id)
        return self._read_exec(out, ans, order_id, card.last4)

    async def exec_tran_member(
        self,
        order_id: str,
        access_id: str,
        access_pass: str,
        member_id: str,
        card_seq: int,
        *,
        security_code: CardData | None = None,
        method: int = 1,
        pay_times: int | None = None,
    ) -> Outcome:
        """Charge a stored card (``security_code``: a holder with only the code set, optional)."""
        params: dict[str, Any] = {
            "AccessID": access_id,
            "AccessPass": access_pass,
            "OrderID": order_id,
            "Method": method,
            "PayTimes": pay_times,
            **self._site(),
            "MemberID": member_id,
            "SeqMode": 0,
            "CardSeq": card_seq,
            "SecurityCode": security_code.reveal_security_code() if security_code else None,
        }
        out, ans = await self._call("ExecTran", params, order_id=order_id)
        return self._read_exec(out, ans, order_id, None)

    def _read_exec(
        self, out: Outcome, ans: Answer | None, order_id: str, last4: str | None
    ) -> Outcome:
        if ans is None:
            return dataclasses.replace(out, card_last4=last4)
        f = ans.fields
        method, pay_times = f.get("Method", ""), f.get("PayTimes", "")
        expected = check_string(
            f["OrderID"],
            f["Forward"],
            method,
            pay_times,
            f["Approve"],
            f["TranID"],
            f["TranDate"],
            self._shop_pass,
        )
        tran_date = parse_gateway_time(f["TranDate"])
        problem = None
        if f["OrderID"] != order_id:
            problem = "answer is for another OrderID"
        elif f["CheckString"].strip().lower() != expected:
            problem = "CheckString mismatch"
        elif tran_date is None:
            problem = "TranDate unreadable"
        if problem:
            # Maybe executed, maybe forged or garbled: never a success, reconcile it.
            log.warning("gateway_exec_unverified", order_id=order_id, reason=problem)
            return dataclasses.replace(out, kind="unknown", message=problem, card_last4=last4)
        return dataclasses.replace(
            out,
            forward=f["Forward"],
            approve=f["Approve"],
            tran_id=f["TranID"],
            tran_date=tran_date,
            method=method or None,
            pay_times=pay_times or None,
            card_last4=last4,
        )

    async def alter_tran(
        self,
        access_id: str,
        access_pass: str,
        job_cd: Literal["VOID", "RETURN", "RETURNX", "SALES"],
        amount: int | None = None,
        *,
        order_id: str | None = None,
    ) -> Outcome:
        """Change a transaction's state; ``amount`` only with SALES (must equal the authorized)."""
        params = {
            **self._shop(),
            "AccessID": access_id,
            "AccessPass": access_pass,
            "JobCd": job_cd,
            "Amount": amount if job_cd == "SALES" else None,
        }
        out, ans = await self._call("AlterTran", params, order_id=order_id)
        if ans is None:
            return out
        f = ans.fields
        tran_date = parse_gateway_time(f["TranDate"])
        return dataclasses.replace(
            out,
            access_id=f["AccessID"],
            access_pass=f["AccessPass"],
            forward=f["Forward"],
            approve=f["Approve"],
            tran_id=f["TranID"],
            tran_date=tran_date,
            status=job_cd,
        )

    async def search_trade(self, order_id: str) -> Outcome:
        """The transaction of one OrderID (``status``, ids, amounts, masked card: last 4)."""
        out, ans = await self._call(
            "SearchTrade", {**self._shop(), "OrderID": order_id}, order_id=order_id
        )
        if ans is None:
            return out
        f = ans.fields
        if f["OrderID"] != order_id:
            return dataclasses.replace(out, kind="system", message="answer for another OrderID")
        return dataclasses.replace(
            out,
            status=f["Status"].strip().upper(),
            job_cd=f.get("JobCd") or None,
            access_id=f.get("AccessID") or None,
            access_pass=f.get("AccessPass") or None,
            amount=_int(f.get("Amount")),
            tax=_int(f.get("Tax")),
            forward=f.get("Forward") or None,
            approve=f.get("Approve") or None,
            tran_id=f.get("TranID") or None,
            tran_date=parse_gateway_time(f.get("TranDate")),
            process_date=parse_gateway_time(f.get("ProcessDate")),
            method=f.get("Method") or None,
            pay_times=f.get("PayTimes") or None,
            card_last4=_last4(f.get("CardNo")),
            member_id=f.get("MemberID") or None,
        )

    async def save_member(self, member_id: str, member_name: str | None = None) -> Outcome:
        """``E01390010`` (``errors.MEMBER_EXISTS``) when the member exists already."""
        params = {**self._site(), "MemberID": member_id, "MemberName": member_name}
        out, ans = await self._call("SaveMember", params)
        return out if ans is None else dataclasses.replace(out, member_id=ans.fields["MemberID"])

    async def search_member(self, member_id: str) -> Outcome:
        """``E01390002`` (``errors.MEMBER_NOT_FOUND``) when there is no such member."""
        out, ans = await self._call("SearchMember", {**self._site(), "MemberID": member_id})
        if ans is None:
            return out
        f = ans.fields
        return dataclasses.replace(
            out, member_id=f["MemberID"], member_name=f.get("MemberName") or None
        )

    async def save_card(
        self,
        member_id: str,
        card: CardData,
        *,
        default: bool = True,
        holder_name: str | None = None,
        card_name: str | None = None,
    ) -> Outcome:
        """Store a card (the gateway runs a live validity check: card-company errors may come)."""
        if not (card.has_number and card.has_expiry):
            return Outcome("SaveCard", "system", message="card data incomplete", refused_here=True)
        params = {
            **self._site(),
            "MemberID": member_id,
            "DefaultFlag": 1 if default else 0,
            "CardName": card_name,
            "CardNo": card.reveal_number(),
            "Expire": card.reveal_expire_yymm(),
            "HolderName": holder_name,
        }
        out, ans = await self._call("SaveCard", params)
        return self._read_card_seq(out, ans, member_id, card.last4)

    async def traded_card(
        self,
        order_id: str,
        member_id: str,
        *,
        default: bool = True,
        holder_name: str | None = None,
    ) -> Outcome:
        """Store the card just charged on ``order_id``."""
        params = {
            **self._shop(),
            "OrderID": order_id,
            **self._site(),
            "MemberID": member_id,
            "DefaultFlag": 1 if default else 0,
            "HolderName": holder_name,
        }
        out, ans = await self._call("TradedCard", params, order_id=order_id)
        return self._read_card_seq(out, ans, member_id, None)

    @staticmethod
    def _read_card_seq(
        out: Outcome, ans: Answer | None, member_id: str, last4: str | None
    ) -> Outcome:
        if ans is None:
            return dataclasses.replace(out, member_id=member_id, card_last4=last4)
        seq = _int(ans.fields["CardSeq"].strip())
        if seq is None:
            kind: Kind = "unknown" if ENDPOINTS[out.endpoint].mutating else "system"
            return dataclasses.replace(out, kind=kind, message="unreadable CardSeq")
        return dataclasses.replace(
            out,
            member_id=member_id,
            card_seq=seq,
            card_last4=_last4(ans.fields.get("CardNo")) or last4,
            forward=ans.fields.get("Forward") or None,
        )

    async def search_card(self, member_id: str, card_seq: int | None = None) -> Outcome:
        """A member's cards (``cards``, masked: last 4 only). ``E01240002`` when none."""
        params = {**self._site(), "MemberID": member_id, "SeqMode": 0, "CardSeq": card_seq}
        out, ans = await self._call("SearchCard", params)
        if ans is None:
            return dataclasses.replace(out, member_id=member_id)
        f = ans.fields
        seqs = split_multi(f["CardSeq"])
        columns = {k: split_multi(f.get(k)) for k in ("DefaultFlag", "CardName", "CardNo")}
        deleted = split_multi(f.get("DeleteFlag"))
        cards: list[StoredCard] = []
        for i, raw_seq in enumerate(seqs):
            seq = _int(raw_seq.strip())
            if seq is None:
                return dataclasses.replace(out, kind="system", message="unreadable CardSeq")

            def col(values: list[str], i: int = i) -> str:
                return values[i] if i < len(values) else ""

            cards.append(
                StoredCard(
                    card_seq=seq,
                    last4=_last4(col(columns["CardNo"])) or "",
                    default=col(columns["DefaultFlag"]) == "1",
                    deleted=col(deleted) == "1",
                    card_name=col(columns["CardName"]),
                )
            )
        return dataclasses.replace(out, member_id=member_id, cards=tuple(cards))

    async def delete_card(self, member_id: str, card_seq: int) -> Outcome:
        params = {**self._site(), "MemberID": member_id, "SeqMode": 0, "CardSeq": card_seq}
        out, ans = await self._call("DeleteCard", params)
        return self._read_card_seq(out, ans, member_id, None)
