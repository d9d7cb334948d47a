"""Character tries over class ids: the vocabulary trie and the hot-word trie.

Both tries are flattened into arrays (compressed sparse rows) so that the compiled beam
search can walk them without Python objects. Node 0 is the root; the children of node
``n`` are ``child_label[child_start[n]:child_start[n + 1]]`` (sorted by label),
leading to ``child_node[...]``.

Hot-words (the rule the beam search and its oracle implement)
-------------------------------------------------------------
A hot-word is a phrase (one or more words; out-of-vocabulary words allowed) with a boost
``b`` in natural-log units *per matched character*. A prefix collects ``b`` for every
character (spaces inside a phrase included) while its current words spell the beginning
of a hot-word, starting at a word boundary. When the spelling breaks off (``"cat"`` is
hot and the prefix continues ``"cats"``) the boost collected for the unfinished match is
withdrawn, so only whole hot-words keep it; a phrase that ends at the end of the
utterance keeps its boost too. Where several phrases share a prefix, a node's boost is
the largest of theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from .. import constants
from ..alphabet import Alphabet
from ..errors import AlphabetError, DecoderError


@dataclass(frozen=True)
class LabelTrie:
    """A flattened trie over class-id sequences.

    Attributes
    ----------
    child_start : int32 array, shape (N + 1,)
        Row pointers: the edges of node ``n`` are ``child_start[n]:child_start[n + 1]``.
    child_label : int32 array, shape (E,)
        Class id on each edge, ascending within a node.
    child_node : int32 array, shape (E,)
        Node each edge leads to.
    boost : float64 array, shape (N,)
        Boost collected on entering each node (0 for a vocabulary trie).
    terminal : uint8 array, shape (N,)
        1 where a whole entry (word or phrase) ends at the node.
    """

    child_start: np.ndarray
    child_label: np.ndarray
    child_node: np.ndarray
    boost: np.ndarray
    terminal: np.ndarray

    @property
    def n_nodes(self) -> int:
        """Number of nodes, the root included."""
        return int(self.boost.shape[0])

    @property
    def max_boost(self) -> float:
        """The largest boost of any node (0 when none is positive)."""
        return float(max(0.0, self.boost.max(initial=0.0)))

    def child(self, node: int, label: int) -> int:
        """The child of ``node`` along ``label``, or -1 (the compiled lookup's twin)."""
        for edge in range(self.child_start[node], self.child_start[node + 1]):
            if self.child_label[edge] == label:
                return int(self.child_node[edge])
        return -1

    @classmethod
    def build(cls, entries: Iterable[tuple[tuple[int, ...], float]]) -> LabelTrie:
        """Build from ``(class ids, boost)`` pairs; empty entries are ignored."""
        children: list[dict[int, int]] = [{}]
        boost = [0.0]
        terminal = [0]
        for ids, value in entries:
            if not ids:
                continue
            node = 0
            for label in ids:
                nxt = children[node].get(label)
                if nxt is None:
                    nxt = len(children)
                    children[node][label] = nxt
                    children.append({})
                    boost.append(value)
                    terminal.append(0)
                else:
                    boost[nxt] = max(boost[nxt], value)
                node = nxt
            terminal[node] = 1
        child_start = np.zeros(len(children) + 1, dtype=np.int32)
        labels: list[int] = []
        nodes: list[int] = []
        for index, edges in enumerate(children):
            for label in sorted(edges):
                labels.append(label)
                nodes.append(edges[label])
            child_start[index + 1] = len(labels)
        return cls(
            child_start=child_start,
            child_label=np.asarray(labels, dtype=np.int32),
            child_node=np.asarray(nodes, dtype=np.int32),
            boost=np.asarray(boost, dtype=np.float64),
            terminal=np.asarray(terminal, dtype=np.uint8),
        )


def vocabulary_trie(alphabet: Alphabet, words: Iterable[str]) -> LabelTrie:
    """Trie of the words the alphabet can spell (others cannot be decoded anyway).

    A scorer's vocabulary can hold hundreds of thousands of words, so this does not
    go through :meth:`LabelTrie.build` (a dictionary per node): the words are encoded
    (a table lookup per character when every label is one character), sorted as
    class-id sequences and laid out in one pass, each word adding the nodes past the
    prefix it shares with the word before it. The trie is the one ``build`` makes
    from the same words, with nodes numbered in sorted order.
    """
    return _sorted_trie(sorted(set(_spellable(alphabet, words))))


def _spellable(alphabet: Alphabet, words: Iterable[str]) -> Iterator[tuple[int, ...]]:
    """Class-id tuples of the single words (no space) that ``alphabet`` can spell."""
    labels = alphabet.labels
    if all(len(label) == 1 for label in labels):
        index = {label: i for i, label in enumerate(labels)}.__getitem__
        for word in words:
            if word and " " not in word:
                try:
                    yield tuple(map(index, word))
                except KeyError:
                    continue
        return
    for word in words:
        if word and " " not in word:
            try:
                yield tuple(int(i) for i in alphabet.encode(word))
            except AlphabetError:
                continue


def _sorted_trie(entries: list[tuple[int, ...]]) -> LabelTrie:
    """A zero-boost trie of distinct, sorted, non-empty class-id tuples."""
    parents: list[int] = []  # parent of node i + 1
    labels: list[int] = []  # label on the edge into node i + 1
    terminal = [0]
    path = [0]  # path[k]: node reached by the first k labels of the previous entry
    previous: tuple[int, ...] = ()
    for entry in entries:
        shared = 0
        limit = min(len(entry), len(previous))
        while shared < limit and entry[shared] == previous[shared]:
            shared += 1
        del path[shared + 1 :]
        node = path[shared]
        for label in entry[shared:]:
            parents.append(node)
            labels.append(label)
            node = len(terminal)
            terminal.append(0)
            path.append(node)
        terminal[node] = 1
        previous = entry
    n_nodes = len(terminal)
    parent = np.asarray(parents, dtype=np.int64)
    # In sorted order each node's children are created in ascending label order, so a
    # stable sort by parent leaves every node's edges sorted by label.
    order = np.argsort(parent, kind="stable")
    child_start = np.zeros(n_nodes + 1, dtype=np.int32)
    np.cumsum(np.bincount(parent, minlength=n_nodes), out=child_start[1:])
    return LabelTrie(
        child_start=child_start,
        child_label=np.asarray(labels, dtype=np.int32)[order],
        child_node=(order + 1).astype(np.int32),
        boost=np.zeros(n_nodes, dtype=np.float64),
        terminal=np.asarray(terminal, dtype=np.uint8),
    )


def hotword_trie(
    alphabet: Alphabet, hotwords: Mapping[str, float] | Iterable[str]
) -> LabelTrie:
    """Trie of hot-word phrases with their per-character boosts.

    Parameters
    ----------
    alphabet
        The decoder's alphabet; phrases are normalised with ``alphabet.normalize``.
    hotwords
        Either ``{phrase: boost}`` or phrases alone (each gets ``HOTWORD_BOOST``).

    Raises
    ------
    DecoderError
        A phrase that is empty after normalisation, or a boost that is not finite.
    """
    if isinstance(hotwords, Mapping):
        items = list(hotwords.items())
    elif isinstance(hotwords, str):
        raise DecoderError(
            "hotwords must be a list of phrases or a {phrase: boost} dict"
        )
    else:
        items = [(phrase, constants.HOTWORD_BOOST) for phrase in hotwords]
    entries = []
    for phrase, boost in items:
        if not isinstance(phrase, str):
            raise DecoderError(f"hot-word {phrase!r} is not a string")
        if not np.isfinite(boost):
            raise DecoderError(
                f"hot-word {phrase!r} has a boost that is not finite: {boost}"
            )
        text = alphabet.normalize(phrase)
        if not text:
            raise DecoderError(f"hot-word {phrase!r} is empty in this alphabet")
        entries.append((tuple(int(i) for i in alphabet.encode(text)), float(boost)))
    return LabelTrie.build(entries)


def empty_trie() -> LabelTrie:
    """A trie with the root alone (no hot-words / no vocabulary)."""
    return LabelTrie.build([])
