"""The stand-in's pure parts: Asterisk's command parser, the key syntax, the transcript reader,
the environment block and prompt look-up."""

from __future__ import annotations

import pytest

from ivrpay.simulator.asterisk import find_command
from ivrpay.simulator.env import ChannelSpec, build_request, environment, network_script
from ivrpay.simulator.keys import Entry, KeySyntaxError, mask_digits, parse_keys
from ivrpay.simulator.parsing import MAX_ARGS, atoi, parse_args, scan_int
from ivrpay.simulator.sounds import SoundLibrary, ms_to_samples
from ivrpay.simulator.transcript import TranscriptError, escape, parse_transcript, unescape
from tests.simulator.conftest import FIXTURES, write_wav


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ('STREAM FILE beep "12"', ["STREAM", "FILE", "beep", "12"]),
        ('STREAM FILE beep ""', ["STREAM", "FILE", "beep", ""]),
        ('SET VARIABLE FOO "bar baz"', ["SET", "VARIABLE", "FOO", "bar baz"]),
        ("GET VARIABLE CHANNEL(language)\r", ["GET", "VARIABLE", "CHANNEL(language)\r"]),
        ("NOOP\r", ["NOOP\r"]),
        ("", []),
        ("   \t ", []),
        ("a\tb  c", ["a", "b", "c"]),
        (r'VERBOSE "say \"hi\"" 1', ["VERBOSE", 'say "hi"', "1"]),
        (r"x a\ b \\", ["x", "a b", "\\"]),
        ('x ab"cd ef"gh', ["x", "abcd efgh"]),  # a quote inside a word only toggles quoting
        ('x "" ""', ["x", "", ""]),
        ('x "unterminated', ["x", "unterminated"]),
        ("NOOP\0 ignored", ["NOOP"]),  # a C string ends at NUL
    ],
)
def test_parse_args_as_asterisk(line: str, argv: list[str]) -> None:
    assert parse_args(line) == argv


def test_parse_args_drops_words_past_the_limit() -> None:
    argv = parse_args(" ".join(str(i) for i in range(200)))
    assert len(argv) == MAX_ARGS - 1
    assert argv[-1] == str(MAX_ARGS - 2)


def test_c_number_reading() -> None:
    assert [atoi(x) for x in ("19", " -4x", "abc", "", "+7")] == [19, -4, 0, 0, 7]
    assert [scan_int(x) for x in ("1234", "12ab", "abc", "", " 5")] == [1234, 12, None, None, 5]


def test_command_words_match_case_insensitively_and_fully() -> None:
    assert find_command(["noop"]).name == "NOOP"
    assert find_command(["get", "Full", "variable", "x"]).name == "GET FULL VARIABLE"
    assert find_command(["GET", "VARIABLE", "x"]).name == "GET VARIABLE"
    assert find_command(["GET"]) is None
    assert find_command(["BOGUS", "COMMAND"]) is None
    assert find_command([]) is None


def test_keys_syntax() -> None:
    entries = parse_keys("4111111111111111# 1231 _ ! ~5 ~! a*d")
    assert [e.kind for e in entries] == [
        "keys",
        "keys",
        "silence",
        "hangup",
        "keys",
        "hangup",
        "keys",
    ]
    assert entries[4] == Entry("keys", "5", barge_in=True)
    assert entries[5].barge_in
    assert entries[6].keys == "A*D"
    assert parse_keys(["12#", "_"]) == [Entry("keys", "12#"), Entry("silence")]
    assert parse_keys("") == []


@pytest.mark.parametrize("bad", ["12x", "~", "~_", "__", "!!", "1_", "~~1", "E"])
def test_bad_keys_are_refused(bad: str) -> None:
    with pytest.raises(KeySyntaxError):
        parse_keys(f"1 {bad}")


def test_key_errors_and_reprs_never_show_a_card_number() -> None:
    with pytest.raises(KeySyntaxError) as info:
        parse_keys("4111111111111111x")
    assert "4111111111111111" not in str(info.value)
    assert "************1111" in str(info.value)
    assert "4111111111111111" not in repr(parse_keys("4111111111111111#"))


