"""The one title normaliser: search in the app and duplicate merging in training both use it.

Korean-aware: NFKC folds full-width forms and compatibility jamo, case is folded, and punctuation
collapses to single spaces. Two forms of a title:

* :func:`normalize_title` (search) drops every bracket, so ``봄날 (Live)``, ``봄날 (feat. X)`` and
  ``봄날`` all read ``봄날``: a title query finds the song and all its versions.
* :func:`title_key` (duplicate merging) keeps what makes another recording. A bracket (or a `` - ``
  suffix) that names a version or performance (Live, Remix/Mix, Acoustic, Piano, Inst./MR, Demo, Edit,
  "... Ver." with its language or style, and their Korean spellings) stays in the key as sorted
  canonical words (``(Live Ver.)`` = ``(라이브)`` = ``live``; ``(English Ver.)`` = ``(영어 버전)``
  = ``english``). Feature credits and release decorations (``feat. X``, ``with X``, ``From "OST"``,
  ``Remastered``, ``Prod. X``, ``Bonus Track``) are dropped, as in search.

Hangul syllables can also be reduced to their initial consonants (``비퐁주`` -> ``ㅂㅍㅈ``) for
initials search.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

# Brackets whose content is decoration, not the title: features, versions, remasters, OST notes.
_BRACKETS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\}|<[^<>]*>|（[^（）]*）|【[^【】]*】")
_FEAT = re.compile(r"\s(?:feat\.?|ft\.|featuring)\s.*$", re.IGNORECASE)
# A " - Live" / " - 2011 Remaster" suffix is a bracket in another spelling.
_DASH_SUFFIX = re.compile(r"\s[-\u2010-\u2015]\s(.+)$")
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


def _brackets(text: str) -> tuple[str, list[str]]:
    """The title with every bracket (nested too) replaced by a space, and the brackets' contents."""
    contents: list[str] = []

    def keep(m: re.Match[str]) -> str:
        contents.append(m.group(0)[1:-1])
        return " "

    for _ in range(3):  # nested brackets, innermost first
        text = _BRACKETS.sub(keep, text)
    return text, contents


def normalize_title(title: str) -> str:
    """Canonical form of a title for search: every bracket, feature credit and version suffix dropped.

    >>> normalize_title("Love Poem (feat. IU) [Remastered]")
    'love poem'
    >>> normalize_title("ＬＯＶＥ　ｐｏｅｍ")
    'love poem'
    >>> normalize_title("봄날 (Live)")
    '봄날'
    """
    return title_key(title)[0]


# -- the merge key: versions stay apart ---------------------------------------------------------------

# Words that make a bracket a version/performance marker, with their canonical spelling. Korean forms
# map to the English ones so that "(라이브)" and "(Live)" are one marker.
_MARKERS: dict[str, str] = {
    "live": "live", "라이브": "live", "concert": "live", "콘서트": "live", "unplugged": "acoustic",
    "언플러그드": "acoustic", "acoustic": "acoustic", "어쿠스틱": "acoustic", "remix": "remix", "rmx": "remix",
    "리믹스": "remix", "mix": "mix", "믹스": "mix", "piano": "piano", "피아노": "piano", "inst": "inst",
    "instrumental": "inst", "인스트루멘탈": "inst", "연주곡": "inst", "연주": "inst", "반주": "inst", "mr": "inst",
    "karaoke": "inst", "demo": "demo", "데모": "demo", "edit": "edit", "에디트": "edit", "cover": "cover",
    "커버": "cover", "reprise": "reprise", "리프라이즈": "reprise", "acapella": "acappella", "acappella": "acappella",
    "아카펠라": "acappella", "orchestra": "orchestra", "오케스트라": "orchestra", "english": "english",
    "영어": "english", "eng": "english", "japanese": "japanese", "일본어": "japanese", "jpn": "japanese",
    "jp": "japanese", "korean": "korean", "한국어": "korean", "kor": "korean", "chinese": "chinese",
    "중국어": "chinese", "中文": "chinese", "日本語": "japanese", "chn": "chinese", "mandarin": "chinese",
    "spanish": "spanish", "스페인어": "spanish",
    "extended": "extended", "dub": "dub", "sped": "sped", "slowed": "slowed", "nightcore": "nightcore",
    "ver": "", "version": "", "버전": "", "버젼": "", "vers": "",
}
# Words after which a bracket is a credit, not a version ("(feat. X)", "(With X)", "(Prod. X)").
_CREDIT = re.compile(r"(?:^|\s)(?:feat|ft|featuring|with|prod|produced|from|duet with|by)(?:\s|$).*$")
# Words that never separate two recordings: release decorations.
_DECORATION = frozenset({"remaster", "remastered", "remastering", "리마스터", "리마스터링", "bonus", "track",
                         "보너스", "트랙", "ost", "single", "album", "title", "타이틀", "explicit", "clean",
                         "19금", "radio", "the", "a", "of", "original", "mono", "stereo", "hidden",
                         "히든"})
