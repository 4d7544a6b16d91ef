"""Free text onto the grammar: the nearest sentence the intents can say, or nothing.

A free-running recognizer (Whisper, :mod:`carlinkd.voice.whisper`) hears words the grammar does
not have ("Please book an oil change for tomorrow."). :class:`GrammarMatcher` maps such a
transcript onto a grammar sentence: first hassil on the transcript as it is; when that fails,
the grammar sentence at the least token edit distance, found by aligning the transcript with
the grammar compiled to a word graph (every path is one sentence; no sentence list is ever
enumerated). Substituting a word costs by spelling (English) or by pinyin (Mandarin, so
homophones and traditional characters cost little), a spoken word the grammar lacks or a
grammar word not spoken costs 1 (fillers such as "please" less); a slot value's words must be
heard nearly as they are, and most of them at all (:data:`SLOT_MAX_SUB`). The cost over the longer of
the two lengths is the distance; above ``max_distance`` the transcript is rejected. The
sentence returned is grammar text, so hassil parses it and the slot values come from it.

Pure: text in, text out; no audio, no model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .grammar import GrammarBuilder, Node, context_rules
from .intents import IntentParser

log = logging.getLogger(__name__)

#: Distance above which a transcript is "not understood"; chosen on the tuning voices with
#: out-of-grammar sentences (benchmarks/bench_voice_whisper.py --tune), see the README.
MAX_DISTANCE = 0.34
INSERT_COST = 1.0
DELETE_COST = 1.0
#: A slot value's words must be heard close to how they are spelled or sounded, and more than
#: half of them heard at all: a slot the transcript lacks or says otherwise is never filled in
#: from the grammar (a wrong slot is worse than "not understood").
SLOT_MAX_SUB = 0.4
#: Words people add around a command that change nothing.
FILLERS: Mapping[str, float] = {w: 0.3 for w in (
    "please", "um", "uh", "hey", "so", "just", "can", "could", "you", "oh", "well", "now",
    "啊", "吧", "呢", "嗯", "请", "哦")}
_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
          "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty".split()
_DROP = re.compile(r"[,，。!！?？;；\"“”()（）、…]")
_KEY = re.compile(r"[^\w]")


@dataclass(frozen=True)
class Match:
    """A transcript mapped onto the grammar: the sentence, its distance, how it was found."""

    text: str
    distance: float
    exact: bool


def en_number(n: int) -> str:
    """0-59 in words, as a time or a count is said ("forty five")."""
    if n < 20:
        return _SMALL[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f" {_SMALL[ones]}" if ones else "")


def en_words(text: str) -> list[str]:
    """English text as grammar words: case folded, punctuation dropped, "9:30" and "a.m." kept
    whole, and a bare number under 60 written out ("5 minutes" -> "five minutes")."""
    out: list[str] = []
    for raw in _DROP.sub(" ", text.replace("\u2019", "'")).casefold().split():
        word = raw.strip(":.'") if not raw.endswith(".m.") else raw
        if word.isdigit() and int(word) < 60:
            out.extend(en_number(int(word)).split())
        elif word:
            out.append(word)
    return out


def cjk_chars(text: str) -> list[str]:
    """Mandarin text as grammar tokens: one per character, punctuation and spaces dropped."""
    return [c for c in _DROP.sub("", text).casefold() if not c.isspace() and c not in ":："]


def en_sub_cost(a: str, b: str) -> float:
    """Substitution cost by spelling: Levenshtein distance of the letters over the longer."""
    ka, kb = _KEY.sub("", a), _KEY.sub("", b)
    if ka == kb:
        return 0.0 if a == b else 0.05
    return min(1.0, levenshtein(ka, kb) / max(len(ka), len(kb), 1))


def levenshtein(a: str, b: str) -> int:
    """Edit distance between two strings (insert, delete, substitute: 1 each)."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


@lru_cache(maxsize=8192)
def _pinyin(char: str) -> tuple[str, str]:
    from pypinyin import Style, lazy_pinyin  # type: ignore[import-untyped,unused-ignore]
    tone = lazy_pinyin(char, style=Style.TONE3, neutral_tone_with_five=True)[0]
    return tone, tone.rstrip("12345")