def test_mask_digits() -> None:
    assert mask_digits("4111111111111111#") == "************1111#"
    assert mask_digits("~378282246310005") == "~***********0005"
    assert mask_digits("1231 123 12345678901") == "1231 123 12345678901"  # short runs stay
    assert mask_digits("12345678901234567890") == "12345678901234567890"  # 20 digits: not a card


def test_transcript_reader() -> None:
    text = 'A> agi_network: yes\nA> \nS> NOOP\\r\nS> a\\\\b\\t\\xff\n## note\nA>\nS> SET "x"\n'
    t = parse_transcript(text, "x")
    assert t.lines("A") == [b"agi_network: yes", b"", b""]
    assert t.lines("S") == [b"NOOP\r", b"a\\b\t\xff", b'SET "x"']
    assert [c.comment for c in t.comments()] == ["note"]
    assert t.env == {"agi_network": "yes"}
    assert t.wire("S") == b'NOOP\r\na\\b\t\xff\nSET "x"\n'
    for raw in (b"NOOP\r", b"\x00\x7f\x80\\", b'plain "text" $x'):
        assert unescape(escape(raw)) == raw


@pytest.mark.parametrize("bad", ["X> foo", "A>foo", "S> bad \\q escape", "S> \u3042"])
def test_transcript_reader_refuses_other_lines(bad: str) -> None:
    with pytest.raises(TranscriptError):
        parse_transcript(bad)


def test_every_fixture_reads_and_ends_with_its_agistatus() -> None:
    for path in FIXTURES.glob("*.txt"):
        t = parse_transcript(path.read_text(), path.stem)
        assert t.agistatus in ("SUCCESS", "FAILURE", "HANGUP"), path.name
        assert t.env["agi_network"] == "yes"


def test_environment_block_order_and_form() -> None:
    spec = ChannelSpec(channel="PJSIP/1001-0000002a", uniqueid="1.2", threadid=7).resolved()
    request = build_request("127.0.0.1", 4573, "pay", "lang=ja")
    pairs = environment(spec, request, ("123456", ""))
    keys = [k for k, _ in pairs]
    assert keys[:4] == ["agi_network", "agi_network_script", "agi_request", "agi_channel"]
    assert keys[-3:] == ["agi_threadid", "agi_arg_1", "agi_arg_2"]
    values = dict(pairs)
    assert values["agi_network_script"] == "pay?lang=ja"
    assert values["agi_request"] == "agi://127.0.0.1:4573/pay?lang=ja"
    assert values["agi_type"] == "PJSIP"
    assert values["agi_language"] == "ja"
    assert values["agi_arg_2"] == ""
    assert network_script("agi://host") == ""
    assert build_request("::1", 4573, "pay") == "agi://[::1]:4573/pay"
    with pytest.raises(ValueError):
        environment(spec, request, ("1\n2",))


def test_made_up_channels_differ_per_call() -> None:
    a, b = ChannelSpec().resolved(), ChannelSpec().resolved()
    assert a.channel != b.channel and a.uniqueid != b.uniqueid and a.threadid != b.threadid


def test_prompt_lookup_order_and_lengths(tmp_path) -> None:
    write_wav(tmp_path / "ja" / "a.wav", 800)
    write_wav(tmp_path / "en" / "b.wav", 1600, rate=16000)  # endpos counts 8 kHz samples
    write_wav(tmp_path / "c.wav", 80)
    (tmp_path / "ja" / "broken.wav").write_bytes(b"not a wav")
    lib = SoundLibrary(tmp_path)
    a, b, c = lib.find("a", "ja"), lib.find("b", "ja"), lib.find("c", "ja_JP")
    assert (a.found_in, a.samples, a.fallback) == ("ja", 800, False)
    assert (b.found_in, b.samples, b.fallback, b.wanted) == ("en", 800, True, "ja/b")
    assert (c.found_in, c.samples) == ("", 80)
    assert lib.find("missing", "ja").missing
    broken = lib.find("broken", "ja")
    assert broken.missing and broken.error and "unreadable" in broken.error
    assert SoundLibrary(None).find("anything", "ja").samples == 16000
    assert ms_to_samples(1520) == 12160 and ms_to_samples(140) == 1120 and ms_to_samples(-5) == 0
