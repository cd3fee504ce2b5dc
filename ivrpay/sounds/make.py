"""``make sounds``: speak every prompt of ``sounds/prompts.csv`` into ``sounds/<lang>/ivrpay/``.

    python -m ivrpay.sounds.make [--force] [--lang ja,en] [--id ID ...] [--sounds-dir DIR]

Only missing files are made unless ``--force``. The files are committed, so users need none of
these tools: Japanese is Open JTalk through the ``pyopenjtalk-plus`` wheel (its dictionary and
voice ship inside it, offline), English is espeak-ng; sox resamples to 8 kHz. Each file is
normalised to the same peak and its silence trimmed to a short pad so that composed numbers flow.
"""

from __future__ import annotations

import argparse
import array
import importlib.resources
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from ivrpay.sounds.catalogue import Prompt, load_prompts, prompt_file
from ivrpay.sounds.wav import RATE, read_wav, write_wav

# The package's prompts (in a checkout, a link to the top-level sounds/).
DEFAULT_SOUNDS_DIR = Path(str(importlib.resources.files("ivrpay").joinpath("data", "sounds")))
PYOPENJTALK_PIN = "pyopenjtalk-plus==0.4.1.post10"

SILENCE_MS = 120  # the file of a prompt with nothing to say in a language
THRESHOLD = 100  # |sample| above this (about -50 dBFS) is sound, below it silence
# (lead, tail) padding kept around the sound: tight for the parts of a composed number.
PAD_MS_NUMBER = (10, 30)
PAD_MS_SPEECH = (40, 150)
NUMBER_PREFIXES = ("num_", "digit_", "unit_", "yen")

# Readings Open JTalk's dictionary gets wrong or stiff, by prompt id (the CSV keeps the wording).
JA_READINGS = {
    "enter_expiry": "カードの有効期限を、月、ネンの順に4桁で入力してください。",
}


class ToolMissing(RuntimeError):
    """A speech tool is not installed; the message says how to install it."""


class Voice(Protocol):
    def speak(self, text: str) -> tuple[bytes, int]:
        """16-bit mono little-endian PCM of ``text`` and its sample rate."""
        ...


class OpenJTalkVoice:
    """Japanese: Open JTalk's HTS voice (mei) through pyopenjtalk-plus, 48 kHz."""

    def __init__(self) -> None:
        try:
            import numpy as np
            import pyopenjtalk
        except ImportError:
            raise ToolMissing(
                f"Japanese prompts need Open JTalk: .venv/bin/pip install {PYOPENJTALK_PIN}"
            ) from None
        self._np = np
        self._tts = pyopenjtalk.tts

    def speak(self, text: str) -> tuple[bytes, int]:
        wav, rate = self._tts(text)
        # pyopenjtalk returns float samples already on the int16 scale.
        pcm = self._np.clip(self._np.rint(wav), -32768, 32767).astype("<i2").tobytes()
        return pcm, int(rate)


class EspeakVoice:
    """English: espeak-ng's American voice, a little slower than its default for the phone."""

    def __init__(self, voice: str = "en-us", wpm: int = 150) -> None:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise ToolMissing("English prompts need espeak-ng: apt-get install -y espeak-ng sox")
        self.exe: str = exe
        self.voice, self.wpm = voice, wpm

    def speak(self, text: str) -> tuple[bytes, int]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "say.wav"
            cmd = [self.exe, "-v", self.voice, "-s", str(self.wpm), "-w", str(out), "--", text]
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
            return read_wav(out)


def resample(pcm: bytes, rate: int, to_rate: int = RATE) -> bytes:
    """Resample 16-bit mono PCM with sox's high-quality rate effect (no dither: reproducible)."""
    if rate == to_rate:
        return pcm
    sox = shutil.which("sox")
    if sox is None:
        raise ToolMissing("resampling needs sox: apt-get install -y sox")
    raw = ["-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1", "-L"]
    cmd = [sox, "-q", "-D", *raw, "-r", str(rate), "-", *raw, "-r", str(to_rate), "-"]
    done = subprocess.run([*cmd, "rate", "-h"], input=pcm, capture_output=True, check=True)
    return done.stdout


def _samples(pcm: bytes) -> array.array:
    a = array.array("h")
    a.frombytes(pcm)
    if sys.byteorder == "big":
        a.byteswap()
    return a


