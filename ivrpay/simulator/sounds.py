"""Prompt files as Asterisk finds them: ``<sounds_dir>/<language>/<file>.wav``.

Asterisk tries the channel's language (``ja_JP`` then ``ja``), then the file with no language
directory, then the default language ``en`` — and says nothing on the wire when it falls back
(fixture 12). The stand-in does the same, and reports both a fallback and a file missing
everywhere, so a test can insist that every prompt exists in the caller's language.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE = 8000  # endpos counts 8 kHz samples
FRAME_SAMPLES = 160  # Asterisk plays 20 ms frames: positions move in these steps
DEFAULT_LANGUAGE = "en"
DEFAULT_SAMPLES = 16000  # the length of every prompt when no sounds_dir is given (2 s)


@dataclass(frozen=True)
class PromptFile:
    name: str  # as the server asked for it
    language: str  # the channel language in force
    found_in: str | None  # the language directory it was found in ("" = none); None = missing
    samples: int  # length in 8 kHz samples (0 when missing)
    error: str | None = None  # why a file that exists could not be used

    @property
    def missing(self) -> bool:
        return self.found_in is None

    @property
    def fallback(self) -> bool:
        return self.found_in is not None and self.found_in != self.language

    @property
    def wanted(self) -> str:
        """``<language>/<name>``: the file the caller should have heard."""
        return self.name if self.name.startswith("/") else f"{self.language}/{self.name}"


def ms_to_samples(ms: int) -> int:
    """A moment in a prompt, rounded down to the frame Asterisk was playing."""
    return max(0, ms) * SAMPLE_RATE // 1000 // FRAME_SAMPLES * FRAME_SAMPLES


class SoundLibrary:
    """Finds prompt files; ``sounds_dir=None`` means every prompt exists and is 2 s long."""

    def __init__(self, sounds_dir: str | Path | None, default_samples: int = DEFAULT_SAMPLES):
        self.sounds_dir = Path(sounds_dir) if sounds_dir is not None else None
        self.default_samples = default_samples
        self._lengths: dict[Path, tuple[int, str | None]] = {}

    def find(self, name: str, language: str) -> PromptFile:
        if self.sounds_dir is None:
            return PromptFile(name, language, language, self.default_samples)
        if not name:
            return PromptFile(name, language, None, 0, "empty file name")
        if name.startswith("/"):
            # An absolute path has no language directory: Asterisk uses it as it is.
            candidates = [(language, Path(name + ".wav"))]
        else:
            langs = [language]
            if "_" in language:
                langs.append(language.split("_", 1)[0])
            langs.append("")
            if DEFAULT_LANGUAGE not in langs:
                langs.append(DEFAULT_LANGUAGE)
            candidates = [
                (
                    lang,
                    self.sounds_dir / lang / f"{name}.wav"
                    if lang
                    else self.sounds_dir / f"{name}.wav",
                )
                for lang in dict.fromkeys(langs)
            ]
        error = None
        for lang, path in candidates:
            if not path.is_file():
                continue
            samples, error = self._length(path)
            if error is None:
                return PromptFile(name, language, lang, samples)
        return PromptFile(name, language, None, 0, error)

    def _length(self, path: Path) -> tuple[int, str | None]:
        if path not in self._lengths:
            try:
                with wave.open(str(path), "rb") as w:
                    frames, rate = w.getnframes(), w.getframerate()
                self._lengths[path] = (frames * SAMPLE_RATE // max(rate, 1), None)
            except (OSError, EOFError, wave.Error) as exc:
                self._lengths[path] = (0, f"unreadable WAV ({type(exc).__name__})")
        return self._lengths[path]


def has_prompts(sounds_dir: str | Path, language: str) -> bool:
    """Whether ``sounds_dir`` holds any WAV for ``language`` (the CLI checks prompts only then)."""
    base = Path(sounds_dir) / language
    return base.is_dir() and any(base.rglob("*.wav"))
