"""Recognition grammars built from the hassil templates: JSGF for pocketsphinx, phrases for vosk.

The templates are walked once into a small tree (sequence, alternative, tokens, rule reference);
tokens are checked against the recognizer's vocabulary, and any alternative that needs a word the
recognizer cannot say is dropped (a warning names the words), so the grammar never promises what
the acoustic model cannot deliver. Live slot lists (groups, times) come from the parser, so the
grammar follows them when they change.

A grammar search always lands on *some* sentence; rejecting out-of-grammar speech is the
recognizer's job (see :mod:`carlinkd.voice.asr`), and hassil's exact match is the last guard.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hassil import (
    Alternative,
    Expression,
    ListReference,
    Permutation,
    RangeSlotList,
    RuleReference,
    TextChunk,
    TextSlotList,
)
from hassil import Sequence as HSequence

from ..errors import GrammarError
from .intents import IntentParser

log = logging.getLogger(__name__)

#: Turns template text into recognizer words; None when some word is not in the vocabulary.
Tokenizer = Callable[[str], "list[str] | None"]

_PUNCT = re.compile(r"[,，。!！?？;；:：\"“”()]")


@dataclass
class Node:
    """One grammar tree node: tokens, a sequence, an alternative, or a rule reference."""

    kind: str  # "tok" | "seq" | "alt" | "ref"
    words: tuple[str, ...] = ()
    items: list[Node] = field(default_factory=list)
    optional: bool = False
    ref: str = ""


EMPTY = Node("tok")


def typed_only(metadata: Mapping[str, Any] | None) -> bool:
    """Whether a sentence block or list value is for typed text only (``typed_only: true`` in
    its metadata): kept out of recognition grammars, where each extra short path is one more
    way to mishear noise."""
    return bool(metadata and metadata.get("typed_only"))


def english_tokens(known: Callable[[str], bool]) -> Tokenizer:
    """A tokenizer for space-separated languages: lower-case words, each must be known."""

    def tokens(text: str) -> list[str] | None:
        words = _PUNCT.sub(" ", text).casefold().split()
        return words if all(known(w) for w in words) else None

    return tokens


def cjk_tokens(known: Callable[[str], bool], max_word: int = 6) -> Tokenizer:
    """Greedy longest-match segmentation of CJK text into vocabulary words."""

    def tokens(text: str) -> list[str] | None:
        out: list[str] = []
        for chunk in _PUNCT.sub(" ", text).casefold().split():
            i = 0
            while i < len(chunk):
                for j in range(min(len(chunk), i + max_word), i, -1):
                    if known(chunk[i:j]):
                        out.append(chunk[i:j])
                        i = j
                        break
                else:
                    return None
        return out

    return tokens


#: Intents left out of the top ``command`` rule: a bare answer ("friday", "nine a.m.") only
#: means something after a question, and those are heard with the question's own grammar
#: (:func:`context_rules`). With them at the top, every clock time was a path from the first
#: frame: decoding took ~1.8x as long and fragments of commands came out as answers.
CONTEXT_ONLY = ("answer",)


class GrammarBuilder:
    """Walks a parser's templates into a grammar tree for one recognizer vocabulary."""

    def __init__(self, parser: IntentParser, tokens: Tokenizer) -> None:
        self.parser = parser
        self.tokens = tokens
        self.rules: dict[str, Node | None] = {}
        self.unknown: set[str] = set()
        self.list_rules: set[str] = set()

    def build(self) -> dict[str, Node]:
        """Rule name -> tree; ``command`` is the top rule over every intent's sentences."""
        intent_alts: list[Node] = []
        for intent in self.parser.intents.intents.values():
            sentences: list[Node] = []
            for data in intent.data:
                if typed_only(data.metadata):
                    continue
                for sentence in data.sentences:
                    node = self._expr(sentence.expression, data.expansion_rules)
                    if node is not None:
                        sentences.append(node)
            if sentences:
                self.rules[intent.name] = Node("alt", items=sentences)
                if intent.name not in CONTEXT_ONLY:
                    intent_alts.append(Node("ref", ref=intent.name))
        if not intent_alts:
            raise GrammarError(f"{self.parser.path}: no sentence can be said with this "
                               "recognizer's vocabulary")
        if self.unknown:
            log.warning("%s grammar: %d template words are not in the recognizer's vocabulary "
                        "and were left out: %s", self.parser.lang, len(self.unknown),
                        ", ".join(sorted(self.unknown)[:20]))
        self.rules["command"] = Node("alt", items=intent_alts)
        return {name: node for name, node in self.rules.items() if node is not None}

    def _expr(self, expr: Expression, local_rules: Mapping[str, Any]) -> Node | None:
        if isinstance(expr, TextChunk):
            return self._text(expr.text)
        if isinstance(expr, Alternative):
            items = [n for item in expr.items if (n := self._expr(item, local_rules)) is not None]
            optional = expr.is_optional or any(n is EMPTY for n in items)
            items = [n for n in items if n is not EMPTY]
            if not items:
                return EMPTY if optional else None
            return Node("alt", items=items, optional=optional)
        if isinstance(expr, Permutation):
            orders = [HSequence(items=list(p)) for p in itertools.permutations(expr.items)]
            return self._expr(Alternative(items=list(orders)), local_rules)
        if isinstance(expr, HSequence):
            parts: list[Node] = []
            for item in expr.items:
                node = self._expr(item, local_rules)
                if node is None:
                    return None
                if node is not EMPTY:
                    parts.append(node)
            return Node("seq", items=parts) if parts else EMPTY
        if isinstance(expr, RuleReference):
            return self._rule(expr.rule_name, local_rules)
        if isinstance(expr, ListReference):
            return self._list(expr.list_name)
        raise GrammarError(f"unsupported template expression {type(expr).__name__}")

    def _text(self, text: str) -> Node | None:
        if not text.strip() or not _PUNCT.sub("", text).strip():
            return EMPTY
        words = self.tokens(text)
        if words is None:
            # Digits are typed forms (e.g. "9:30"); the spoken forms are listed beside them.
            self.unknown.update(w for w in text.casefold().split()
                                if self.tokens(w) is None and not any(c.isdigit() for c in w))
            return None
        return Node("tok", words=tuple(words)) if words else EMPTY

    def _rule(self, name: str, local_rules: Mapping[str, Any]) -> Node | None:
        key = f"rule_{name}"
        if key not in self.rules:
            self.rules[key] = None  # guards against recursion
            sentence = local_rules.get(name) or self.parser.intents.expansion_rules.get(name)
            if sentence is None:
                raise GrammarError(f"{self.parser.path}: unknown expansion rule <{name}>")
            self.rules[key] = self._expr(sentence.expression, local_rules)
        return Node("ref", ref=key) if self.rules[key] is not None else None

    def _list(self, name: str) -> Node | None:
        key = f"list_{name}"
        if key not in self.rules:
            slot_list = self.parser.slot_lists.get(name)
            items: list[Node] = []
            if isinstance(slot_list, TextSlotList):
                for value in slot_list.values:
                    if typed_only(value.metadata):
                        continue
                    node = self._expr(value.text_in, {})
                    if node is not None and node is not EMPTY:
                        items.append(node)
            elif isinstance(slot_list, RangeSlotList) or slot_list is None:
                log.warning("list {%s} cannot be spoken (range or missing); left out", name)
            self.rules[key] = _factor(Node("alt", items=items), self.rules) if items else None
            self.list_rules.add(key)
        return Node("ref", ref=key) if self.rules[key] is not None else None


