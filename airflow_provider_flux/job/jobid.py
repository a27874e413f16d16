"""Parse and format Flux job IDs (RFC 19 FLUIDs) without flux-core.

A Flux job ID is an unsigned 64-bit integer with several string encodings::

    dec       123456789012345
    hex       0x7048860ddf79
    dothex    0000.7048.860d.df79
    kvs       job.0000.7048.860d.df79
    words     piano-copper-college--famous-album-academy
    f58       ƒxv12grS4        (f58plain: fxv12grS4)
    emoji     😄🆘🕙🌸🎾🍭

:func:`parse_jobid` accepts what ``flux.job.JobID`` of flux-core 0.88.0 accepts and
:func:`format_jobid` produces what ``flux_job_id_encode()`` produces, byte for byte.
flux-core parses the UTF-8 bytes of the string in C (``flux_job_id_parse()`` and
``fluid_parse()``), so this module works on the same bytes and reproduces the C
library's rules: which characters count as whitespace, what ``strtoull()`` and
``sscanf("%4x")`` accept, how mnemonicode splits words.  It assumes, as flux does in
practice, a UTF-8 (or C) locale and a little-endian host.

On purpose, this module refuses a few inputs that flux-core accepts only through a
bug, instead of returning the accidental value; it never accepts an input that flux
refuses, and never returns a value different from flux's:

* F58 digits outside the ASCII base58 alphabet (flux reads out of bounds: undefined);
* F58 or emoji strings worth 2**64 or more (flux wraps them modulo 2**64);
* a dothex group with a ``-`` sign, unless it is zero (``sscanf`` negates it and the
  32-bit result spills into the neighbouring groups);
* mnemonic words followed by an unknown word (flux stops reading there and ignores the
  rest: the check that should refuse it is dead code in ``mn_decode()``);
* ``job.`` followed only by whitespace (flux's ``strtoull()`` reads no digits and the
  result is job ID 0);
* a NUL character (flux's bindings pass the string to C, which stops at the NUL).
"""

from __future__ import annotations

import re
from typing import Final

from airflow_provider_flux.job._fluid_tables import (
    BASEMOJI,
    MNEMONIC_REMAINDER_WORDS,
    MNEMONIC_WORDS,
)
from airflow_provider_flux.job.limits import MAX_NAME_LENGTH, shorten

__all__ = ["ENCODINGS", "format_jobid", "parse_jobid"]

#: The encodings :func:`format_jobid` supports, in flux-core's names.
ENCODINGS: Final = ("dec", "hex", "dothex", "kvs", "words", "f58", "f58plain", "emoji")

_LIMIT: Final = 2**64

# C isspace() in the C and UTF-8 locales; str.isspace() would accept far more.
_SPACE: Final = b" \t\n\v\f\r"
_DIGITS: Final = frozenset(b"0123456789")
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")

_B58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_VALUE: Final = {byte: value for value, byte in enumerate(_B58_ALPHABET.encode())}
_MAX_B58_LEN: Final = 12  # fluid.c MAX_B58_STRLEN, counted in bytes
_F58_PREFIX: Final = "ƒ"  # flux's prefix in a UTF-8 locale
_F58_PLAIN_PREFIX: Final = "f"  # accepted as well; used by "f58plain"

_EMOJI_VALUE: Final = {emoji.encode(): value for value, emoji in enumerate(BASEMOJI)}
_EMOJI_BASE: Final = len(BASEMOJI)  # 576

_MN_BASE: Final = len(MNEMONIC_WORDS)  # 1626
_WORD_VALUE: Final = {word: value for value, word in enumerate(MNEMONIC_WORDS)}
_REMAINDER_WORDS: Final = frozenset(MNEMONIC_REMAINDER_WORDS)
_MN_WORD_BUFLEN: Final = 25  # mnemonic.h: mn_decode compares at most 24 letters of a word
_LETTER_RUN: Final = re.compile(rb"[A-Za-z]+")  # C isalpha(): ASCII letters only


class _Refused(Exception):
    """Internal: the string is not a job ID; the message says why."""


def parse_jobid(value: str | int) -> int:
    """Return the integer job ID encoded by ``value``.

    ``value`` may be a ``str`` in any encoding ``flux.job.JobID`` accepts (decimal,
    ``0x`` hex, dothex, kvs, F58 with an ``ƒ`` or ``f`` prefix, mnemonic words, emoji),
    or an ``int`` in ``0 <= value < 2**64``.  Leading whitespace is ignored, and so is
    trailing whitespace after decimal, hex and words encodings, as flux does.

    Raises:
        ValueError: ``value`` is not a job ID.  The message starts with flux's own
            ``"<value> is not a valid Flux jobid"`` and then says why.
        TypeError: ``value`` is neither ``str`` nor ``int``.
    """
    if isinstance(value, bool):  # an int subclass, but True is no job ID
        raise ValueError(f"{value} is not a valid Flux jobid: a bool is not a job ID")
    if isinstance(value, int):
        if 0 <= value < _LIMIT:
            return int(value)
        raise ValueError(f"{value} is not a valid Flux jobid: not in the range 0 to 2**64-1")
    if not isinstance(value, str):
        raise TypeError(f"a Flux jobid must be str or int, not {type(value).__name__}")
    if len(value) > MAX_NAME_LENGTH:
        # No encoding is near this long: refused unread, and not echoed whole.
        raise ValueError(
            f"{shorten(value)} is not a valid Flux jobid: longer than {MAX_NAME_LENGTH} characters"
        )
    try:
        return _parse(value)
    except _Refused as exc:
        raise ValueError(f"{value} is not a valid Flux jobid: {exc}") from None


