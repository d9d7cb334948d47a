"""Reader for DeepSpeech's ``.scorer`` packages (format version 6, DeepSpeech 0.7-0.9).

A ``.scorer`` is three things back to back, all in the byte order of the machine that
wrote it (little-endian in every released file):

1. A KenLM binary language model ("mmap lm ... format version 5"), loadable as it is by
   ``kenlm.Model``, which ignores what follows it.
2. At KenLM's *end-of-search offset* (where the model's data structures end;
   DeepSpeech's ``Scorer::load_lm`` seeks there), a 25-byte header:

   ======  =======  ====================================================================
   offset  type     field
   ======  =======  ====================================================================
   0       int32    magic ``'TRIE'`` as a C multi-character constant: 0x54524945, so the
                    bytes read ``EIRT``
   4       int32    format version, 6
   8       bool     ``is_utf8``: labels are UTF-8 bytes rather than alphabet classes
   9       float64  default alpha (language-model weight)
   17      float64  default beta (word-insertion bonus)
   ======  =======  ====================================================================

3. An OpenFST ``ConstFst<StdArc>`` (see :func:`read_const_fst`): the lexicon as a
   deterministic, minimised acceptor. Every path from the start state to a final state
   spells one vocabulary word. An arc's label is the alphabet class of a character plus
   one (label 0 is OpenFST's epsilon) with the space label closing every word, or in
   UTF-8 mode a byte value plus one (no terminator). Checked on
   ``data/smoke_test/pruned_lm.scorer``: with DeepSpeech's English alphabet the 3,540
   spelled words are exactly the lines of its ``vocab.pruned.txt``.

The end-of-search offset is computed from the KenLM header (:func:`kenlm_end_of_search`)
for the trie models DeepSpeech's tooling writes (``build_binary ... trie``, with or
without quantisation and pointer compression): it is the header size plus the sizes of
the sorted vocabulary table and of the trie's arrays, which depend only on the n-gram
counts and on the bit widths stored at the start of the quantiser and
pointer-compression blocks. For hash-table ("probing") models the sizes depend on struct
packing that could not be checked here, so the header is instead located by scanning for
its full 29-byte signature (magic, version 6, a 0/1 flag, and the OpenFST magic 25 bytes
later).
"""

from __future__ import annotations

import math
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..alphabet import Alphabet, english
from ..errors import ScorerError
from ..fileio import write_atomically

# --- KenLM binary header (lm/binary_format.cc) ---------------------------------------
# The magic is the literal "...version 5\n\0" stored with sizeof(), so with its implicit
# terminator: 53 bytes. The whole "Sanity" struct (magic, three floats, two word
# indices, one uint64, with C alignment) is 88 bytes; "FixedWidthParameters" is 20 more.
KENLM_MAGIC = b"mmap lm http://kheafield.com/code format version 5\n\0\0"
KENLM_MAGIC_PREFIX = b"mmap lm http://kheafield.com/code"
_SANITY_SIZE = 88
# order, probing multiplier, model type, has vocabulary, search version
_FIXED_PARAMETERS = struct.Struct("<B3xfi?3xI")
# Sanity values at offset 56: 0.0, 1.0, -0.5, word index 1, 0xFFFFFFFF, uint64 1.
_SANITY_VALUES = struct.Struct("<fffII4xQ")
_EXPECTED_SANITY = (0.0, 1.0, -0.5, 1, 0xFFFFFFFF, 1)

# KenLM's ModelType enumeration (lm/model_type.hh).
KENLM_MODEL_TYPES = {
    0: "probing",
    1: "rest_probing",
    2: "trie",
    3: "quant_trie",
    4: "array_trie",
    5: "quant_array_trie",
}
_QUANTIZED = {3, 5}
_ARRAY_POINTERS = {4, 5}
_SEPARATELY_QUANTIZE_VERSION = 2  # first byte of a quantiser block
_ARRAY_BHIKSHA_VERSION = 0  # first byte of a pointer-compression block

# --- DeepSpeech scorer header (native_client/ctcdecode/scorer.cpp) --------------------
TRIE_MAGIC = 0x54524945  # 'TRIE' as a multi-character int constant
SCORER_VERSION = 6
# magic, version, is_utf8, alpha, beta: 25 bytes
_SCORER_HEADER = struct.Struct("<ii?dd")
_ALPHA_BETA = struct.Struct("<dd")
_ALPHA_OFFSET = 9  # alpha and beta follow magic, version and the flag

