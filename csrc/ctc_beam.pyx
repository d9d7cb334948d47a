# distutils: language = c++
# cython: language_level=3
"""CTC prefix beam search with a word-level language model and hot-words, compiled.

Mirrors ``npspeech.decoder._beam_ref`` step by step: same names, same pruning order,
same tie-breaking, so that any difference can be bisected. The Python layer
(``npspeech.decoder.beam``) validates every input; this module trusts them.

Prefixes live in a trie of nodes (parent, last label); extending a prefix is a child
lookup, and a prefix's text is recovered by walking parents. Each node carries the
state that is a function of its text alone: the language-model state after its last
completed word, its positions in the vocabulary and hot-word tries, and ``bonus``, the
log-score added to every path entering it (LM, word bonus, hot-word boost, OOV penalty).

The frame loop runs without the GIL. The language model is a Python object (KenLM needs
the GIL): the search looks ``(LM state, word)`` up in an :class:`LmCache` and takes the
GIL only on a miss. A decoder lends one cache to its searches in turn, so the answers
outlive the utterance (a fresh cache per utterance sent ~800 words per utterance back
through Python, a quarter of the decoding time with an LM).
"""

from cython.operator cimport dereference as deref
from libc.math cimport INFINITY, exp, log1p
from libc.string cimport memset
from libcpp.algorithm cimport nth_element, partial_sort, sort
from libcpp.string cimport string
from libcpp.unordered_map cimport unordered_map
from libcpp.utility cimport pair
from libcpp.vector cimport vector

import numpy as np

cimport numpy as cnp

cnp.import_array()

cdef double NEG_INF = -INFINITY
cdef int ROOT = 0


cdef struct Node:
    int parent
    int label           # class id of the last label; -1 at the root
    int n_children      # live children (their ids are in the search's child_table)
    double p_b          # ln P(prefix, ending in blank) after the previous frame
    double p_nb         # ln P(prefix, ending in its last label) after the last frame
    double new_p_b      # the same, accumulated during the current frame
    double new_p_nb
    double score        # log_add(p_b, p_nb): the prefix's total log-score
    double bonus        # added to every path that enters this node
    int lm_state        # LM state id after the last completed word
    int vocab_node      # node of the vocabulary trie (-1: the word left it)
    int hot_node        # node of the hot-word trie (0: word start, -1: no match)
    double hot_partial  # boost collected by the unfinished hot-word match
    bint in_beam
    bint is_candidate


cdef struct LmEntry:
    double log_prob
    int next_state


cdef class LmCache:
    """Language-model answers shared by the searches that use it one after another:
    ``ln P(word | state)`` and the state after it, keyed by (state, word), and
    ``ln P(</s> | state)``.

    The answers are the LM bridge's, before ``alpha`` and ``beta``, so a cache stays
    valid while those change; it must only serve searches over the same LM bridge. It
    is not locked: one search at a time may use it.

    Parameters
    ----------
    max_entries : int
        Word answers kept; the cache is emptied when it reaches this (memory bound).
    """

    cdef unordered_map[string, LmEntry] words
    cdef unordered_map[int, double] ends
    cdef readonly size_t max_entries

    def __cinit__(self, size_t max_entries=1 << 21):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries

    def __len__(self):
        return self.words.size()


cdef inline void sort_best(vector[pair[double, int]]& items, int k) noexcept nogil:
    """Put the ``k`` smallest pairs first, in order (the rest in no order).

    Selecting, then sorting only the ``k``: a heap-based ``partial_sort`` of the ~3,000
    candidates of a frame into a beam of 100 took a fifth of the search's time. The
    pairs are distinct (their second members are), so the result is the same.
    """
    if k < <int>items.size():
        nth_element(items.begin(), items.begin() + k, items.end())
    sort(items.begin(), items.begin() + k)


