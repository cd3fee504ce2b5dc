"""The pure wire codec: environment lines, command formatting, reply parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivrpay.agi.errors import AGIArgumentError, AGIHeaderError, AGIProtocolError
from ivrpay.agi.protocol import (
    MAX_COMMAND_BYTES,
    AGIEnvironment,
    Quoted,
    Reply,
    ReplyAssembler,
    decode_lenient,
    format_command,
    format_environment,
    is_hangup_line,
    parse_env_line,
    parse_reply,
)
from tests.support.agi import load_transcript, transcript_names


def asterisk_parse_args(line: bytes) -> list[bytes]:
    """res_agi.c parse_args(), transcribed as an independent oracle (after fgets/strip of LF)."""
    argv: list[bytearray] = []
    cur: bytearray | None = None
    quoted = escaped = False
    whitespace = True
    for byte in line:
        c = bytes([byte])
        if c == b'"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                cur = bytearray()
                argv.append(cur)
                whitespace = False
            escaped = False
            continue
        if c in (b" ", b"\t") and not quoted and not escaped:
            whitespace = True
            continue
        if c == b"\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            cur = bytearray()
            argv.append(cur)
            whitespace = False
        assert cur is not None
        cur += c
        escaped = False
    return [bytes(a) for a in argv]


# -- environment ---------------------------------------------------------------------------------


def test_parse_env_line_forms() -> None:
    assert parse_env_line(b"agi_network: yes\n") == ("agi_network", b"yes")
    assert parse_env_line(b"agi_accountcode: \n") == ("agi_accountcode", b"")
    assert parse_env_line(b"agi_arg_2:\n") == ("agi_arg_2", b"")
    assert parse_env_line(b"agi_callerid: a: b \n") == ("agi_callerid", b"a: b ")
    assert parse_env_line(b"agi_x: crlf\r\n") == ("agi_x", b"crlf")
    assert parse_env_line(b"\n") is None
    assert parse_env_line(b"\r\n") is None
    for bad in (b"GET / HTTP/1.1\n", b"Host: x\n", b"agi_network yes\n", b"\x00\xff\n", b": x\n"):
        with pytest.raises(AGIHeaderError):
            parse_env_line(bad)


def test_environment_properties_from_a_real_block() -> None:
    block = load_transcript("01-env-and-basics").env_block
    env = AGIEnvironment.from_block(block)
    assert env.script == "01-env-and-basics"
    assert env.query == {"lang": "ja"}
    assert env.args == ["arg1", ""]
    assert env.raw["agi_version"] == "22.10.1"
    assert format_environment(env.raw_bytes.items()) == block
    assert "1795788781.42" in repr(env)


def test_environment_args_numeric_order_and_query() -> None:
    env = AGIEnvironment(
        [
            ("agi_network_script", "pay?lang=en&code=12%2034&flag"),
            ("agi_arg_10", "ten"),
            ("agi_arg_2", ""),
            ("agi_arg_1", "one"),
            ("agi_arg_x", "not an arg"),
        ]
    )
    assert env.script == "pay"
    assert env.query == {"lang": "en", "code": "12 34", "flag": ""}
    assert env.args == ["one", "", "ten"]
    empty = AGIEnvironment()
    assert (empty.script, empty.query, empty.args, empty.uniqueid) == ("", {}, [], "")


def test_environment_decodes_any_bytes_leniently() -> None:
    sjis = "山田".encode("cp932")
    env = AGIEnvironment(
        [
            ("agi_calleridname", sjis),
            ("agi_callerid", b"\xff\xfe\x00\x80"),
            ("agi_channel", "PJSIP/ü-1".encode()),
        ]
    )
    assert env["agi_calleridname"] == sjis.decode("latin-1")
    assert env["agi_callerid"] == "\xff\xfe\x00\x80"
    assert env.channel == "PJSIP/ü-1"
    assert env.raw_bytes["agi_calleridname"] == sjis
    assert decode_lenient(b"\xe3\x81\x82") == "あ"


# -- commands ------------------------------------------------------------------------------------

# Every S> line of the transcripts that a caller builds with format_command.
WIRE_FORMS = [
    (("ANSWER",), b"ANSWER\n"),
    (("SAY NUMBER", 12800, Quoted("")), b'SAY NUMBER 12800 ""\n'),
    (("SAY DIGITS", "1234", Quoted("")), b'SAY DIGITS 1234 ""\n'),
    (("SET VARIABLE", "CHANNEL(language)", "en"), b"SET VARIABLE CHANNEL(language) en\n"),
    (("GET FULL VARIABLE", "${CHANNEL}"), b"GET FULL VARIABLE ${CHANNEL}\n"),
    (("SET VARIABLE", "FOO", "bar baz"), b'SET VARIABLE FOO "bar baz"\n'),
    (("EXEC", "NoSuchApp", "x"), b"EXEC NoSuchApp x\n"),
    (("VERBOSE", Quoted("hello"), 1), b'VERBOSE "hello" 1\n'),
    (("GET DATA", "beep", 5000, 19), b"GET DATA beep 5000 19\n"),
    (("STREAM FILE", "beep", Quoted("12")), b'STREAM FILE beep "12"\n'),
    (("GET OPTION", "beep", Quoted("12"), 3000), b'GET OPTION beep "12" 3000\n'),
    (("WAIT FOR DIGIT", 2000), b"WAIT FOR DIGIT 2000\n"),
    (("EXEC", "Gosub", "sub-test,s,1(exec-arg)"), b"EXEC Gosub sub-test,s,1(exec-arg)\n"),
    (("GOSUB", "sub-test", "s", 1, "agi-arg"), b"GOSUB sub-test s 1 agi-arg\n"),
    (("SET VARIABLE", "X", 1), b"SET VARIABLE X 1\n"),
]


@pytest.mark.parametrize(("call", "wire"), WIRE_FORMS)
def test_format_command_matches_the_transcripts(call: tuple, wire: bytes) -> None:
    assert format_command(*call) == wire
    all_sent = {line for name in transcript_names() for line in load_transcript(name).server_lines}
    assert wire in all_sent


def test_format_command_quoting() -> None:
    assert format_command("SET VARIABLE", "V", "") == b'SET VARIABLE V ""\n'
    assert format_command("SET VARIABLE", "V", 'say "hi"') == b'SET VARIABLE V "say \\"hi\\""\n'
    assert format_command("SET VARIABLE", "V", "a\\b") == b'SET VARIABLE V "a\\\\b"\n'
    assert format_command("SET VARIABLE", "V", "a\tb") == b'SET VARIABLE V "a\tb"\n'
    assert format_command("SET VARIABLE", "V", "日本") == "SET VARIABLE V 日本\n".encode()
    assert format_command("SET VARIABLE", "V", -1) == b"SET VARIABLE V -1\n"


@pytest.mark.parametrize(
    "bad", ["4111111111111111\nEXEC System rm", "secret\r", "\rsecret", "secret\0", "\n"]
)
def test_format_command_refuses_cr_lf_nul(bad: str) -> None:
    with pytest.raises(AGIArgumentError) as err:
        format_command("SET VARIABLE", "V", bad)
    assert "CR, LF or NUL" in str(err.value)
    assert "secret" not in str(err.value) and "4111" not in str(err.value)  # never echoed
    with pytest.raises(AGIArgumentError):
        format_command("VERBOSE", Quoted(bad), 1)


@pytest.mark.parametrize(
    "command", ["", "NOOP\r", "NOOP\n", " NOOP", "NOOP ", "GET  DATA", "NO-OP", "FAILURE x", "x\0"]
)
def test_format_command_refuses_bad_verbs(command: str) -> None:
    with pytest.raises(AGIArgumentError):
        format_command(command)


def test_format_command_limits() -> None:
    longest = "x" * (MAX_COMMAND_BYTES - len("VERBOSE  1\n"))
    assert len(format_command("VERBOSE", longest, 1)) == MAX_COMMAND_BYTES
    with pytest.raises(AGIArgumentError):
        format_command("VERBOSE", longest + "x", 1)
    with pytest.raises(AGIArgumentError):
        format_command("EXEC", *(["x"] * 127))  # res_agi would drop the 128th word
    assert format_command("EXEC", *(["x"] * 126)).count(b" ") == 126
    with pytest.raises(AGIArgumentError):
        format_command("VERBOSE", True)  # type: ignore[arg-type]
    with pytest.raises(AGIArgumentError):
        format_command("VERBOSE", 1.5)  # type: ignore[arg-type]
    with pytest.raises(AGIArgumentError):
        format_command("VERBOSE", "\udcff")  # a lone surrogate cannot go on the wire


_ARG = st.text(
    st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)), max_size=40
)


@given(st.lists(_ARG, max_size=6), st.booleans())
def test_asterisk_splits_back_what_was_formatted(args: list[str], force: bool) -> None:
    sent = [Quoted(a) if force else a for a in args]
    line = format_command("SET VARIABLE", *sent)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b"\r" not in line
    assert asterisk_parse_args(line[:-1]) == [b"SET", b"VARIABLE", *(a.encode() for a in args)]


# -- replies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "result", "data", "endpos", "extra"),
    [
        ("200 result=0", "0", None, None, ""),
        ("200 result=1 (en)", "1", "en", None, ""),
        ("200 result=1 (bar baz)", "1", "bar baz", None, ""),
        ("200 result=1 ()", "1", "", None, ""),
        ("200 result=1 (a (b) c) endpos)", "1", "a (b) c) endpos", None, ""),
        ("200 result=41 (timeout)", "41", "timeout", None, ""),
        ("200 result= (timeout)", "", "timeout", None, ""),
        ("200 result=", "", None, None, ""),
        ("200 result=4111111111111111", "4111111111111111", None, None, ""),
        ("200 result=49 endpos=1120", "49", None, 1120, ""),
        ("200 result=-1 endpos=0", "-1", None, 0, ""),
        ("200 result=-1 endpos=12160", "-1", None, 12160, ""),
        ("200 result=-2", "-2", None, None, ""),
        ("200 result=0 (timeout) endpos=8000", "0", "timeout", 8000, ""),
        ("200 result=0 Gosub complete", "0", None, None, "Gosub complete"),
    ],
)
def test_parse_200_forms(
    line: str, result: str, data: str | None, endpos: int | None, extra: str
) -> None:
    reply = parse_reply([line.encode() + b"\n"])
    assert (reply.code, reply.result, reply.data, reply.endpos, reply.extra) == (
        200,
        result,
        data,
        endpos,
        extra,
    )
    assert reply.raw_lines == (line.encode(),)


def test_result_int() -> None:
    assert parse_reply(["200 result=-1"]).result_int == -1
    assert parse_reply(["200 result=49 endpos=3"]).result_int == 49
    assert parse_reply(["200 result="]).result_int is None
    assert parse_reply(["200 result=12*"]).result_int is None


def test_parse_provisional_then_final() -> None:
    reply = parse_reply([b"100 result=0 Trying...\n", b"200 result=0 Gosub complete\n"])
    assert (reply.code, reply.result, reply.extra) == (200, "0", "Gosub complete")
    assert len(reply.raw_lines) == 2


def test_parse_error_codes() -> None:
    r = parse_reply(["510 Invalid or unknown command"])
    assert (r.code, r.extra, r.usage) == (510, "Invalid or unknown command", "")
    r = parse_reply(["511 Command Not Permitted on a dead channel or intercept routine"])
    assert r.code == 511 and r.extra.startswith("Command Not Permitted")
    r = parse_reply(["520 Invalid command syntax.  Proper usage not available."])
    assert (r.code, r.usage) == (520, "")


def test_parse_multiline_520_from_fixture() -> None:
    lines = load_transcript("06-bad-commands").asterisk_lines
    start = lines.index(b"520-Invalid command syntax.  Proper usage follows:\n")
    assembler = ReplyAssembler()
    reply = None
    for n, line in enumerate(lines[start:], start=1):  # noqa: B007 - n is read after
        reply = assembler.feed(line)
        if reply is not None:
            break
    assert reply is not None and n == 7
    assert reply.code == 520
    assert reply.extra == "Invalid command syntax.  Proper usage follows:"
    assert reply.usage.splitlines()[1] == "It sets the following channel variables upon completion:"
    assert reply.usage.splitlines()[3] == "    <value>SUCCESS</value>"  # indentation kept
    # A usage line that looks like a reply does not end the block early.
    weird = parse_reply(["520-Invalid", "200 result=0", "510 x", "520 End of proper usage."])
    assert weird.usage == "200 result=0\n510 x"


def test_every_asterisk_reply_in_the_transcripts_parses() -> None:
    seen = 0
    for name in transcript_names():
        assembler = ReplyAssembler()
        for line in load_transcript(name).asterisk_lines[25:]:  # past the environment
            if is_hangup_line(line):
                continue
            reply = assembler.feed(line)
            if reply is not None:
                seen += 1
                assert reply.code in (200, 510, 511, 520)
                assembler = ReplyAssembler()
        assert not assembler.started, name
    assert seen == sum(len(load_transcript(n).server_lines) for n in transcript_names()) == 75


@pytest.mark.parametrize(
    "lines",
    [
        ["garbage"],
        [""],
        ["20 result=0"],
        ["200 ok"],
        ["200-result=0"],
        ["200 result=0", "200 result=1"],
        ["100 result=0 Trying..."],
        ["520-Invalid command syntax."],
    ],
)
def test_parse_reply_rejects(lines: list[str]) -> None:
    with pytest.raises(AGIProtocolError):
        parse_reply(lines)


def test_non_utf8_reply_data() -> None:
    reply = parse_reply([b"200 result=1 (caf\xe9)\n"])
    assert reply.data == "café"


def test_sensitive_reply_hides_its_content() -> None:
    reply = parse_reply(["200 result=4111111111111111 (timeout)"]).as_sensitive()
    assert reply.result == "4111111111111111"  # the caller still gets it
    for text in (repr(reply), str(reply), f"{reply}"):
        assert "4111" not in text and "timeout" not in text
    plain = Reply(200, "1", "en")
    assert "'en'" in repr(plain)


def test_hangup_line_detection() -> None:
    assert is_hangup_line(b"HANGUP\n") and is_hangup_line(b"HANGUP")
    assert not is_hangup_line(b"HANGUP x\n") and not is_hangup_line(b"200 result=1\n")