# --- OpenFST binary header (fst/fst.h) and ConstFst layout (fst/const-fst.h) ----------
FST_MAGIC = 0x7EB2FDD6  # 2125659606
_FST_HAS_INPUT_SYMBOLS = 1
_FST_HAS_OUTPUT_SYMBOLS = 2
_FST_IS_ALIGNED = 4
_FST_ALIGNMENT = 16  # arrays of an aligned ConstFst start at multiples of 16 bytes
# ConstState: final weight, first arc, arc count, input and output epsilon counts.
CONST_STATE_DTYPE = np.dtype(
    [("final", "<f4"), ("pos", "<u4"), ("narcs", "<u4"), ("nie", "<u4"), ("noe", "<u4")]
)
# StdArc: input label, output label, tropical weight, destination state.
STD_ARC_DTYPE = np.dtype(
    [("ilabel", "<i4"), ("olabel", "<i4"), ("weight", "<f4"), ("nextstate", "<i4")]
)
_SCAN_CHUNK = 1 << 24  # bytes read at a time while scanning for the scorer header


@dataclass(frozen=True)
class KenlmHeader:
    """What the fixed-size header of a KenLM binary says.

    Attributes
    ----------
    order : int
        Highest n-gram order.
    counts : tuple of int
        Number of n-grams of each order, unigrams first (``<s>``, ``</s>``, ``<unk>``
        included).
    model_type : int
        KenLM's ``ModelType`` code; ``model_name`` gives its name.
    has_vocabulary : bool
        Whether the word strings are stored after the search structures.
    search_version : int
        Version of the search structure's layout.
    probing_multiplier : float
        Hash-table space multiplier (probing models only).
    header_size : int
        Bytes before the vocabulary table: the header padded to 8 bytes.
    """

    order: int
    counts: tuple[int, ...]
    model_type: int
    model_name: str
    has_vocabulary: bool
    search_version: int
    probing_multiplier: float
    header_size: int

    @property
    def is_trie(self) -> bool:
        """True for the sorted-trie models (the kind DeepSpeech packages)."""
        return self.model_type in (2, 3, 4, 5)


@dataclass(frozen=True)
class LexiconFst:
    """An OpenFST ``ConstFst`` held as arrays.

    Attributes
    ----------
    start : int
        Start state, or -1 for an empty machine.
    final : ndarray of bool, shape (S,)
        Whether each state is final (finite final weight).
    arc_begin : ndarray of int64, shape (S,)
        Index of each state's first arc in the arc arrays.
    arc_count : ndarray of int64, shape (S,)
        Number of arcs leaving each state.
    ilabels : ndarray of int32, shape (A,)
        Input label of each arc (0 is epsilon).
    next_states : ndarray of int32, shape (A,)
        Destination state of each arc.
    """

    start: int
    final: np.ndarray
    arc_begin: np.ndarray
    arc_count: np.ndarray
    ilabels: np.ndarray
    next_states: np.ndarray

    @property
    def n_states(self) -> int:
        """Number of states ``S``."""
        return int(self.final.shape[0])

    @property
    def n_arcs(self) -> int:
        """Number of arcs ``A``."""
        return int(self.ilabels.shape[0])


@dataclass(frozen=True)
class DeepSpeechScorer:
    """A DeepSpeech ``.scorer`` as read by :func:`read_deepspeech_scorer`.

    Attributes
    ----------
    path : Path
        The file.
    kenlm : KenlmHeader
        Its language model's header.
    trie_offset : int
        Byte offset of the ``TRIE`` header (KenLM's end of search).
    alpha, beta : float
        The language-model weight and word bonus stored in the file.
    is_utf8 : bool
        True when lexicon labels are UTF-8 bytes (plus one) rather than alphabet
        classes.
    vocabulary : tuple of str
        Every word the lexicon spells, sorted.
    lexicon : LexiconFst
        The lexicon itself.
    """

    path: Path
    kenlm: KenlmHeader
    trie_offset: int
    alpha: float
    beta: float
    is_utf8: bool
    vocabulary: tuple[str, ...]
    lexicon: LexiconFst


# --- KenLM header ---------------------------------------------------------------------
def is_kenlm_binary(prefix: bytes) -> bool:
    """True when ``prefix`` (the first bytes of a file) starts like a KenLM binary."""
    return prefix.startswith(KENLM_MAGIC_PREFIX)


