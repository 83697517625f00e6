"""Fast matching of many alternative regexes at once (the lexicons of rules.py).

Python's ``re`` tries the branches of an alternation one after another at every position, so one
300-branch alternation costs milliseconds per report. ``WordScanner`` instead computes, from each
parsed branch, the strings of up to five characters it can start with, and at each word start of
the text looks the candidate branches up in a dict keyed by the next five characters: only the few
branches that can match there are tried (about 10x faster on real reports, same matches).

The first characters come from CPython's own regex parser (``re._parser``, private). Where it is not
available, or has changed shape, every branch is tried at every word start, in order: the semantics of a
plain ``re`` alternation, slower but with the same matches.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Sequence

try:  # Python >= 3.11
    from re import _constants as _sre_constants  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10, or a Python without the private modules
    try:
        import sre_constants as _sre_constants  # type: ignore[no-redef]
        import sre_parse as _sre_parse  # type: ignore[no-redef]
    except ImportError:
        _sre_constants = _sre_parse = None  # no dispatch: plain alternation (module doc)


def _category_chars(cat, alphabet) -> set[str]:
    c = _sre_constants
    if cat is c.CATEGORY_DIGIT:
        return set(string.digits)
    if cat is c.CATEGORY_SPACE:
        return set(" \t\n\r\f\v")
    if cat is c.CATEGORY_WORD:
        return set(string.ascii_letters + string.digits + "_")
    return set(alphabet)


@dataclass(frozen=True)
class Branch:
    pattern: str  # regex source, no capturing groups
    key: object  # returned with each match


# ---------------------------------------------------------------------------------------------------
# Word-start dispatch on the first K characters (the fast path of the lexicon scanners)

_PRINTABLE = frozenset(chr(c) for c in range(32, 127)) | frozenset("\t\n\r\x0b\x0c")


def _char_set(av) -> frozenset[str]:
    """Characters of a parsed character class (an IN node)."""
    c = _sre_constants
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
            chars |= _category_chars(val, _PRINTABLE)
        else:
            return _PRINTABLE
    return frozenset(_PRINTABLE - chars) if negate else frozenset(chars)


class _TooBig(Exception):
    pass


def _extend(prefixes: set[str], continuations, n: int, cap: int) -> set[str]:
    """Each prefix shorter than n followed by each string ``continuations(characters still missing)``
    gives; prefixes of n characters stay as they are."""
    out: set[str] = set()
    for p in prefixes:
        if len(p) >= n:
            out.add(p)
            continue
        out.update(p + q for q in continuations(n - len(p)))
        if len(out) > cap:
            raise _TooBig
    return out


def _expand_seq(items, n: int, cap: int) -> set[str]:
    """Possible first-n-character strings of a parsed sequence; a string shorter than n means the
    sequence can end there. Assertions (\\b, look-arounds) are ignored, so the set may be too large
    (safe: candidates are verified by the real regex) but never too small."""
    results = {""}
    for item in items:
        results = _extend(results, lambda m, item=item: _expand_item(item, m, cap), n, cap)
    return results


def _expand_item(item, n: int, cap: int) -> set[str]:
    c = _sre_constants
    op, av = item
    if op is c.LITERAL:
        return {chr(av)}
    if op is c.NOT_LITERAL:
        return set(_PRINTABLE - {chr(av)})
    if op is c.ANY:
        return set(_PRINTABLE)
    if op is c.IN:
        return set(_char_set(av))
    if op is c.AT or op in (c.ASSERT, c.ASSERT_NOT):
        return {""}
    if op is c.BRANCH:
        out: set[str] = set()
        for branch in av[1]:
            out |= _expand_seq(branch, n, cap)
            if len(out) > cap:
                raise _TooBig
        return out
    if op is c.SUBPATTERN:
        return _expand_seq(av[-1], n, cap)
    if op is getattr(c, "ATOMIC_GROUP", None):
        return _expand_seq(av, n, cap)
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
        lo, hi, sub = av
        upper = min(hi, lo + n + 1)
        out = set()
        cur = {""}
        for r in range(upper + 1):
            if r >= lo:
                out |= cur
            if r == upper or all(len(p) >= n for p in cur):
                if r < lo:
                    out |= cur  # all complete: the rest cannot change the first n characters
                break
            cur = _extend(cur, lambda m: _expand_seq(sub, m, cap), n, cap)
        return out
    raise _TooBig  # back-references and other rare nodes: no dispatch


def _dispatch_prefixes(pattern: str, flags: int, depth: int, cap: int) -> set[str] | None:
    """The strings of up to ``depth`` characters a match of ``pattern`` can start with, or None when there is
    no safe dispatch (the branch is then tried at every word start)."""
    if _sre_parse is None:
        return None
    try:
        parsed = _sre_parse.parse(pattern, flags)
        if _first_is_open(parsed):
            return None
        for k in range(depth, 0, -1):
            try:
                return _expand_seq(list(parsed), k, cap)
            except _TooBig:
                continue
    except (AttributeError, TypeError, ValueError):  # a private parser of another shape: no dispatch
        return None
    return None


def _first_is_open(parsed) -> bool:
    """Whether the pattern can match the empty string or start with (almost) any character, e.g. a
    negated class: no safe dispatch on its first characters."""
    try:
        firsts = _expand_seq(list(parsed), 1, 10_000)
    except _TooBig:
        return True
    return "" in firsts or len(firsts) > 60


class WordScanner:
    """Matching of many branches, tried only at word starts, dispatched on the first ``depth``
    characters there (a dict lookup instead of trying every branch).

    Scanning left to right, at each word start the branches that can start there are tried; with
    ``longest=False`` the first one (in ``branches`` order) that matches wins, as in ``a|b|c``; with
    ``longest=True`` the longest match wins and ties go to the earlier branch (leftmost-longest,
    so "port-a-cath" beats "port"). The scan resumes after the match. All branches must begin with
    a word character (lexicon entries are wrapped in ``\\b``).
    """

    _WORD_START = re.compile(r"\b(?=\w)")

    def __init__(self, branches: Sequence[Branch], depth: int = 5, cap: int = 4000, flags: int = 0,
                 longest: bool = False):
        self.branches = list(branches)
        self.longest = longest
        self.depth = depth
        self._compiled = [re.compile(b.pattern, flags) for b in self.branches]
        for b, rx in zip(self.branches, self._compiled):
            if rx.groups:
                raise ValueError(f"lexicon pattern must not contain capturing groups: {b.pattern!r}")
        # tables[k][prefix of length k] -> branch indices whose match can start with that prefix
        self._tables: list[dict[str, list[int]]] = [dict() for _ in range(depth + 1)]
        self._always: list[int] = []
        for i, b in enumerate(self.branches):
            prefixes = _dispatch_prefixes(b.pattern, flags, depth, cap)
            if prefixes is None:
                self._always.append(i)
                continue
            for p in prefixes:
                if p and not (p[0].isalnum() or p[0] == "_"):
                    raise ValueError(f"lexicon pattern must start with a word character: {b.pattern!r}")
                if p:
                    self._tables[len(p)].setdefault(p, []).append(i)
                else:  # may match the empty string here: try everywhere
                    self._always.append(i)
        self._cache: dict[str, tuple] = {}

    def _candidates(self, key: str) -> tuple:
        found = list(self._always)
        for k in range(1, min(len(key), self.depth) + 1):
            found.extend(self._tables[k].get(key[:k], ()))
        found = sorted(set(found))
        cand = tuple((self._compiled[i].match, self.branches[i].key) for i in found)
        if len(self._cache) < 200_000:
            self._cache[key] = cand
        return cand

    def word_starts(self, text: str) -> list[int]:
        """Positions where a word starts (share them between scanners of the same text)."""
        return [m.start() for m in self._WORD_START.finditer(text)]

    def scan(self, text: str, starts: list[int] | None = None) -> list[tuple[int, int, object]]:
        """``(start, end, key)`` of every match, in text order (see the class doc)."""
        if starts is None:
            starts = self.word_starts(text)
        depth = self.depth
        cache = self._cache
        candidates = self._candidates
        longest = self.longest
        out = []
        last_end = 0
        for pos in starts:
            if pos < last_end:
                continue
            key = text[pos: pos + depth]
            cand = cache.get(key)
            if cand is None:
                cand = candidates(key)
            if not cand:
                continue
            if longest:
                best_end, best_value = -1, None
                for match, value in cand:
                    m = match(text, pos)
                    if m is not None and m.end() > best_end:
                        best_end, best_value = m.end(), value
                if best_end >= 0:
                    out.append((pos, best_end, best_value))
                    last_end = best_end if best_end > pos else pos + 1
                continue
            for match, value in cand:
                m = match(text, pos)
                if m is not None:
                    end = m.end()
                    out.append((pos, end, value))
                    last_end = end if end > pos else pos + 1
                    break
        return out

    def scan_all(self, text: str, starts: list[int] | None = None) -> list[tuple[int, int, object]]:
        """``(start, end, key)`` of every branch matching at every word start, overlaps included
        (nothing is consumed), in text order."""
        if starts is None:
            starts = self.word_starts(text)
        depth = self.depth
        out = []
        for pos in starts:
            key = text[pos: pos + depth]
            cand = self._cache.get(key)
            if cand is None:
                cand = self._candidates(key)
            for match, value in cand:
                m = match(text, pos)
                if m is not None:
                    out.append((pos, m.end(), value))
        return out
