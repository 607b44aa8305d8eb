"""Grammar-constrained decoding: Whisper may write only sentences the command grammar accepts.

Why. tiny.en hears espeak-ng commands as near-misses a text parser cannot undo: "This patch order 21
with vehicle 2", "Council", "start like do". The acoustic evidence is there; the decoder's own second
choice is usually the command ("Dispatch", "Cancel", "line 2"). Held to the grammar's sentences, greedy
decoding takes the most likely token that can still end in a command.

How. ``perception.commands.command_sentences`` spells the language as patterns, each a sequence of word
choices. Every choice becomes a trie over the tokens of its alternatives (lower case and Capitalised,
with the leading space Whisper's byte-pair tokens carry). Decoding runs a small nondeterministic
automaton over ``(pattern, position, trie node)`` states: the allowed next tokens are the union of the
live states' children, and end-of-text is allowed once some pattern is complete (a final ".", "!" or
"?" may come first). ``TokenGrammar.start() / allowed(states) / advance(states, token)`` is all the
decoder (``perception.speech``) needs.

Not a command. A grammar that can only write commands would turn small talk into a command, so the
recogniser decodes a free row beside the constrained one (one batch of two: nearly free on a CPU) and
keeps the constrained text only when its log-probability per token is within a margin of the free
text's (``choose``); otherwise the free text goes to the parser, which finds a paraphrased command or says
``none``. A bare yes or no, the grammar's easiest sentence to read into small talk, must also be what
the free row heard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from perception.commands import describes_parts, parse_command, spelled_alike

_END = (".", "!", "?")
State = tuple[int, int, int]  # (pattern, position in it, node of that position's trie); node -1: complete


@dataclass
class _Trie:
    """Tokens of a set of phrases: ``children[node]`` maps token -> node; ``ends[node]``: a phrase ends here."""

    children: list[dict[int, int]] = field(default_factory=lambda: [{}])
    ends: list[bool] = field(default_factory=lambda: [False])

    def add(self, tokens: Sequence[int]) -> None:
        node = 0
        for t in tokens:
            nxt = self.children[node].get(t)
            if nxt is None:
                nxt = len(self.children)
                self.children[node][t] = nxt
                self.children.append({})
                self.ends.append(False)
            node = nxt
        self.ends[node] = True


def _variants(phrase: str, first: bool) -> set[str]:
    """How Whisper may write a phrase: as is and Capitalised, spaced from the word before unless it is a
    symbol ("%", "°C"). Whisper's text starts with a space too, mostly ("<|notimestamps|> Set ...")."""
    forms = {phrase, phrase[:1].upper() + phrase[1:]}
    if first:
        return forms | {" " + f for f in forms}
    if not phrase[:1].isalnum():
        return forms
    return {" " + f for f in forms}


class TokenGrammar:
    """The command language over a Whisper tokenizer's tokens.

    Parameters
    ----------
    patterns : sequences of word choices, e.g. ``[(("stop", "halt"), ("line",), ("1", "2"))]``.
    encode : text -> token ids (``whisper.tokenizer.Tokenizer.encode``).
    eot : the end-of-text token.
    """

    def __init__(self, patterns: Iterable[Sequence[Sequence[str]]], encode, eot: int):
        self.eot = eot
        self.patterns: list[list[int]] = []  # per pattern, the trie index of each position
        self.tries: list[_Trie] = []
        index: dict[tuple[tuple[str, ...], bool], int] = {}
        for pattern in patterns:
            ids = []
            for pos, choice in enumerate(pattern):
                last = pos == len(pattern) - 1
                key = (tuple(choice), pos == 0, last)
                if key not in index:
                    trie = _Trie()
                    for phrase in choice:
                        for form in _variants(phrase, pos == 0):
                            tokens = encode(form)
                            trie.add(tokens)
                            # "80%." is the tokens " 80", "%.": the byte-pair pre-tokenizer runs a symbol and
                            # the end mark together (a word or number ends its own run)
                            if last and not form[-1:].isalnum():
                                for mark in _END:
                                    merged = encode(form + mark)
                                    if merged != tokens + encode(mark):
                                        trie.add(merged)
                    index[key] = len(self.tries)
                    self.tries.append(trie)
                ids.append(index[key])
            self.patterns.append(ids)
        self.end = _Trie()
        for mark in _END:
            self.end.add(encode(mark))

    def _closure(self, states: Iterable[State]) -> frozenset[State]:
        """Add the states reached without a token: a finished word moves on to the next position."""
        out, todo = set(), list(states)
        while todo:
            s = todo.pop()
            if s in out:
                continue
            out.add(s)
            p, pos, node = s
            ids = self.patterns[p]
            if pos < len(ids) and self.tries[ids[pos]].ends[node]:
                todo.append((p, pos + 1, 0))  # pos == len: the end marks' trie
            elif pos == len(ids) and self.end.ends[node]:
                todo.append((p, pos + 1, -1))
            elif pos == len(ids) and node == 0:
                todo.append((p, pos + 1, -1))  # no end mark
        return frozenset(out)

    def _trie(self, p: int, pos: int) -> _Trie:
        ids = self.patterns[p]
        return self.tries[ids[pos]] if pos < len(ids) else self.end

    def start(self) -> frozenset[State]:
        return self._closure((p, 0, 0) for p in range(len(self.patterns)))

    def allowed(self, states: frozenset[State]) -> tuple[list[int], bool]:
        """(tokens that continue some live state, whether end-of-text may come now)."""
        tokens: set[int] = set()
        complete = False
        for p, pos, node in states:
            if node == -1:
                complete = True
            else:
                tokens.update(self._trie(p, pos).children[node])
        return sorted(tokens), complete

    def advance(self, states: frozenset[State], token: int) -> frozenset[State]:
        nxt = []
        for p, pos, node in states:
            if node == -1:
                continue
            child = self._trie(p, pos).children[node].get(token)
            if child is not None:
                nxt.append((p, pos, child))
        return self._closure(nxt)

    def mask(self, states: frozenset[State], n_vocab: int) -> torch.Tensor:
        """(n_vocab,) bool: True where a token is NOT allowed next."""
        tokens, complete = self.allowed(states)
        out = torch.ones(n_vocab, dtype=torch.bool)
        if tokens:
            out[tokens] = False
        if complete:
            out[self.eot] = False
        return out