def read_kenlm_header(
    handle: BinaryIO, path: str | os.PathLike = "<stream>"
) -> KenlmHeader:
    """Parse the header of a KenLM binary from an open file positioned anywhere.

    Raises
    ------
    ScorerError
        Naming ``path`` when the magic, format version, byte order or counts are wrong
        or the header is cut short.
    """
    handle.seek(0)
    head = handle.read(_SANITY_SIZE + _FIXED_PARAMETERS.size)
    if not is_kenlm_binary(head):
        raise ScorerError(
            f"{path}: not a KenLM binary (no 'mmap lm' magic at the start)"
        )
    if not head.startswith(KENLM_MAGIC):
        version = head[len(KENLM_MAGIC_PREFIX) : len(KENLM_MAGIC)].split(b"\n")[0]
        found = version.decode(errors="replace")
        raise ScorerError(
            f"{path}: KenLM binary of an unsupported format ({found!r}); "
            "only 'format version 5' is read"
        )
    if len(head) < _SANITY_SIZE + _FIXED_PARAMETERS.size:
        raise ScorerError(f"{path}: truncated KenLM header ({len(head)} bytes)")
    if _SANITY_VALUES.unpack_from(head, 56) != _EXPECTED_SANITY:
        raise ScorerError(
            f"{path}: KenLM sanity values do not match this machine "
            "(written on a big-endian machine or corrupt)"
        )
    order, multiplier, model_type, has_vocabulary, search_version = (
        _FIXED_PARAMETERS.unpack_from(head, _SANITY_SIZE)
    )
    if order < 1 or model_type not in KENLM_MODEL_TYPES:
        raise ScorerError(
            f"{path}: corrupt KenLM header (order {order}, type {model_type})"
        )
    raw_counts = handle.read(8 * order)
    if len(raw_counts) < 8 * order:
        raise ScorerError(f"{path}: truncated KenLM header (n-gram counts cut short)")
    counts = struct.unpack(f"<{order}Q", raw_counts)
    if counts[0] < 1:
        raise ScorerError(f"{path}: corrupt KenLM header (no unigrams)")
    unpadded = _SANITY_SIZE + _FIXED_PARAMETERS.size + 8 * order
    return KenlmHeader(
        order=order,
        counts=tuple(int(c) for c in counts),
        model_type=model_type,
        model_name=KENLM_MODEL_TYPES[model_type],
        has_vocabulary=bool(has_vocabulary),
        search_version=search_version,
        probing_multiplier=float(multiplier),
        header_size=_align(unpadded, 8),
    )


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _required_bits(max_value: int) -> int:
    """Bits needed to store integers up to ``max_value`` (KenLM's ``RequiredBits``)."""
    return int(max_value).bit_length()


def _read_at(handle: BinaryIO, offset: int, size: int, path, what: str) -> bytes:
    handle.seek(offset)
    data = handle.read(size)
    if len(data) < size:
        raise ScorerError(f"{path}: truncated ({what} at byte {offset} is cut short)")
    return data


