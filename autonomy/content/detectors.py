"""Detectors: each finds spans of one kind in a text, offline and without downloads.

Candidates come from a regular expression; where a checksum or a numbering plan exists it
decides (Luhn for cards, ISO 7064 for IBANs, ``python-stdnum`` for national ids, Google's
libphonenumber for phone numbers), so a random run of digits is not a card. Secrets are
shapes with no checksum (AWS keys, bearer and JWT-like tokens, private key blocks,
``password=...`` assignments). Terms are whole words, case-insensitive.
"""

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import getaddresses

import phonenumbers
from stdnum import iban, luhn
from stdnum.de import idnr
from stdnum.es import dni
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

from autonomy.models import Detector


@dataclass(frozen=True)
class Span:
    """What a detector found: where, and what kind (a card number, a term)."""

    start: int
    end: int
    label: str


class Text:
    """One text leaf being scanned, with what several detectors share computed once: its
    runs of digits (where cards, phones, IBAN digits and most national ids must be) and its
    lower-case form (for cheap literal pre-checks before any regular expression runs)."""

    def __init__(self, value: str):
        self.value = value

    @functools.cached_property
    def runs(self) -> list[tuple[int, str, int]]:
        """(offset, run, how many digits it holds) for each run of digits."""
        found, value = [], self.value
        for m in DIGIT_RUN.finditer(value):
            start, run = m.start(), m.group()
            if start and value[start - 1] in "+(":  # a country code's plus, an area code's (
                start, run = start - 1, value[start - 1] + run
            found.append((start, run, len(run) - len(run.translate(NOT_DIGITS))))
        return found

    @functools.cached_property
    def lower(self) -> str:
        return self.value.lower()


# Digits with the separators people type between them; every numeric detector looks only
# inside these (scanning 5 KB once instead of once per detector).
# A pattern that starts with a plain character class lets the regex engine skip ahead fast
# (an optional "+" or "(" in front made it six times slower); those are added back by hand.
DIGIT_RUN = re.compile(r"[0-9][0-9 ().-]{4,}[0-9]")
NOT_DIGITS = str.maketrans("", "", "0123456789")
EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}$")
CARD = re.compile(r"(?<![0-9])[0-9](?:[ .-]?[0-9]){12,18}(?![0-9])")
PHONE_DIGITS = (7, 15)
IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}")
IBAN_LEAD, IBAN_TAIL = 16, 12
NATIONAL_IDS = {
    "us.ssn": (re.compile(r"(?<![0-9-])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9-])"), ssn.is_valid),
    "de.idnr": (
        re.compile(r"(?<![0-9])[0-9]{2} ?[0-9]{3} ?[0-9]{3} ?[0-9]{3}(?![0-9])"),
        idnr.is_valid,
    ),
    "fr.nir": (
        re.compile(
            r"(?<![0-9])[12] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}(?![0-9])"
        ),  # noqa: E501
        nir.is_valid,
    ),
    "es.dni": (re.compile(r"(?<![0-9])[0-9]{8}-?[A-Z](?![A-Za-z0-9])"), dni.is_valid),
    "nl.bsn": (re.compile(r"(?<![0-9])[0-9]{9}(?![0-9])"), bsn.is_valid),
    "it.codicefiscale": (
        re.compile(r"[A-Z]{6}[0-9]{2}[A-Z][0-9]{2}[A-Z][0-9]{3}[A-Z]"),
        codicefiscale.is_valid,
    ),
}
# Schemes whose numbers are mostly digits, with how many: looked for inside (or, for a
# trailing letter, just after) digit runs only.
NUMERIC_IDS = {"us.ssn": 9, "de.idnr": 11, "fr.nir": 13, "nl.bsn": 9, "es.dni": 8}
# What a rule without ``schemes`` looks for. The Italian codice fiscale is mostly letters,
# so finding it scans the whole text: ask for it by name (``{"schemes": [...]}``).
DEFAULT_SCHEMES = ("us.ssn", "de.idnr", "fr.nir", "nl.bsn", "es.dni")
# (label, literal pre-check on the lower-case text, pattern)
SECRETS = (
    ("aws access key", ("akia", "asia"), re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])")),
    (
        "private key",
        ("-----begin",),
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    ),
    ("jwt", ("eyj",), re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("bearer token", ("bearer ",), re.compile(r"[Bb]earer [A-Za-z0-9\-._~+/]{16,}=*")),
    ("github token", ("gh",), re.compile(r"gh[pousr]_[A-Za-z0-9]{36,}")),
    ("slack token", ("xox",), re.compile(r"xox[abprs]-[A-Za-z0-9-]{10,}")),
    (
        "assigned secret",
        ("secret", "password", "passwd", "token", "api_key", "api-key", "apikey"),
        re.compile(
            r"(?i)(?:aws_secret_access_key|api[_-]?key|secret|password|passwd|token)"
            r"\s*[:=]\s*['\"]?[^\s'\"]{8,}"
        ),
    ),
)


