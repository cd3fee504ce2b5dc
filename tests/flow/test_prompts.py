"""The prompt catalogue, its audio files, the WAV format check and ``make sounds``."""

from __future__ import annotations

import array
import math
import shutil
import statistics
import struct
import sys
import wave
from pathlib import Path

import pytest

from ivrpay.config import REPO_ROOT
from ivrpay.flow import prompts
from ivrpay.flow.numbers import ALL_NUMBER_PROMPTS
from ivrpay.flow.prompts import (
    FLOW_PROMPTS,
    REQUIRED_PROMPTS,
    CatalogueError,
    P,
    check_wav,
    check_wav_bytes,
    invalid_prompts,
    load_prompts,
    missing_prompts,
    playback_name,
    prompt_file,
)
from ivrpay.sounds import make

SOUNDS = REPO_ROOT / "sounds"
LANGS = ("ja", "en")
CATALOGUE = load_prompts(SOUNDS)
# Prompts that may have nothing to say in English (the file is a short silence).
EN_MAY_BE_SILENT = {"amount_is_tail", "confirm_card_ending_tail", "silence"}


# -- the catalogue ------------------------------------------------------------------------------
def test_catalogue_lists_exactly_what_the_code_needs() -> None:
    assert list(CATALOGUE)[: len(FLOW_PROMPTS)] == list(FLOW_PROMPTS)
    assert set(CATALOGUE) == set(REQUIRED_PROMPTS)
    assert len(REQUIRED_PROMPTS) == len(set(REQUIRED_PROMPTS))


def test_every_constant_of_p_is_in_the_csv() -> None:
    for p in P:
        assert p.value in CATALOGUE, p
        assert CATALOGUE[p].id == p.name == p.value


def test_a_typo_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = P.welcom  # type: ignore[attr-defined]
    assert playback_name(P.enter_card) == "ivrpay/enter_card"
    assert f"ivrpay/{P.paid}" == "ivrpay/paid"


def test_every_prompt_has_wording() -> None:
    for pid, prompt in CATALOGUE.items():
        if pid != P.silence:
            assert prompt.text("ja"), pid  # Japanese always speaks
        if pid not in EN_MAY_BE_SILENT:
            assert prompt.text("en"), pid
    assert (
        CATALOGUE["welcome"].text("ja")
        == "お電話ありがとうございます。カードでのお支払いを承ります。"
    )
    assert CATALOGUE["declined"].text("en") == (
        "This card cannot be used. Please contact your card issuer."
    )


# -- the audio files ----------------------------------------------------------------------------
def test_nothing_missing_for_both_languages() -> None:
    assert missing_prompts(SOUNDS, LANGS) == []


@pytest.mark.parametrize("lang", LANGS)
def test_csv_and_wav_files_match_one_to_one(lang: str) -> None:
    on_disk = {p.stem for p in (SOUNDS / lang / "ivrpay").glob("*.wav")}
    assert on_disk == set(CATALOGUE)
    assert not list((SOUNDS / lang / "ivrpay").glob("*.tmp"))


@pytest.mark.parametrize("lang", LANGS)
def test_every_wav_is_8k_16bit_mono_pcm(lang: str) -> None:
    for pid in CATALOGUE:
        path = prompt_file(SOUNDS, lang, pid)
        assert check_wav(path) is None, path
        with wave.open(str(path)) as w:
            assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
            seconds = w.getnframes() / 8000
        assert 0.05 <= seconds <= 12, (path, seconds)
        assert path.stat().st_size < 200_000, path  # keep the repo small


def test_invalid_prompts_on_the_repo_is_empty() -> None:
    assert invalid_prompts(SOUNDS, LANGS) == []


