"""Fast matching of many alternative regexes at once (the lexicons of rules.py and temporal.py).

Python's ``re`` tries the branches of an alternation one after another at every position, so a
250-branch lexicon costs milliseconds per report. ``PhraseSet`` computes, for each branch, the set
of characters it can start with (from the parsed pattern) and groups the branches under a
one-character look-ahead, so at each position only the few branches that can start with the
character there are tried. Priority between branches (earlier wins at the same position) is kept.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Iterator, Sequence

try:  # Python >= 3.11
    from re import _constants as _sre_constants  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

_ALPHABET = set(string.ascii_lowercase + string.digits + " -/'.,;:()&+<>_")
_ANY = frozenset(chr(c) for c in range(32, 127))


def _first_chars(items, alphabet=_ANY) -> tuple[frozenset[str], bool]:
    """(characters a parsed (sub)pattern can start with, whether it can match the empty string)."""
    c = _sre_constants
    firsts: set[str] = set()
    for op, av in items:
        if op is c.LITERAL:
            firsts.add(chr(av))
            return frozenset(firsts), False
        if op is c.NOT_LITERAL:
            firsts |= alphabet - {chr(av)}
            return frozenset(firsts), False
        if op is c.ANY:
            return alphabet, False
        if op is c.IN:
            chars: set[str] = set()
            negate = False
            for kind, val in av:
                if kind is c.NEGATE:
                    negate = True
                elif kind is c.LITERAL:
                    chars.add(chr(val))
                elif kind is c.RANGE:
                    chars |= {chr(x) for x in range(val[0], val[1] + 1)}
                elif kind is c.CATEGORY:
                    chars |= _category_chars(val, alphabet)
                else:  # unknown member: be safe
                    chars |= alphabet
            firsts |= (alphabet - chars) if negate else chars
            return frozenset(firsts), False
        if op is c.AT or op in (c.ASSERT, c.ASSERT_NOT):
            continue  # zero-width: look at what follows
        if op is c.BRANCH:
            nullable = False
            for branch in av[1]:
                f, n = _first_chars(branch, alphabet)
                firsts |= f
                nullable |= n
            if not nullable:
                return frozenset(firsts), False
            continue
        if op is c.SUBPATTERN:
            f, n = _first_chars(av[-1], alphabet)
            firsts |= f
            if not n:
                return frozenset(firsts), False
            continue
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
            lo, _hi, sub = av
            f, n = _first_chars(sub, alphabet)
            firsts |= f
            if lo > 0 and not n:
                return frozenset(firsts), False
            continue
        if op is getattr(c, "ATOMIC_GROUP", None):
            f, n = _first_chars(av, alphabet)
            firsts |= f
            if not n:
                return frozenset(firsts), False
            continue
        return alphabet, True  # anything else (GROUPREF, ...): no dispatch possible
    return frozenset(firsts), True


def _category_chars(cat, alphabet) -> set[str]:
    c = _sre_constants
    if cat is c.CATEGORY_DIGIT:
        return set(string.digits)
    if cat is c.CATEGORY_SPACE:
        return set(" \t\n\r\f\v")
    if cat is c.CATEGORY_WORD:
        return set(string.ascii_letters + string.digits + "_")
    return set(alphabet)


def first_chars(pattern: str) -> frozenset[str] | None:
    """Characters ``pattern`` can start with, or None when it may match empty / cannot be analysed."""
    try:
        parsed = _sre_parse.parse(pattern)
    except re.error:
        raise
    chars, nullable = _first_chars(list(parsed))
    if nullable:
        return None
    return chars


@dataclass(frozen=True)
class Branch:
    pattern: str  # regex source, no capturing groups
    key: object  # returned with each match


class PhraseSet:
    """Many regex branches matched as one leftmost-first alternation, with first-character dispatch.

    ``finditer(text)`` yields ``(start, end, key)`` for non-overlapping matches, scanning left to
    right; at one position the earliest branch in ``branches`` that matches wins (as in ``a|b|c``).
    """

    def __init__(self, branches: Sequence[Branch], prefix: str = "", suffix: str = "", flags: int = 0):
        self.branches = list(branches)
        buckets: dict[str, list[int]] = {}
        anywhere: list[int] = []
        for i, b in enumerate(self.branches):
            compiled = re.compile(b.pattern, flags)
            if compiled.groups:
                raise ValueError(f"lexicon pattern must not contain capturing groups: {b.pattern!r}")
            chars = first_chars(b.pattern)
            if chars is None or len(chars) > 40:
                anywhere.append(i)
            else:
                for ch in chars:
                    buckets.setdefault(ch, []).append(i)
        # Branches that can start anywhere are tried in every bucket, keeping the global order.
        parts = []
        self._group_key: dict[str, object] = {}
        counter = 0

        def alt(indices: list[int]) -> str:
            nonlocal counter
            out = []
            for i in sorted(indices):
                name = f"g{counter}"
                counter += 1
                self._group_key[name] = self.branches[i].key
                out.append(f"(?P<{name}>{self.branches[i].pattern})")
            return "|".join(out)

        for ch in sorted(buckets):
            indices = buckets[ch] + anywhere
            parts.append(f"(?={re.escape(ch)})(?:{alt(indices)})")
        if anywhere:
            parts.append(f"(?:{alt(anywhere)})")
        body = "|".join(parts) if parts else "(?!x)x"
        self.regex = re.compile(f"{prefix}(?:{body}){suffix}", flags)

    def finditer(self, text: str) -> Iterator[tuple[int, int, object]]:
        keys = self._group_key
        for m in self.regex.finditer(text):
            yield m.start(), m.end(), keys[m.lastgroup]