def format_jobid(jobid: int, encoding: str = "f58") -> str:
    """Return ``jobid`` in ``encoding``, exactly as flux-core's ``flux_job_id_encode()``.

    ``encoding`` is one of :data:`ENCODINGS`, matched case-insensitively like flux.
    ``"f58"`` uses the ``ƒ`` prefix (flux in a UTF-8 locale); ``"f58plain"`` uses ``f``.

    Raises:
        ValueError: unknown ``encoding``, or ``jobid`` outside ``0 <= jobid < 2**64``.
        TypeError: ``jobid`` is not an ``int`` or ``encoding`` is not a ``str``.
    """
    if not isinstance(jobid, int):
        raise TypeError(f"a Flux jobid must be an int, not {type(jobid).__name__}")
    if isinstance(jobid, bool) or not 0 <= jobid < _LIMIT:
        raise ValueError(f"{jobid} is not a valid Flux jobid: not in the range 0 to 2**64-1")
    if not isinstance(encoding, str):
        raise TypeError(f"encoding must be a str, not {type(encoding).__name__}")
    n = int(jobid)  # drop any int subclass (e.g. flux.job.JobID) and its __str__
    name = encoding.lower() if encoding.isascii() else encoding  # like strcasecmp()
    if name == "dec":
        return str(n)
    if name == "hex":
        return f"0x{n:x}"
    if name == "dothex":
        return _encode_dothex(n)
    if name == "kvs":
        return "job." + _encode_dothex(n)
    if name == "words":
        return _encode_words(n)
    if name == "f58":
        return _F58_PREFIX + _encode_base(n, _B58_ALPHABET)
    if name == "f58plain":
        return _F58_PLAIN_PREFIX + _encode_base(n, _B58_ALPHABET)
    if name == "emoji":
        return _encode_base(n, BASEMOJI)
    raise ValueError(
        f"unknown Flux jobid encoding {encoding!r}; valid encodings: {', '.join(ENCODINGS)}"
    )


# --- decoding -------------------------------------------------------------------------


def _parse(text: str) -> int:
    """Mirror flux_job_id_parse() and fluid_parse() on the string's UTF-8 bytes."""
    try:
        # flux's bindings encode the same way, so escaped bytes round-trip as in flux.
        s = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise _Refused("it cannot be encoded as UTF-8") from None
    if b"\0" in s:
        raise _Refused("it contains a NUL character")
    s = s.lstrip(_SPACE)
    if not s:
        raise _Refused("it is empty")
    if s.startswith(b"job."):  # the "kvs" encoding; any encoding may follow it
        s = s[4:]
        if not s:
            raise _Refused("nothing follows 'job.'")
        s = s.lstrip(_SPACE)  # fluid_parse() skips leading whitespace again
        if not s:
            raise _Refused("only whitespace follows 'job.'")
    # RFC 19 detection order: a '.' means dothex and a '-' means words wherever they
    # are, so an F58 'f' prefix is only considered after them.
    if b"." in s:
        return _decode_dothex(s)
    if b"-" in s:
        return _decode_words(s)
    for prefix in (_F58_PREFIX.encode(), _F58_PLAIN_PREFIX.encode()):
        if s.startswith(prefix):
            return _decode_f58(s[len(prefix) :])
    if 4 <= len(s) <= 28 and len(s) % 4 == 0 and s.startswith(b"\xf0\x9f"):
        return _decode_emoji(s)  # 1 to 7 four-byte emoji, all starting F0 9F
    return _decode_integer(s)


def _decode_integer(s: bytes) -> int:
    """strtoull() in base 16 after "0x", else base 10; trailing whitespace is allowed."""
    body = s.rstrip(_SPACE)
    if body.startswith(b"0x"):
        digits, allowed, base = body[2:], _HEX_DIGITS, 16
    else:
        digits, allowed, base = body.removeprefix(b"+"), _DIGITS, 10
    # Check the bytes ourselves: int() would also take '_', non-ASCII digits, spaces.
    if not digits or not allowed.issuperset(digits):
        raise _Refused("it is not a decimal or 0x-prefixed hexadecimal number")
    number = int(digits, base)
    if number >= _LIMIT:
        raise _Refused("it does not fit in 64 bits")
    return number


def _decode_dothex(s: bytes) -> int:
    """sscanf(s, "%4x.%4x.%4x.%4x%n") as glibc does it, then nothing may follow."""
    groups: list[int] = []
    pos = 0
    for index in range(4):
        if index:
            if s[pos : pos + 1] != b".":
                raise _Refused("dothex needs four '.'-separated groups of up to 4 hex digits")
            pos += 1
        group, pos = _scan_hex4(s, pos)
        groups.append(group)
    if pos != len(s):
        raise _Refused("unexpected characters after the dothex groups")
    return groups[0] << 48 | groups[1] << 32 | groups[2] << 16 | groups[3]


