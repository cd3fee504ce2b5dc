"""``ivrpay call`` (``main_call``): what it prints, card numbers masked, and its exit codes."""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ivrpay.config import HostPort
from ivrpay.simulator.cli import main_call, run_call

REPO = Path(__file__).resolve().parents[2]


class ThreadServer:
    """A blocking one-call FastAGI 'server' in a thread: it sends its commands one by one, reads
    each reply, then half-closes and reads what the caller still sends."""

    def __init__(self, commands: list[str]) -> None:
        self.commands = commands
        self.env: dict[str, str] = {}
        self.replies: list[str] = []
        self.tail = b""
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.settimeout(5)
        with conn, conn.makefile("rb") as f:
            while line := f.readline().rstrip(b"\n"):
                key, _, value = line.decode().partition(": ")
                self.env[key] = value
            for command in self.commands:
                conn.sendall(command.encode() + b"\n")
                reply = f.readline().decode().rstrip("\n")
                if reply.startswith("520-"):  # keep the stream in step: read the block whole
                    while not reply.startswith("520 "):
                        reply = f.readline().decode().rstrip("\n")
                self.replies.append(reply)
            conn.shutdown(socket.SHUT_WR)
            self.tail = f.read()

    def close(self) -> None:
        self.thread.join(5)
        self.sock.close()


def call_args(keys: str, **changes: str) -> argparse.Namespace:
    values = dict(keys=keys, code="123456", transferrer="PJSIP/1001-0000002a", language="ja")
    values.update(script="pay", **changes)
    return argparse.Namespace(**values)


@pytest.fixture
def sounds_env(monkeypatch: pytest.MonkeyPatch, sounds_dir: Path) -> Path:
    monkeypatch.setenv("IVRPAY_SOUNDS_DIR", str(sounds_dir))
    return sounds_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_call_prints_what_the_caller_heard_keys_masked(sounds_env, capsys) -> None:
    server = ThreadServer(
        [
            "ANSWER",
            'STREAM FILE ivrpay/welcome ""',
            "GET DATA ivrpay/enter_card 6000 19",
            "GET DATA ivrpay/enter_expiry 6000 4",
            "SET MUSIC ON",
            "SET VARIABLE IVRPAY_STATUS SUCCEEDED",
            "SET VARIABLE IVRPAY_CALLBACK PJSIP/1001",
        ]
    )
    try:
        code = main_call(call_args("4111111111111111# 1231"), HostPort("127.0.0.1", server.port))
    finally:
        server.close()
    out = capsys.readouterr().out
    assert code == 0
    assert server.env["agi_arg_1"] == "123456"
    assert server.env["agi_arg_2"] == "PJSIP/1001-0000002a"
    assert server.env["agi_network_script"] == "pay"
    assert server.replies[2] == "200 result=4111111111111111"
    assert server.tail == b"HANGUP\n"
    lines = out.splitlines()
    assert lines[:4] == [
        "♪ ja ivrpay/welcome",
        "♪ ja ivrpay/enter_card",
        "⌨ ************1111#",
        "♪ ja ivrpay/enter_expiry (missing)",
    ]
    assert "IVRPAY_STATUS=SUCCEEDED" in lines
    assert "IVRPAY_CALLBACK=PJSIP/1001" in lines
    assert "! missing prompt: ja/ivrpay/enter_expiry" in lines
    assert any(line.startswith("— call ended: server closed") for line in lines)
    assert "4111111111111111" not in out


def test_protocol_error_exits_1(sounds_env, capsys) -> None:
    server = ThreadServer(["BOGUS COMMAND", "SET VARIABLE X 1"])
    try:
        code = main_call(call_args("1"), HostPort("127.0.0.1", server.port))
    finally:
        server.close()
    assert code == 1
    assert server.replies == ["510 Invalid or unknown command", "200 result=1"]
    assert "! protocol error:" in capsys.readouterr().out


def test_failure_line_exits_1(sounds_env, capsys) -> None:
    server = ThreadServer(["failure"])
    try:
        code = main_call(call_args(""), HostPort("127.0.0.1", server.port))
    finally:
        server.close()
    assert code == 1
    assert "AGISTATUS=FAILURE" in capsys.readouterr().out


def test_server_not_listening_exits_1_with_one_line(sounds_env, capsys) -> None:
    port = free_port()
    assert main_call(call_args("1"), HostPort("127.0.0.1", port)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert f"127.0.0.1:{port}" in captured.err


@pytest.mark.parametrize(
    ("keys", "changes"),
    [("12x", {}), ("~", {}), ("4111111111111111q", {}), ("1", {"language": "../etc"})],
)
def test_bad_usage_exits_2_without_calling(keys: str, changes: dict, capsys) -> None:
    # A port nobody listens on: usage is checked before any connection.
    assert main_call(call_args(keys, **changes), HostPort("127.0.0.1", free_port())) == 2
    err = capsys.readouterr().err
    assert err.startswith("ivrpay call: --")
    assert "4111111111111111" not in err


def test_bad_agi_argument_exits_2(sounds_env) -> None:
    err = io.StringIO()
    code = run_call(
        call_args("1", code="12\n34"),
        HostPort("127.0.0.1", free_port()),
        out=io.StringIO(),
        err=err,
    )
    assert code == 2
    assert "CR, LF or NUL" in err.getvalue()


def test_glyphs_fall_back_on_an_ascii_terminal(sounds_env) -> None:
    server = ThreadServer(['STREAM FILE ivrpay/welcome ""'])
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii")
    try:
        code = run_call(call_args(""), HostPort("127.0.0.1", server.port), out=out)
    finally:
        server.close()
    out.flush()
    assert code == 0
    assert raw.getvalue().decode("ascii").splitlines()[0] == "~ ja ivrpay/welcome"


def test_ivrpay_call_command_line() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bad = subprocess.run(
        [sys.executable, "-m", "ivrpay", "call", "--keys", "12 x!"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=REPO,
    )
    assert bad.returncode == 2, bad.stderr
    assert "--keys" in bad.stderr
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivrpay",
            "call",
            "--keys",
            "1",
            "--agi",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=REPO,
    )
    assert refused.returncode == 1, refused.stderr
    assert "cannot reach the FastAGI server" in refused.stderr


def test_no_line_of_the_report_shows_a_card_number(sounds_env, capsys) -> None:
    """A faulty server that says or names a card number: every line of ``ivrpay call`` masks it
    (the missing-prompt lines too), and so does the record's repr (a failing test prints it)."""
    from ivrpay.simulator.cli import report

    server = ThreadServer(
        [
            'STREAM FILE ivrpay/4111111111111111 ""',
            'SAY DIGITS 4111111111111111 ""',
            'STREAM FILE ivrpay/welcome ""',
        ]
    )
    try:
        code = run_call(call_args(""), HostPort("127.0.0.1", server.port))
    finally:
        server.close()
    out = capsys.readouterr().out
    assert code == 0
    assert "! missing prompt: ja/ivrpay/************1111" in out.splitlines()
    assert "4111111111111111" not in out

    from ivrpay.simulator.record import CallRecord, Prompt

    record = CallRecord()
    record.prompts.append(Prompt("say digits 5555555555554444", "ja", "SAY DIGITS"))
    record.missing_prompts.append("ja/ivrpay/5555555555554444")
    record.fallback_prompts.append("ja/5555555555554444")
    assert "5555555555554444" not in repr(record) + repr(record.prompts)
    buf = io.StringIO()
    report(record, buf)
    assert "5555555555554444" not in buf.getvalue()
