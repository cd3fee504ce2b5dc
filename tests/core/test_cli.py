"""The command line explains itself: help on every flag, --version, config, openapi."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from openapi_spec_validator import validate

import ivrpay
from ivrpay.cli import build_parser, main
from ivrpay.config import VARIABLES, Settings


def _parsers(
    parser: argparse.ArgumentParser, path: str = "ivrpay"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_flag_and_argument_has_help() -> None:
    missing = []
    commands = 0
    for path, parser in _parsers(build_parser()):
        commands += 1
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                # every command is listed with a line of help
                for choice in action._choices_actions:
                    if not choice.help:
                        missing.append(f"{path} {choice.dest}")
            elif action.help is None:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert commands > 10
    assert missing == []


def test_call_keys_help_says_what_the_special_keys_mean(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["call", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert '"_" is silence for one request' in text and '"!" hangs up' in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"ivrpay {ivrpay.__version__}"
    # One version: the package metadata is made from ivrpay.__version__.
    assert importlib.metadata.version("ivrpay") == ivrpay.__version__


class _Recording(dict[str, str]):
    def __init__(self, *args: object, **kw: str) -> None:
        super().__init__(*args, **kw)
        self.asked: list[str] = []

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.append(key)
        return super().get(key, default)


def test_settings_read_exactly_the_one_list() -> None:
    env = _Recording(IVRPAY_GATEWAY_URL="https://gw.example", IVRPAY_SHOP_ID="s")
    env.update(IVRPAY_SHOP_PASS="p", IVRPAY_SITE_ID="t", IVRPAY_SITE_PASS="q")
    Settings.from_env(env)
    assert sorted(set(env.asked)) == sorted(v.name for v in VARIABLES)
    assert len({v.name for v in VARIABLES}) == len(VARIABLES)


def test_config_lists_every_variable_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IVRPAY_DATABASE_URL", "postgresql://ivrpay:db-pw-123@db.example/ivrpay")
    monkeypatch.setenv("IVRPAY_SECRET_KEY", "very-secret-key-456")
    monkeypatch.setenv("IVRPAY_AMI_URL", "ami://ivrpay:ami-pw-789@pbx.example:5038")
    monkeypatch.setenv("IVRPAY_ATTEMPTS", "4")
    monkeypatch.delenv("IVRPAY_MAX_CALLS", raising=False)
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for secret in ("db-pw-123", "very-secret-key-456", "ami-pw-789"):
        assert secret not in out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert list(lines) == [v.name for v in VARIABLES]
    assert "postgresql://ivrpay:****@db.example/ivrpay" in lines["IVRPAY_DATABASE_URL"]
    assert lines["IVRPAY_ATTEMPTS"].split()[1:] == ["*", "4", "3"]  # set; value 4, default 3
    assert lines["IVRPAY_MAX_CALLS"].split()[1:] == ["500", "500"]
    assert "(unset: embedded PostgreSQL" in lines["IVRPAY_DATABASE_URL"]


def test_config_exits_non_zero_on_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IVRPAY_LANGUAGES", "ja,fr")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ivrpay: IVRPAY_LANGUAGES") and len(err.strip().splitlines()) == 1


def test_openapi_writes_a_valid_document(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    assert main(["openapi", "--output", str(out)]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    validate(doc)  # raises on any error
    assert doc["openapi"].startswith("3.1") and "/api/v1/payments" in doc["paths"]
    assert doc["info"]["version"] == ivrpay.__version__
