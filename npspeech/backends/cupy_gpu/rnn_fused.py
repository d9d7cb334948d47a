"""One kernel launch per time step for the LSTM and GRU forward passes.

The two-launch step of :mod:`.rnn` is a cuBLAS GEMM for the recurrent product
``h W_hh`` followed by a fused element-wise kernel for the gates. Here both happen in
ONE raw CUDA kernel per step: each thread owns one hidden unit ``j`` of ``ROWS``
sequences, computes the ``G`` dot products ``h[b] . W_hh[:, g*H + j]`` (the state
tile staged in shared memory, the weight columns read coalesced across the block's
threads) and then the same gate arithmetic as the element-wise kernels of
:mod:`.rnn`. The state is double-buffered (``h_in`` read, ``h_out`` written) because
every thread reads the whole previous state while others write the new one.

When it pays: each block of ``ROWS`` sequences reads ``W_hh`` once per step, so the
weight is read ``ceil(B / ROWS)`` times per step (cuBLAS reads it about once). That
is cheap while ``W_hh`` stays in L2 and launches dominate (DS2-small: GRU H=512,
W_hh 3 MiB), and expensive for DeepSpeech's H=2048 LSTM (W_hh 64 MiB). The forward
passes of :mod:`.rnn` therefore take this path only up to
:data:`FUSED_STEP_MAX_HIDDEN` hidden units; ``benchmarks/bench_gpu.py --only rnn``
times both paths on a GPU to place that bound.

The CUDA sources only run on a device (``tests/test_cupy_rnn_fused.py -m gpu``
compares them with the NumPy reference there); on a CPU the stand-in for CuPy runs
each kernel's NumPy twin, which also checks that the launch covers every hidden unit
and sequence.

Shape legend: B batch, H hidden units, G gates (4 LSTM in order i, f, g, o; 3 GRU in
order r, z, n).
"""

from __future__ import annotations

import numpy as np

from ._compile import raw

#: largest H for which the forward passes use the one-launch step (see above); 0
#: turns it off. A first guess from the arithmetic above, to be placed by the
#: benchmark on a GPU.
FUSED_STEP_MAX_HIDDEN = 1024
#: threads per block, one hidden unit each
THREADS = 64
#: sequences per block: the block's accumulators are ROWS * G per thread
ROWS = 4
#: hidden units of the state staged in shared memory at a time
TILE = 32

_C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _covered(grid, block, B, H, h_in, h_out):
    """The twins' check of the launch: every (sequence, unit) has a thread, and the
    state is double-buffered (a kernel reading the state it writes would race)."""
    assert not np.shares_memory(h_in, h_out), "h_in and h_out must differ"
    assert block == (THREADS, 1, 1), block
    assert grid[0] * THREADS >= H and (grid[0] - 1) * THREADS < H, (grid, H)
    assert grid[1] * ROWS >= B and (grid[1] - 1) * ROWS < B, (grid, B)


# --- the shared part of both kernels: the recurrent product --------------------------

_PRODUCT = """
#define THREADS {threads}
#define ROWS {rows}
#define TILE {tile}
#define G {gates}
    __shared__ T hs[ROWS][TILE];
    const int j = blockIdx.x * THREADS + threadIdx.x;
    const int b0 = blockIdx.y * ROWS;
    T acc[ROWS][G];
    for (int r = 0; r < ROWS; ++r)
        for (int g = 0; g < G; ++g) acc[r][g] = (T)0;
    for (int k0 = 0; k0 < H; k0 += TILE) {{
        for (int idx = threadIdx.x; idx < ROWS * TILE; idx += THREADS) {{
            int r = idx / TILE, k = k0 + idx % TILE, b = b0 + r;
            hs[r][idx % TILE] = (b < B && k < H) ? h_in[(long long)b * H + k] : (T)0;
        }}
        __syncthreads();
        if (j < H) {{
            const int k_end = min(TILE, H - k0);
            for (int kk = 0; kk < k_end; ++kk) {{
                const T* w = W_hh + (long long)(k0 + kk) * G * H + j;
                T wg[G];
                for (int g = 0; g < G; ++g) wg[g] = w[g * H];
                for (int r = 0; r < ROWS; ++r) {{
                    T hv = hs[r][kk];
                    for (int g = 0; g < G; ++g) acc[r][g] += hv * wg[g];
                }}
            }}
        }}
        __syncthreads();  // the tile is reloaded next round
    }}
    if (j >= H) return;
"""