# Korean spells "버전" onto the word before it ("영어버전"): split it off before reading the words.
_VER_SUFFIX = re.compile(r"(\w)(버전|버젼|ver)(?=\s|$)")


@functools.lru_cache(maxsize=1 << 14)
def _version_words(content: str) -> tuple[str, ...]:
    """Canonical marker words of one bracket's content; empty when the bracket is decoration.

    Cached: bracket contents repeat far more than titles do ("Live", "Inst.", "feat. X", "English Ver.").
    """
    words = fold(_CREDIT.sub(" ", fold(content)))
    if not words:
        return ()
    tokens = _VER_SUFFIX.sub(r"\1 \2", words).split()
    if not any(t in _MARKERS for t in tokens):
        return ()
    # A "Remastered Ver." bracket is a decoration, its "Ver." notwithstanding.
    if all(t in _DECORATION or _MARKERS.get(t) == "" or t.isdigit() for t in tokens):
        return ()
    out = {_MARKERS.get(t, t) for t in tokens if t not in _DECORATION}
    out.discard("")
    return tuple(sorted(out))


@functools.lru_cache(maxsize=1 << 16)
def title_key(title: str) -> tuple[str, tuple[str, ...]]:
    """``(base, markers)``: the search form of the title and the version markers it carries.

    Two songs (of one artist set) can be one recording only when both parts are equal: ``base`` is
    the title without brackets, feature credits and a `` - Live`` / `` - Remastered`` suffix (what
    :func:`normalize_title` returns; a title that is only a bracket, ``(Intro)``, keeps its content);
    ``markers`` are the sorted canonical words of every bracket or `` - `` suffix that names a version.
    Cached: real catalogs repeat titles.

    >>> title_key("봄날 (Live Ver.) (feat. X)")
    ('봄날', ('live',))
    >>> title_key("Love Poem [Remastered]")
    ('love poem', ())
    >>> title_key("너의 의미 (영어버전)") == title_key("너의 의미 (English Ver.)")
    True
    """
    text = unicodedata.normalize("NFKC", title or "")
    if not any(c in text for c in "([{<（【-‐‑‒–—―"):
        return fold(_FEAT.sub(" ", text)) or fold(text), ()  # the common case: no bracket, no suffix
    body, contents = _brackets(text)
    dash = _DASH_SUFFIX.search(body)
    if dash and fold(body[: dash.start()]):
        # " - Live" is a marker and " - 2011 Remaster" a decoration; " - Part 2" stays part of the title.
        suffix = fold(dash.group(1))
        if _version_words(suffix) or all(t in _DECORATION or t.isdigit() for t in suffix.split()):
            contents.append(suffix)
            body = body[: dash.start()]
    markers: set[str] = set()
    for content in contents:
        markers.update(_version_words(content))
    base = fold(_FEAT.sub(" ", body)) or fold(text)
    return base, tuple(sorted(markers))


def merge_title(title: str) -> str:
    """The title part of the duplicate-merging key, as one string: ``base`` plus ``[markers]``.

    >>> merge_title("밤편지 (라이브)")
    '밤편지 [live]'
    """
    base, markers = title_key(title)
    return f"{base} [{' '.join(markers)}]" if markers else base


@functools.lru_cache(maxsize=1 << 18)
def _fold_cached(text: str) -> str:
    # Artist names repeat across thousands of songs; folding each distinct name once is enough. Room for
    # a real catalog's names (89k distinct in the real-size benchmark, more than 1 << 16: an LRU smaller
    # than the working set misses nearly every time).
    return fold(text)


def normalize_artists(artists: Iterable[str]) -> tuple[str, ...]:
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
