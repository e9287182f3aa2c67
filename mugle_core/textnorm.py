"""The one title normaliser: duplicate merging in training and search in the app both use it.

Korean-aware: NFKC folds full-width forms and compatibility jamo, case is folded, bracketed
decorations such as ``(feat. X)``, ``[Inst.]`` or ``(From "OST")`` are dropped, and punctuation
collapses to single spaces. Hangul syllables can also be reduced to their initial consonants
(``비퐁주`` -> ``ㅂㅍㅈ``) for initials search.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Brackets whose content is decoration, not the title: features, versions, remasters, OST notes.
_BRACKETS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\}|<[^<>]*>|（[^（）]*）|【[^【】]*】")
_FEAT = re.compile(r"\s(?:feat\.?|ft\.|featuring)\s.*$", re.IGNORECASE)
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
_SPACES = re.compile(r"\s+")

# Instrumental / MR / ASMR markers the original system filtered out (matched on the raw title).
INSTRUMENTAL_RE = re.compile(r"instrumental|\binst\b\.?|\(mr\)|\bmr\b|asmr", re.IGNORECASE)

_CHOSEONG = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_JAMO_INITIALS = set(_CHOSEONG)


def fold(text: str) -> str:
    """NFKC + casefold + punctuation to single spaces; keeps bracket content."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    text = _NON_WORD.sub(" ", text).replace("_", " ")
    return _SPACES.sub(" ", text).strip()


def normalize_title(title: str) -> str:
    """Canonical form of a title for matching and duplicate merging.

    >>> normalize_title("Love Poem (feat. IU) [Remastered]")
    'love poem'
    >>> normalize_title("ＬＯＶＥ　ｐｏｅｍ")
    'love poem'
    """
    text = unicodedata.normalize("NFKC", title or "")
    stripped = text
    for _ in range(3):  # nested brackets
        stripped = _BRACKETS.sub(" ", stripped)
    stripped = _FEAT.sub(" ", stripped)
    folded = fold(stripped)
    # A title that is only a bracket ("(Intro)") keeps its content rather than vanishing.
    return folded or fold(text)


@functools.lru_cache(maxsize=1 << 16)
def _fold_cached(text: str) -> str:
    # Artist names repeat across thousands of songs; folding each distinct name once is enough.
    return fold(text)


def normalize_artists(artists: list[str]) -> tuple[str, ...]:
    """Order-insensitive artist key for duplicate merging."""
    folded = {_fold_cached(a) for a in artists}
    folded.discard("")
    return tuple(sorted(folded))


def is_instrumental(title: str) -> bool:
    return bool(INSTRUMENTAL_RE.search(unicodedata.normalize("NFKC", title or "")))


def hangul_initials(text: str) -> str:
    """Initial consonants of Hangul syllables; other characters are dropped, spaces removed.

    >>> hangul_initials("비 퐁 주")
    'ㅂㅍㅈ'
    """
    out = []
    for ch in unicodedata.normalize("NFC", text or ""):
        code = ord(ch)
        if _HANGUL_FIRST <= code <= _HANGUL_LAST:
            out.append(_CHOSEONG[(code - _HANGUL_FIRST) // 588])
        elif ch in _JAMO_INITIALS:
            out.append(ch)
    return "".join(out)


def is_initials_query(query: str) -> bool:
    """True when the query consists only of Hangul initial consonants (spaces allowed)."""
    # NFKC would turn compatibility jamo into conjoining jamo; look at the raw characters instead.
    chars = [c for c in query if not c.isspace()]
    return bool(chars) and all(c in _JAMO_INITIALS for c in chars)