def _source(name: str, dtype, signature: str, gates: int, body: str) -> str:
    product = _PRODUCT.format(threads=THREADS, rows=ROWS, tile=TILE, gates=gates)
    return (
        f"typedef {_C_TYPES[np.dtype(dtype)]} T;\n"
        f'extern "C" __global__ void {name}({signature}) {{\n{product}{body}}}\n'
    )


# --- LSTM ---------------------------------------------------------------------------

_LSTM_SIGNATURE = """
    const T* xw,          // (B, 4H): x W_ih + b_ih + b_hh of this frame
    const T* W_hh,        // (H, 4H)
    const int* lengths,   // (B,)
    int t, int B, int H,
    const T* h_in,        // (B, H) the state entering the step
    T* h_out,             // (B, H) the state leaving it
    T* c,                 // (B, H) cell state, in place (each thread owns its own)
    T* gates,             // (B, 4H) activations i, f, g, o of this frame
    T* cells,             // (B, H) c_t of this frame
    T* y                  // (B, H) output of this frame, 0 past a sequence's end
"""
_LSTM_BODY = """
    for (int r = 0; r < ROWS; ++r) {
        const int b = b0 + r;
        if (b >= B) break;
        const long long row = (long long)b * 4 * H + j, i = (long long)b * H + j;
        T gi = (T)1 / ((T)1 + exp(-(xw[row] + acc[r][0])));
        T gf = (T)1 / ((T)1 + exp(-(xw[row + H] + acc[r][1])));
        T gg = tanh(xw[row + 2 * H] + acc[r][2]);
        T go = (T)1 / ((T)1 + exp(-(xw[row + 3 * H] + acc[r][3])));
        T c_new = gf * c[i] + gi * gg;
        T h_new = go * tanh(c_new);
        gates[row] = gi; gates[row + H] = gf; gates[row + 2 * H] = gg;
        gates[row + 3 * H] = go;
        cells[i] = c_new;
        bool active = t < lengths[b];
        y[i] = active ? h_new : (T)0;
        h_out[i] = active ? h_new : h_in[i];
        if (active) c[i] = c_new;
    }
"""


def _lstm_twin(grid, block, args):
    xw, W_hh, lengths, t, B, H, h_in, h_out, c, gates, cells, y = args
    B, H = int(B), int(H)
    _covered(grid, block, B, H, h_in, h_out)
    a = xw.reshape(B, 4 * H) + h_in.reshape(B, H) @ W_hh.reshape(H, 4 * H)
    i, f = _sigmoid(a[:, :H]), _sigmoid(a[:, H : 2 * H])
    g, o = np.tanh(a[:, 2 * H : 3 * H]), _sigmoid(a[:, 3 * H :])
    c = c.reshape(B, H)
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    gates.reshape(B, 4 * H)[...] = np.concatenate([i, f, g, o], axis=1)
    cells.reshape(B, H)[...] = c_new
    active = (int(t) < lengths)[:, None]
    y.reshape(B, H)[...] = np.where(active, h_new, 0)
    h_out.reshape(B, H)[...] = np.where(active, h_new, h_in.reshape(B, H))
    c[...] = np.where(active, c_new, c)


# --- GRU ----------------------------------------------------------------------------

_GRU_SIGNATURE = """
    const T* ax,          // (B, 3H): x W_ih + b_ih of this frame
    const T* W_hh,        // (H, 3H)
    const T* b_hh,        // (3H,)
    const int* lengths,   // (B,)
    int t, int B, int H,
    const T* h_in,        // (B, H) the state entering the step
    T* h_out,             // (B, H) the state leaving it
    T* gates,             // (B, 3H) activations r, z, n of this frame
    T* hn,                // (B, H) h W_hn + b_hn of this frame
    T* y                  // (B, H) output of this frame, 0 past a sequence's end
"""
_GRU_BODY = """
    for (int r = 0; r < ROWS; ++r) {
        const int b = b0 + r;
        if (b >= B) break;
        const long long row = (long long)b * 3 * H + j, i = (long long)b * H + j;
        T gr = (T)1 / ((T)1 + exp(-(ax[row] + acc[r][0] + b_hh[j])));
        T gz = (T)1 / ((T)1 + exp(-(ax[row + H] + acc[r][1] + b_hh[j + H])));
        T h_n = acc[r][2] + b_hh[j + 2 * H];
        T gn = tanh(ax[row + 2 * H] + gr * h_n);
        T h_prev = h_in[i];
        T h_new = ((T)1 - gz) * gn + gz * h_prev;
        gates[row] = gr; gates[row + H] = gz; gates[row + 2 * H] = gn;
        hn[i] = h_n;
        bool active = t < lengths[b];
        y[i] = active ? h_new : (T)0;
        h_out[i] = active ? h_new : h_prev;
    }
"""


