"""Slow, readable prefix beam search: the oracle that ``csrc/ctc_beam.pyx`` must equal.

Same names, same pruning order and same tie-breaking as the compiled search, one Python
statement per step, so that a difference between them can be bisected frame by frame.
It never frees nodes (the compiled search recycles them; a recycled node is rebuilt with
the same state, since every field but the probabilities is a function of its text).

The search (per frame, Graves 2012 / Hannun et al. 2014 prefix search, DeepSpeech order)
------------------------------------------------------------------------------------
1. Classes sorted by log-probability, likeliest first (ties: lower class id); keep the
   first ``cutoff_top_n``, then, when ``cutoff_prob < 1``, the shortest head whose
   probabilities sum to ``cutoff_prob``; a vocabulary-only search (``oov_penalty``
   -inf) tries the blank after them when it is not among them.
2. With a full beam, ``min_cutoff = score(worst prefix) + ln p(blank) - slack`` (slack:
   the word bonus ``beta`` when positive, as in DeepSpeech; hot-word boosts are left out
   so that hot-words do not slow the search); an extension below it is skipped, and so
   are the remaining (worse) prefixes for that class.
3. For each kept class ``c`` (in that order) and each prefix ``y`` (best first):
   blank: ``new_p_b(y) += P(y) p(c)``; repeat of ``y``'s last label: ``new_p_nb(y) +=
   p_nb(y) p(c)`` and the extension ``y + c`` gets ``p_b(y) p(c)``; any other label: the
   extension gets ``P(y) p(c)``, times ``exp(bonus(y + c))``. With a language model a
   space only ends a word: on a prefix that is empty or ends in a space, that extension
   is added to the prefix's own ``new_p_b`` instead, as a blank would be (no leading or
   double spaces in the text).
4. Candidates (the old beam in order, then new extensions in order of first touch) are
   ranked by ``log_add(new_p_b, new_p_nb)``, ties by candidate order; the best
   ``beam_width`` with a finite score form the next beam.
At the end each prefix's final score adds its end bonus (last word, ``</s>``, unfinished
hot-word withdrawn), and prefixes are ranked by it (ties: beam order).
"""

from __future__ import annotations

import math

import numpy as np

from .hotwords import LabelTrie

NEG_INF = -math.inf
ROOT_LABEL = -1