def _samples(path: Path) -> array.array:
    with wave.open(str(path)) as w:
        s = array.array("h")
        s.frombytes(w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        s.byteswap()
    return s


def _pitch_track(s: array.array, frame: int = 256, hop: int = 400) -> list[float | None]:
    """F0 per frame by autocorrelation over 80–400 Hz; None for quiet or unvoiced frames."""
    out: list[float | None] = []
    for start in range(0, len(s) - frame - 100, hop):
        x = s[start : start + frame + 100]
        energy = sum(v * v for v in x[:frame])
        if energy < frame * 1500**2:
            out.append(None)
            continue
        corr, lag = max((sum(x[i] * x[i + k] for i in range(frame)), k) for k in range(20, 100))
        out.append(8000 / lag if corr > 0.5 * energy else None)
    return out


SPOKEN = ("welcome", "declined", "enter_card", "please_wait")


@pytest.mark.parametrize("pid", SPOKEN)
def test_japanese_is_a_voice_not_espeak_nor_beeps(pid: str) -> None:
    """Open JTalk's mei is a female voice (F0 around 200–300 Hz); espeak-ng's en-us is male
    (about 100 Hz); a beep holds one pitch and never pauses. The Japanese prompts must be the
    first: speech that moves in pitch and breathes, well above espeak's voice."""
    ja = _pitch_track(_samples(prompt_file(SOUNDS, "ja", pid)))
    en = _pitch_track(_samples(prompt_file(SOUNDS, "en", pid)))
    ja_voiced = [f for f in ja if f]
    en_voiced = [f for f in en if f]
    assert len(ja_voiced) >= 10 and len(en_voiced) >= 10
    assert statistics.median(ja_voiced) > 170
    assert statistics.median(en_voiced) < 150
    assert statistics.pstdev(ja_voiced) > 15  # pitch moves: not a tone
    assert len(ja_voiced) < 0.9 * len(ja)  # pauses and consonants: not a tone
    ja_bytes = prompt_file(SOUNDS, "ja", pid).read_bytes()
    assert ja_bytes != prompt_file(SOUNDS, "en", pid).read_bytes()


def test_silent_prompts_are_short_silences() -> None:
    for pid in EN_MAY_BE_SILENT:
        s = _samples(prompt_file(SOUNDS, "en", pid))
        assert len(s) <= 8000 * 0.2 and not any(s)
    assert CATALOGUE[P.silence].text("ja") == ""
    assert not any(_samples(prompt_file(SOUNDS, "ja", P.silence)))


def _similarity(a: array.array, b: array.array) -> float:
    """Normalised correlation of two sample runs (1.0 = the same sound)."""
    n = min(len(a), len(b))
    dot = sum(a[i] * b[i] for i in range(n))
    return dot / math.sqrt(sum(x * x for x in a[:n]) * sum(x * x for x in b[:n]) or 1)


def test_committed_japanese_is_what_open_jtalk_says(tmp_path: Path) -> None:
    """Where pyopenjtalk-plus and sox are installed (``make sounds``), the committed Japanese
    prompts are what Open JTalk makes of their wording (not byte for byte: another sox build
    may resample a little differently)."""
    pytest.importorskip("pyopenjtalk")
    if shutil.which("sox") is None:
        pytest.skip("sox not installed")
    ids = ["welcome", "num_800", "yen_4"]
    (tmp_path / "prompts.csv").write_bytes((SOUNDS / "prompts.csv").read_bytes())
    made = make.make_sounds(tmp_path, ["ja"], make.VOICES, ids, log=lambda _: None)
    assert len(made) == 3
    for pid in ids:
        fresh = _samples(prompt_file(tmp_path, "ja", pid))
        committed = _samples(prompt_file(SOUNDS, "ja", pid))
        assert abs(len(fresh) - len(committed)) <= 80, pid
        assert _similarity(fresh, committed) > 0.95, pid
    # and nothing like the English voice saying the same thing
    english = _samples(prompt_file(SOUNDS, "en", "welcome"))
    assert _similarity(_samples(prompt_file(SOUNDS, "ja", "welcome")), english) < 0.5


# -- missing and invalid prompts ----------------------------------------------------------------
def _copy_sounds(tmp_path: Path, langs: tuple[str, ...] = LANGS) -> Path:
    shutil.copy(SOUNDS / "prompts.csv", tmp_path / "prompts.csv")
    for lang in langs:
        shutil.copytree(SOUNDS / lang, tmp_path / lang)
    return tmp_path


def test_missing_prompt_is_named(tmp_path: Path) -> None:
    root = _copy_sounds(tmp_path)
    (root / "en" / "ivrpay" / "num_700.wav").unlink()
    (root / "ja" / "ivrpay" / "paid.wav").unlink()
    assert missing_prompts(root, ["ja", "en"]) == [
        root / "ja" / "ivrpay" / "paid.wav",
        root / "en" / "ivrpay" / "num_700.wav",
    ]
    assert missing_prompts(root, ["ja"]) == [root / "ja" / "ivrpay" / "paid.wav"]


def test_a_language_without_files_misses_everything(tmp_path: Path) -> None:
    root = _copy_sounds(tmp_path, ("ja",))
    assert missing_prompts(root, ["ja"]) == []
    missing = missing_prompts(root, ["en"])
    assert len(missing) == len(REQUIRED_PROMPTS)
    assert root / "en" / "ivrpay" / "welcome.wav" in missing


def test_invalid_prompts_names_bad_and_missing_files(tmp_path: Path) -> None:
    root = _copy_sounds(tmp_path)
    _write(root / "ja" / "ivrpay" / "busy.wav", rate=44100)
    (root / "en" / "ivrpay" / "yen.wav").unlink()
    problems = invalid_prompts(root, LANGS)
    assert len(problems) == 2
    assert "busy.wav" in problems[0] and "44100 Hz" in problems[0]
    assert problems[1].endswith("yen.wav: missing")


# -- check_wav ----------------------------------------------------------------------------------
def _write(path: Path, rate: int = 8000, width: int = 2, channels: int = 1, n: int = 800) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(n * width * channels))
    return path