# Lists with up to this many spoken forms are written as a prefix tree of words.
MAX_FACTORED_FORMS = 5000


def _factor(node: Node, rules: dict[str, Node | None]) -> Node:
    """A list's alternatives as a word prefix tree: far fewer grammar states for the search."""
    forms = list(itertools.islice(_expand(node, rules, set()), MAX_FACTORED_FORMS + 1))  # type: ignore[arg-type]
    if len(forms) > MAX_FACTORED_FORMS:
        return node
    trie: dict[str, Any] = {}
    for words in forms:
        level = trie
        for w in words:
            level = level.setdefault(w, {})
        level[""] = {}
    return _trie_node(trie)


def _trie_node(trie: dict[str, Any]) -> Node:
    ends = "" in trie
    branches: list[Node] = []
    for word, sub in trie.items():
        if word == "":
            continue
        rest = _trie_node(sub)
        if rest is EMPTY:
            branches.append(Node("tok", words=(word,)))
        elif rest.kind == "tok" and not rest.optional:
            branches.append(Node("tok", words=(word, *rest.words)))
        else:
            branches.append(Node("seq", items=[Node("tok", words=(word,)), rest]))
    if not branches:
        return EMPTY
    if len(branches) == 1 and not ends:
        return branches[0]
    return Node("alt", items=branches, optional=ends)


# --- answer contexts ------------------------------------------------------------------------

#: The slot lists that answer each question the dialog asks ("Which group?" -> group names);
#: ``confirm`` is the read-back question ("Send ...? Say yes or cancel.").
CONTEXT_LISTS: dict[str, tuple[str, ...]] = {
    "group": ("list_group",), "text": ("list_reply",), "service": ("list_service",),
    "day": ("list_day", "list_time"), "time": ("list_day", "list_time"), "item": ("list_item",),
}
#: Intents that may be said in answer to any question.
ALWAYS = ("confirm", "cancel", "repeat")
# While the dialog waits for an answer, a whole new command is not in the grammar: "cancel"
# first. (A low-prior command branch via JSGF weights was tried: pocketsphinx then accepted
# partial commands such as "send a" as complete, so answers lost to fragments.)


