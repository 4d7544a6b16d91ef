"""Free text onto the grammar: the nearest sentence the intents can say, or nothing.

A free-running recognizer (Whisper, :mod:`carlinkd.voice.whisper`) hears words the grammar does
not have ("Please book an oil change for tomorrow."). :class:`GrammarMatcher` maps such a
transcript onto a grammar sentence: first hassil on the transcript as it is; when that fails,
the grammar sentence at the least token edit distance, found by aligning the transcript with
the grammar compiled to a word graph (every path is one sentence; no sentence list is ever
enumerated). Substituting a word costs by spelling (English) or by pinyin (Mandarin, so
homophones and traditional characters cost little), a spoken word the grammar lacks or a
grammar word not spoken costs 1 (fillers such as "please" less). A slot value must be heard
nearly as it is said and fit the words heard clearly better than every other value of its list
(:data:`SLOT_MAX_SUB`, :data:`SLOT_MARGIN`). The cost over the longer of
the two lengths is the distance; above ``max_distance`` the transcript is rejected. The
sentence returned is grammar text, so hassil parses it and the slot values come from it.

Pure: text in, text out; no audio, no model.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from hassil import Alternative, Expression, SlotList, TextChunk, TextSlotList
from hassil import Sequence as HSequence

from .grammar import GrammarBuilder, Node, context_rules
from .intents import IntentParser

log = logging.getLogger(__name__)

#: Distance above which a transcript is "not understood", per language; chosen on the tuning
#: voices with out-of-grammar sentences (benchmarks/bench_voice_whisper.py --tune), see the
#: README. Mandarin is compared by character, so a dropped word costs more there.
MAX_DISTANCE = {"en": 0.4, "zh": 0.3}
#: Words heard that the chosen sentence leaves unexplained (see GrammarMatcher.unexplained)
#: above which it is rejected: such a word is often a slot value the grammar could not fit.
MAX_UNEXPLAINED = 0
#: A substitution costing this much means the heard word is unlike the grammar's.
UNLIKE = 1.5
INSERT_COST = 1.0
DELETE_COST = 1.0
#: A slot value's words must be heard close to how they are spelled or sounded ...
SLOT_MAX_SUB = 0.8
#: Two heard words written as one grammar word ("road side"): a little more than one word.
MERGE_COST = 0.2
#: ... and the value must fit what was heard clearly better than any other value of its list
#: (by this much edit cost): a slot the transcript lacks or leaves open is never filled in
#: from the grammar ("there in minutes" is not "five minutes": a wrong slot is worse than
#: "not understood").
SLOT_MARGIN = 0.3
#: Words people add around a command that change nothing.
FILLERS: Mapping[str, float] = {w: 0.3 for w in (
    "please", "um", "uh", "hey", "so", "just", "can", "could", "you", "oh", "well", "now",
    "啊", "吧", "呢", "嗯", "请", "哦")}
_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
          "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty".split()
_DROP = re.compile(r"[,，。!！?？;；\"“”()（）、…]")
_KEY = re.compile(r"[^\w]")
_DIGIT_LETTER = re.compile(r"(\d)([a-z])")  # "9:30am" -> "9:30 am"
_CJK_COLON = re.compile(r"(?<!\d)[:：]|[:：](?!\d)")  # kept only inside "9:30"


#: One word of an aligned path: the grammar word, its slot value (0: none), the index of the
#: first token heard for it (-1: not heard) and how many tokens (0, 1, or 2 written as one).
Step = tuple[str, int, int, int]


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


def en_words(text: str, spell_numbers: bool = True) -> list[str]:
    """English text as grammar words: case folded, punctuation dropped, "9:30" and "a.m." kept
    whole, and (``spell_numbers``) a bare number under 60 written out ("5 minutes" -> "five
    minutes"; the grammar's own typed forms such as "2 pm" are kept as they are)."""
    out: list[str] = []
    text = _DIGIT_LETTER.sub(r"\1 \2", _DROP.sub(" ", text.replace("\u2019", "'")).casefold())
    for raw in text.split():
        word = raw.strip(":.'") if not raw.endswith(".m.") else raw
        if spell_numbers and word.isdigit() and int(word) < 60:
            out.extend(en_number(int(word)).split())
        elif word:
            out.append(word)
    return out


def cjk_chars(text: str) -> list[str]:
    """Mandarin text as grammar tokens: one per character, punctuation and spaces dropped."""
    return [c for c in _CJK_COLON.sub("", _DROP.sub("", text)).casefold() if not c.isspace()]


def en_sub_cost(a: str, b: str) -> float:
    """Substitution cost by spelling: twice the Levenshtein distance of the letters over the
    longer word, so that a word unlike the one expected costs what leaving it out and
    inserting another would (2)."""
    ka, kb = _KEY.sub("", a), _KEY.sub("", b)
    if ka == kb:
        return 0.0 if a == b else 0.05
    return min(2.0, 2.0 * levenshtein(ka, kb) / max(len(ka), len(kb), 1))


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
    """Substitution cost by sound: the same syllable and tone 0.2, the same syllable in another
    tone 0.5, else by the spelling of the syllables, from 1 up to 2 (pypinyin)."""
    if a == b:
        return 0.0
    (ta, sa), (tb, sb) = _pinyin(a), _pinyin(b)
    if ta == tb and ta != a:
        return 0.2
    if sa == sb and sa != a:
        return 0.5
    return min(2.0, 1.0 + levenshtein(sa, sb) / max(len(sa), len(sb), 1))


class WordGraph:
    """A grammar rule compiled to an acyclic word graph: state 0 is the start, edges only go
    to higher states, the last state is the end; every path spells one grammar sentence."""

    def __init__(self, top: Node, rules: Mapping[str, Node]) -> None:
        self.rules = rules
        self._src: list[int] = []
        self._dst: list[int] = []
        self._word: list[int] = []  # -1: no word (an optional part, the end of a branch)
        self._slot: list[int] = []  # which slot value (list reference) the word is in; 0: none
        self.slot_list: dict[int, str] = {}  # slot value -> its list rule ("list_time")
        self.vocab: dict[str, int] = {}
        self.states = 1
        self.end = self._compile(top, 0, (), 0)
        self._freeze()

    def _new(self) -> int:
        self.states += 1
        return self.states - 1

    def _edge(self, a: int, b: int, word: int, slot: int = 0) -> None:
        self._src.append(a)
        self._dst.append(b)
        self._word.append(word)
        self._slot.append(slot)

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
                slot = len(self.slot_list) + 1
                self.slot_list[slot] = node.ref
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
        src, dst, word, slot = (np.array(x, dtype=np.int64)
                                for x in (self._src, self._dst, self._word, self._slot))
        # Longest distance from the start: relaxing by level is a topological order.
        level = np.zeros(self.states, dtype=np.int64)
        for e in np.argsort(src, kind="stable").tolist():  # every edge goes a < b
            a, b = self._src[e], self._dst[e]
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

    def align(self, tokens: list[str], sub: Callable[[str, str], float], merge: bool = True,
              ) -> tuple[float, list[Step]]:
        """The least edit cost of the tokens against any path, and that path (see Step)."""
        cols = [np.full(self.states, np.inf)]
        cols[0][0] = 0.0
        self._relax(cols[0])
        merged = self._merged_costs(tokens, sub) if merge else {}
        for i, tok in enumerate(tokens):
            prev = cols[-1]
            cur = prev + FILLERS.get(tok, INSERT_COST)
            np.minimum.at(cur, self.dst, prev[self.src] + self._sub_costs(tok, sub))
            if i in merged:
                np.minimum.at(cur, self.dst, cols[-2][self.src] + merged[i])
            self._relax(cur)
            cols.append(cur)
        cost = float(cols[-1][self.end])
        if not np.isfinite(cost):
            return cost, []
        return cost, self._backtrace(cols, tokens, sub, merged)

    def _merged_costs(self, tokens: list[str], sub: Callable[[str, str], float],
                      ) -> dict[int, np.ndarray]:
        """Per token index i >= 1: the cost of hearing tokens i-1 and i, written together, as
        one grammar word ("road side" for "roadside"); a joined spelling that is only close
        costs double, so "for tomorrow" stays "for" + "tomorrow"."""
        return {i: 2 * self._sub_costs(tokens[i - 1] + tokens[i], sub) + MERGE_COST
                for i in range(1, len(tokens))}

    def _sub_costs(self, tok: str, sub: Callable[[str, str], float]) -> np.ndarray:
        """Per edge: the cost of hearing ``tok`` for the edge's word (inf: not allowed)."""
        row = np.array([sub(w, tok) for w in self.words] or [1.0])[self.word_ids]
        return np.where(self.is_word & ~(self.is_slot & (row > SLOT_MAX_SUB)), row, np.inf)

    def _backtrace(self, cols: list[np.ndarray], tokens: list[str],
                   sub: Callable[[str, str], float], merged: dict[int, np.ndarray],
                   ) -> list[Step]:
        path: list[Step] = []
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
                    path.append((self.words[w], int(self.slot_of[e]), i - 1, 1))
                    i, state = i - 1, a
                    break
                if w >= 0 and i - 1 in merged and np.isclose(cols[i - 2][a] + merged[i - 1][e],
                                                             here):
                    path.append((self.words[w], int(self.slot_of[e]), i - 2, 2))
                    i, state = i - 2, a
                    break
                if np.isclose(cols[i][a] + self.walk_cost[e], here):
                    if w >= 0:
                        path.append((self.words[w], int(self.slot_of[e]), -1, 0))
                    state = a
                    break
            else:  # cannot happen: every finite cost has a predecessor
                raise AssertionError("word graph backtrace lost its way")
        return path[::-1]


class GrammarMatcher:
    """Maps free text onto the sentences of a parser's grammar (see module doc)."""

    def __init__(self, parser: IntentParser, max_distance: float | None = None,
                 slot_margin: float = SLOT_MARGIN, max_unexplained: int = MAX_UNEXPLAINED) -> None:
        self.parser = parser
        self.max_unexplained = max_unexplained
        self.max_distance = max_distance if max_distance is not None else \
            MAX_DISTANCE.get(parser.lang, min(MAX_DISTANCE.values()))
        self.slot_margin = slot_margin
        self.cjk = bool(parser.intents.settings.ignore_whitespace)
        self.tokenize: Callable[[str], list[str]] = cjk_chars if self.cjk else en_words
        self.sub = _cached(zh_sub_cost if self.cjk else en_sub_cost)
        self.revision = -1
        self.graphs: dict[str | None, WordGraph] = {}
        self.update()

    def update(self) -> None:
        """(Re)compile the word graphs from the parser's templates and live lists."""
        words = cjk_chars if self.cjk else (lambda text: en_words(text, spell_numbers=False))
        builder = GrammarBuilder(self.parser, lambda text: words(text) or None)
        rules = builder.build()
        graphs: dict[str | None, WordGraph] = {None: WordGraph(rules["command"], rules)}
        graphs.update((c, WordGraph(top, rules)) for c, top in context_rules(rules).items())
        self.graphs = graphs
        self.forms = {f"list_{name}": list_forms(slot_list, words)
                      for name, slot_list in self.parser.slot_lists.items()}
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
        cost, path = graph.align(tokens, self.sub, merge=not self.cjk)
        words = [step[0] for step in path]
        distance = cost / max(len(tokens), len(words), 1)
        text = joiner.join(words)
        if (distance > self.max_distance or not words or not self._slots_clear(graph, path, tokens)
                or self.unexplained(path, tokens) > self.max_unexplained
                or self.parser.parse(text).intent is None):
            log.debug("no grammar sentence near %r (best %r at %.2f)", transcript, text, distance)
            return None
        return Match(text, distance, False)

    def unexplained(self, path: list[Step], tokens: list[str]) -> int:
        """Words heard that the sentence does not account for: a word left over that is not a
        filler, or a word heard in place of a quite different one ("revenue" for "message");
        in English only words of 4 letters or more count ("for", "the" come and go often)."""
        covered = {i for _w, _s, first, n in path for i in range(first, first + n)}
        shortest = 1 if self.cjk else 4
        left = sum(1 for i, tok in enumerate(tokens) if i not in covered
                   and tok not in FILLERS and len(tok) >= shortest)
        unlike = sum(1 for word, _s, first, n in path if n == 1 and len(tokens[first]) >= shortest
                     and self.sub(word, tokens[first]) >= UNLIKE)
        return left + unlike

    def _slots_clear(self, graph: WordGraph, path: list[Step], tokens: list[str]) -> bool:
        """Whether every slot value on the path was heard and fits the tokens heard for it
        better, by :data:`SLOT_MARGIN`, than each value of its list that means something else."""
        values: dict[int, list[tuple[str, int]]] = {}
        for word, slot, index, _n in path:
            if slot:
                values.setdefault(slot, []).append((word, index))
        for slot, words in values.items():
            heard = [i for _w, i in words if i >= 0]
            forms = self.forms.get(graph.slot_list[slot], {})
            chosen = tuple(w for w, _i in words)
            if not heard:
                return False
            if chosen not in forms:
                continue
            span = tokens[min(heard):max(heard) + 1]
            own = token_distance(span, chosen, self.sub)
            rivals = (token_distance(span, form, self.sub, own + self.slot_margin)
                      for form, value in forms.items() if value != forms[chosen])
            if any(rival < own + self.slot_margin for rival in rivals):
                log.debug("slot %s %r: another value fits %r as well", graph.slot_list[slot],
                          chosen, span)
                return False
        return True


def token_distance(a: Sequence[str], b: Sequence[str], sub: Callable[[str, str], float],
                   bound: float = math.inf) -> float:
    """Edit distance between two token sequences (insert/delete 1, substitute by ``sub``);
    stops early with a value >= ``bound`` once the result cannot be below it."""
    if abs(len(a) - len(b)) >= bound:
        return float(abs(len(a) - len(b)))
    row = [float(j) for j in range(len(b) + 1)]
    for i, ta in enumerate(a, 1):
        prev, row[0] = row[0], float(i)
        for j, tb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + sub(tb, ta))
        if min(row) >= bound:
            return min(row)
    return row[-1]


def list_forms(slot_list: SlotList, tokenize: Callable[[str], list[str]],
               ) -> dict[tuple[str, ...], str]:
    """Every way a text list's values can be said, as tokens, with the value each means."""
    out: dict[tuple[str, ...], str] = {}
    if isinstance(slot_list, TextSlotList):
        for value in slot_list.values:
            for text in _expand_text(value.text_in):
                out.setdefault(tuple(tokenize(text)), str(value.value_out))
    return out


def _expand_text(expr: Expression) -> Iterator[str]:
    """The texts a hassil value expression can stand for ("(tire|tyre) rotation": two)."""
    if isinstance(expr, TextChunk):
        yield expr.text
    elif isinstance(expr, Alternative):
        if expr.is_optional:
            yield ""
        for item in expr.items:
            yield from _expand_text(item)
    elif isinstance(expr, HSequence):  # Permutation is a Sequence: one order is enough here
        for parts in itertools.product(*(list(_expand_text(i)) for i in expr.items)):
            yield " ".join(parts)


def _cached(cost: Callable[[str, str], float]) -> Callable[[str, str], float]:
    return lru_cache(maxsize=200_000)(cost)