def _riff(*chunks: tuple[bytes, bytes]) -> bytes:
    body = b"WAVE" + b"".join(
        cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
        for cid, data in chunks
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _fmt(tag: int = 1, channels: int = 1, rate: int = 8000, bits: int = 16) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


# WAVE_FORMAT_EXTENSIBLE's extra: cbSize 22, 16 valid bits, mono mask, KSDATAFORMAT_SUBTYPE_PCM.
_PCM_GUID = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_EXT_PCM = struct.pack("<HHI", 22, 16, 4) + _PCM_GUID


def test_good_wav(tmp_path: Path) -> None:
    assert check_wav(_write(tmp_path / "ok.wav")) is None
    assert check_wav_bytes(_riff((b"fmt ", _fmt()), (b"data", bytes(100)))) is None
    # Other chunks (LIST, fact, odd-sized ones) are skipped as Asterisk does.
    odd = _riff((b"fmt ", _fmt()), (b"LIST", b"INFOabc"), (b"data", bytes(8)))
    assert check_wav_bytes(odd) is None
    ext = _riff((b"fmt ", _fmt(tag=0xFFFE) + _EXT_PCM), (b"data", bytes(8)))
    assert check_wav_bytes(ext) is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"rate": 16000}, ["16000 Hz", "8000 Hz"]),
        ({"rate": 44100, "channels": 2}, ["44100 Hz", "2 channels"]),
        ({"width": 1}, ["8-bit"]),
        ({"channels": 2}, ["2 channels", "mono"]),
    ],
)
def test_wrong_format_says_what_is_wrong(tmp_path: Path, kwargs: dict, words: list[str]) -> None:
    error = check_wav(_write(tmp_path / "x.wav", **kwargs))
    assert error is not None
    assert error.startswith("x.wav: ")
    for word in words:
        assert word in error
    assert "8 kHz, 16-bit, mono PCM WAV" in error


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "not a WAV"),
        (b"ID3\x03" + bytes(100), "not a WAV"),
        (b"RIFF\x00\x00\x00\x00WAVE", "no fmt chunk"),
        (_riff((b"fmt ", _fmt())), "no data chunk"),
        (_riff((b"data", bytes(8)), (b"fmt ", _fmt())), "before the fmt"),
        (_riff((b"fmt ", _fmt()), (b"data", b"")), "no audio"),
        (_riff((b"fmt ", _fmt()), (b"data", bytes(8)))[:-3], "cut short"),
        (_riff((b"fmt ", _fmt()), (b"data", bytes(7))), "broken sample"),
        (_riff((b"fmt ", _fmt()[:10])), "cut short"),
        (_riff((b"fmt ", _fmt(tag=7, bits=8)), (b"data", bytes(8))), "not PCM"),  # mu-law
        (_riff((b"fmt ", _fmt(tag=0xFFFE)), (b"data", bytes(8))), "not PCM"),
        (
            _riff((b"fmt ", _fmt()[:8] + b"\x00\x00\x00\x00" + _fmt()[12:]), (b"data", bytes(8))),
            "inconsistent",
        ),
    ],
)
def test_broken_wavs(data: bytes, words: str) -> None:
    error = check_wav_bytes(data)
    assert error is not None and words in error