def kenlm_end_of_search(
    handle: BinaryIO, header: KenlmHeader, path: str | os.PathLike = "<stream>"
) -> int:
    """Byte offset where a trie KenLM binary's data structures end.

    The layout (``lm/search_trie.hh``, ``lm/trie.cc``, ``lm/bhiksha.cc``,
    ``lm/quantize.hh``, ``lm/vocab.cc``) after the header:

    - sorted vocabulary: one uint64 count, then one uint64 hash per unigram;
    - quantiser (quantised models): 8 bytes of bit widths and padding, then one float
      table of ``2**prob_bits`` entries per order >= 2 and one of ``2**backoff_bits``
      per middle order;
    - unigrams: ``counts[0] + 2`` records of (prob, backoff, next) = 16 bytes;
    - each middle order ``n``: an optional pointer-compression table (array models: an
      8-byte header, ``(counts[n] >> shift) + 1`` uint64 and 7 bytes of alignment
      slack), then ``counts[n-1] + 1`` bit-packed records of word id, weights and next
      pointer, plus 8 bytes of read-ahead slack;
    - the longest order: bit-packed word id and probability, plus 8 bytes of slack.

    Raises
    ------
    ScorerError
        For a hash-table model (not a trie) or a corrupt quantiser/pointer header.
    """
    if not header.is_trie:
        raise ScorerError(
            f"{path}: the end of a '{header.model_name}' KenLM model is not computed; "
            "only trie models are supported here"
        )
    counts = header.counts
    order = header.order
    search_start = header.header_size + 8 + 8 * counts[0]
    quantized = header.model_type in _QUANTIZED
    if quantized:
        version, prob_bits, backoff_bits = _read_at(
            handle, search_start, 3, path, "quantiser header"
        )
        if version != _SEPARATELY_QUANTIZE_VERSION:
            raise ScorerError(
                f"{path}: KenLM quantiser version {version}, expected "
                f"{_SEPARATELY_QUANTIZE_VERSION}"
            )
        longest_table = (1 << prob_bits) * 4
        middle_table = (1 << backoff_bits) * 4 + longest_table
        quant_size = (order - 2) * middle_table + longest_table + 8
        middle_bits = prob_bits + backoff_bits
        longest_bits = prob_bits
    else:
        quant_size = 0
        middle_bits = 63  # 31-bit non-positive probability + 32-bit backoff
        longest_bits = 31
    unigram_size = (counts[0] + 2) * 16
    pointer_bits = 0
    offset = search_start + quant_size + unigram_size
    if header.model_type in _ARRAY_POINTERS and order > 2:
        version, pointer_bits = _read_at(
            handle, offset, 2, path, "pointer-compression header"
        )
        if version != _ARRAY_BHIKSHA_VERSION:
            raise ScorerError(
                f"{path}: KenLM pointer-compression version {version}, expected "
                f"{_ARRAY_BHIKSHA_VERSION}"
            )
    array_pointers = header.model_type in _ARRAY_POINTERS
    vocab_bits = _required_bits(counts[0])
    for n in range(1, order - 1):
        entries, max_next = counts[n], counts[n + 1]
        if array_pointers:
            table_bytes, inline_bits = _array_pointer_layout(
                entries + 1, max_next, pointer_bits
            )
        else:
            table_bytes, inline_bits = 0, _required_bits(max_next)
        total_bits = vocab_bits + middle_bits + inline_bits
        offset += table_bytes + ((1 + entries) * total_bits + 7) // 8 + 8
    total_bits = vocab_bits + longest_bits
    offset += ((1 + counts[-1]) * total_bits + 7) // 8 + 8
    return offset


def _array_pointer_layout(
    max_offset: int, max_next: int, pointer_bits: int
) -> tuple[int, int]:
    """Table size in bytes and inline pointer bits of KenLM's sorted-array compression.

    The high bits of each next-pointer (``chop`` of them) move into a table of offsets;
    ``chop`` minimises table cost (64 bits per entry) minus the bits saved per record.
    """
    required = _required_bits(max_next)
    best_chop, lowest = 0, None
    for chop in range(0, min(required, pointer_bits) + 1):
        change = (max_next >> (required - chop)) * 64 - max_offset * chop
        if lowest is None or change < lowest:
            best_chop, lowest = chop, change
    array_count = (max_next >> (required - best_chop)) + 1
    return 8 * (1 + array_count) + 7, required - best_chop


def find_scorer_header(
    handle: BinaryIO,
    header: KenlmHeader,
    file_size: int,
    path: str | os.PathLike = "<stream>",
) -> int | None:
    """Offset of the ``TRIE`` header after a KenLM model, or None when there is none.

    Computed from the KenLM header for trie models; found by signature scan otherwise.
    A trie model with data after its end is taken for a scorer (so a damaged header is
    reported as such) unless the model stores its word strings there and no ``TRIE``
    magic is present.
    """
    if not header.is_trie:
        return _scan_for_scorer_header(handle, header.header_size, path)
    end = kenlm_end_of_search(handle, header, path)
    if end > file_size:
        raise ScorerError(
            f"{path}: truncated: the KenLM model needs {end} bytes, "
            f"the file has {file_size}"
        )
    if end == file_size:
        return None
    if header.has_vocabulary:
        handle.seek(end)
        if handle.read(4) != struct.pack("<i", TRIE_MAGIC):
            return None
    return end