def zh_sub_cost(a: str, b: str) -> float:
    """Substitution cost by sound: the same syllable and tone 0.15, the same syllable in another
    tone 0.35, similar spelling of the syllable up to 1 (pypinyin)."""
    if a == b:
        return 0.0
    (ta, sa), (tb, sb) = _pinyin(a), _pinyin(b)
    if ta == tb and ta != a:
        return 0.15
    if sa == sb and sa != a:
        return 0.35
    return min(1.0, 0.4 + levenshtein(sa, sb) / max(len(sa), len(sb), 1))


class WordGraph:
    """A grammar rule compiled to an acyclic word graph: state 0 is the start, edges only go
    to higher states, the last state is the end; every path spells one grammar sentence."""

    def __init__(self, top: Node, rules: Mapping[str, Node]) -> None:
        self.rules = rules
        self.src: list[int] = []
        self.dst: list[int] = []
        self.word: list[int] = []  # -1: no word (an optional part, the end of a branch)
        self.slot: list[int] = []  # which slot value (list reference) the word is in; 0: none
        self.slots = 0
        self.vocab: dict[str, int] = {}
        self.states = 1
        self.end = self._compile(top, 0, (), 0)
        self._freeze()

    def _new(self) -> int:
        self.states += 1
        return self.states - 1

    def _edge(self, a: int, b: int, word: int, slot: int = 0) -> None:
        self.src.append(a)
        self.dst.append(b)
        self.word.append(word)
        self.slot.append(slot)

    def _compile(self, node: Node, start: int, stack: tuple[str, ...], slot: int) -> int:
        if node.kind == "tok":
            state = start
            for w in node.words:
                nxt = self._new()
                self._edge(state, nxt, self.vocab.setdefault(w, len(self.vocab)), slot)
                state = nxt
            return state
        if node.kind == "ref":
            if node.ref in stack or node.ref not in self.rules:
                return start
            if node.ref.startswith("list_") and not slot:
                self.slots += 1
                slot = self.slots
            return self._compile(self.rules[node.ref], start, (*stack, node.ref), slot)
        if node.kind == "seq":
            state = start
            for item in node.items:
                state = self._compile(item, state, stack, slot)
            return state
        ends = [self._compile(item, start, stack, slot) for item in node.items]
        join = self._new()
        for end in ends + ([start] if node.optional else []):
            self._edge(end, join, -1)
        return join

    def _freeze(self) -> None:
        self.words = list(self.vocab)
        src, dst, word = (np.array(x, dtype=np.int64) for x in (self.src, self.dst, self.word))
        slot = np.array(self.slot, dtype=np.int64)
        # Longest distance from the start: relaxing by level is a topological order.
        level = np.zeros(self.states, dtype=np.int64)
        for e in np.argsort(src, kind="stable").tolist():  # every edge goes a < b
            a, b = self.src[e], self.dst[e]
            if level[b] < level[a] + 1:
                level[b] = level[a] + 1
        order = np.argsort(level[src], kind="stable")
        self.src, self.dst, self.word, self.slot_of = src[order], dst[order], word[order], slot[order]
        self.is_slot = self.slot_of > 0
        self.is_word = self.word >= 0
        self.word_ids = np.where(self.is_word, self.word, 0)
        bounds = np.searchsorted(level[self.src], np.arange(level.max() + 2))
        self.levels = [(int(bounds[i]), int(bounds[i + 1])) for i in range(len(bounds) - 1)
                       if bounds[i] < bounds[i + 1]]
        self.walk_cost = np.where(self.is_word, DELETE_COST, 0.0)
        self.incoming: list[list[int]] = [[] for _ in range(self.states)]
        for e, b in enumerate(self.dst.tolist()):
            self.incoming[b].append(e)

    def _relax(self, cost: np.ndarray) -> None:
        """Grammar words skipped (deleted) and empty edges, in topological order."""
        for lo, hi in self.levels:
            np.minimum.at(cost, self.dst[lo:hi], cost[self.src[lo:hi]] + self.walk_cost[lo:hi])

    def align(self, tokens: list[str], sub: Callable[[str, str], float],
              ) -> tuple[float, list[str], bool]:
        """The least edit cost of the tokens against any path, that path's words, and whether
        each slot value on it was heard (more than half of its words)."""
        cols = [np.full(self.states, np.inf)]
        cols[0][0] = 0.0
        self._relax(cols[0])
        for tok in tokens:
            prev = cols[-1]
            cur = prev + FILLERS.get(tok, INSERT_COST)
            np.minimum.at(cur, self.dst, prev[self.src] + self._sub_costs(tok, sub))
            self._relax(cur)
            cols.append(cur)
        cost = float(cols[-1][self.end])
        if not np.isfinite(cost):
            return cost, [], False
        path = self._backtrace(cols, tokens, sub)
        heard: dict[int, list[bool]] = {}
        for _word, slot, was_heard in path:
            if slot:
                heard.setdefault(slot, []).append(was_heard)
        slots_ok = all(2 * sum(h) > len(h) for h in heard.values())
        return cost, [w for w, _s, _h in path], slots_ok

    def _sub_costs(self, tok: str, sub: Callable[[str, str], float]) -> np.ndarray:
        """Per edge: the cost of hearing ``tok`` for the edge's word (inf: not allowed)."""
        row = np.array([sub(w, tok) for w in self.words] or [1.0])[self.word_ids]
        return np.where(self.is_word & ~(self.is_slot & (row > SLOT_MAX_SUB)), row, np.inf)

    def _backtrace(self, cols: list[np.ndarray], tokens: list[str],
                   sub: Callable[[str, str], float]) -> list[tuple[str, int, bool]]:
        """The path's words, each with its slot value (0: none) and whether it was heard."""
        path: list[tuple[str, int, bool]] = []
        subs = [self._sub_costs(tok, sub) for tok in tokens]
        i, state = len(tokens), self.end
        while state != 0 or i > 0:
            here = cols[i][state]
            if i > 0 and np.isclose(cols[i - 1][state] + FILLERS.get(tokens[i - 1], INSERT_COST),
                                    here):
                i -= 1
                continue
            for e in self.incoming[state]:
                a, w = int(self.src[e]), int(self.word[e])
                if w >= 0 and i > 0 and np.isclose(cols[i - 1][a] + subs[i - 1][e], here):
                    path.append((self.words[w], int(self.slot_of[e]), True))
                    i, state = i - 1, a
                    break
                if np.isclose(cols[i][a] + self.walk_cost[e], here):
                    if w >= 0:
                        path.append((self.words[w], int(self.slot_of[e]), False))
                    state = a
                    break
            else:  # cannot happen: every finite cost has a predecessor
                raise AssertionError("word graph backtrace lost its way")
        return path[::-1]


