"""Settings: defaults, parsing, and one clear line naming the bad variable."""

from __future__ import annotations

import pytest

from ivrpay.config import ConfigError, HostPort, Settings, parse_hostport


def test_defaults_match_the_contract() -> None:
    s = Settings.from_env({})
    assert s.database_url is None
    assert s.agi_listen == HostPort("127.0.0.1", 4573)
    assert s.http_listen == HostPort("127.0.0.1", 8080)
    assert s.languages == ("ja", "en") and s.default_language == "ja"
    assert s.card_brands == ("VISA", "MASTERCARD", "JCB", "AMEX", "DINERS")
    assert (s.security_code, s.confirm, s.attempts) == (True, True, 3)
    assert (s.max_executions_per_payment, s.max_executions_per_call) == (3, 2)
    assert (s.digit_timeout_ms, s.gateway_timeout_s) == (6000, 20.0)
    assert s.timezone == "Asia/Tokyo" and s.max_calls == 500
    assert (s.lease_s, s.drain_s, s.reconcile_after_s, s.list_holdback_s) == (30, 30, 300, 5)
    assert s.gateway_max_card_digits == 16 and s.gateway_url is None


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "IVRPAY_AGI_LISTEN": "0.0.0.0:14573",
            "IVRPAY_HTTP_LISTEN": "[::1]:8088",
            "IVRPAY_LANGUAGES": "en, ja",
            "IVRPAY_CARD_BRANDS": "visa,jcb",
            "IVRPAY_SECURITY_CODE": "off",
            "IVRPAY_MAX_EXECUTIONS": "5/3",
            "IVRPAY_GATEWAY_URL": "https://pt01.example.jp/",
            "IVRPAY_SHOP_ID": "tshop0001",
            "IVRPAY_SHOP_PASS": "pass",
            "IVRPAY_SITE_ID": "tsite0001",
            "IVRPAY_SITE_PASS": "pass",
        }
    )
    assert s.agi_listen == HostPort("0.0.0.0", 14573)
    assert str(s.http_listen) == "[::1]:8088"
    assert s.languages == ("en", "ja") and s.default_language == "en"
    assert s.card_brands == ("VISA", "JCB")
    assert s.security_code is False
    assert (s.max_executions_per_payment, s.max_executions_per_call) == (5, 3)
    assert s.gateway_url == "https://pt01.example.jp"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"IVRPAY_AGI_LISTEN": "nope"}, "IVRPAY_AGI_LISTEN"),
        ({"IVRPAY_HTTP_LISTEN": "host:99999"}, "IVRPAY_HTTP_LISTEN"),
        ({"IVRPAY_ATTEMPTS": "x"}, "IVRPAY_ATTEMPTS"),
        ({"IVRPAY_ATTEMPTS": "0"}, "IVRPAY_ATTEMPTS"),
        ({"IVRPAY_LANGUAGES": "ja,fr"}, "IVRPAY_LANGUAGES"),
        ({"IVRPAY_CARD_BRANDS": "VISA,DINNERS"}, "IVRPAY_CARD_BRANDS"),
        ({"IVRPAY_CONFIRM": "maybe"}, "IVRPAY_CONFIRM"),
        ({"IVRPAY_MAX_EXECUTIONS": "2/3"}, "IVRPAY_MAX_EXECUTIONS"),
        ({"IVRPAY_TIMEZONE": "Mars/Olympus"}, "IVRPAY_TIMEZONE"),
        ({"IVRPAY_CALLBACK_PATTERN": "(("}, "IVRPAY_CALLBACK_PATTERN"),
        ({"IVRPAY_GATEWAY_URL": "ftp://x"}, "IVRPAY_GATEWAY_URL"),
        # card data travels over it: plain http only to this host (the sandbox)
        ({"IVRPAY_GATEWAY_URL": "http://pt01.example.jp"}, "IVRPAY_GATEWAY_URL"),
        ({"IVRPAY_GATEWAY_URL": "http://10.0.0.7:8081"}, "IVRPAY_GATEWAY_URL"),
        ({"IVRPAY_GATEWAY_URL": "https://gw.example"}, "IVRPAY_SHOP_ID"),
        ({"IVRPAY_LOG_FORMAT": "xml"}, "IVRPAY_LOG_FORMAT"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    message = str(err.value)
    assert named in message and "\n" not in message


def test_overrides_win_over_the_environment() -> None:
    s = Settings.from_env({"IVRPAY_AGI_LISTEN": "127.0.0.1:1"}, agi_listen=HostPort("h", 2))
    assert s.agi_listen == HostPort("h", 2)


def test_parse_hostport_allows_port_zero() -> None:
    assert parse_hostport("127.0.0.1:0").port == 0


def test_back_off_schedules_are_settings() -> None:
    s = Settings.from_env(
        {
            "IVRPAY_RECONCILE_BACKOFF_S": "5, 10,60",
            "IVRPAY_WEBHOOK_BACKOFF_S": "1,1,2.5",
            "IVRPAY_RETRY_HORIZON_S": "3600",
            "IVRPAY_DB_RETRY_MAX_S": "5",
        }
    )
    assert s.reconcile_backoff_s == (5.0, 10.0, 60.0)
    assert s.webhook_backoff_s == (1.0, 1.0, 2.5)
    assert (s.retry_horizon_s, s.db_retry_max_s) == (3600.0, 5.0)
    d = Settings.from_env({})
    assert d.reconcile_backoff_s == (30, 60, 120, 300, 900)  # product.md's schedules
    assert d.webhook_backoff_s == (10, 30, 60, 300, 900, 3600)
    assert d.retry_horizon_s == 86400


@pytest.mark.parametrize("value", ["", "10,x", "0", "60,30", ",".join(["1"] * 21), "1,100000"])
def test_a_bad_schedule_is_named(value: str) -> None:
    if value == "":
        assert Settings.from_env({"IVRPAY_WEBHOOK_BACKOFF_S": value}).webhook_backoff_s[0] == 10
        return
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"IVRPAY_WEBHOOK_BACKOFF_S": value})
    assert str(err.value).startswith("IVRPAY_WEBHOOK_BACKOFF_S: ")