def read_kenlm_vocabulary(
    handle: BinaryIO, header: KenlmHeader, path: str | os.PathLike = "<stream>"
) -> tuple[str, ...] | None:
    """Words stored after a trie KenLM model built with its vocabulary, sorted.

    KenLM writes them at the end of search as NUL-terminated UTF-8 strings
    (``lm/binary_format.cc``, ``WriteWordsWrapper``). ``<s>``, ``</s>`` and ``<unk>``
    are left out. None when the model has no word strings (DeepSpeech's scorers, built
    with ``build_binary -v``) or is not a trie.
    """
    if not (header.has_vocabulary and header.is_trie):
        return None
    handle.seek(kenlm_end_of_search(handle, header, path))
    strings = handle.read().split(b"\0")
    if strings and strings[-1] == b"":
        strings.pop()
    try:
        words = {word.decode("utf-8") for word in strings}
    except UnicodeDecodeError:
        raise ScorerError(f"{path}: KenLM word strings are not UTF-8") from None
    return tuple(sorted(words - {"<s>", "</s>", "<unk>"}))


def _scan_for_scorer_header(handle: BinaryIO, start: int, path) -> int | None:
    signature = struct.pack("<ii", TRIE_MAGIC, SCORER_VERSION)
    fst_magic = struct.pack("<I", FST_MAGIC)
    overlap = _SCORER_HEADER.size + 4
    position = start
    while True:
        handle.seek(position)
        chunk = handle.read(_SCAN_CHUNK + overlap)
        if len(chunk) < len(signature):
            return None
        found = chunk.find(signature)
        while found != -1:
            window = _read_at(handle, position + found, overlap, path, "scorer header")
            if window[8] in (0, 1) and window[_SCORER_HEADER.size :] == fst_magic:
                return position + found
            found = chunk.find(signature, found + 1)
        if len(chunk) <= _SCAN_CHUNK:
            return None
        position += _SCAN_CHUNK


# --- OpenFST ConstFst -----------------------------------------------------------------
def _read_fst_string(handle: BinaryIO, path) -> str:
    raw = handle.read(4)
    if len(raw) < 4:
        raise ScorerError(f"{path}: truncated OpenFST header")
    (length,) = struct.unpack("<i", raw)
    if not 0 <= length <= 256:
        raise ScorerError(f"{path}: corrupt OpenFST header (string length {length})")
    text = handle.read(length)
    if len(text) < length:
        raise ScorerError(f"{path}: truncated OpenFST header")
    return text.decode("ascii", errors="replace")


def read_const_fst(
    handle: BinaryIO, offset: int, path: str | os.PathLike = "<stream>"
) -> tuple[LexiconFst, int]:
    """Read an OpenFST ``ConstFst<StdArc>`` that starts at byte ``offset``.

    Layout (``fst/fst.h`` ``FstHeader``, ``fst/const-fst.h``): int32 magic 0x7eb2fdd6;
    the FST type (``"const"``) and arc type (``"standard"``) as int32 length + bytes;
    int32 version; int32 flags (1, 2: symbol tables follow; 4: arrays are aligned);
    uint64 properties; int64 start state, number of states, number of arcs. Then the
    states (20 bytes each: final weight, first arc, arc count, two epsilon counts) and
    the arcs (16 bytes each: input label, output label, weight, next state). In an
    aligned file each array starts at a multiple of 16 bytes counted from the start of
    the file (the stream position OpenFST pads against).

    Returns
    -------
    lexicon : LexiconFst
    end : int
        Offset just past the arcs.
    """
    handle.seek(offset)
    raw = handle.read(4)
    if len(raw) < 4:
        raise ScorerError(f"{path}: truncated: no OpenFST lexicon at byte {offset}")
    (magic,) = struct.unpack("<I", raw)
    if magic != FST_MAGIC:
        raise ScorerError(
            f"{path}: wrong OpenFST magic 0x{magic:08x} at byte {offset} "
            f"(expected 0x{FST_MAGIC:08x})"
        )
    fst_type = _read_fst_string(handle, path)
    arc_type = _read_fst_string(handle, path)
    if fst_type != "const" or arc_type != "standard":
        raise ScorerError(
            f"{path}: lexicon is a {fst_type!r} FST of {arc_type!r} arcs; "
            "expected 'const' of 'standard'"
        )
    fixed = handle.read(4 + 4 + 8 + 8 * 3)
    if len(fixed) < 32:
        raise ScorerError(f"{path}: truncated OpenFST header")
    version, flags, _properties, start, n_states, n_arcs = struct.unpack(
        "<iiQqqq", fixed
    )
    if flags & (_FST_HAS_INPUT_SYMBOLS | _FST_HAS_OUTPUT_SYMBOLS):
        raise ScorerError(
            f"{path}: OpenFST lexicon with symbol tables is not supported"
        )
    if n_states < 0 or n_arcs < 0 or not -1 <= start < max(n_states, 1):
        raise ScorerError(
            f"{path}: corrupt OpenFST header ({n_states} states, {n_arcs} arcs, "
            f"start {start})"
        )
    position = handle.tell()
    aligned = bool(flags & _FST_IS_ALIGNED)
    if aligned:
        position = _align(position, _FST_ALIGNMENT)
    states_bytes = n_states * CONST_STATE_DTYPE.itemsize
    states = np.frombuffer(
        _read_at(handle, position, states_bytes, path, "lexicon states"),
        CONST_STATE_DTYPE,
    )
    position += states_bytes
    if aligned:
        position = _align(position, _FST_ALIGNMENT)
    arcs_bytes = n_arcs * STD_ARC_DTYPE.itemsize
    arcs = np.frombuffer(
        _read_at(handle, position, arcs_bytes, path, "lexicon arcs"), STD_ARC_DTYPE
    )
    position += arcs_bytes
    arc_begin = states["pos"].astype(np.int64)
    arc_count = states["narcs"].astype(np.int64)
    next_states = arcs["nextstate"].astype(np.int32)
    if np.any(arc_begin + arc_count > n_arcs) or np.any(
        (next_states < 0) | (next_states >= n_states)
    ):
        raise ScorerError(f"{path}: corrupt OpenFST lexicon (arc indices out of range)")
    lexicon = LexiconFst(
        start=int(start),
        final=np.isfinite(states["final"]),
        arc_begin=arc_begin,
        arc_count=arc_count,
        ilabels=arcs["ilabel"].astype(np.int32),
        next_states=next_states,
    )
    return lexicon, position


