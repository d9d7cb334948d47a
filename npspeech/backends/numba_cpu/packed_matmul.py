"""The recurrent layers' per-step product: a few rows times a fixed matrix.

At every time step a recurrent layer multiplies its state ``a`` (B, K), B a batch of a
few rows, by the same weight matrix ``w`` (K, N). BLAS is built for large products: it
repacks ``w`` on every call (4 MiB for an LSTM of 512 units) and its small-row paths
are slow (NumPy's OpenBLAS ran (16, 512) x (512, 2048) at 27 GFLOP/s here, a third of
what the core can do). This module does what BLAS would do once and then reuses it:

- ``w`` is packed once per layer call (:func:`pack_panels`) into column panels
  (P, Kp, NR): panel p holds columns ``p*NR .. p*NR + NR - 1`` for every k, so the
  product streams each panel from start to end;
- each step the rows are copied transposed (:func:`pack_rows`) into ``a_t`` (Kp, B),
  so the rows a tile needs at one k are adjacent;
- a register tile of MR rows x NR columns (:func:`_make_tile`) keeps MR accumulators
  of NR lanes in vector registers while k runs over the panel: per k it loads one
  panel row and MR scalars and does MR vector multiply-adds, so every loaded panel
  row feeds MR rows of output.

The tile is written in LLVM's target-independent vector IR (``<NR x float>``) as a
Numba ``@intrinsic``; LLVM lowers it to the host's registers (an accumulator of 32
float32 lanes is two AVX-512 registers, four AVX2 or eight NEON ones). Numba's own loop
vectoriser does not find this form: on plain loops it vectorises over k, which takes
twice the loads per multiply-add. On this project's machine (AVX-512) the tile runs the
(16, 512) x (512, 2048) step at 85-100 GFLOP/s, against ~52 for the best plain Numba
loop and 65-80 for PyTorch's ``mm`` (``benchmarks/bench_recurrent_product.py``).

Shapes: K is padded with zero rows to a multiple of ``UNROLL`` and N with zero columns
to a multiple of NR; the padding of both operands is zero, so it adds nothing (and
cannot turn a NaN in the padding into a NaN in the result, since it holds none).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

__all__ = [
    "UNROLL",
    "panel_width",
    "pack_panels",
    "buffers",
    "pack_rows",
    "matmul",
    "rows_times",
]

# Bytes of one accumulator: 128 = two AVX-512 registers, four AVX2 or eight NEON ones.
# With the 8-row tile that is 16 AVX-512 registers of accumulators, half the register
# file, leaving room for the loaded panel row and the broadcast scalars.
_ACCUMULATOR_BYTES = 128
UNROLL = 4  # k steps per loop iteration (K is padded to a multiple of this)
# k steps per pass over a panel: 1024 x 128 bytes = 128 KiB, which stays in L2 while
# every row tile reads it (a whole panel of an LSTM of 2048, 1 MiB, did not: its
# backward product ran 1.4x slower than the forward one of the same size).
DEPTH_BLOCK = 1024
# Weights larger than this come from DRAM at every step (an LSTM of 2048 units: 64 MiB),
# where prefetching the next block made the product ~9% faster; smaller ones stay in
# L3, where the extra instructions made it ~10% slower.
PREFETCH_ABOVE_BYTES = 16 * 2**20


def panel_width(dtype) -> int:
    """NR: columns per panel for ``dtype`` (32 for float32, 16 for float64)."""
    return _ACCUMULATOR_BYTES // np.dtype(dtype).itemsize


def padded_depth(K: int) -> int:
    """Kp: K rounded up to a multiple of :data:`UNROLL`."""
    return -(-K // UNROLL) * UNROLL


def pack_panels(w: np.ndarray, nr: int | None = None) -> np.ndarray:
    """Pack ``w`` (K, N) into column panels (P, Kp, NR), zero padded, C-contiguous.

    ``P = ceil(N / NR)``; ``out[p, k, j] = w[k, p*NR + j]`` where that exists, else 0.
    ``nr`` defaults to :func:`panel_width` of ``w``'s dtype; int8 weights multiplied
    into float32 rows take the float32 width (``panel_width(np.float32)``), the lanes
    of the accumulators they are converted into.
    """
    K, N = w.shape
    nr = panel_width(w.dtype) if nr is None else int(nr)
    P = -(-N // nr)
    Kp = padded_depth(K)
    if (Kp, P * nr) == (K, N):  # no padding: one copy (64 MiB for an LSTM of 2048)
        return np.ascontiguousarray(w.reshape(K, P, nr).transpose(1, 0, 2))
    padded = np.zeros((Kp, P * nr), dtype=w.dtype)
    padded[:K, :N] = w
    return np.ascontiguousarray(padded.reshape(Kp, P, nr).transpose(1, 0, 2))


@njit(cache=True)
def pack_rows(a, a_t):  # pragma: no cover - jit
    """``a_t[:K] = a.T``: a (B, K) into the transposed layout (Kp, B); the padding rows
    ``a_t[K:]`` are left as they are (zero from :func:`buffers`)."""
    B, K = a.shape
    for k in range(K):
        for b in range(B):
            a_t[k, b] = a[b, k]


def _make_tile(rows: int):
    """The ``rows`` x NR register tile as a Numba intrinsic:

    ``tile(a_t, row0, w_packed, panel, k0, k1, accumulate, ahead, out, out_row0)``
    computes ``a_t[k0:k1, row0 : row0 + rows].T @ w_packed[panel, k0:k1]`` and stores it
    into ``out[out_row0 : out_row0 + rows, panel*NR : panel*NR + NR]``, or adds it to
    what is there when ``accumulate`` is true. The sums start from zero and what is in
    ``out`` is added after the k loop: the tile asks for those lines at its start, so
    that the k loop's time hides their fetch where ``out`` is too large for the cache
    (the weight-gradient product of :mod:`.weight_product`). ``w_packed`` may also be
    int8 (panels of the float width NR, see :func:`pack_panels`): each panel row is
    loaded as NR bytes and converted to floats before its multiply-adds, so that a
    weight streamed from memory takes a quarter of the bytes; the caller scales the
    columns afterwards. With ``ahead`` true it
    also asks the cache for the next block of ``w_packed`` as it goes (software
    prefetch): that pays where the weights stream from DRAM and costs ~10% where they
    sit in L3 (see :data:`PREFETCH_ABOVE_BYTES`). a_t (Kp, B), w_packed (P, Kp, NR),
    out (B', P*NR), all C-contiguous of one float dtype; k0 and k1 multiples of
    :data:`UNROLL`. The caller keeps the indices in range.
    """

    @intrinsic
    def tile(
        typingctx, a_t, row0, w_packed, panel, k0, k1, accumulate, ahead, out, out_row0
    ):
        arrays = (a_t, w_packed, out)
        if not all(isinstance(t, types.Array) and t.layout == "C" for t in arrays):
            raise TypingError("the packed tile needs C-contiguous arrays")
        dtype = a_t.dtype
        if (
            dtype not in (types.float32, types.float64)
            or out.dtype != dtype
            or w_packed.dtype not in (dtype, types.int8)
        ):
            raise TypingError(
                "the packed tile needs float32 or float64 rows and output alike, "
                "and weights of that dtype or int8"
            )
        int8_weights = w_packed.dtype == types.int8
        if (a_t.ndim, w_packed.ndim, out.ndim) != (2, 3, 2):
            raise TypingError("the packed tile needs a_t 2-D, w_packed 3-D, out 2-D")
        nr = panel_width(np.float32 if dtype == types.float32 else np.float64)
        # Tiles of few rows split k over independent chains of accumulators (summed at
        # the end), so successive multiply-adds do not wait on each other's result.
        chains = min(UNROLL, max(1, 8 // rows))

        def codegen(context, builder, signature, args):
            a_arr = context.make_array(signature.args[0])(context, builder, args[0])
            w_arr = context.make_array(signature.args[2])(context, builder, args[2])
            o_arr = context.make_array(signature.args[8])(context, builder, args[8])
            row0_v, panel_v, k0_v, k1_v, out_row0_v = (
                context.cast(builder, args[i], signature.args[i], types.int64)
                for i in (1, 3, 4, 5, 9)
            )
            accumulate_v, ahead_v = (
                context.cast(builder, args[i], signature.args[i], types.boolean)
                for i in (6, 7)
            )
            i64 = ir.IntType(64)
            depth, batch = cgutils.unpack_tuple(builder, a_arr.shape)
            _, width = cgutils.unpack_tuple(builder, o_arr.shape)

            def const(value):
                return ir.Constant(i64, value)

            lane = context.get_value_type(dtype)
            vector = ir.VectorType(lane, nr)
            bits = 32 if dtype == types.float32 else 64
            align = bits // 8
            # a panel row as stored: NR floats, or NR bytes converted after the load
            stored = ir.VectorType(ir.IntType(8), nr) if int8_weights else vector
            w_bits = 8 if int8_weights else bits
            # fused where the target has FMA, a multiply and an add where it has not
            muladd = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(vector, [vector] * 3),
                f"llvm.fmuladd.v{nr}f{bits}",
            )
            # A hint to fetch a cache line into L2 (read, moderate locality, data).
            prefetch = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(
                    ir.VoidType(), [ir.IntType(8).as_pointer()] + [ir.IntType(32)] * 3
                ),
                "llvm.prefetch.p0",
            )
            hint = [ir.Constant(ir.IntType(32), value) for value in (0, 2, 1)]
            undefined = ir.Constant(vector, ir.Undefined)
            splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), nr), [0] * nr)
            lane_zero = ir.Constant(ir.IntType(32), 0)
            zeros = ir.Constant(vector, None)

            a_first = builder.gep(a_arr.data, [row0_v])  # a_t[0, row0]
            panel_first = builder.gep(  # w_packed[panel, 0, 0]
                w_arr.data, [builder.mul(builder.mul(panel_v, depth), const(nr))]
            )
            column0 = builder.mul(panel_v, const(nr))
            targets = []  # out[out_row0 + i, panel*NR], as vector pointers
            for i in range(rows):
                row_start = builder.mul(builder.add(out_row0_v, const(i)), width)
                target = builder.gep(o_arr.data, [builder.add(row_start, column0)])
                targets.append(builder.bitcast(target, vector.as_pointer()))
            # every chain starts from zero; out's lines, written at the end and read
            # then too when accumulating, are asked for now, so that they arrive while
            # the k loop runs (loading them here would stall the loop until they came)
            for target in targets:
                line = builder.bitcast(target, ir.IntType(8).as_pointer())
                for offset in range(0, nr * bits // 8, 64):
                    builder.call(prefetch, [builder.gep(line, [const(offset)]), *hint])
            entry = builder.block
            choose = builder.append_basic_block("tile.choose")
            done = builder.append_basic_block("tile.done")
            builder.cbranch(builder.icmp_signed("<", k0_v, k1_v), choose, done)

            def k_loop(name, with_prefetch):
                """The k loop as a block of its own; its final sums [chain][row]."""
                loop = builder.append_basic_block(name)
                builder.position_at_end(loop)
                k = builder.phi(i64)
                k.add_incoming(k0_v, choose)
                # accumulators[c][i]: row i's sum over the k steps of chain c
                accumulators = []
                for _ in range(chains):
                    chain = []
                    for _ in range(rows):
                        phi = builder.phi(vector)
                        phi.add_incoming(zeros, choose)
                        chain.append(phi)
                    accumulators.append(chain)
                current = [list(chain) for chain in accumulators]
                for step in range(UNROLL):
                    sums = current[step % chains]
                    k_step = builder.add(k, const(step))
                    row_at = builder.mul(k_step, const(nr))
                    panel_row = builder.gep(panel_first, [row_at])
                    w_row = builder.load(
                        builder.bitcast(panel_row, stored.as_pointer()),
                        align=1 if int8_weights else align,
                    )
                    if int8_weights:
                        w_row = builder.sitofp(w_row, vector)
                    if with_prefetch:
                        # the block after this one (this panel's next or the next
                        # panel's first: contiguous in w_packed), a line per 64 bytes
                        ahead = builder.bitcast(
                            builder.gep(panel_row, [const(DEPTH_BLOCK * nr)]),
                            ir.IntType(8).as_pointer(),
                        )
                        for offset in range(0, nr * w_bits // 8, 64):
                            line = builder.gep(ahead, [const(offset)])
                            builder.call(prefetch, [line, *hint])
                    a_row = builder.gep(a_first, [builder.mul(k_step, batch)])
                    for i in range(rows):
                        scalar = builder.load(builder.gep(a_row, [const(i)]))
                        broadcast = builder.shuffle_vector(
                            builder.insert_element(undefined, scalar, lane_zero),
                            undefined,
                            splat_mask,
                        )
                        sums[i] = builder.call(muladd, [broadcast, w_row, sums[i]])
                k_next = builder.add(k, const(UNROLL))
                k.add_incoming(k_next, loop)
                for chain, values in zip(accumulators, current, strict=True):
                    for phi, value in zip(chain, values, strict=True):
                        phi.add_incoming(value, loop)
                builder.cbranch(builder.icmp_signed("<", k_next, k1_v), loop, done)
                return loop, current

            plain, plain_sums = k_loop("tile.k", False)
            streaming, streaming_sums = k_loop("tile.k_ahead", True)
            builder.position_at_end(choose)
            builder.cbranch(ahead_v, streaming, plain)

            builder.position_at_end(done)
            finals = []  # finals[c][i]: chain c's sum for row i (PHI nodes come first)
            for c in range(chains):
                chain = []
                for i in range(rows):
                    phi = builder.phi(vector)
                    phi.add_incoming(zeros, entry)
                    phi.add_incoming(plain_sums[c][i], plain)
                    phi.add_incoming(streaming_sums[c][i], streaming)
                    chain.append(phi)
                finals.append(chain)
            results = list(finals[0])
            for chain in finals[1:]:
                results = [
                    builder.fadd(x, y) for x, y in zip(results, chain, strict=True)
                ]
            for value, target in zip(results, targets, strict=True):
                earlier = builder.select(
                    accumulate_v, builder.load(target, align=align), zeros
                )
                builder.store(builder.fadd(value, earlier), target, align=align)
            return context.get_dummy_value()

        signature = types.void(
            a_t, row0, w_packed, panel, k0, k1, accumulate, ahead, out, out_row0
        )
        return signature, codegen

    return tile


_tile8 = _make_tile(8)
_tile4 = _make_tile(4)
_tile2 = _make_tile(2)
_tile1 = _make_tile(1)


@njit(cache=True, inline="always")  # inlined: as a call, 7-11% slower at B=16
def row_tiles(
    a_t, rows, w_packed, panel, k0, k1, accumulate, ahead, out, out_row0
):  # pragma: no cover - jit
    """The tiles over columns ``0 .. rows - 1`` of ``a_t`` by one panel: 8-row tiles,
    then one tile of 4, 2 and 1 rows each as the remainder needs; column r's sums go to
    ``out`` row ``out_row0 + r``. The arguments are the tile's (see ``_make_tile``)."""
    r = 0
    while rows - r >= 8:
        _tile8(a_t, r, w_packed, panel, k0, k1, accumulate, ahead, out, out_row0 + r)
        r += 8
    if rows - r >= 4:
        _tile4(a_t, r, w_packed, panel, k0, k1, accumulate, ahead, out, out_row0 + r)
        r += 4
    if rows - r >= 2:
        _tile2(a_t, r, w_packed, panel, k0, k1, accumulate, ahead, out, out_row0 + r)
        r += 2
    if rows - r >= 1:
        _tile1(a_t, r, w_packed, panel, k0, k1, accumulate, ahead, out, out_row0 + r)


@njit(cache=True)
def _panels(a_t, w_packed, out, first, last):  # pragma: no cover - jit
    """Panels ``first .. last - 1`` of the product, all rows (:func:`row_tiles`); k in
    blocks of :data:`DEPTH_BLOCK`, so that the rows' tiles re-read a panel block from
    cache."""
    Kp, B = a_t.shape
    ahead = w_packed.size * w_packed.itemsize > PREFETCH_ABOVE_BYTES
    for p in range(first, last):
        for k0 in range(0, Kp, DEPTH_BLOCK):
            k1 = min(Kp, k0 + DEPTH_BLOCK)
            later = k0 > 0  # add to the sums of the earlier blocks
            row_tiles(a_t, B, w_packed, p, k0, k1, later, ahead, out, 0)


@njit(cache=True, parallel=True)
def matmul(a_t, w_packed, out, threads):  # pragma: no cover - jit
    """``out = a_t[:K].T @ w`` with ``w`` as :func:`pack_panels` packed it.

    a_t (Kp, B) from :func:`pack_rows`; w_packed (P, Kp, NR); out (B, P*NR), every
    column written (the padding columns get zeros). The panels are split over
    ``threads`` Numba threads in contiguous runs.
    """
    P, Kp, nr = w_packed.shape
    if a_t.shape[0] != Kp or out.shape[0] != a_t.shape[1] or out.shape[1] != P * nr:
        raise ValueError("packed product: operand shapes do not match")
    blocks = min(threads, P)
    if blocks <= 1:
        _panels(a_t, w_packed, out, 0, P)
        return
    for i in prange(blocks):
        _panels(a_t, w_packed, out, i * P // blocks, (i + 1) * P // blocks)


@njit(cache=True)
def buffers(w_packed, B):  # pragma: no cover - jit
    """The per-step work arrays for a product of B rows by ``w_packed``: ``a_t``
    (Kp, B), zeroed (see :func:`pack_rows`), and ``out`` (B, P*NR)."""
    P, Kp, nr = w_packed.shape
    a_t = np.zeros((Kp, B), dtype=w_packed.dtype)
    out = np.empty((B, P * nr), dtype=w_packed.dtype)
    return a_t, out


@njit(cache=True)
def rows_times(a, a_t, w_packed, out, threads):  # pragma: no cover - jit
    """``out[:, :N] = a @ w`` for a (B, K): :func:`pack_rows` into ``a_t``, then
    :func:`matmul`; ``a_t`` and ``out`` come from :func:`buffers`."""
    pack_rows(a, a_t)
    matmul(a_t, w_packed, out, threads)