@dataclass(frozen=True)
class Choice:
    text: str
    constrained: bool  # the grammar's sentence was kept
    margin: float  # per token, log p(free text) - log p(grammar's sentence), nats


# Per token, the free text of a command is at most ~2 nats likelier than the grammar's sentence (a
# misheard "start like to do" against "start line two"); small talk forced into the grammar ("Thank you"
# -> "I confirm.") is 3 to 6 nats worse per token. Measured on espeak-ng speech, benchmarks/voice.py.
DEFAULT_MARGIN_NATS = 2.5

# A search read into talk ("Find my keys." -> "Find the gears.", "Line up over there." -> "Find the copper
# gear.") is harmless, since it changes nothing, but it is a guess. So the free row must have heard parts
# described, or be spelled like the search: without the adapter tiny.en writes "Find played with birds." for
# "find plates with burrs" (0.82 alike) and "Find Rocket Swimcrox" for "find brackets with cracks" (0.67);
# the talk above was 0.40-0.62 alike to its forced searches (development clips, benchmarks/RESULTS.md).
SEARCH_MIN_LIKENESS = 0.65


# A bare yes or no ("Yes.", "No.", "Go ahead.", "Never mind.") is the easiest sentence to read into small
# talk, and a confirm releases a held line stop. Without the speech adapter, "Good morning everyone!" came
# out "Go ahead." at 1.9 nats per token; with it, everyday talk came closer still ("Turn it down a bit",
# "Okay then", "Go away" as confirms, "Line up over there" as "Never mind."), while the free row itself
# now writes "Confirm." and "Cancel." for the answers. So a bare answer stands only when the free row
# gives it too (the plain weights' near misses, "Council" for "Cancel", are lost: the safe side).
def choose(free_text: str, free_logprob: float, free_tokens: int, grammar_text: str | None, grammar_logprob: float,
           grammar_tokens: int, margin_nats: float = DEFAULT_MARGIN_NATS) -> Choice:
    """Keep the grammar's sentence unless the free text is far likelier per token (then it was no command),
    or it is a bare yes or no that the free text does not give too, or a search where the free text names no
    part, material, colour or defect and is spelled unlike it. Token counts include end-of-text."""
    if grammar_text is None:
        return Choice(free_text, False, float("inf"))
    gap = free_logprob / max(free_tokens, 1) - grammar_logprob / max(grammar_tokens, 1)
    if gap > margin_nats:
        return Choice(free_text, False, gap)
    intent = parse_command(grammar_text).intent
    if intent in ("confirm", "cancel") and parse_command(free_text).intent != intent:
        return Choice(free_text, False, gap)
    if (intent == "query" and not describes_parts(free_text)
            and spelled_alike(free_text, grammar_text) < SEARCH_MIN_LIKENESS):
        return Choice(free_text, False, gap)
    return Choice(grammar_text, True, gap)


def command_grammar(tokenizer, vocab) -> TokenGrammar:
    """The grammar of ``perception.commands`` for a plant's ``Vocabulary``, over Whisper's tokens. Searches
    may name the rendered parts' types, materials and colours (``environments.parts``)."""
    from environments.parts import COLOURS, MATERIALS, PART_TYPES
    from perception.commands import command_sentences

    words = MATERIALS + tuple(c for c in COLOURS if c != "natural") + ("metal", "plastic")
    return TokenGrammar(command_sentences(vocab, PART_TYPES, words), tokenizer.encode, tokenizer.eot)