class GrammarMatcher:
    """Maps free text onto the sentences of a parser's grammar (see module doc)."""

    def __init__(self, parser: IntentParser, max_distance: float = MAX_DISTANCE) -> None:
        self.parser = parser
        self.max_distance = max_distance
        self.cjk = bool(parser.intents.settings.ignore_whitespace)
        self.tokenize: Callable[[str], list[str]] = cjk_chars if self.cjk else en_words
        self.sub = _cached(zh_sub_cost if self.cjk else en_sub_cost)
        self.revision = -1
        self.graphs: dict[str | None, WordGraph] = {}
        self.update()

    def update(self) -> None:
        """(Re)compile the word graphs from the parser's templates and live lists."""
        builder = GrammarBuilder(self.parser, lambda text: self.tokenize(text) or None)
        rules = builder.build()
        graphs = {None: WordGraph(rules["command"], rules)}
        graphs.update((c, WordGraph(top, rules)) for c, top in context_rules(rules).items())
        self.graphs = graphs
        self.revision = self.parser.revision
        log.debug("%s word graph: %d states, %d edges, %d words", self.parser.lang,
                  graphs[None].states, len(graphs[None].src), len(graphs[None].words))

    def match(self, transcript: str, context: str | None = None) -> Match | None:
        """The grammar sentence for a transcript (None: too far from every sentence)."""
        if self.revision != self.parser.revision:
            self.update()
        tokens = self.tokenize(transcript)
        if not tokens:
            return None
        joiner = "" if self.cjk else " "
        typed = joiner.join(tokens)
        if self.parser.parse(typed).intent is not None:
            return Match(typed, 0.0, True)
        graph = self.graphs.get(context) or self.graphs[None]
        cost, words, slots_ok = graph.align(tokens, self.sub)
        distance = cost / max(len(tokens), len(words), 1)
        if distance > self.max_distance or not words or not slots_ok:
            log.debug("no grammar sentence near %r (best %r at %.2f)", transcript,
                      joiner.join(words), distance)
            return None
        return Match(joiner.join(words), distance, False)


def _cached(cost: Callable[[str, str], float]) -> Callable[[str, str], float]:
    return lru_cache(maxsize=200_000)(cost)