def lexicon_label_sequences(lexicon: LexiconFst, path: str | os.PathLike = "<lexicon>"):
    """Every label sequence from the start state to a final state, in label order.

    Yields tuples of int. Depth-first with an explicit stack, so long words cannot
    exhaust Python's recursion limit. A cycle (an infinite vocabulary) is an error.
    """
    if lexicon.start < 0:
        return
    # Stack entries: (state, next arc to follow); ``on_path`` detects cycles.
    labels: list[int] = []
    stack = [(lexicon.start, 0)]
    on_path = {lexicon.start}
    if lexicon.final[lexicon.start]:
        yield ()
    while stack:
        state, arc = stack[-1]
        if arc == lexicon.arc_count[state]:
            stack.pop()
            on_path.discard(state)
            if labels:
                labels.pop()
            continue
        stack[-1] = (state, arc + 1)
        index = lexicon.arc_begin[state] + arc
        target = int(lexicon.next_states[index])
        if target in on_path:
            raise ScorerError(
                f"{path}: the lexicon has a cycle (infinitely many words)"
            )
        labels.append(int(lexicon.ilabels[index]))
        if lexicon.final[target]:
            yield tuple(labels)
        stack.append((target, 0))
        on_path.add(target)


def lexicon_words(
    lexicon: LexiconFst,
    is_utf8: bool,
    alphabet: Alphabet | None = None,
    path: str | os.PathLike = "<lexicon>",
) -> tuple[str, ...]:
    """The words a DeepSpeech lexicon spells, sorted.

    Labels are alphabet classes plus one, or UTF-8 byte values plus one when
    ``is_utf8``. In alphabet mode DeepSpeech appends the space label to every word as a
    terminator (``add_word_to_dictionary``); it is dropped here. ``alphabet`` defaults
    to DeepSpeech's English alphabet.
    """
    alphabet = alphabet or english()
    labels_of = alphabet.labels
    # Label of the word terminator: the space class plus one (alphabet mode only).
    terminator = None if is_utf8 or alphabet.space is None else alphabet.space + 1
    words = set()
    for sequence in lexicon_label_sequences(lexicon, path):
        if terminator is not None and sequence and sequence[-1] == terminator:
            sequence = sequence[:-1]
        if is_utf8:
            try:
                word = bytes(label - 1 for label in sequence).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise ScorerError(
                    f"{path}: lexicon path {sequence[:20]} is not UTF-8 bytes"
                ) from None
        else:
            try:
                word = "".join(labels_of[label - 1] for label in sequence)
            except IndexError:
                raise ScorerError(
                    f"{path}: lexicon label outside the {len(labels_of)}-label "
                    f"alphabet in {sequence[:20]}; is this scorer for another alphabet?"
                ) from None
        words.add(word)
    return tuple(sorted(words))