def _in_runs(text: Text, pattern: re.Pattern, min_digits: int, tail: int = 0):
    """Matches of ``pattern`` inside the digit runs holding ``min_digits`` or more (and the
    ``tail`` characters after each)."""
    for offset, run, count in text.runs:
        if count < min_digits:
            continue
        if tail:
            run = text.value[offset : offset + len(run) + tail]
        for m in pattern.finditer(run):
            yield offset + m.start(), offset + m.end(), m.group()


def _emails(text: Text, options: dict) -> Iterable[Span]:
    value = text.value
    if "@" not in value:
        return
    for m in EMAIL_DOMAIN.finditer(value):
        local = EMAIL_LOCAL.search(value, max(0, m.start() - 64), m.start())
        if local is not None:
            yield Span(local.start(), m.end(), "e-mail address")


def _phones(text: Text, options: dict) -> Iterable[Span]:
    region = (options.get("region") or "US").upper()
    low, high = PHONE_DIGITS
    valid: dict[str, bool] = {}  # a number repeated in one text is parsed once
    for offset, run, digits in text.runs:
        if digits < low:
            continue
        if digits <= high:
            if run not in valid:
                valid[run] = _valid_phone(run, region)
            if valid[run]:
                yield Span(offset, offset + len(run), "phone number")
            continue
        # a run joining several numbers: libphonenumber's own matcher, on the run only
        matcher = phonenumbers.PhoneNumberMatcher(run, region, leniency=phonenumbers.Leniency.VALID)
        for found in matcher:
            yield Span(offset + found.start, offset + found.end, "phone number")


def _valid_phone(candidate: str, region: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(candidate, region))
    except phonenumbers.NumberParseException:
        return False


def _cards(text: Text, options: dict) -> Iterable[Span]:
    for start, end, found in _in_runs(text, CARD, 13):
        digits = re.sub(r"[^0-9]", "", found)
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            yield Span(start, end, "card number")


def _word_edges(value: str, start: int, end: int) -> bool:
    before = value[start - 1] if start else " "
    after = value[end] if end < len(value) else " "
    return not (before.isalnum() or after.isalnum())


def _ibans(text: Text, options: dict) -> Iterable[Span]:
    """An IBAN holds a run of at least four digits, at most ``IBAN_LEAD`` characters after
    its start (country, check digits, a bank code of letters): look only around those."""
    value, seen = text.value, set()
    for offset, run, digits in text.runs:
        if digits < 4:
            continue
        start = max(0, offset - IBAN_LEAD)
        for m in IBAN.finditer(value, start, offset + len(run) + IBAN_TAIL):
            if m.start() in seen:
                continue
            seen.add(m.start())
            if _word_edges(value, m.start(), m.end()) and iban.is_valid(m.group()):
                yield Span(m.start(), m.end(), "IBAN")