def _pcm(samples: array.array) -> bytes:
    if sys.byteorder == "big":
        samples = array.array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def normalize(pcm: bytes, peak: int) -> bytes:
    """Scale so that the loudest sample is ``peak`` (silence stays silence)."""
    s = _samples(pcm)
    loudest = max((abs(x) for x in s), default=0)
    if loudest == 0:
        return pcm
    k = peak / loudest
    return _pcm(array.array("h", (max(-32768, min(32767, round(x * k))) for x in s)))


def trim(pcm: bytes, rate: int, lead_ms: int, tail_ms: int, threshold: int = THRESHOLD) -> bytes:
    """Cut the silence before and after the sound down to ``lead_ms`` / ``tail_ms``."""
    s = _samples(pcm)
    first = next((i for i, x in enumerate(s) if abs(x) > threshold), None)
    if first is None:
        return b""
    last = next(i for i in range(len(s) - 1, -1, -1) if abs(s[i]) > threshold)
    start = max(0, first - rate * lead_ms // 1000)
    end = min(len(s), last + 1 + rate * tail_ms // 1000)
    return _pcm(s[start:end])


def silence(ms: int, rate: int = RATE) -> bytes:
    return bytes(2 * (rate * ms // 1000))


def render(text: str, voice: Voice | None, number: bool) -> bytes:
    """One prompt's 8 kHz PCM: spoken, resampled, normalised, trimmed; or a short silence."""
    if not text.strip():
        return silence(SILENCE_MS)
    if voice is None:
        raise ToolMissing("no voice to speak with")
    pcm, rate = voice.speak(text)
    pcm = resample(normalize(pcm, 16384), rate)  # headroom for the resampler's ringing
    lead, tail = PAD_MS_NUMBER if number else PAD_MS_SPEECH
    pcm = trim(normalize(pcm, 26000), RATE, lead, tail)
    return pcm or silence(SILENCE_MS)


def tts_text(prompt: Prompt, lang: str) -> str:
    text = prompt.text(lang)
    if lang == "ja":
        text = JA_READINGS.get(prompt.id, text)
        if all("ぁ" <= c <= "ゖ" or c == "ー" for c in text):
            # A number word is spoken from katakana: as hiragana, は in じゅうはち is taken for
            # the particle (wa). Sentences are left to the dictionary's analysis.
            text = "".join(chr(ord(c) + 0x60) if c != "ー" else c for c in text)
    return text


def make_sounds(
    sounds_dir: Path,
    languages: Iterable[str],
    voices: dict[str, Callable[[], Voice]],
    ids: Sequence[str] = (),
    force: bool = False,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Make the missing (or, with ``force``, all) prompt files; returns the files written."""
    prompts = load_prompts(sounds_dir)
    unknown = [i for i in ids if i not in prompts]
    if unknown:
        raise ValueError(f"not in prompts.csv: {', '.join(unknown)}")
    chosen = [prompts[i] for i in ids] if ids else list(prompts.values())
    made: list[Path] = []
    for lang in languages:
        todo = [p for p in chosen if force or not prompt_file(sounds_dir, lang, p.id).is_file()]
        if not todo:
            continue
        if lang not in voices:
            raise ToolMissing(f"no voice for language {lang!r}")
        voice: Voice | None = None
        for p in todo:
            if voice is None and p.text(lang).strip():
                voice = voices[lang]()  # only when something is to be spoken
            path = prompt_file(sounds_dir, lang, p.id)
            pcm = render(tts_text(p, lang), voice, p.id.startswith(NUMBER_PREFIXES))
            write_wav(path, pcm)
            made.append(path)
            log(f"{lang}/{p.id}.wav  {len(pcm) / 2 / RATE:.2f} s")
    return made


VOICES: dict[str, Callable[[], Voice]] = {"ja": OpenJTalkVoice, "en": EspeakVoice}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m ivrpay.sounds.make", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--force", action="store_true", help="remake files that exist")
    ap.add_argument("--lang", default="ja,en", help="languages, comma-separated (ja,en)")
    ap.add_argument("--id", action="append", default=[], help="only this prompt (repeatable)")
    ap.add_argument("--sounds-dir", type=Path, default=DEFAULT_SOUNDS_DIR)
    args = ap.parse_args(argv)
    langs = [lang.strip() for lang in args.lang.split(",") if lang.strip()]
    try:
        made = make_sounds(args.sounds_dir, langs, VOICES, args.id, args.force)
    except (ToolMissing, ValueError, OSError, subprocess.SubprocessError) as exc:
        print(f"make sounds: {exc}", file=sys.stderr)
        return 1
    print(f"make sounds: {len(made)} file(s) made in {args.sounds_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