def log_add(a: float, b: float) -> float:
    """ln(exp(a) + exp(b)) without overflow (the compiled ``log_add``)."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


class Node:
    """One prefix: its last label, parent, probabilities and text-determined state."""

    def __init__(self, parent: Node | None, label: int):
        self.parent = parent
        self.label = label
        self.children: dict[int, Node] = {}
        self.p_b = NEG_INF
        self.p_nb = NEG_INF
        self.new_p_b = NEG_INF
        self.new_p_nb = NEG_INF
        self.score = NEG_INF
        self.bonus = 0.0
        self.lm_state = 0
        self.vocab_node = 0
        self.hot_node = 0
        self.hot_partial = 0.0
        self.in_beam = False
        self.is_candidate = False

    def labels(self) -> tuple[int, ...]:
        out = []
        node = self
        while node.parent is not None:
            out.append(node.label)
            node = node.parent
        return tuple(reversed(out))


class ReferenceBeamSearch:
    """The oracle; arguments as ``PrefixBeamSearch``'s (tries as ``LabelTrie``)."""

    def __init__(
        self,
        n_classes: int,
        blank: int,
        space: int,
        beam_width: int,
        cutoff_top_n: int,
        cutoff_prob: float,
        lm=None,
        alpha: float = 0.0,
        beta: float = 0.0,
        oov_penalty: float = 0.0,
        oov_word_penalty: float = 0.0,
        use_vocabulary: bool = False,
        vocabulary: LabelTrie | None = None,
        hotwords: LabelTrie | None = None,
    ):
        self.n_classes = n_classes
        self.blank = blank
        self.space = space
        self.beam_width = beam_width
        self.cutoff_top_n = cutoff_top_n
        self.cutoff_prob = cutoff_prob
        self.lm = lm
        self.use_lm = lm is not None
        self.alpha = alpha
        self.beta = beta
        self.oov_penalty = oov_penalty
        self.oov_word_penalty = oov_word_penalty
        self.use_vocabulary = use_vocabulary
        self.vocabulary = vocabulary if vocabulary is not None else LabelTrie.build([])
        self.hotwords = hotwords if hotwords is not None else LabelTrie.build([])
        self.use_hotwords = self.hotwords.n_nodes > 1
        self.cutoff_slack = 0.0
        if self.use_lm and beta > 0.0:
            self.cutoff_slack += beta
        self.root = Node(None, ROOT_LABEL)
        self.root.p_b = 0.0
        self.root.score = 0.0
        self.root.in_beam = True
        self.beam = [self.root]

    # -- language model ----------------------------------------------------------------
    def word_of(self, node: Node) -> bytes:
        word = []
        while node.parent is not None and node.label != self.space:
            word.append(node.label)
            node = node.parent
        return bytes(reversed(word))

    # -- the prefix trie ---------------------------------------------------------------
    def make_child(self, parent: Node, c: int) -> Node:
        bonus = 0.0
        lm_state = parent.lm_state
        vocab = parent.vocab_node
        hot = parent.hot_node
        partial = parent.hot_partial
        at_word_start = parent.parent is None or parent.label == self.space
        hot_trie = self.hotwords
        was_in_vocabulary = vocab >= 0
        if c == self.space:
            if self.use_lm and not at_word_start:
                word_log_prob, lm_state = self.lm.score_word(
                    lm_state, self.word_of(parent)
                )
                bonus += self.alpha * word_log_prob + self.beta
            if not at_word_start and self.ends_short_of_a_word(parent):
                bonus += self.oov_word_penalty
            vocab = 0
            if self.use_hotwords:
                nxt = -1
                if hot > 0:
                    nxt = hot_trie.child(hot, c)
                if nxt > 0:
                    if hot_trie.terminal[hot]:
                        partial = 0.0
                    partial += float(hot_trie.boost[nxt])
                    bonus += float(hot_trie.boost[nxt])
                    hot = nxt
                else:
                    if not (hot > 0 and hot_trie.terminal[hot]):
                        bonus -= partial
                    partial = 0.0
                    hot = 0
        else:
            if self.use_vocabulary and vocab >= 0:
                vocab = self.vocabulary.child(vocab, c)
            if self.use_hotwords:
                nxt = -1
                if hot >= 0:
                    nxt = hot_trie.child(hot, c)
                if nxt < 0 and hot > 0:
                    bonus -= partial
                    partial = 0.0
                    if at_word_start:
                        nxt = hot_trie.child(0, c)
                if nxt > 0:
                    partial += float(hot_trie.boost[nxt])
                    bonus += float(hot_trie.boost[nxt])
                    hot = nxt
                else:
                    hot = -1
            if self.use_vocabulary and vocab < 0 and hot <= 0:
                bonus += self.oov_penalty
                if was_in_vocabulary:  # the letter where the word leaves the vocabulary
                    bonus += self.oov_word_penalty
        child = Node(parent, c)
        child.bonus = bonus
        child.lm_state = lm_state
        child.vocab_node = vocab
        child.hot_node = hot
        child.hot_partial = partial
        parent.children[c] = child
        return child

    def ends_short_of_a_word(self, node: Node) -> bool:
        """Whether the word ending at ``node`` stopped inside the vocabulary trie on a
        prefix that is no vocabulary word (such a word is out of the vocabulary but
        left the trie nowhere, so ``oov_word_penalty`` is charged where it ends)."""
        return (
            self.use_vocabulary
            and node.vocab_node >= 0
            and node.hot_node <= 0
            and not self.vocabulary.terminal[node.vocab_node]
        )

    # -- one frame ---------------------------------------------------------------------
    def step(self, row: np.ndarray) -> None:
        V = self.n_classes
        # 1. pruned classes
        classes = sorted((-float(row[v]), v) for v in range(V))
        n_keep = min(self.cutoff_top_n, V)
        if self.cutoff_prob < 1.0:
            cumulative = 0.0
            keep = 0
            for i in range(n_keep):
                cumulative += math.exp(-classes[i][0])
                keep += 1
                if cumulative >= self.cutoff_prob:
                    break
            n_keep = keep
        # a vocabulary-only search (oov_penalty -inf) always tries the blank too (after
        # the kept classes), or a frame could lose every prefix
        kept = classes[:n_keep]
        if self.oov_penalty == NEG_INF and all(c != self.blank for _, c in kept):
            kept.append(next(item for item in classes if item[1] == self.blank))
        classes, n_keep = kept, len(kept)
        # 2. min_cutoff
        min_cutoff = NEG_INF
        if len(self.beam) >= self.beam_width:
            min_cutoff = (
                self.beam[-1].score + float(row[self.blank]) - self.cutoff_slack
            )
        # 3. extensions
        candidates = list(self.beam)
        for prefix in self.beam:
            prefix.is_candidate = True
        for i in range(n_keep):
            c = classes[i][1]
            lp = -classes[i][0]
            for prefix in self.beam:
                if lp + prefix.score < min_cutoff:
                    break
                if c == self.blank:
                    prefix.new_p_b = log_add(prefix.new_p_b, prefix.score + lp)
                    continue
                if c == prefix.label:
                    prefix.new_p_nb = log_add(prefix.new_p_nb, prefix.p_nb + lp)
                    base = prefix.p_b
                else:
                    base = prefix.score
                if base == NEG_INF:
                    continue
                if (
                    c == self.space
                    and self.use_lm
                    and (prefix.parent is None or prefix.label == self.space)
                ):
                    # a space that would end no word leaves the text as it is
                    prefix.new_p_b = log_add(prefix.new_p_b, base + lp)
                    continue
                child = prefix.children.get(c)
                if child is None:
                    child = self.make_child(prefix, c)
                log_p = base + lp + child.bonus
                child.new_p_nb = log_add(child.new_p_nb, log_p)
                if not child.is_candidate:
                    child.is_candidate = True
                    candidates.append(child)
        # 4. selection
        order = []
        for i, node in enumerate(candidates):
            score = log_add(node.new_p_b, node.new_p_nb)
            if score > NEG_INF:
                order.append((-score, i))
        order.sort()
        keep = min(len(order), self.beam_width)
        for node in candidates:
            node.is_candidate = False
            node.in_beam = False
        self.beam = []
        for i in range(keep):
            node = candidates[order[i][1]]
            self.beam.append(node)
            node.in_beam = True
        for node in candidates:
            if node.in_beam:
                node.p_b = node.new_p_b
                node.p_nb = node.new_p_nb
                node.score = log_add(node.p_b, node.p_nb)
            else:
                node.p_b = NEG_INF
                node.p_nb = NEG_INF
                node.score = NEG_INF
            node.new_p_b = NEG_INF
            node.new_p_nb = NEG_INF

    def feed(self, log_probs: np.ndarray) -> None:
        for row in np.asarray(log_probs, dtype=np.float32):
            self.step(row)

    def end_bonus(self, node: Node) -> float:
        extra = 0.0
        state = node.lm_state
        hot = node.hot_node
        in_word = node.parent is not None and node.label != self.space
        if self.use_lm:
            if in_word:
                word_log_prob, state = self.lm.score_word(state, self.word_of(node))
                extra += self.alpha * word_log_prob + self.beta
            extra += self.alpha * self.lm.score_end(state)
        if in_word and self.ends_short_of_a_word(node):
            extra += self.oov_word_penalty
        if self.use_hotwords and hot > 0 and not self.hotwords.terminal[hot]:
            extra -= node.hot_partial
        return extra

    def best(self, n_best: int) -> list[tuple[np.ndarray, float]]:
        ranked = sorted(
            (-(node.score + self.end_bonus(node)), i)
            for i, node in enumerate(self.beam)
        )
        return [
            (np.asarray(self.beam[i].labels(), dtype=np.int32), -negative)
            for negative, i in ranked[:n_best]
        ]


