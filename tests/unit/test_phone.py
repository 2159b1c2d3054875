"""Phone normalisation to E.164."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.phone import InvalidPhoneNumber, normalize_phone

PROPERTIES = settings(derandomize=True, max_examples=200, deadline=None, database=None)
E164 = re.compile(r"\+[1-9][0-9]{1,14}")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("77012345678", "+77012345678"),  # the contract's example
        ("+77012345678", "+77012345678"),
        ("+7 (701) 234-56-78", "+77012345678"),
        ("7-701-234-56-78", "+77012345678"),
        ("+7.701.234.56.78", "+77012345678"),
        ("[7] 701 234 5678", "+77012345678"),
        ("+7\u00a0701\t234 56 78", "+77012345678"),
        ("  +77012345678  ", "+77012345678"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("442071838750", "+442071838750"),
    ],
)
def test_valid_numbers(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " ",
        "+",
        "123",
        "abc",
        "7701234567a",
        "++77012345678",
        "77+012345678",
        "+0123456789",  # no country code 0
        "87012345678",  # national trunk prefix, not international
        "1234567",
        "77012345678901234",  # too long
        "+7 701 234 56 78 ext 9",
        "\u0667\u0667\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic digits
    ],
)
def test_invalid_numbers(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone(raw)


def test_invalid_phone_number_is_a_value_error() -> None:
    assert issubclass(InvalidPhoneNumber, ValueError)


def _example(region: str) -> str:
    number = phonenumbers.example_number_for_type(
        region, phonenumbers.PhoneNumberType.MOBILE
    ) or phonenumbers.example_number(region)
    assert number is not None, region
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


valid_numbers = st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)).map(_example)
separators = st.sampled_from([" ", "-", "(", ")", ".", "[", "]", "\t"])


@st.composite
def decorated(draw: st.DrawFn) -> tuple[str, str]:
    """A valid E.164 number and the same number written with separators, maybe no ``+``."""
    e164 = draw(valid_numbers)
    digits = e164[1:]
    parts = [draw(st.lists(separators, max_size=2).map("".join)) + d for d in digits]
    plus = draw(st.sampled_from(["+", ""]))
    return e164, plus + "".join(parts) + draw(st.lists(separators, max_size=2).map("".join))


@PROPERTIES
@given(decorated())
def test_separators_and_plus_are_ignored(case: tuple[str, str]) -> None:
    e164, raw = case
    assert normalize_phone(raw) == e164


@PROPERTIES
@given(st.one_of(valid_numbers, decorated().map(lambda c: c[1]), st.text(max_size=20)))
def test_output_is_e164_and_normalising_is_idempotent(raw: str) -> None:
    try:
        normalized = normalize_phone(raw)
    except InvalidPhoneNumber:
        return
    assert E164.fullmatch(normalized)
    assert normalize_phone(normalized) == normalized


@PROPERTIES
@given(st.text(alphabet=st.characters(exclude_categories=["Nd"]), min_size=1, max_size=20))
def test_text_without_digits_is_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone(raw)