# --- the scorer package ---------------------------------------------------------------
def read_deepspeech_scorer(
    path: str | os.PathLike, alphabet: Alphabet | None = None
) -> DeepSpeechScorer:
    """Read a DeepSpeech v6 ``.scorer``: its parameters, lexicon and vocabulary.

    Parameters
    ----------
    path
        The ``.scorer`` file.
    alphabet
        The model's alphabet, used to spell lexicon labels (not needed in UTF-8 mode).
        Defaults to DeepSpeech's English alphabet.

    Raises
    ------
    ScorerError
        Naming the file: not a KenLM binary, no scorer header after the model, wrong
        ``TRIE`` magic or version, or a truncated or corrupt lexicon.
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise ScorerError(f"{path}: scorer file not found") from None
    except IsADirectoryError:
        raise ScorerError(f"{path}: is a directory, not a scorer file") from None
    with handle:
        file_size = os.fstat(handle.fileno()).st_size
        header = read_kenlm_header(handle, path)
        trie_offset = find_scorer_header(handle, header, file_size, path)
        if trie_offset is None:
            raise ScorerError(
                f"{path}: a plain KenLM binary with no DeepSpeech scorer header "
                "after the model"
            )
        alpha, beta, is_utf8 = _read_scorer_header(handle, trie_offset, path)
        lexicon, end = read_const_fst(handle, trie_offset + _SCORER_HEADER.size, path)
    vocabulary = lexicon_words(lexicon, is_utf8, alphabet, path)
    return DeepSpeechScorer(
        path=path,
        kenlm=header,
        trie_offset=trie_offset,
        alpha=alpha,
        beta=beta,
        is_utf8=is_utf8,
        vocabulary=vocabulary,
        lexicon=lexicon,
    )


def _read_scorer_header(
    handle: BinaryIO, offset: int, path
) -> tuple[float, float, bool]:
    raw = _read_at(handle, offset, _SCORER_HEADER.size, path, "scorer header")
    magic, version, _flag, alpha, beta = _SCORER_HEADER.unpack(raw)
    if magic != TRIE_MAGIC:
        raise ScorerError(
            f"{path}: wrong scorer magic 0x{magic & 0xFFFFFFFF:08x} at byte {offset} "
            f"(expected 0x{TRIE_MAGIC:08x}, 'TRIE')"
        )
    if version != SCORER_VERSION:
        raise ScorerError(
            f"{path}: scorer format version {version}; only version {SCORER_VERSION} "
            "(DeepSpeech 0.7-0.9) is read"
        )
    if raw[8] not in (0, 1):
        raise ScorerError(f"{path}: corrupt scorer header (is_utf8 byte {raw[8]})")
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        raise ScorerError(
            f"{path}: scorer header has non-finite alpha/beta ({alpha}, {beta})"
        )
    return float(alpha), float(beta), bool(raw[8])


def write_deepspeech_scorer(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    alpha: float,
    beta: float,
) -> Path:
    """Copy a DeepSpeech ``.scorer`` with its alpha and beta replaced.

    The copy is written to a temporary file beside ``destination`` and renamed over it,
    so ``destination`` may be ``source`` itself and a crash never leaves half a file.
    """
    source, destination = Path(source), Path(destination)
    scorer_offset = read_deepspeech_scorer_offset(source)
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        raise ScorerError(f"alpha and beta must be finite, got {alpha}, {beta}")

    def write(handle: BinaryIO) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, handle, length=1 << 22)
        handle.seek(scorer_offset + _ALPHA_OFFSET)
        handle.write(_ALPHA_BETA.pack(float(alpha), float(beta)))

    write_atomically(destination, write)
    return destination


def read_deepspeech_scorer_offset(path: str | os.PathLike) -> int:
    """Offset of the ``TRIE`` header of a DeepSpeech scorer, its header checked."""
    path = Path(path)
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise ScorerError(f"{path}: cannot open ({error.strerror})") from None
    with handle:
        file_size = os.fstat(handle.fileno()).st_size
        header = read_kenlm_header(handle, path)
        offset = find_scorer_header(handle, header, file_size, path)
        if offset is None:
            raise ScorerError(f"{path}: a plain KenLM binary, not a DeepSpeech scorer")
        _read_scorer_header(handle, offset, path)
    return offset