def _national_ids(text: Text, options: dict) -> Iterable[Span]:
    schemes = options.get("schemes") or DEFAULT_SCHEMES
    for scheme in schemes:
        pattern, is_valid = NATIONAL_IDS[scheme]
        if scheme in NUMERIC_IDS:
            found = _in_runs(text, pattern, NUMERIC_IDS[scheme], tail=2)
        elif text.runs:
            found = ((m.start(), m.end(), m.group()) for m in pattern.finditer(text.value))
        else:
            continue
        for start, end, candidate in found:
            if _word_edges(text.value, start, end) and is_valid(candidate):
                yield Span(start, end, f"national id ({scheme})")


def _secrets(text: Text, options: dict) -> Iterable[Span]:
    for label, hints, pattern in SECRETS:
        if any(hint in text.lower for hint in hints):
            for m in pattern.finditer(text.value):
                yield Span(m.start(), m.end(), label)


def terms_pattern(terms: Iterable[str]) -> re.Pattern | None:
    """One case-insensitive whole-word alternation for a rule's terms (compiled once per
    rule set version)."""
    words = sorted({t.strip() for t in terms if t and t.strip()}, key=len, reverse=True)
    if not words:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)", re.I)


def _forbidden(text: Text, options: dict) -> Iterable[Span]:
    pattern = options.get("_pattern")
    if pattern is None or not any(term in text.lower for term in options["_lower_terms"]):
        return
    for m in pattern.finditer(text.value):
        yield Span(m.start(), m.end(), f"forbidden term {m.group().lower()!r}")


FINDERS: dict[str, Callable[[str, dict], Iterable[Span]]] = {
    Detector.EMAIL: _emails,
    Detector.PHONE: _phones,
    Detector.CARD: _cards,
    Detector.IBAN: _ibans,
    Detector.NATIONAL_ID: _national_ids,
    Detector.SECRET: _secrets,
    Detector.FORBIDDEN_TERMS: _forbidden,
}
# Detectors whose matches are sensitive in themselves: shown masked, never verbatim.
SENSITIVE = {
    Detector.EMAIL,
    Detector.PHONE,
    Detector.CARD,
    Detector.IBAN,
    Detector.NATIONAL_ID,
    Detector.SECRET,
}


def find(detector: str, text: Text, options: dict) -> list[Span]:
    """Spans of ``detector`` in ``text``, in order, overlapping ones merged away."""
    spans = sorted(FINDERS[detector](text, options), key=lambda s: (s.start, -s.end))
    kept: list[Span] = []
    for span in spans:
        if kept and span.start < kept[-1].end:
            continue
        kept.append(span)
    return kept


def missing_terms(texts: Iterable[str], terms: list[str]) -> list[str]:
    """The required terms none of ``texts`` contains, as whole words in any case."""
    joined = "\n".join(texts)
    lower = joined.lower()
    return [term for term in terms if not _has_word(joined, lower, term.lower())]


def _has_word(value: str, lower: str, term: str) -> bool:
    """Whether ``term`` (lower-case) is in ``value`` as a whole word, found with ``str.find``
    (a regular expression over the whole text cost more than every other check)."""
    at = lower.find(term)
    while at >= 0:
        if _word_edges(value, at, at + len(term)):
            return True
        at = lower.find(term, at + 1)
    return False


def recipients_outside(values: Iterable[str], domains: Iterable[str]) -> list[str]:
    """Addresses among ``values`` whose domain is not one of ``domains`` or below one."""
    allowed = [d.lower().lstrip("@.") for d in domains if d.strip()]
    outside = []
    for _, address in getaddresses(list(values)):
        domain = address.rpartition("@")[2].lower()
        if not domain or not any(domain == d or domain.endswith("." + d) for d in allowed):
            outside.append(address or "(no address)")
    return outside


def mask(detector: str, text: str) -> str:
    """How a match is shown in reasons and traces: a term as it is (it is the point), a
    secret by its kind only, personal data with its last characters at most."""
    if detector not in SENSITIVE:
        return text
    if detector == Detector.SECRET:
        return "[secret]"
    if detector == Detector.EMAIL:
        local, _, domain = text.partition("@")
        return f"{local[:1]}•••@{domain}"
    visible = 4 if len(text) > 10 else 0
    return "•" * max(len(text) - visible, 3) + (text[-visible:] if visible else "")