def test_check_wav_on_odd_paths(tmp_path: Path) -> None:
    assert "cannot read" in (check_wav(tmp_path / "nope.wav") or "")
    assert "lower case" in (check_wav(_write(tmp_path / "LOUD.WAV")) or "")
    (tmp_path / "dir.wav").mkdir()
    assert check_wav(tmp_path / "dir.wav") is not None


# -- the CSV loader -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "header"),
        ("name,ja,en\nx,a,b\n", "header"),
        ("id,ja,ja\nx,a,b\n", "language"),
        ("id,ja,en\nx,a\n", ":2: expected 3 columns"),
        ("id,ja,en\nx,a,b\nx,c,d\n", ":3: prompt id 'x' listed twice"),
        ("id,ja,en\nBad-Id,a,b\n", "bad prompt id"),
        ("id,ja,en\n../etc,a,b\n", "bad prompt id"),
    ],
)
def test_bad_catalogue(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "prompts.csv").write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError) as info:
        load_prompts(tmp_path)
    assert words in str(info.value)


def test_catalogue_missing_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError):
        load_prompts(tmp_path)
    (tmp_path / "prompts.csv").write_bytes("id,ja,en\nx,あ,b\n".encode("cp932"))
    with pytest.raises(CatalogueError):
        load_prompts(tmp_path)


def test_catalogue_reads_quoted_commas_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "prompts.csv").write_text(
        'id,ja,en\n\nx," あ ","Press 1, or 2"\ny,い,\n', encoding="utf-8"
    )
    loaded = load_prompts(tmp_path)
    assert list(loaded) == ["x", "y"]
    assert loaded["x"].text("ja") == "あ" and loaded["x"].text("en") == "Press 1, or 2"
    assert loaded["y"].text("en") == ""