def _lists_in(node: Node, rules: Mapping[str, Node], seen: set[str]) -> set[str]:
    if node.kind == "ref":
        if node.ref in seen or node.ref not in rules:
            return {node.ref} if node.ref.startswith("list_") else set()
        seen.add(node.ref)
        found = _lists_in(rules[node.ref], rules, seen)
        return found | ({node.ref} if node.ref.startswith("list_") else set())
    out: set[str] = set()
    for item in node.items:
        out |= _lists_in(item, rules, seen)
    return out


def context_rules(rules: Mapping[str, Node]) -> dict[str, Node]:
    """Context name -> the top node of what may be said in answer to that question."""
    always = [Node("ref", ref=name) for name in ALWAYS if name in rules]
    out: dict[str, Node] = {"confirm": Node("alt", items=always)} if always else {}
    answers = rules.get("answer")
    if answers is None:
        return out
    for context, lists in CONTEXT_LISTS.items():
        items = [n for n in answers.items if _lists_in(n, rules, set()) & set(lists)]
        if items:
            out[context] = Node("alt", items=items + always)
    return out


# --- JSGF ---------------------------------------------------------------------------------


def to_jsgf(rules: dict[str, Node], top: Node | None = None) -> str:
    """A JSGF grammar whose public rule ``<utterance>`` is any command, or ``top`` (one of
    :func:`context_rules`: an answer to that question, yes, cancel or repeat)."""
    lines = ["#JSGF V1.0;", "grammar carlinkd;",
             f"public <utterance> = {'<command>' if top is None else _jsgf(top)} ;"]
    for name, node in rules.items():
        lines.append(f"<{name}> = {_jsgf(node)} ;")
    return "\n".join(lines) + "\n"


def _jsgf(node: Node) -> str:
    if node.kind == "tok":
        return " ".join(node.words)
    if node.kind == "ref":
        return f"<{node.ref}>"
    if node.kind == "seq":
        return " ".join(_jsgf(n) for n in node.items)
    body = " | ".join(_jsgf(n) for n in node.items)
    return f"[ {body} ]" if node.optional else f"( {body} )"


# --- phrase lists (vosk grammar mode) -------------------------------------------------------


def to_phrases(rules: dict[str, Node], list_rules: set[str], max_per_sentence: int = 200,
               joiner: str = " ", top: Node | None = None) -> list[str]:
    """Phrases for vosk's grammar mode, which recognizes any sequence of listed phrases.

    A template with few expansions contributes whole sentences; a larger one contributes the
    text between its slots, with each slot value as a phrase of its own (hassil then checks the
    order, so a wrong sequence is "not understood"). ``top`` (one of :func:`context_rules`)
    limits the phrases to the answers to one question.
    """
    out: dict[str, None] = {}
    wanted = list_rules if top is None else list_rules & _lists_in(top, rules, set())
    top = rules["command"] if top is None else top
    sentences = [n for item in top.items
                 for n in (rules[item.ref].items if item.kind == "ref" else [item])]
    for sentence in sentences:
        full = list(itertools.islice(_expand(sentence, rules, set()), max_per_sentence + 1))
        if len(full) <= max_per_sentence:
            out.update((joiner.join(p), None) for p in full if p)
            continue
        for piece in _expand_pieces(sentence, rules, list_rules):
            if piece:
                out[joiner.join(piece)] = None
    for name in sorted(wanted):
        if name in rules:
            out.update((joiner.join(p), None) for p in _expand(rules[name], rules, set()) if p)
    return list(out)


def _expand(node: Node, rules: dict[str, Node], stop: set[str]) -> Iterator[list[str]]:
    if node.kind == "tok":
        yield list(node.words)
    elif node.kind == "ref":
        if node.ref in stop:
            yield ["|"]
        else:
            yield from _expand(rules[node.ref], rules, stop)
    elif node.kind == "alt":
        if node.optional:
            yield []
        for item in node.items:
            yield from _expand(item, rules, stop)
    else:
        yield from _product([_expand_list(n, rules, stop) for n in node.items])


def _expand_list(node: Node, rules: dict[str, Node], stop: set[str]) -> list[list[str]]:
    return list(_expand(node, rules, stop))


def _product(parts: list[list[list[str]]]) -> Iterator[list[str]]:
    for combo in itertools.product(*parts):
        yield [w for part in combo for w in part]


def _expand_pieces(node: Node, rules: dict[str, Node], list_rules: set[str]) -> Iterator[list[str]]:
    """Expansions with list references as breaks ("|"), split into the pieces between them."""
    for words in _expand(node, rules, list_rules):
        piece: list[str] = []
        for w in words:
            if w == "|":
                yield piece
                piece = []
            else:
                piece.append(w)
        yield piece
