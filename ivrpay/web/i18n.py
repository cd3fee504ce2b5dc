"""The screen's words, Japanese first and English second, and how amounts and times are shown.

Field errors are the API's own words (``ivrpay.api.validation``): the screen shows the message the
API would send, after the field's name in the screen's language, so the two never disagree.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

# key: (ja, en)
WORDS: dict[str, tuple[str, str]] = {
    "app": ("IVR決済", "IVR payments"),
    "signin": ("サインイン", "Sign in"),
    "signout": ("サインアウト", "Sign out"),
    "name": ("ユーザー名", "User name"),
    "password": ("パスワード", "Password"),
    "signin_failed": (
        "ユーザー名またはパスワードが違います。",
        "The user name or password is wrong.",
    ),
    "signin_locked": (
        "サインインの失敗が続いたため、しばらくロックされています。時間をおいてやり直してください。",
        "Too many failed sign-ins: signing in is locked for a while. Try again later.",
    ),
    "signed_out": ("サインインしてください。", "Please sign in."),
    "admin_only": ("このページは管理者専用です。", "This page is for administrators only."),
    "csrf_refused": (
        "フォームの有効期限が切れました。ページを開き直してください。",
        "This form has expired (CSRF token missing or wrong). Reload the page and try again.",
    ),
    "not_found": ("見つかりません。", "Not found."),
    "error": ("エラー", "Error"),
    "back": ("戻る", "Back"),
    "language": ("言語", "Language"),
    "switch_lang": ("English", "日本語"),
    "nav_new": ("新規決済", "New payment"),
    "nav_list": ("本日の決済", "Today's payments"),
    "nav_users": ("ユーザー", "Users"),
    "nav_keys": ("APIキー・Webhook", "API keys & webhooks"),
    "nav_prompts": ("音声ガイダンス", "Prompts"),
    "nav_reviews": ("要確認", "Needs review"),
    "nav_audit": ("監査ログ", "Audit log"),
    # the payment form
    "new_payment": ("新規決済の登録", "Register a payment"),
    "order_id": ("注文番号", "Order id"),
    "amount": ("金額（税抜）", "Amount"),
    "tax": ("税額", "Tax"),
    "job": ("処理区分", "Job"),
    "method": ("支払方法", "Method"),
    "pay_times": ("分割回数", "Instalments"),
    "operation": ("操作", "Operation"),
    "member_id": ("会員ID", "Member id"),
    "callback": ("戻り先内線", "Your extension"),
    "pay_language": ("ガイダンス言語", "Caller's language"),
    "register": ("登録する", "Register"),
    "fix_errors": ("入力内容を確認してください。", "Please correct the fields below."),
    "job_AUTH": ("仮売上", "Authorize"),
    "job_CAPTURE": ("即時売上", "Capture"),
    "job_CHECK": ("有効性チェック", "Check"),
    "method_1": ("一括", "Lump sum"),
    "method_2": ("分割", "Instalments"),
    "method_5": ("リボ", "Revolving"),
    "operation_charge": ("決済", "Charge"),
    "operation_register": ("カード登録", "Store the card"),
    "operation_charge_and_register": ("決済＋カード登録", "Charge and store the card"),
    "lang_ja": ("日本語", "Japanese"),
    "lang_en": ("英語", "English"),
    # the live page
    "code": ("決済コード", "Payment code"),
    "transfer_to": ("転送先", "Transfer to"),
    "transfer_hint": (
        "お客様をこの番号へブラインド転送してください。",
        "Blind-transfer the caller to this number.",
    ),
    "total": ("合計", "Total"),
    "step_waiting": ("お客様の接続待ち", "Waiting for the caller"),
    "step_connected": ("お客様が接続しました", "Caller connected"),
    "step_card_number": ("カード番号", "Card number"),
    "step_expiry": ("有効期限", "Expiry"),
    "step_security_code": ("セキュリティコード", "Security code"),
    "step_processing": ("決済処理中", "Processing"),
    "attempt_n": ("{n}回目", "attempt {n}"),
    "failed_tries": ("誤り{n}回", "{n} wrong"),
    "result_succeeded": ("承認されました", "Approved"),
    "result_stored": ("カードを登録しました", "Card stored"),
    "approval_no": ("承認番号", "Approval no."),
    "brand": ("ブランド", "Brand"),
    "last4": ("下4桁", "Last 4"),
    "cancel": ("キャンセル", "Cancel"),
    "take_back": ("通話を引き戻す", "Take the caller back"),
    "listen_in": ("通話したままカード入力を開始", "Start card entry and stay on the line"),
    "listen_in_option": (
        "通話したままカード入力（転送しない・番号は聞こえません）",
        "Stay on the line during card entry (no transfer; you never hear the keys)",
    ),
    "listen_in_hint": (
        "お客様と通話中に「通話したままカード入力を開始」を押してください。",
        "While you are talking to the caller, press \u201cStart card entry and stay on the "
        "line\u201d.",
    ),
    "listening_note": (
        "お客様はカード入力中です。ガイダンスとお客様の声は聞こえますが、押したボタンの音は"
        "聞こえません。入力が終わると通話に戻ります。",
        "The caller is keying the card: you hear the prompts and the caller, never the keys, "
        "and are back with the caller when it ends.",
    ),
    "muted_note": (
        "お客様の回線はボタンの音が音声で届くため、入力中は無音になります。",
        "Muted while the caller keys this field: their line sends the keys as tones.",
    ),
    "listen_in_disabled": (
        "通話したままの入力は使えません（AMIが設定されていません）。",
        "Listen-in is not available (AMI is not configured).",
    ),
    "done_listen_in": (
        "カード入力を開始しました。",
        "Card entry started: you are listening in.",
    ),
    "not-listen-in": (
        "この決済は転送で受け付けます。",
        "This payment is for a blind transfer.",
    ),
    "not-pending": (
        "この決済はお客様を待っていません。",
        "The payment is not waiting for its caller.",
    ),
    "already-listening": ("カード入力は開始済みです。", "Card entry has started already."),
    "operator-not-on-a-call": (
        "あなたの電話はお客様と通話中ではありません。",
        "Your phone is not on a call with the caller.",
    ),
    "operator-on-several-calls": (
        "あなたの電話が複数の通話中です。他の通話を終えてください。",
        "Your phone is on several calls: end the others first.",
    ),
    "not-a-two-party-call": (
        "会議通話では使えません。お客様と1対1で通話してください。",
        "Not in a conference: talk to the caller alone.",
    ),
    "take_back_disabled": (
        "引き戻しは使えません（AMIが設定されていません）。",
        "Take-back is not available (AMI is not configured).",
    ),
    "take_back_unavailable": (
        "引き戻しはこのサーバーではまだ使えません。",
        "Take-back is not available on this server yet.",
    ),
    "taken_back_note": (
        "通話を引き戻しました。オペレーターに戻ります。",
        "Taken back: the caller is on the way to the operator.",
    ),
    "done_take_back": (
        "通話を引き戻しました。お客様の電話がオペレーターに戻ります。",
        "Taken back: the caller is being put through to the operator.",
    ),
    "execution-in-flight": (
        "決済処理中のため引き戻せません。結果が出てからもう一度お試しください。",
        "The payment is being processed: take-back waits for the result.",
    ),
    "not-in-ivr": ("お客様は自動音声にいません。", "The caller is not in the IVR."),
    "already-taken-back": ("すでに引き戻し中です。", "The caller is being taken back already."),
    "ami-unavailable": (
        "AMIにつながらないため使えません。",
        "Not available: no AMI link to the PBX.",
    ),
    "ami-outcome-unknown": (
        "PBXから応答がありません。お客様が戻るか確認してください。",
        "The PBX did not answer: check whether the caller comes back.",
    ),
    "next_payment": ("次の決済を登録", "Register the next payment"),
    "capture": ("売上確定", "Capture"),
    "void": ("取消", "Void"),
    "refund": ("返品", "Refund"),
    "confirm_capture": (
        "売上確定を実行します。もう一度押してください。",
        "Press again to capture.",
    ),
    "confirm_void": ("取消を実行します。もう一度押してください。", "Press again to void."),
    "confirm_refund": ("返品を実行します。もう一度押してください。", "Press again to refund."),
    "confirm_again": ("実行する", "Yes, do it"),
    "settlement": ("売上状態", "Settlement"),
    "settlement_authorized": ("仮売上", "authorized"),
    "settlement_captured": ("売上確定済み", "captured"),
    "settlement_voided": ("取消済み", "voided"),
    "settlement_refunded": ("返品済み", "refunded"),
    "done_capture": ("売上を確定しました。", "Captured."),
    "done_void": ("取り消しました。", "Voided."),
    "done_refund": ("返品しました。", "Refunded."),
    "done_cancel": ("キャンセルしました。", "Canceled."),
    "cancel_requested": (
        "キャンセルを受け付けました。通話の次の段階で取り消されます。",
        "Cancel requested: it takes effect at the call's next step.",
    ),
    "not_cancelable": ("この決済はキャンセルできません。", "This payment cannot be canceled."),
    "settle_failed": ("処理できませんでした", "Could not be done"),
    "live_disconnected": ("接続が切れました。再接続中…", "Connection lost; reconnecting…"),
    # statuses
    "status": ("状態", "Status"),
    "status_pending": ("受付済み", "pending"),
    "status_in_call": ("通話中", "in call"),
    "status_processing": ("処理中", "processing"),
    "status_succeeded": ("成功", "succeeded"),
    "status_failed": ("失敗", "failed"),
    "status_unknown": ("結果不明", "unknown"),
    "status_abandoned": ("中断", "abandoned"),
    "status_canceled": ("キャンセル", "canceled"),
    "status_expired": ("期限切れ", "expired"),
    "result_canceled": ("キャンセルされました", "Canceled"),
    "result_expired": ("期限切れになりました", "Expired"),
    "result_abandoned": ("中断されました", "The call ended before the payment"),
    "result_unknown": (
        "結果を確認できませんでした。自動で照会します。",
        "The outcome could not be confirmed; it is being reconciled.",
    ),
    "result_failed": ("決済できませんでした", "The payment failed"),
    # list
    "today": ("本日", "Today"),
    "operator": ("オペレーター", "Operator"),
    "all": ("すべて", "all"),
    "filter": ("絞り込み", "Filter"),
    "created": ("登録日時", "Created"),
    "card": ("カード", "Card"),
    "count": ("{n}件", "{n} payments"),
    "prev": ("前へ", "Previous"),
    "next": ("次へ", "Next"),
    "csv_utf8": ("CSV（UTF-8）", "CSV (UTF-8)"),
    "csv_sjis": ("CSV（Excel用 Shift_JIS）", "CSV (Shift_JIS for Excel)"),
    "none": ("ありません", "none"),
    "open": ("開く", "Open"),
    # admin
    "saved": ("保存しました", "Saved"),
    "role": ("権限", "Role"),
    "role_operator": ("オペレーター", "operator"),
    "role_admin": ("管理者", "admin"),
    "state": ("状態", "State"),
    "change": ("変更", "Change"),
    "enabled": ("有効", "enabled"),
    "disabled": ("無効", "disabled"),
    "disable": ("無効にする", "Disable"),
    "enable": ("有効にする", "Enable"),
    "new_password": ("新しいパスワード（8文字以上）", "New password (8+ characters)"),
    "reset_password": ("パスワード再設定", "Reset password"),
    "add_user": ("ユーザーの追加", "Add a user"),
    "add": ("追加", "Add"),
    "user_name_bad": ("ユーザー名は1〜100文字です。", "The user name must be 1–100 characters."),
    "role_bad": ("権限は operator か admin です。", "The role must be operator or admin."),
    "password_short": (
        "パスワードは8文字以上にしてください。",
        "The password must have at least 8 characters.",
    ),
    "user_exists": ("そのユーザー名は使われています。", "That user name is taken."),
    "not_yourself": (
        "自分自身を無効にしたり管理者から外したりはできません。",
        "You cannot disable yourself or take away your own admin role.",
    ),
    "user_enabled": ("ユーザーを有効にしました。", "User enabled."),
    "user_disabled": (
        "ユーザーを無効にしました（サインイン中のセッションも終了）。",
        "User disabled (and signed out everywhere).",
    ),
    "user_password_reset": ("パスワードを再設定しました。", "Password reset."),
    "user_role_changed": ("権限を変更しました。", "Role changed."),
    "key_shown_once": (
        "このキーは今回だけ表示されます。今すぐ控えてください。",
        "This key is shown this once only: copy it now.",
    ),
    "api_key": ("APIキー", "API key"),
    "webhook_secret": ("Webhook署名シークレット", "Webhook signing secret"),
    "key_prefix": ("キー（先頭）", "Key (start)"),
    "revoked": ("失効", "revoked"),
    "revoke": ("失効させる", "Revoke"),
    "database_down": (
        "データベースに接続できません。しばらくしてから再読み込みしてください。",
        "The database cannot be reached right now: reload the page in a moment.",
    ),
    "confirm_revoke": (
        "このAPIキーを失効させますか？すべてのプロセスで直ちに拒否され、元に戻せません。",
        "Revoke this API key? It is refused at once in every process; this cannot be undone.",
    ),
    "apikey_revoked": ("APIキーを失効させました。", "API key revoked."),
    "webhook": ("Webhook URL", "Webhook URL"),
    "deliveries": ("配信履歴", "Deliveries"),
    "create_key": ("APIキーの作成", "Create an API key"),
    "create": ("作成", "Create"),
    "key_name_bad": ("名前は1〜200文字です。", "The name must be 1–200 characters."),
    "webhook_url_bad": (
        "Webhook URL は http(s) の URL にしてください。",
        "The webhook URL must be an http(s) URL.",
    ),
    "webhook_changed": ("Webhook URL を変更しました。", "Webhook URL changed."),
    "event": ("イベント", "Event"),
    "attempts": ("試行", "Attempts"),
    "payment": ("決済", "Payment"),
    "next_try": ("次回", "next try"),
    "prompt_rules": (
        "差し替えは WAV（8 kHz・16ビット・モノラル PCM）、{s}秒まで。"
        "元のファイルは控えとして残り、戻せます。",
        "Replacements: WAV, 8 kHz, 16-bit, mono PCM, at most {s} s. The old file is kept as a "
        "backup and can be restored.",
    ),
    "prompt_no_file": ("ファイルが選ばれていません", "No file was chosen"),
    "prompt_bad_wav": ("このファイルは使えません", "This file cannot be used"),
    "prompt_no_backup": ("戻せる控えがありません", "There is no backup to restore"),
    "file_too_large": ("ファイルが大きすぎます。", "The file is too large."),
    "missing_prompts": ("足りない音声", "Missing prompts"),
    "missing": ("ファイルなし", "missing"),
    "replace": ("差し替え", "Replace"),
    "restore": ("元に戻す", "Restore the backup"),
    "review_help": (
        "24時間照会しても結果が確定しなかった決済です。"
        "ゲートウェイの記録を確認して判断してください。",
        "Payments whose outcome reconciliation could not settle in 24 h: check the gateway's "
        "evidence and decide.",
    ),
    "review_needs": (
        "判断（成功／失敗）と理由を入力してください。",
        "Choose a decision (succeeded / failed) and say why.",
    ),
    "review_recorded": ("判断を記録しました。", "Decision recorded."),
    "review_gone": ("この決済は既に判断済みです。", "This payment was already decided."),
    "review_reason": ("要確認の理由", "Why it needs review"),
    "evidence": ("ゲートウェイの記録", "The gateway's evidence"),
    "when": ("日時", "When"),
    "endpoint": ("API", "Endpoint"),
    "outcome": ("結果", "Outcome"),
    "decision": ("判断", "Decision"),
    "why": ("理由", "Why"),
    "record": ("記録する", "Record"),
    "actor": ("実行者", "Who"),
    "action": ("操作", "What"),
    "day": ("日付", "Day"),
    "entries": ("{n}件", "{n} entries"),
    "target": ("対象", "Target"),
}

# A human sentence for the error codes a payment may carry (the code itself is shown too).
REASONS: dict[str, tuple[str, str]] = {
    "42G020000": ("残高不足です。", "Insufficient balance."),
    "42G030000": ("限度額を超えています。", "Over the card's limit."),
    "42G830000": ("有効期限が違います。", "The expiry is wrong."),
    "42G440000": ("セキュリティコードが違います。", "The security code is wrong."),
    "invalid_card_number": (
        "カード番号が正しく入力されませんでした。",
        "The card number was not keyed correctly.",
    ),
    "invalid_expiry": (
        "有効期限が正しく入力されませんでした。",
        "The expiry was not keyed correctly.",
    ),
    "invalid_security_code": (
        "セキュリティコードが正しく入力されませんでした。",
        "The security code was not keyed correctly.",
    ),
    "too_many_attempts": ("試行回数の上限に達しました。", "Too many attempts."),
    "review_failed": ("管理者が失敗と判断しました。", "An administrator resolved it as failed."),
}
_DECLINED = ("カード会社により利用できませんでした。", "The card issuer declined the card.")
_SYSTEM = ("決済システムのエラーです。", "A payment system error.")


# The API's field messages (ivrpay.api.validation) in Japanese; the API's own words follow them on
# the screen, so the two never disagree. Patterns, because some messages carry their limits.
FIELD_MESSAGES_JA: tuple[tuple[str, str], ...] = (
    (r"is required", "入力してください"),
    (r"must be an integer", "整数で入力してください"),
    (r"must be between (\d+) and (\d+)", r"\1〜\2の範囲で入力してください"),
    (r"must be 1–24 of A-Z a-z 0-9 -", "半角英数字とハイフンで1〜24文字にしてください"),
    (r"must be 1–60 of A-Z a-z 0-9 _ \. @ -", "半角英数字と _ . @ - で1〜60文字にしてください"),
    (r"amount \+ tax must not exceed (\d+)", r"金額と税額の合計は\1円までです"),
    (r"is required with method 2 \(instalments\)", "分割払いでは分割回数が必要です"),
    (r"is allowed only with method 2 \(instalments\)", "分割回数は分割払いのときだけ指定できます"),
    (r"is not an allowed dial string.*", "使えない内線の形式です（例: PJSIP/1001）"),
    (r"must not contain a card number.*", "カード番号を入力してはいけません"),
    (r"A payment with order_id .* exists already\.", "この注文番号の決済は既にあります"),
)


def field_message(message: str, lang: str) -> str:
    """An API field message for the screen: in Japanese with the API's words after it."""
    if lang != "ja":
        return message
    for pattern, ja in FIELD_MESSAGES_JA:
        if re.fullmatch(pattern, message):
            return f"{re.sub(pattern, ja, message)}（{message}）"
    return message


def words(lang: str) -> dict[str, str]:
    i = 0 if lang == "ja" else 1
    return {k: v[i] for k, v in WORDS.items()}


def reason(error: dict[str, Any] | None, lang: str) -> str:
    """A sentence for the payment's error, in the screen's language."""
    if not error:
        return ""
    i = 0 if lang == "ja" else 1
    code = str(error.get("code") or "")
    if code in REASONS:
        return REASONS[code][i]
    if code.startswith("42G") or error.get("category") == "declined":
        return _DECLINED[i]
    if error.get("category") == "system":
        return _SYSTEM[i]
    return str(error.get("message") or "")


def yen(amount: Any) -> str:
    """¥12,800."""
    try:
        return f"¥{int(amount):,}"
    except (TypeError, ValueError):
        return ""


def local_time(value: datetime | None, tz: ZoneInfo, with_date: bool = True) -> str:
    """A time in IVRPAY_TIMEZONE: 2026-12-07 16:05:09 (or 16:05:09)."""
    if value is None:
        return ""
    v = value.astimezone(tz)
    return v.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")