# -- make sounds --------------------------------------------------------------------------------
class ToneVoice:
    """A stand-in voice: half a second of tone between two silences, at a chosen rate."""

    def __init__(self, rate: int = 8000) -> None:
        self.rate = rate
        self.said: list[str] = []

    def speak(self, text: str) -> tuple[bytes, int]:
        self.said.append(text)
        quiet = [0] * (self.rate // 5)
        tone = [
            round(8000 * math.sin(2 * math.pi * 440 * i / self.rate)) for i in range(self.rate // 2)
        ]
        return array.array("h", quiet + tone + quiet).tobytes(), self.rate


def _small_catalogue(root: Path) -> None:
    (root / "prompts.csv").write_text(
        "id,ja,en\npaid,お支払いが完了しました。,Your payment is complete.\n"
        "num_18,じゅうはち,eighteen\namount_is_tail,です。,\n",
        encoding="utf-8",
    )


def test_make_sounds_makes_only_missing_files(tmp_path: Path) -> None:
    _small_catalogue(tmp_path)
    voices = {"ja": ToneVoice(), "en": ToneVoice()}
    factories = {lang: (lambda v=v: v) for lang, v in voices.items()}
    made = make.make_sounds(tmp_path, LANGS, factories, log=lambda _: None)
    assert len(made) == 6
    for path in made:
        assert check_wav(path) is None
    # Kana is spoken as katakana, the silent English tail is not spoken at all.
    assert voices["ja"].said == ["お支払いが完了しました。", "ジュウハチ", "です。"]
    assert voices["en"].said == ["Your payment is complete.", "eighteen"]
    silent = _samples(prompt_file(tmp_path, "en", "amount_is_tail"))
    assert len(silent) == 8000 * make.SILENCE_MS // 1000 and not any(silent)
    # Silence trimmed to the pads: numbers tight, speech a little looser.
    num = _samples(prompt_file(tmp_path, "ja", "num_18"))
    assert abs(len(num) - (4000 + 8 * sum(make.PAD_MS_NUMBER))) <= 4  # 0.5 s of tone + pads
    speech = _samples(prompt_file(tmp_path, "ja", "paid"))
    assert abs(len(speech) - (4000 + 8 * sum(make.PAD_MS_SPEECH))) <= 4
    assert max(abs(x) for x in speech) == 26000  # normalised

    (tmp_path / "ja" / "ivrpay" / "paid.wav").unlink()
    again = make.make_sounds(tmp_path, LANGS, factories, log=lambda _: None)
    assert again == [prompt_file(tmp_path, "ja", "paid")]
    forced = make.make_sounds(tmp_path, ["en"], factories, ids=["paid"], force=True, log=print)
    assert forced == [prompt_file(tmp_path, "en", "paid")]


def test_make_sounds_asks_for_a_voice_only_when_something_is_to_be_said(tmp_path: Path) -> None:
    _small_catalogue(tmp_path)

    def no_voice() -> make.Voice:
        raise make.ToolMissing("no voice here")

    made = make.make_sounds(
        tmp_path, ["en"], {"en": no_voice}, ids=["amount_is_tail"], log=lambda _: None
    )
    assert made == [prompt_file(tmp_path, "en", "amount_is_tail")]
    with pytest.raises(make.ToolMissing):
        make.make_sounds(tmp_path, ["en"], {"en": no_voice}, log=lambda _: None)
    with pytest.raises(ValueError, match=r"not in prompts\.csv: nope"):
        make.make_sounds(tmp_path, ["en"], {"en": no_voice}, ids=["nope"], log=lambda _: None)


def test_make_main_reports_a_missing_tool(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _small_catalogue(tmp_path)
    for path in make.make_sounds(tmp_path, ["en"], {"en": ToneVoice}, log=lambda _: None):
        assert path.is_file()
    assert make.main(["--sounds-dir", str(tmp_path), "--lang", "en"]) == 0
    assert "0 file(s) made" in capsys.readouterr().out
    assert make.main(["--sounds-dir", str(tmp_path), "--lang", "xx"]) == 1
    assert "no voice for language 'xx'" in capsys.readouterr().err


def test_trim_and_normalize() -> None:
    s = array.array("h", [0] * 100 + [50, 500, -900, 300] + [0] * 100).tobytes()
    trimmed = array.array("h")
    trimmed.frombytes(make.trim(s, 8000, lead_ms=1, tail_ms=2))
    assert list(trimmed) == [0] * 7 + [50, 500, -900, 300] + [0] * 16
    assert make.trim(bytes(200), 8000, 10, 10) == b""
    loud = array.array("h")
    loud.frombytes(make.normalize(s, 9000))
    assert max(abs(x) for x in loud) == 9000 and loud[102] == -9000
    assert make.normalize(bytes(10), 9000) == bytes(10)


def test_resample_with_sox() -> None:
    if shutil.which("sox") is None:
        pytest.skip("sox not installed")
    pcm, rate = ToneVoice(48000).speak("x")
    out = make.resample(pcm, rate)
    assert abs(len(out) // 2 - len(pcm) // 2 // 6) <= 2
    assert make.resample(b"\x01\x00", 8000) == b"\x01\x00"


def test_english_voice_with_espeak(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng or sox not installed")
    _small_catalogue(tmp_path)
    made = make.make_sounds(tmp_path, ["en"], make.VOICES, ids=["paid"], log=lambda _: None)
    assert check_wav(made[0]) is None
    assert 0.8 < len(_samples(made[0])) / 8000 < 4


def test_prompts_module_exports() -> None:
    assert set(prompts.__all__) <= set(dir(prompts))
    assert set(ALL_NUMBER_PROMPTS) <= set(REQUIRED_PROMPTS)
