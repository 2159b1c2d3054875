"""Phone number normalisation to E.164."""

from __future__ import annotations

import re

import phonenumbers

_SEPARATORS = re.compile(r"[\s\-().\[\]]")
_SHAPE = re.compile(r"\+?[0-9]{4,17}")


class InvalidPhoneNumber(ValueError):
    """The input is not a valid international phone number."""


def normalize_phone(raw: str) -> str:
    """Return ``raw`` in E.164 (``+`` and digits) or raise :class:`InvalidPhoneNumber`.

    Digits with an optional leading ``+``; spaces, dashes, dots and brackets are
    ignored. Without a ``+`` the digits are read as an international number
    (country code first), so ``77012345678`` becomes ``+77012345678``.
    """
    compact = _SEPARATORS.sub("", raw)
    if not _SHAPE.fullmatch(compact):
        raise InvalidPhoneNumber("phone number must be digits with an optional leading '+'")
    digits = compact.lstrip("+")
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber("not a valid international phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
