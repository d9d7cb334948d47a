# distutils: language = c++
# cython: language_level=3
"""A caching allocator for NumPy's large arrays (NEP 49 memory handler).

A training step allocates the same few hundred megabytes of large temporaries every
time (activations kept for the backward pass, gate tapes, gradients) and frees them at
the end. glibc's ``malloc`` serves blocks that large with fresh ``mmap`` pages and gives
them back at ``free``, so every step pays the kernel to map, zero and unmap them again:
~23,000 page faults and a tenth of a second of system time per step of the DeepSpeech
stack at H=512 (``benchmarks/bench_layers.py``). This handler keeps freed large blocks
in per-size free lists and hands them out again, as PyTorch's GPU caching allocator does.

- Blocks of at least ``LARGE_BYTES`` are rounded up to a size class (at most 1/8 above
  the request, so shapes that vary from batch to batch still share blocks) and cached
  when freed, up to ``limit`` bytes in all (then freed for real); smaller ones go
  straight to ``malloc``.
- ``calloc`` on a cached block clears it with ``memset``: cheaper than faulting in
  fresh zero pages, which is what it replaces.
- The lists are guarded by a mutex: an array may be freed in any thread.

NumPy's handler is a context variable, so :func:`install` affects only the calling
thread's context, and each array remembers the handler that allocated it, so arrays
outlive the handler's installation safely.
"""

from cpython.pycapsule cimport PyCapsule_New
from cython.operator cimport dereference as deref
from cython.operator cimport preincrement as inc
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memset
from libcpp.unordered_map cimport unordered_map
from libcpp.vector cimport vector

cimport numpy as cnp

cnp.import_array()

# Requests below this go straight to malloc (glibc serves them from its heap anyway).
DEF LARGE_BYTES = 1 << 20
# Size classes: 8 per power of two (a request is rounded up by at most 1/8).
DEF CLASSES_PER_OCTAVE = 8

cdef extern from *:
    """
    #include <mutex>
    #include <numpy/arrayobject.h>
    static std::mutex npspeech_pool_mutex;
    static void npspeech_pool_lock(void) { npspeech_pool_mutex.lock(); }
    static void npspeech_pool_unlock(void) { npspeech_pool_mutex.unlock(); }
    typedef void *(*npspeech_malloc_fn)(void *, size_t);
    typedef void *(*npspeech_calloc_fn)(void *, size_t, size_t);
    typedef void *(*npspeech_realloc_fn)(void *, void *, size_t);
    typedef void (*npspeech_free_fn)(void *, void *, size_t);
    static PyDataMem_Handler npspeech_pool_handler;
    static void npspeech_fill_handler(
        npspeech_malloc_fn m, npspeech_calloc_fn c, npspeech_realloc_fn r,
        npspeech_free_fn f
    ) {
        snprintf(npspeech_pool_handler.name, sizeof(npspeech_pool_handler.name),
                 "npspeech_array_pool");
        npspeech_pool_handler.version = 1;
        npspeech_pool_handler.allocator.ctx = NULL;
        npspeech_pool_handler.allocator.malloc = m;
        npspeech_pool_handler.allocator.calloc = c;
        npspeech_pool_handler.allocator.realloc = r;
        npspeech_pool_handler.allocator.free = f;
    }
    static PyObject *npspeech_set_handler(PyObject *capsule) {
        return PyDataMem_SetHandler(capsule);
    }
    """
    ctypedef void* (*npspeech_malloc_fn)(void*, size_t) noexcept nogil
    ctypedef void* (*npspeech_calloc_fn)(void*, size_t, size_t) noexcept nogil
    ctypedef void* (*npspeech_realloc_fn)(void*, void*, size_t) noexcept nogil
    ctypedef void (*npspeech_free_fn)(void*, void*, size_t) noexcept nogil
    void* npspeech_pool_handler
    void npspeech_fill_handler(
        npspeech_malloc_fn, npspeech_calloc_fn, npspeech_realloc_fn, npspeech_free_fn
    )
    object npspeech_set_handler(object capsule)
    void npspeech_pool_lock() nogil
    void npspeech_pool_unlock() nogil


