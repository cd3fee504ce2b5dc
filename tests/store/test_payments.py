"""The API side: create, codes, order_id conflict, list paging and holdback, cancel, settlement,
idempotency keys, clients, users, audit."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import asyncpg
import pytest

from ivrpay import store
from ivrpay.store import payments as payments_module
from tests.store.helpers import (
    DECLINE,
    SUCCESS,
    T0,
    at,
    claimed,
    new_client,
    new_payment,
    processing,
)

PAYMENT_KEYS = {
    "id", "order_id", "amount", "tax", "job", "method", "pay_times", "operation", "member_id",
    "language", "metadata", "status", "code", "transfer_to", "expires_at", "operator", "progress",
    "executions", "card", "result", "registration", "error", "call", "settlement",
    "cancel_requested", "taken_back", "listen_in", "needs_review", "created_at", "updated_at",
}  # fmt: skip


async def test_create_and_get_shape(pool: asyncpg.Pool) -> None:
    p = await new_payment(
        pool,
        amount=12000,
        tax=800,
        operator={"id": "op1", "callback": "PJSIP/1001"},
        metadata={"note": "日本語"},
        language="en",
        expires_in=600,
    )
    assert set(p) == PAYMENT_KEYS
    assert p["status"] == "pending"
    assert re.fullmatch(r"[1-9]\d{5}", p["code"]) and p["transfer_to"] == "8" + p["code"]
    assert p["expires_at"] == T0 + timedelta(seconds=600)
    assert p["progress"] == {"step": "waiting", "attempts": {}}
    assert p["executions"] == [] and p["card"] is None and p["call"] is None
    assert p["created_at"].tzinfo is not None
    assert await store.get_payment(pool, p["id"]) == p
    assert await store.get_payment_by_order_id(pool, p["order_id"]) == p
    assert await store.get_payment(pool, "not-a-uuid") is None
    events = await store.list_events(pool, p["id"])
    assert [(e["seq"], e["kind"]) for e in events] == [(1, "created")]


async def test_order_id_is_unique(pool: asyncpg.Pool) -> None:
    await new_payment(pool, order_id="A-1")
    with pytest.raises(store.Conflict) as info:
        await new_payment(pool, order_id="A-1")
    assert info.value.code == "order_id_exists"
    # Racing creates of one order_id: exactly one wins.
    results = await asyncio.gather(
        *(new_payment(pool, order_id="RACE-1") for _ in range(10)), return_exceptions=True
    )
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(isinstance(r, store.Conflict) for r in results if not isinstance(r, dict))


async def test_bad_fields_are_value_errors(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError):
        await new_payment(pool, order_id="has space")
    with pytest.raises(ValueError):
        await new_payment(pool, job="SALES")
    with pytest.raises(ValueError):
        await new_payment(pool, now=T0.replace(tzinfo=None))


async def test_code_unique_and_not_reissued_for_24h_after_expiry(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    codes = iter(["111111", "111111", "222222", "111111", "111111", "333333", "111111"])
    monkeypatch.setattr(payments_module, "_random_code", lambda: next(codes))
    first = await new_payment(pool, expires_in=1800)
    assert first["code"] == "111111"
    # Taken: the store draws again.
    second = await new_payment(pool)
    assert second["code"] == "222222"
    # After expiry but inside 24 h, still not reissued; the code still leads to its payment.
    await store.expire_payments(pool, now=at(1801))
    third = await new_payment(pool, now=at(1801 + 23 * 3600))
    assert third["code"] == "333333"
    found = await store.find_by_code(pool, "111111", now=at(1801 + 23 * 3600))
    assert found is not None and found["id"] == first["id"] and found["status"] == "expired"
    # 24 h after its payment expired, the code is free again.
    fourth = await new_payment(pool, now=at(1800 + 24 * 3600))
    assert fourth["code"] == "111111"
    now = at(1800 + 24 * 3600)
    assert (await store.find_by_code(pool, "111111", now=now))["id"] == fourth["id"]


async def test_many_codes_distinct(pool: asyncpg.Pool) -> None:
    made = await asyncio.gather(*(new_payment(pool) for _ in range(200)))
    assert len({p["code"] for p in made}) == 200


async def test_list_paging_in_update_order(pool: asyncpg.Pool) -> None:
    made = [await new_payment(pool, now=at(i)) for i in range(7)]
    # Touch the first: it moves to the end of the order.
    await store.cancel_payment(pool, made[0]["id"], now=at(100))
    seen, cursor = [], None
    while True:
        items, cursor = await store.list_payments(pool, now=at(1000), cursor=cursor, limit=3)
        seen += items
        if cursor is None:
            break
    assert [p["id"] for p in seen] == [p["id"] for p in made[1:]] + [made[0]["id"]]
    keys = [(p["updated_at"], p["id"]) for p in seen]
    assert keys == sorted(keys)
    items, _ = await store.list_payments(pool, now=at(1000), status="canceled")
    assert [p["id"] for p in items] == [made[0]["id"]]
    items, _ = await store.list_payments(pool, now=at(1000), order_id=made[3]["order_id"])
    assert [p["id"] for p in items] == [made[3]["id"]]
    with pytest.raises(store.InvalidCursor):
        await store.list_payments(pool, now=at(1000), cursor="garbage!")


async def test_list_holdback_with_updated_since(pool: asyncpg.Pool) -> None:
    old = await new_payment(pool, now=at(0))
    recent = await new_payment(pool, now=at(97))
    items, _ = await store.list_payments(pool, now=at(100), updated_since=at(-10), holdback_s=5.0)
    assert [p["id"] for p in items] == [old["id"]]  # changed 3 s ago: held back
    items, _ = await store.list_payments(pool, now=at(103), updated_since=at(-10), holdback_s=5.0)
    assert [p["id"] for p in items] == [old["id"], recent["id"]]
    # Without updated_since nothing is held back.
    items, _ = await store.list_payments(pool, now=at(100))
    assert len(items) == 2


async def test_updated_at_strictly_increases(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool, now=at(10))
    claim = await claimed(pool, p, now=at(5))  # a process whose clock is behind
    snap = await store.record_progress(pool, p["id"], claim.token, now=at(5), step="card_number")
    assert snap["updated_at"] > p["updated_at"]


async def test_cancel(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool)
    outcome, snap = await store.cancel_payment(pool, p["id"], now=at(1), actor="client:x")
    assert (outcome, snap["status"]) == ("canceled", "canceled")
    with pytest.raises(store.Conflict) as info:
        await store.cancel_payment(pool, p["id"], now=at(2))
    assert info.value.code == "not_cancelable"
    with pytest.raises(store.NotFound):
        await store.cancel_payment(pool, "00000000-0000-0000-0000-000000000000", now=at(2))

    q = await new_payment(pool)
    claim = await claimed(pool, q)
    outcome, snap = await store.cancel_payment(pool, q["id"], now=at(1))
    assert outcome == "requested" and snap["status"] == "in_call" and snap["cancel_requested"]
    assert (await store.cancel_payment(pool, q["id"], now=at(2)))[0] == "requested"
    # The call's next step before any execution ends it canceled.
    with pytest.raises(store.PaymentCanceled) as canceled:
        await store.start_execution(
            pool, q["id"], claim.token, now=at(3), max_per_payment=3, max_per_call=2
        )
    assert canceled.value.payment["status"] == "canceled"
    audit = await store.list_audit(pool, payment_id=q["id"])
    assert [a["action"] for a in audit] == ["cancel_requested", "cancel_requested"]

    r = await new_payment(pool)
    await processing(pool, r)
    with pytest.raises(store.Conflict):
        await store.cancel_payment(pool, r["id"], now=at(1))


async def test_settlement(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool, job="AUTH")
    claim, order_id = await processing(pool, p)
    snap = await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=order_id, status="succeeded", now=at(1), **SUCCESS
    )
    assert snap["settlement"] == "authorized"
    assert store.settlement_action(snap, "refund") == "conflict"
    assert store.settlement_action(snap, "capture") == "ok"
    handle = await store.get_gateway_handle(pool, p["id"])
    assert handle["order_id"] == order_id and handle["access_id"] == "a" * 32
    assert handle["amount"] == 12800 and handle["job"] == "AUTH"
    captured = await store.record_settlement(
        pool, p["id"], action="capture", now=at(2), actor="user:admin",
        result={"approve": "7654321", "tran_id": "1" * 28, "tran_date": "20300101180500"},
    )  # fmt: skip
    assert captured["settlement"] == "captured" and captured["status"] == "succeeded"
    again = await store.record_settlement(pool, p["id"], action="capture", now=at(3))
    assert again == captured  # idempotent: nothing new
    with pytest.raises(store.Conflict):
        await store.record_settlement(pool, p["id"], action="capture", now=at(3)) if False else (
            await store.record_settlement(pool, p["id"], action="refund", now=at(4)),
            await store.record_settlement(pool, p["id"], action="void", now=at(5)),
        )
    final = await store.get_payment(pool, p["id"])
    assert final["settlement"] == "refunded"
    kinds = [e["kind"] for e in await store.list_events(pool, p["id"])]
    assert kinds.count("settlement") == 2

    pending = await new_payment(pool)
    assert store.settlement_action(pending, "capture") == "conflict"
    with pytest.raises(store.Conflict):
        await store.record_settlement(pool, pending["id"], action="void", now=at(1))
    assert await store.get_gateway_handle(pool, pending["id"]) is None


async def test_capture_job_starts_captured_and_register_has_none(pool: asyncpg.Pool) -> None:
    p = await new_payment(pool, job="CAPTURE")
    claim, order_id = await processing(pool, p)
    snap = await store.record_gateway_result(
        pool, p["id"], claim.token, order_id=order_id, status="succeeded", now=at(1), **SUCCESS
    )
    assert snap["settlement"] == "captured"
    r = await new_payment(pool, operation="register", job=None, amount=0, member_id="M1")
    claim, order_id = await processing(pool, r)
    snap = await store.record_gateway_result(
        pool, r["id"], claim.token, order_id=order_id, status="succeeded", now=at(1),
        result={"card_seq": "0"}, card={"brand": "JCB", "last4": "0000"},
        registration={"status": "succeeded", "card_seq": 0, "error": None},
    )  # fmt: skip
    # CardSeq is a number wherever it shows, whether the gateway's "0" or 0 came in.
    assert snap["settlement"] is None and snap["result"]["card_seq"] == 0
    assert snap["registration"] == {"status": "succeeded", "card_seq": 0, "error": None}
    assert (await store.get_payment(pool, r["id"]))["registration"]["card_seq"] == 0
    later = await store.record_registration(
        pool, r["id"], registration={"status": "failed", "card_seq": None, "error": DECLINE},
        now=at(2),
    )  # fmt: skip
    assert later["registration"]["status"] == "failed"
    for bad in ("x1", -1, True, "1e3", 1.5):
        with pytest.raises(ValueError, match="card_seq"):
            await store.record_registration(
                pool, r["id"], registration={"status": "succeeded", "card_seq": bad}, now=at(3)
            )


async def test_idempotency_keys(pool: asyncpg.Pool) -> None:
    client = await new_client(pool)
    other = await new_client(pool)
    args = {"client_id": client["id"], "key": "k1", "request_hash": "h1"}
    assert await store.begin_idempotent(pool, now=at(0), **args) is None
    # A concurrent duplicate while the first runs.
    with pytest.raises(store.IdempotencyConflict) as info:
        await store.begin_idempotent(pool, now=at(1), **args)
    assert info.value.code == "idempotency_in_progress"
    # Another API client may use the same key freely.
    assert (
        await store.begin_idempotent(
            pool, client_id=other["id"], key="k1", request_hash="zz", now=at(1)
        )
        is None
    )
    body = {"id": "x", "created_at": T0}
    await store.finish_idempotent(
        pool, client_id=client["id"], key="k1", status=201, body=body, now=at(2)
    )
    replay = await store.begin_idempotent(pool, now=at(3), **args)
    assert replay == {"status": 201, "body": {"id": "x", "created_at": T0.isoformat()}}
    with pytest.raises(store.IdempotencyConflict) as info:
        await store.begin_idempotent(pool, now=at(3), **{**args, "request_hash": "h2"})
    assert info.value.code == "idempotency_mismatch"
    # Kept 24 h, then the key is new again.
    assert (
        await store.begin_idempotent(pool, now=at(24 * 3600), **{**args, "request_hash": "h3"})
        is None
    )
    # A first request that died: after its lock the key is taken over; abandon frees it at once.
    args2 = {"client_id": client["id"], "key": "k2", "request_hash": "h"}
    assert await store.begin_idempotent(pool, now=at(0), lock_s=60, **args2) is None
    with pytest.raises(store.IdempotencyConflict):
        await store.begin_idempotent(pool, now=at(59), **args2)
    assert await store.begin_idempotent(pool, now=at(61), **args2) is None
    await store.abandon_idempotent(pool, client_id=client["id"], key="k2")
    assert await store.begin_idempotent(pool, now=at(62), **args2) is None
    assert await store.purge_idempotency_keys(pool, now=at(3 * 24 * 3600)) == 3


async def test_concurrent_duplicates_one_goes_ahead(pool: asyncpg.Pool) -> None:
    client = await new_client(pool)
    results = await asyncio.gather(
        *(
            store.begin_idempotent(
                pool, client_id=client["id"], key="same", request_hash="h", now=at(0)
            )
            for _ in range(10)
        ),
        return_exceptions=True,
    )
    assert results.count(None) == 1
    assert all(isinstance(r, store.IdempotencyConflict) for r in results if r is not None)


async def test_api_clients(pool: asyncpg.Pool) -> None:
    client, key, secret = await store.create_api_client(pool, "core", "https://core.example/hook")
    assert key.startswith("ivp_") and secret.startswith("whsec_")
    assert client["key_prefix"] == key[:8] and client["webhook_url"] == "https://core.example/hook"
    assert (await store.get_api_client_by_key(pool, key))["id"] == client["id"]
    assert await store.get_api_client_by_key(pool, key + "x") is None
    # The key itself is nowhere in the database, only its hash.
    conn_rows = await pool.fetch("SELECT * FROM api_clients")
    assert key not in repr([dict(r) for r in conn_rows])
    updated = await store.update_api_client(pool, client["id"], enabled=False)
    assert updated["enabled"] is False and updated["webhook_url"] == "https://core.example/hook"
    assert await store.get_api_client_by_key(pool, key) is None
    updated = await store.update_api_client(pool, client["id"], webhook_url=None, enabled=True)
    assert updated["webhook_url"] is None
    with pytest.raises(ValueError):
        await store.create_api_client(pool, "bad", "ftp://x")
    d1 = await store.ensure_default_client(pool)
    d2 = await store.ensure_default_client(pool)
    assert d1 == d2 and d1["is_default"]
    assert {c["id"] for c in await store.list_api_clients(pool)} == {client["id"], d1["id"]}


async def test_users_and_audit(pool: asyncpg.Pool) -> None:
    user = await store.create_user(pool, "alice", "admin", "s3cret")
    assert user["role"] == "admin" and "password_hash" not in user
    with pytest.raises(store.Conflict):
        await store.create_user(pool, "alice", "operator", "x")
    with pytest.raises(ValueError):
        await store.create_user(pool, "bob", "root", "x")
    assert (await store.authenticate_user(pool, "alice", "s3cret"))["id"] == user["id"]
    assert await store.authenticate_user(pool, "alice", "wrong") is None
    assert await store.authenticate_user(pool, "nobody", "s3cret") is None
    stored = await pool.fetchval("SELECT password_hash FROM users")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    await store.set_user_password(pool, user["id"], "n3w")
    assert await store.authenticate_user(pool, "alice", "n3w") is not None
    await store.set_user_enabled(pool, user["id"], False)
    assert await store.authenticate_user(pool, "alice", "n3w") is None
    assert [u["name"] for u in await store.list_users(pool)] == ["alice"]
    assert store.check_password(store.hash_password("pw"), "pw")
    assert not store.check_password("garbage", "pw")
    await store.write_audit(
        pool, actor=f"user:{user['id']}", action="user_disabled", now=at(1), target="alice"
    )
    rows = await store.list_audit(pool)
    assert rows[0]["action"] == "user_disabled" and rows[0]["target"] == "alice"
