"""Prompt audio: the catalogue (``sounds/prompts.csv``), the WAV format check, and ``make sounds``.

Knows nothing of calls: the flow (``ivrpay.flow.prompts``) and the admin screen both use it.
"""

from ivrpay.sounds.catalogue import (
    CSV_NAME,
    CatalogueError,
    Prompt,
    load_prompts,
    missing_files,
    playback_name,
    prompt_file,
)
from ivrpay.sounds.wav import check_wav, check_wav_bytes

__all__ = [
    "CSV_NAME",
    "CatalogueError",
    "Prompt",
    "check_wav",
    "check_wav_bytes",
    "load_prompts",
    "missing_files",
    "playback_name",
    "prompt_file",
]