cdef unordered_map[size_t, vector[void*]] free_blocks  # size class -> cached blocks
cdef size_t cached_bytes = 0
cdef size_t cache_limit = 0
cdef size_t hits = 0
cdef size_t misses = 0


cdef inline size_t size_class(size_t n) noexcept nogil:
    """``n`` rounded up to its class: a multiple of 1/8 of its power of two."""
    cdef size_t octave = 1
    while octave * 2 <= n:
        octave *= 2
    cdef size_t step = octave // CLASSES_PER_OCTAVE
    return (n + step - 1) // step * step


cdef void* take_cached(size_t size) noexcept nogil:
    """A cached block of class ``size``, or NULL."""
    global cached_bytes, hits, misses
    cdef void* block = NULL
    npspeech_pool_lock()
    cdef vector[void*]* blocks = &free_blocks[size]
    if not blocks.empty():
        block = blocks.back()
        blocks.pop_back()
        cached_bytes -= size
        hits += 1
    else:
        misses += 1
    npspeech_pool_unlock()
    return block


cdef void* pool_malloc(void* ctx, size_t n) noexcept nogil:
    if n < LARGE_BYTES:
        return malloc(n)
    cdef size_t size = size_class(n)
    cdef void* block = take_cached(size)
    return block if block != NULL else malloc(size)


cdef void* pool_calloc(void* ctx, size_t count, size_t item) noexcept nogil:
    cdef size_t n = count * item
    if n < LARGE_BYTES:
        return calloc(count, item)
    cdef size_t size = size_class(n)
    cdef void* block = take_cached(size)
    if block == NULL:
        return calloc(size, 1)  # fresh pages come zeroed from the kernel
    memset(block, 0, n)
    return block


cdef void pool_free(void* ctx, void* block, size_t n) noexcept nogil:
    global cached_bytes
    if block == NULL:
        return
    if n < LARGE_BYTES:
        free(block)
        return
    cdef size_t size = size_class(n)
    cdef bint keep = False
    npspeech_pool_lock()
    if cached_bytes + size <= cache_limit:
        free_blocks[size].push_back(block)
        cached_bytes += size
        keep = True
    npspeech_pool_unlock()
    if not keep:
        free(block)


cdef void* pool_realloc(void* ctx, void* block, size_t n) noexcept nogil:
    # Every block comes from malloc/calloc, so realloc may move or resize any of them;
    # a large result gets its class's size, as pool_free will assume when it comes back.
    return realloc(block, size_class(n) if n >= LARGE_BYTES else n)


npspeech_fill_handler(pool_malloc, pool_calloc, pool_realloc, pool_free)
_HANDLER = PyCapsule_New(&npspeech_pool_handler, "mem_handler", NULL)


def install(size_t limit):
    """Make this context's new NumPy arrays use the pool; returns the previous handler
    (give it to :func:`restore`). ``limit``: bytes of freed blocks kept at most."""
    global cache_limit
    cache_limit = limit
    return npspeech_set_handler(_HANDLER)


def restore(previous):
    """Put back the handler that :func:`install` returned."""
    npspeech_set_handler(previous)


def release():
    """Free every cached block (arrays in use are not touched)."""
    global cached_bytes
    cdef vector[void*] blocks
    cdef unordered_map[size_t, vector[void*]].iterator entry
    cdef size_t i
    npspeech_pool_lock()
    entry = free_blocks.begin()
    while entry != free_blocks.end():
        for i in range(deref(entry).second.size()):
            blocks.push_back(deref(entry).second[i])
        inc(entry)
    free_blocks.clear()
    cached_bytes = 0
    npspeech_pool_unlock()
    for i in range(blocks.size()):
        free(blocks[i])


def stats():
    """``{"cached_bytes", "hits", "misses"}`` since the module was loaded."""
    return {"cached_bytes": cached_bytes, "hits": hits, "misses": misses}