cdef inline double log_add(double a, double b) noexcept nogil:
    """ln(exp(a) + exp(b)) without overflow."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + log1p(exp(b - a))
    return b + log1p(exp(a - b))


cdef inline int trie_child(
    const int[::1] start, const int[::1] label, const int[::1] node, int parent, int c
) noexcept nogil:
    """Child of ``parent`` along label ``c`` in a flattened trie, or -1."""
    cdef int edge
    for edge in range(start[parent], start[parent + 1]):
        if label[edge] == c:
            return node[edge]
    return -1


cdef class PrefixBeamSearch:
    """State of one prefix beam search; frames are fed in order, in any chunking.

    Parameters
    ----------
    n_classes : int
        V, the number of classes of each frame (the blank included).
    blank : int
        Class id of the blank.
    space : int
        Class id of the word separator, or -1 when the alphabet has none.
    beam_width, cutoff_top_n : int
        Prefixes kept per frame; classes considered per frame.
    cutoff_prob : float
        Keep the likeliest classes until their probabilities sum to this (1.0: off).
    lm : object or None
        ``lm.score_word(state: int, word: bytes) -> (ln_prob, next_state)`` and
        ``lm.score_end(state: int) -> ln_prob``; ``word`` holds one class id per byte.
    alpha, beta : float
        LM weight and per-word bonus (ignored without ``lm``).
    oov_penalty : float
        Added for every letter spelled outside the vocabulary trie (<= 0; -inf prunes).
    oov_word_penalty : float
        Added once per word outside the vocabulary (<= 0): at the letter where it
        leaves the vocabulary trie, or where it ends when it stops on a trie node that
        is no word's end.
    use_vocabulary : bool
        Whether the vocabulary trie is checked.
    vocab_start, vocab_label, vocab_node : int32 arrays
        The vocabulary trie (``npspeech.decoder.hotwords.LabelTrie``).
    vocab_terminal : uint8 array
        1 where a vocabulary word ends.
    hot_start, hot_label, hot_node : int32 arrays
        The hot-word trie.
    hot_boost : float64 array
        Boost per hot-word trie node.
    hot_terminal : uint8 array
        1 where a hot-word ends.
    lm_cache : LmCache, optional
        Where the LM's answers are kept (default: a new cache of this search's own).
    """

    cdef vector[Node] nodes
    cdef vector[int] child_table  # (n_nodes, V): child of node n along class c, or -1
    cdef vector[int] free_nodes
    cdef vector[int] beam
    cdef vector[int] candidates
    cdef vector[pair[double, int]] order
    cdef vector[pair[double, int]] classes
    cdef LmCache lm_cache
    cdef int n_classes, blank, space, beam_width, cutoff_top_n
    cdef double cutoff_prob, alpha, beta, oov_penalty, oov_word_penalty, cutoff_slack
    cdef bint use_lm, use_vocabulary, use_hotwords, failed
    # the vocabulary lists every LM word: a word outside it is KenLM's <unk>, whose
    # score and next state depend on the history alone (one cache entry per history)
    cdef bint unknown_words_alike
    cdef object lm
    cdef object error
    cdef const int[::1] vocab_start
    cdef const int[::1] vocab_label
    cdef const int[::1] vocab_node
    cdef const unsigned char[::1] vocab_terminal
    cdef const int[::1] hot_start
    cdef const int[::1] hot_label
    cdef const int[::1] hot_node
    cdef const double[::1] hot_boost
    cdef const unsigned char[::1] hot_terminal
    cdef public long frames_seen
    cdef public long lm_misses

    def __cinit__(
        self,
        int n_classes,
        int blank,
        int space,
        int beam_width,
        int cutoff_top_n,
        double cutoff_prob,
        object lm,
        double alpha,
        double beta,
        double oov_penalty,
        double oov_word_penalty,
        bint use_vocabulary,
        const int[::1] vocab_start,
        const int[::1] vocab_label,
        const int[::1] vocab_node,
        const unsigned char[::1] vocab_terminal,
        const int[::1] hot_start,
        const int[::1] hot_label,
        const int[::1] hot_node,
        const double[::1] hot_boost,
        const unsigned char[::1] hot_terminal,
        LmCache lm_cache=None,
        bint unknown_words_alike=False,
    ):
        self.lm_cache = LmCache() if lm_cache is None else lm_cache
        self.unknown_words_alike = unknown_words_alike
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
        self.vocab_start = vocab_start
        self.vocab_label = vocab_label
        self.vocab_node = vocab_node
        self.vocab_terminal = vocab_terminal
        self.hot_start = hot_start
        self.hot_label = hot_label
        self.hot_node = hot_node
        self.hot_boost = hot_boost
        self.hot_terminal = hot_terminal
        self.use_hotwords = hot_boost.shape[0] > 1
        # What a single extension can gain from the word bonus: the beam cut-off
        # (DeepSpeech's min_cutoff) leaves that much room. Hot-word boosts are left out,
        # as in DeepSpeech, so that hot-words do not loosen the pruning.
        self.cutoff_slack = 0.0
        if self.use_lm and beta > 0.0:
            self.cutoff_slack += beta
        self.error = None
        self.failed = False
        self.frames_seen = 0
        self.lm_misses = 0
        cdef Node root
        root.parent = -1
        root.label = -1
        root.n_children = 0
        root.p_b = 0.0
        root.p_nb = NEG_INF
        root.new_p_b = NEG_INF
        root.new_p_nb = NEG_INF
        root.score = 0.0
        root.bonus = 0.0
        root.lm_state = 0
        root.vocab_node = 0
        root.hot_node = 0
        root.hot_partial = 0.0
        root.in_beam = True
        root.is_candidate = False
        self.nodes.push_back(root)
        self.child_table.resize(n_classes, -1)
        self.beam.push_back(ROOT)

    # -- language model ----------------------------------------------------------------
    cdef double lm_word(
        self, int state, const string& word, int vocab, int* next_state
    ) noexcept nogil:
        """ln P(word | state): from the cache, or from Python (GIL held) on a miss.

        ``vocab`` is the vocabulary-trie node where the word ends (-1: it left the
        trie). With ``unknown_words_alike`` a word outside the vocabulary is looked up
        under its history alone.
        """
        cdef bint unknown = self.unknown_words_alike and (
            vocab < 0 or not self.vocab_terminal[vocab]
        )
        cdef string key = string(<const char*>&state, sizeof(int))
        if not unknown:  # a word is never empty, so the two kinds of key never meet
            key.append(word)
        cdef unordered_map[string, LmEntry].iterator found = (
            self.lm_cache.words.find(key)
        )
        if found != self.lm_cache.words.end():
            next_state[0] = deref(found).second.next_state
            return deref(found).second.log_prob
        cdef LmEntry entry
        entry.log_prob = 0.0
        entry.next_state = state
        with gil:
            try:
                if unknown:
                    value, after = self.lm.score_unknown(state)
                else:
                    value, after = self.lm.score_word(
                        state, word.c_str()[:word.size()]
                    )
                entry.log_prob = value
                entry.next_state = after
                self.lm_misses += 1
            except BaseException as error:
                self.error = error
                self.failed = True
                next_state[0] = state
                return 0.0
        if self.lm_cache.words.size() >= self.lm_cache.max_entries:
            self.lm_cache.words.clear()
        self.lm_cache.words[key] = entry
        next_state[0] = entry.next_state
        return entry.log_prob

    cdef double lm_end(self, int state) noexcept nogil:
        """ln P(</s> | state), at the end of the utterance: cached as ``lm_word``."""
        cdef unordered_map[int, double].iterator found = self.lm_cache.ends.find(state)
        if found != self.lm_cache.ends.end():
            return deref(found).second
        cdef double value = 0.0
        with gil:
            try:
                value = self.lm.score_end(state)
            except BaseException as error:
                self.error = error
                self.failed = True
                return 0.0
        if self.lm_cache.ends.size() >= self.lm_cache.max_entries:
            self.lm_cache.ends.clear()
        self.lm_cache.ends[state] = value
        return value

    cdef string word_of(self, int node) noexcept nogil:
        """Class ids (one per byte) of the word that ends at ``node``."""
        cdef string word
        while node != ROOT and self.nodes[node].label != self.space:
            word.push_back(<char>self.nodes[node].label)
            node = self.nodes[node].parent
        return string(word.rbegin(), word.rend())

    # -- the prefix trie ---------------------------------------------------------------
    cdef inline int hot_child(self, int node, int c) noexcept nogil:
        return trie_child(self.hot_start, self.hot_label, self.hot_node, node, c)

    cdef inline int find_child(self, int parent, int c) noexcept nogil:
        return self.child_table[<size_t>parent * self.n_classes + c]

    cdef inline bint ends_short_of_a_word(self, int node) noexcept nogil:
        """Whether the word ending at ``node`` stopped inside the vocabulary trie on a
        prefix that is no vocabulary word (out of the vocabulary, yet it left the trie
        nowhere: ``oov_word_penalty`` is charged where it ends)."""
        cdef int vocab = self.nodes[node].vocab_node
        return (
            self.use_vocabulary
            and vocab >= 0
            and self.nodes[node].hot_node <= 0
            and not self.vocab_terminal[vocab]
        )

    cdef int make_child(self, int parent, int c) noexcept nogil:
        """Create the node ``parent + c`` with the state its text implies."""
        cdef Node child
        memset(&child, 0, sizeof(Node))
        cdef double bonus = 0.0
        cdef double word_log_prob
        cdef int lm_state = self.nodes[parent].lm_state
        cdef int vocab = self.nodes[parent].vocab_node
        cdef int hot = self.nodes[parent].hot_node
        cdef double partial = self.nodes[parent].hot_partial
        cdef bint at_word_start = (
            parent == ROOT or self.nodes[parent].label == self.space
        )
        cdef int nxt
        cdef bint was_in_vocabulary = vocab >= 0
        if c == self.space:
            if self.use_lm and not at_word_start:
                word_log_prob = self.lm_word(
                    lm_state, self.word_of(parent), vocab, &lm_state
                )
                bonus += self.alpha * word_log_prob + self.beta
            if not at_word_start and self.ends_short_of_a_word(parent):
                bonus += self.oov_word_penalty
            vocab = 0
            if self.use_hotwords:
                nxt = -1
                if hot > 0:
                    nxt = self.hot_child(hot, c)
                if nxt > 0:
                    # a space inside a phrase; a whole phrase before it keeps its boost
                    if self.hot_terminal[hot]:
                        partial = 0.0
                    partial += self.hot_boost[nxt]
                    bonus += self.hot_boost[nxt]
                    hot = nxt
                else:
                    if not (hot > 0 and self.hot_terminal[hot]):
                        bonus -= partial
                    partial = 0.0
                    hot = 0
        else:
            if self.use_vocabulary and vocab >= 0:
                vocab = trie_child(
                    self.vocab_start, self.vocab_label, self.vocab_node, vocab, c
                )
            if self.use_hotwords:
                nxt = -1
                if hot >= 0:
                    nxt = self.hot_child(hot, c)
                if nxt < 0 and hot > 0:
                    # the spelling broke off: withdraw the unfinished match's boost
                    bonus -= partial
                    partial = 0.0
                    if at_word_start:
                        nxt = self.hot_child(0, c)
                if nxt > 0:
                    partial += self.hot_boost[nxt]
                    bonus += self.hot_boost[nxt]
                    hot = nxt
                else:
                    hot = -1
            if self.use_vocabulary and vocab < 0 and hot <= 0:
                # every letter spelled outside the vocabulary (and outside a hot-word),
                # and once more the letter where the word leaves it
                bonus += self.oov_penalty
                if was_in_vocabulary:
                    bonus += self.oov_word_penalty
        cdef int index
        if self.free_nodes.size() > 0:
            index = self.free_nodes.back()
            self.free_nodes.pop_back()
        else:
            index = <int>self.nodes.size()
            self.nodes.push_back(child)
            self.child_table.resize(self.child_table.size() + self.n_classes, -1)
        child.parent = parent
        child.label = c
        child.n_children = 0
        child.p_b = NEG_INF
        child.p_nb = NEG_INF
        child.new_p_b = NEG_INF
        child.new_p_nb = NEG_INF
        child.score = NEG_INF
        child.bonus = bonus
        child.lm_state = lm_state
        child.vocab_node = vocab
        child.hot_node = hot
        child.hot_partial = partial
        child.in_beam = False
        child.is_candidate = False
        self.nodes[index] = child
        self.nodes[parent].n_children += 1
        self.child_table[<size_t>parent * self.n_classes + c] = index
        return index

    cdef void release(self, int node) noexcept nogil:
        """Free ``node`` and its ancestors while childless and out of the beam."""
        cdef int parent, c
        while (
            node != ROOT
            and not self.nodes[node].in_beam
            and not self.nodes[node].is_candidate
            and self.nodes[node].n_children == 0
        ):
            parent = self.nodes[node].parent
            c = self.nodes[node].label
            self.child_table[<size_t>parent * self.n_classes + c] = -1
            self.nodes[parent].n_children -= 1
            self.nodes[node].parent = -1
            self.free_nodes.push_back(node)
            node = parent

    cdef void release_children(self, int node) noexcept nogil:
        """Free the childless children of ``node`` that are out of the beam (and then
        ``node`` itself, and so on up, by :meth:`release`)."""
        cdef int c, child
        cdef size_t row = <size_t>node * self.n_classes
        for c in range(self.n_classes):
            child = self.child_table[row + c]
            if child >= 0:
                self.release(child)

    # -- one frame ---------------------------------------------------------------------
    cdef void step(self, const float* row) noexcept nogil:
        cdef int V = self.n_classes
        cdef int v, i, j, c, prefix, child, node, keep
        cdef double lp, base, log_p, cumulative, min_cutoff, score
        cdef pair[double, int] moved
        # 1. pruned classes: likeliest first (ties: lower class id), top-n, cutoff_prob
        self.classes.clear()
        for v in range(V):
            self.classes.push_back(pair[double, int](-(<double>row[v]), v))
        cdef int n_keep = self.cutoff_top_n if self.cutoff_top_n < V else V
        sort_best(self.classes, n_keep)
        if self.cutoff_prob < 1.0:
            cumulative = 0.0
            keep = 0
            for i in range(n_keep):
                cumulative += exp(-self.classes[i].first)
                keep += 1
                if cumulative >= self.cutoff_prob:
                    break
            n_keep = keep
        # a vocabulary-only search (oov_penalty -inf) always tries the blank too (after
        # the kept classes, which are all likelier): without it a frame whose letters
        # hold the cut-off mass extends every prefix, possibly all out of the
        # vocabulary. Finite penalties keep every extension finite and need no blank
        # (forcing it there cost 1 CER point on kathleen test at cutoff_prob 0.99).
        for i in range(n_keep if self.oov_penalty == NEG_INF else V, V):
            if self.classes[i].second == self.blank:
                moved = self.classes[i]
                self.classes[i] = self.classes[n_keep]
                self.classes[n_keep] = moved
                n_keep += 1
                break
        # 2. DeepSpeech's min_cutoff: with a full beam, an extension scoring below the
        # worst prefix followed by a blank cannot enter the beam
        min_cutoff = NEG_INF
        if <int>self.beam.size() >= self.beam_width:
            min_cutoff = (
                self.nodes[self.beam.back()].score + <double>row[self.blank]
                - self.cutoff_slack
            )
        # 3. extend every prefix by every kept class
        self.candidates.clear()
        for j in range(<int>self.beam.size()):
            self.candidates.push_back(self.beam[j])
            self.nodes[self.beam[j]].is_candidate = True
        for i in range(n_keep):
            c = self.classes[i].second
            lp = -self.classes[i].first
            for j in range(<int>self.beam.size()):
                prefix = self.beam[j]
                if lp + self.nodes[prefix].score < min_cutoff:
                    break
                if c == self.blank:
                    self.nodes[prefix].new_p_b = log_add(
                        self.nodes[prefix].new_p_b, self.nodes[prefix].score + lp
                    )
                    continue
                if c == self.nodes[prefix].label:
                    # a repeat without a blank between collapses into the same prefix
                    self.nodes[prefix].new_p_nb = log_add(
                        self.nodes[prefix].new_p_nb, self.nodes[prefix].p_nb + lp
                    )
                    base = self.nodes[prefix].p_b
                else:
                    base = self.nodes[prefix].score
                if base == NEG_INF:
                    continue
                if (
                    c == self.space and self.use_lm
                    and (prefix == ROOT or self.nodes[prefix].label == self.space)
                ):
                    # with an LM a space only ends a word: one that would end no word
                    # (leading or doubled) leaves the text as it is, like a blank
                    self.nodes[prefix].new_p_b = log_add(
                        self.nodes[prefix].new_p_b, base + lp
                    )
                    continue
                child = self.find_child(prefix, c)
                if child < 0:
                    child = self.make_child(prefix, c)
                log_p = base + lp + self.nodes[child].bonus
                self.nodes[child].new_p_nb = log_add(self.nodes[child].new_p_nb, log_p)
                if not self.nodes[child].is_candidate:
                    self.nodes[child].is_candidate = True
                    self.candidates.push_back(child)
        # 4. keep the best beam_width candidates (ties: earlier candidate first)
        self.order.clear()
        for i in range(<int>self.candidates.size()):
            node = self.candidates[i]
            score = log_add(self.nodes[node].new_p_b, self.nodes[node].new_p_nb)
            if score > NEG_INF:
                self.order.push_back(pair[double, int](-score, i))
        keep = <int>self.order.size()
        if keep > self.beam_width:
            keep = self.beam_width
        sort_best(self.order, keep)
        for i in range(<int>self.candidates.size()):
            node = self.candidates[i]
            self.nodes[node].is_candidate = False
            self.nodes[node].in_beam = False
        self.beam.clear()
        for i in range(keep):
            node = self.candidates[self.order[i].second]
            self.beam.push_back(node)
            self.nodes[node].in_beam = True
        for i in range(<int>self.candidates.size()):
            node = self.candidates[i]
            if self.nodes[node].in_beam:
                self.nodes[node].p_b = self.nodes[node].new_p_b
                self.nodes[node].p_nb = self.nodes[node].new_p_nb
                self.nodes[node].score = log_add(
                    self.nodes[node].p_b, self.nodes[node].p_nb
                )
            else:
                # a prefix that leaves the beam loses its paths; it may come back later
                # through its parent, with fresh probabilities
                self.nodes[node].p_b = NEG_INF
                self.nodes[node].p_nb = NEG_INF
                self.nodes[node].score = NEG_INF
            self.nodes[node].new_p_b = NEG_INF
            self.nodes[node].new_p_nb = NEG_INF
        # 5. free what the next frame cannot extend. A prefix out of the beam whose
        # parent is in it stays in the trie: the next frame is likely to make it again
        # (freeing it, two in three of the prefixes a frame made had just been freed,
        # on a trained model's outputs with an LM), and its state (LM, tries, bonus) is
        # a function of its text, so keeping it changes nothing but the work. Its own
        # children are freed: nothing extends them. The root's children stay, at most
        # one per class.
        for i in range(<int>self.candidates.size()):
            node = self.candidates[i]
            if self.nodes[node].in_beam or self.nodes[node].parent < 0:
                continue
            if self.nodes[node].n_children > 0:
                self.release_children(node)
            if (
                self.nodes[node].parent >= 0  # the children's release may have freed it
                and not self.nodes[self.nodes[node].parent].in_beam
            ):
                self.release(node)

    # -- Python API --------------------------------------------------------------------
    def feed(self, const float[:, ::1] log_probs):
        """Advance the search by the frames of ``log_probs`` (float32, shape (T, V))."""
        cdef Py_ssize_t t, T = log_probs.shape[0]
        with nogil:
            for t in range(T):
                self.step(&log_probs[t, 0])
                if self.failed:
                    break
        self.frames_seen += T
        self.raise_pending()

    def raise_pending(self):
        if self.failed:
            error = self.error
            self.error = None
            raise error

    cdef double end_bonus(self, int node):
        """What ending the utterance adds: the last word, ``</s>``, open hot-words."""
        cdef double extra = 0.0
        cdef double word_log_prob
        cdef int state = self.nodes[node].lm_state
        cdef int hot = self.nodes[node].hot_node
        cdef bint in_word = node != ROOT and self.nodes[node].label != self.space
        if self.use_lm:
            if in_word:
                word_log_prob = self.lm_word(
                    state, self.word_of(node), self.nodes[node].vocab_node, &state
                )
                extra += self.alpha * word_log_prob + self.beta
            extra += self.alpha * self.lm_end(state)
        if in_word and self.ends_short_of_a_word(node):
            extra += self.oov_word_penalty
        if self.use_hotwords and hot > 0 and not self.hot_terminal[hot]:
            extra -= self.nodes[node].hot_partial
        return extra

    def best(self, int n_best):
        """The ``n_best`` best prefixes as if the utterance ended now (state kept).

        Returns
        -------
        list of (int32 array of shape (L,), float)
            Class ids of each prefix and its final log-score, best first (ties: beam
            order).
        """
        cdef vector[pair[double, int]] ranked
        cdef int i, node
        cdef double final
        for i in range(<int>self.beam.size()):
            node = self.beam[i]
            final = self.nodes[node].score + self.end_bonus(node)
            self.raise_pending()
            ranked.push_back(pair[double, int](-final, i))
        cdef int keep = <int>ranked.size() if n_best > <int>ranked.size() else n_best
        partial_sort(ranked.begin(), ranked.begin() + keep, ranked.end())
        results = []
        for i in range(keep):
            node = self.beam[ranked[i].second]
            results.append((self.labels_of(node), -ranked[i].first))
        return results

    cdef object labels_of(self, int node):
        cdef vector[int] reversed_labels
        while node != ROOT:
            reversed_labels.push_back(self.nodes[node].label)
            node = self.nodes[node].parent
        cdef Py_ssize_t L = reversed_labels.size(), k
        labels = np.empty(L, dtype=np.int32)
        cdef int[::1] out = labels
        for k in range(L):
            out[k] = reversed_labels[L - 1 - k]
        return labels

    @property
    def n_live_nodes(self):
        """Nodes in the prefix trie now (diagnostic: the beam plus its ancestors)."""
        return <long>(self.nodes.size() - self.free_nodes.size())


def viterbi_align(
    const float[:, ::1] log_probs, const int[::1] labels, int blank, int fold_space=-1
):
    """The best CTC alignment of ``labels`` to the frames (forced alignment).

    Parameters
    ----------
    log_probs : float32 array, shape (T, V)
        Per-frame log-probabilities.
    labels : int32 array, shape (L,)
        The transcript's class ids (no blanks); it must fit in T frames.
    blank : int
        Class id of the blank.
    fold_space : int
        Class id of the space when the search folded spaces that end no word into the
        prefix (with a language model), else -1: the blank states before the first label
        and after a space label then also accept a space frame.

    Returns
    -------
    frames : int32 array, shape (L,)
        First frame of each label on the best alignment.
    token_log_probs : float64 array, shape (L,)
        Largest log-probability of each label over the frames it occupies there.

    Raises
    ------
    ValueError
        When no alignment exists.
    """
    cdef Py_ssize_t T = log_probs.shape[0], L = labels.shape[0]
    cdef Py_ssize_t S = 2 * L + 1, t, s, k
    frames_array = np.full(L, -1, dtype=np.int32)
    token_array = np.full(L, NEG_INF, dtype=np.float64)
    if L == 0:
        return frames_array, token_array
    if T == 0:
        raise ValueError("no alignment: no frames")
    cdef double[::1] previous = np.full(S, NEG_INF)
    cdef double[::1] current = np.full(S, NEG_INF)
    cdef signed char[:, ::1] back = np.zeros((T, S), dtype=np.int8)
    cdef int[::1] frames = frames_array
    cdef double[::1] token_log_probs = token_array
    cdef double best, candidate, emit
    cdef int label, step
    # blank states that also absorb a folded space: before the text and after a space
    cdef unsigned char[::1] folds = np.zeros(S, dtype=np.uint8)
    if fold_space >= 0:
        folds[0] = 1
        for k in range(L):
            if labels[k] == fold_space:
                folds[2 * k + 2] = 1
    with nogil:
        previous[0] = log_probs[0, blank]
        if folds[0] and log_probs[0, fold_space] > previous[0]:
            previous[0] = log_probs[0, fold_space]
        previous[1] = log_probs[0, labels[0]]
        for t in range(1, T):
            for s in range(S):
                label = blank if s % 2 == 0 else labels[s // 2]
                # predecessors in order stay, s - 1, s - 2 (strict '>' keeps the first)
                best = previous[s]
                step = 0
                if s >= 1 and previous[s - 1] > best:
                    best = previous[s - 1]
                    step = 1
                if (
                    s >= 2 and s % 2 == 1 and labels[s // 2] != labels[s // 2 - 1]
                    and previous[s - 2] > best
                ):
                    best = previous[s - 2]
                    step = 2
                back[t, s] = step
                emit = log_probs[t, label]
                if folds[s] and log_probs[t, fold_space] > emit:
                    emit = log_probs[t, fold_space]
                current[s] = best + emit if best > NEG_INF else NEG_INF
            for s in range(S):
                previous[s] = current[s]
    s = S - 1
    if S >= 2 and previous[S - 2] > previous[S - 1]:
        s = S - 2
    if previous[s] == NEG_INF:
        raise ValueError("no alignment of the labels to the frames exists")
    with nogil:
        for t in range(T - 1, -1, -1):
            if s % 2 == 1:
                k = s // 2
                frames[k] = <int>t
                emit = log_probs[t, labels[k]]
                if emit > token_log_probs[k]:
                    token_log_probs[k] = emit
            if t > 0:
                s -= back[t, s]
    return frames_array, token_array
