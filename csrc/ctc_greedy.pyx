# cython: language_level=3
"""Best-path (greedy) CTC decoding, compiled.

Mirrors ``npspeech.decoder.greedy.best_path_reference`` step by step.
"""

import numpy as np

cimport numpy as cnp

cnp.import_array()


def best_path(const float[:, ::1] log_probs, int blank):
    """Arg-max class of every frame, repeats merged and blanks removed.

    Parameters
    ----------
    log_probs : float32 array, shape (T, V)
        Per-frame (log-)probabilities; only their order within a frame matters.
    blank : int
        Class id of the CTC blank.

    Returns
    -------
    labels : int32 array, shape (N,)
        Emitted class ids.
    frames : int32 array, shape (N,)
        Frame at which each label was first emitted.
    """
    cdef Py_ssize_t T = log_probs.shape[0]
    cdef Py_ssize_t V = log_probs.shape[1]
    labels_array = np.empty(T, dtype=np.int32)
    frames_array = np.empty(T, dtype=np.int32)
    cdef int[::1] labels = labels_array
    cdef int[::1] frames = frames_array
    cdef Py_ssize_t t, v, count = 0
    cdef int best, previous = -1
    cdef float best_value
    with nogil:
        for t in range(T):
            best = 0
            best_value = log_probs[t, 0]
            for v in range(1, V):
                # strict '>' keeps the first maximum, as numpy.argmax does
                if log_probs[t, v] > best_value:
                    best_value = log_probs[t, v]
                    best = <int>v
            if best != previous and best != blank:
                labels[count] = best
                frames[count] = <int>t
                count += 1
            previous = best
    return labels_array[:count], frames_array[:count]
