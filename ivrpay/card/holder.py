"""The wipeable card holder: card number, expiry and security code of one call, in memory only.

The digits live in ``bytearray`` buffers that :meth:`CardData.wipe` zeroes in place. The holder
never shows them: ``repr``, ``str``, ``format`` show the last four digits at most, pickling and
copying are refused, and no exception raised here carries a digit. Only the gateway client calls the
``reveal_*`` methods, to build the request body.
"""

from __future__ import annotations

from typing import Any, NoReturn


class CardDataError(ValueError):
    """A value handed to the holder is not digits of an acceptable length (says no digit)."""


def _buffer(value: str | bytes | bytearray, lo: int, hi: int, what: str) -> bytearray:
    raw = value.encode("ascii", "replace") if isinstance(value, str) else bytes(value)
    if not (lo <= len(raw) <= hi) or not raw.isdigit():
        raise CardDataError(f"{what}: expected {lo}–{hi} digits")
    return bytearray(raw)


def _zero(buf: bytearray | None) -> None:
    if buf is not None:
        for i in range(len(buf)):
            buf[i] = 0


class CardData:
    """Card number, expiry (``MMYY`` as keyed) and security code of one call."""

    __slots__ = ("_code", "_expiry", "_number", "brand")

    def __init__(self) -> None:
        self._number: bytearray | None = None
        self._expiry: bytearray | None = None
        self._code: bytearray | None = None
        self.brand: str | None = None

    # -- filling -------------------------------------------------------------------------------
    def set_number(self, digits: str | bytes | bytearray, brand: str | None = None) -> None:
        self.wipe_number()
        self._number = _buffer(digits, 10, 19, "card number")
        self.brand = brand

    def set_expiry(self, mmyy: str | bytes | bytearray) -> None:
        self.wipe_expiry()
        self._expiry = _buffer(mmyy, 4, 4, "expiry")

    def set_security_code(self, code: str | bytes | bytearray) -> None:
        self.wipe_security_code()
        self._code = _buffer(code, 3, 4, "security code")

    # -- what may be known -----------------------------------------------------------------------
    @property
    def has_number(self) -> bool:
        return self._number is not None

    @property
    def has_expiry(self) -> bool:
        return self._expiry is not None

    @property
    def has_security_code(self) -> bool:
        return self._code is not None

    @property
    def last4(self) -> str | None:
        """The last four digits: what may be stored and shown."""
        return None if self._number is None else self._number[-4:].decode("ascii")

    @property
    def number_length(self) -> int:
        return 0 if self._number is None else len(self._number)

    # -- for the gateway request only ------------------------------------------------------------
    def reveal_number(self) -> str:
        if self._number is None:
            raise CardDataError("card number not set")
        return self._number.decode("ascii")

    def reveal_expire_yymm(self) -> str:
        """The gateway's ``Expire`` (``YYMM``) from the keyed ``MMYY``."""
        if self._expiry is None:
            raise CardDataError("expiry not set")
        e = self._expiry.decode("ascii")
        return e[2:] + e[:2]

    def reveal_security_code(self) -> str | None:
        return None if self._code is None else self._code.decode("ascii")

    # -- wiping ----------------------------------------------------------------------------------
    def wipe_number(self) -> None:
        _zero(self._number)
        self._number = None
        self.brand = None

    def wipe_expiry(self) -> None:
        _zero(self._expiry)
        self._expiry = None

    def wipe_security_code(self) -> None:
        _zero(self._code)
        self._code = None

    def wipe(self) -> None:
        self.wipe_number()
        self.wipe_expiry()
        self.wipe_security_code()

    @property
    def is_empty(self) -> bool:
        return self._number is None and self._expiry is None and self._code is None

    # -- never shown -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        last4 = self.last4
        shown = f"****{last4}" if last4 else "empty"
        return f"<CardData {self.brand or ''} {shown}>".replace("  ", " ")

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> NoReturn:
        raise TypeError("card data cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("card data cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("card data cannot be copied")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        raise TypeError("card data cannot be copied")

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__