def _gru_twin(grid, block, args):
    ax, W_hh, b_hh, lengths, t, B, H, h_in, h_out, gates, hn, y = args
    B, H = int(B), int(H)
    _covered(grid, block, B, H, h_in, h_out)
    h_prev = h_in.reshape(B, H)
    ah = h_prev @ W_hh.reshape(H, 3 * H) + b_hh
    ax = ax.reshape(B, 3 * H)
    r = _sigmoid(ax[:, :H] + ah[:, :H])
    z = _sigmoid(ax[:, H : 2 * H] + ah[:, H : 2 * H])
    n = np.tanh(ax[:, 2 * H :] + r * ah[:, 2 * H :])
    h_new = (1 - z) * n + z * h_prev
    gates.reshape(B, 3 * H)[...] = np.concatenate([r, z, n], axis=1)
    hn.reshape(B, H)[...] = ah[:, 2 * H :]
    active = (int(t) < lengths)[:, None]
    y.reshape(B, H)[...] = np.where(active, h_new, 0)
    h_out.reshape(B, H)[...] = np.where(active, h_new, h_prev)


#: kernel name -> CUDA source (the CPU tests also compile them with a host compiler)
SOURCES: dict[str, str] = {}


def _kernels(kind: str, signature: str, gates: int, body: str, twin) -> dict:
    table = {}
    for dtype, c_type in _C_TYPES.items():
        name = f"npspeech_{kind}_step_fused_{c_type}"
        SOURCES[name] = _source(name, dtype, signature, gates, body)
        table[dtype] = raw(SOURCES[name], name, twin)
    return table


_LSTM = _kernels("lstm", _LSTM_SIGNATURE, 4, _LSTM_BODY, _lstm_twin)
_GRU = _kernels("gru", _GRU_SIGNATURE, 3, _GRU_BODY, _gru_twin)


# --- launching ----------------------------------------------------------------------


def wanted(H: int, dtype) -> bool:
    """Whether a forward pass of ``H`` hidden units takes the one-launch step."""
    return np.dtype(dtype) in _C_TYPES and 0 < H <= FUSED_STEP_MAX_HIDDEN


def _geometry(B: int, H: int):
    grid = ((H + THREADS - 1) // THREADS, (B + ROWS - 1) // ROWS, 1)
    return grid, (THREADS, 1, 1)


def lstm_step(xw_t, W_hh, lengths, t, h_in, h_out, c, gates_t, cells_t, y_t):
    """One LSTM step in one launch: reads ``h_in``, writes ``h_out``, ``c`` in place
    and this frame's ``gates_t`` (B, 4H), ``cells_t`` and ``y_t`` (B, H). Every
    array C-contiguous on the device, ``lengths`` int32."""
    B, H = h_in.shape
    grid, block = _geometry(B, H)
    args = (xw_t, W_hh, lengths, np.int32(t), np.int32(B), np.int32(H), h_in, h_out,
            c, gates_t, cells_t, y_t)  # fmt: skip
    _LSTM[np.dtype(h_in.dtype)](grid, block, args)


def gru_step(ax_t, W_hh, b_hh, lengths, t, h_in, h_out, gates_t, hn_t, y_t):
    """One GRU step in one launch: reads ``h_in``, writes ``h_out`` and this frame's
    ``gates_t`` (B, 3H), ``hn_t`` and ``y_t`` (B, H). Every array C-contiguous on the
    device, ``lengths`` int32."""
    B, H = h_in.shape
    grid, block = _geometry(B, H)
    args = (ax_t, W_hh, b_hh, lengths, np.int32(t), np.int32(B), np.int32(H), h_in,
            h_out, gates_t, hn_t, y_t)  # fmt: skip
    _GRU[np.dtype(h_in.dtype)](grid, block, args)