def _scan_hex4(s: bytes, pos: int) -> tuple[int, int]:
    """glibc's "%4x": skip whitespace, then at most 4 bytes of [sign][0x]hexdigits.

    The sign and the "0x" count towards the 4, and the '0' of "0x" is a digit, so
    "0x" alone reads as 0.  Returns the group's value and the position after it.
    """
    while pos < len(s) and s[pos] in _SPACE:
        pos += 1
    width = 4
    negative = False
    if pos < len(s) and s[pos] in b"+-":
        negative = s[pos] == ord("-")
        pos += 1
        width -= 1
    digits = bytearray()
    if width and s[pos : pos + 1] == b"0":
        digits += b"0"
        pos += 1
        width -= 1
        if width and s[pos : pos + 1] in (b"x", b"X"):
            pos += 1
            width -= 1
    while width and pos < len(s) and s[pos] in _HEX_DIGITS:
        digits.append(s[pos])
        pos += 1
        width -= 1
    if not digits:
        raise _Refused("dothex needs four '.'-separated groups of up to 4 hex digits")
    group = int(digits, 16)
    if negative and group:
        raise _Refused("a dothex group cannot be negative")
    return group, pos


def _decode_words(s: bytes) -> int:
    """mnemonicode: six known words, separated by any non-letters, case-insensitive."""
    values: list[int] = []
    for run in _LETTER_RUN.findall(s):
        word = run[: _MN_WORD_BUFLEN - 1].lower().decode("ascii")
        if word in _REMAINDER_WORDS:
            raise _Refused(f"{word!r} only ends a 24-bit mnemonic, never a 64-bit job ID")
        if word not in _WORD_VALUE:
            raise _Refused(f"{word!r} is not a mnemonicode word")
        values.append(_WORD_VALUE[word])
    if len(values) != 6:
        raise _Refused(f"a mnemonic job ID has 6 words, not {len(values)}")
    # Each three words hold 32 bits, least significant word first; the low half
    # comes first because mn_encode() reads the uint64's little-endian bytes.
    number = 0
    for shift, (w0, w1, w2) in ((0, values[:3]), (32, values[3:])):
        half = w0 + w1 * _MN_BASE + w2 * _MN_BASE**2
        if half >= 2**32:  # mn_decode_word_index()'s MN_EENCODING check
            raise _Refused("these mnemonic words do not encode a 32-bit value")
        number |= half << shift
    return number


def _decode_f58(digits: bytes) -> int:
    """Base58 digits after the F58 prefix: 1 to 12 bytes, all in the alphabet."""
    if not digits:
        raise _Refused("no base58 digits follow the F58 prefix")
    if len(digits) > _MAX_B58_LEN:
        raise _Refused(f"more than {_MAX_B58_LEN} F58 digits")
    number = 0
    for byte in digits:
        if byte not in _B58_VALUE:
            bad = next(
                char
                for char in digits.decode("utf-8", "surrogateescape")
                if char not in _B58_ALPHABET
            )
            raise _Refused(f"F58 digit {bad!r} is not in the base58 alphabet")
        number = number * 58 + _B58_VALUE[byte]
    if number >= _LIMIT:
        raise _Refused("it does not fit in 64 bits")
    return number


def _decode_emoji(s: bytes) -> int:
    """Base 576, one 4-byte emoji from the RFC 19 table per digit."""
    number = 0
    for pos in range(0, len(s), 4):
        chunk = s[pos : pos + 4]
        if chunk not in _EMOJI_VALUE:
            bad = chunk.decode("utf-8", "surrogateescape")
            raise _Refused(f"{bad!r} is not one of the RFC 19 emoji")
        number = number * _EMOJI_BASE + _EMOJI_VALUE[chunk]
    if number >= _LIMIT:
        raise _Refused("it does not fit in 64 bits")
    return number


# --- encoding -------------------------------------------------------------------------


def _encode_dothex(n: int) -> str:
    return f"{n >> 48:04x}.{n >> 32 & 0xFFFF:04x}.{n >> 16 & 0xFFFF:04x}.{n & 0xFFFF:04x}"


def _encode_words(n: int) -> str:
    """mn_encode() with format "x-x-x--", over the little-endian bytes of the uint64."""
    halves: list[str] = []
    for half in (n & 0xFFFFFFFF, n >> 32):
        words = (half % _MN_BASE, half // _MN_BASE % _MN_BASE, half // _MN_BASE**2)
        halves.append("-".join(MNEMONIC_WORDS[w] for w in words))
    return "--".join(halves)


def _encode_base(n: int, digits: str | tuple[str, ...]) -> str:
    """Most significant digit first; zero is the single digit ``digits[0]``."""
    base = len(digits)
    out = [digits[n % base]]
    while n >= base:
        n //= base
        out.append(digits[n % base])
    return "".join(reversed(out))