def viterbi_align_reference(
    log_probs: np.ndarray, labels: np.ndarray, blank: int, fold_space: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy spec of the compiled ``viterbi_align`` (same arguments and results)."""
    T = log_probs.shape[0]
    L = len(labels)
    S = 2 * L + 1
    frames = np.full(L, -1, dtype=np.int32)
    token_log_probs = np.full(L, NEG_INF)
    if L == 0:
        return frames, token_log_probs
    if T == 0:
        raise ValueError("no alignment: no frames")
    extended = np.full(
        S, blank, dtype=np.int64
    )  # (S,) blank, l1, blank, l2, ..., blank
    extended[1::2] = labels
    # s - 2 is a predecessor of a label that differs from the label before it
    skip = np.zeros(S, dtype=bool)
    skip[3::2] = np.asarray(labels[1:]) != np.asarray(labels[:-1])
    # blank states that also absorb a folded space: before the text and after a space
    folds = np.zeros(S, dtype=bool)
    if fold_space >= 0:
        folds[0] = True
        folds[2::2] = np.asarray(labels) == fold_space  # states 2, 4, ..., 2L
    emissions = log_probs[:, extended].astype(np.float64)  # (T, S)
    if fold_space >= 0:
        spaces = log_probs[:, [fold_space]].astype(np.float64)  # (T, 1)
        emissions = np.where(folds & (spaces > emissions), spaces, emissions)
    previous = np.full(S, NEG_INF)
    previous[0] = emissions[0, 0]
    previous[1] = emissions[0, 1]
    back = np.zeros((T, S), dtype=np.int8)
    for t in range(1, T):
        stay = previous
        one = np.concatenate(([NEG_INF], previous[:-1]))
        two = np.where(
            skip, np.concatenate(([NEG_INF, NEG_INF], previous[:-2])), NEG_INF
        )
        # strict '>' order: stay wins ties, then s - 1
        step = np.where(one > stay, 1, 0)
        best = np.maximum(stay, one)
        step = np.where(two > best, 2, step)
        best = np.maximum(best, two)
        back[t] = step
        previous = np.where(best > NEG_INF, best + emissions[t], NEG_INF)
    s = S - 1
    if S >= 2 and previous[S - 2] > previous[S - 1]:
        s = S - 2
    if previous[s] == NEG_INF:
        raise ValueError("no alignment of the labels to the frames exists")
    for t in range(T - 1, -1, -1):
        if s % 2 == 1:
            k = s // 2
            frames[k] = t
            token_log_probs[k] = max(token_log_probs[k], float(log_probs[t, labels[k]]))
        if t > 0:
            s -= back[t, s]
    return frames, token_log_probs
