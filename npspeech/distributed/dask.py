"""Batch transcription spread over a Dask cluster.

:func:`transcribe` sends one task per audio file to the workers of a
``distributed.Client`` and yields one :class:`npspeech.batch.Result` per file, in input
order. It reuses the local batch path end to end: each task runs
:func:`npspeech.batch.transcribe_source` (``Model.transcribe_full``, which reads long
recordings in bounded blocks as :mod:`npspeech.segment` splits them), so a file gives
the same transcript on a cluster as in one process.

- The model is loaded once per worker thread and kept in the worker process
  (:func:`_worker_model`, keyed by the model path, backend and decoder settings), never
  sent over the network. Start workers with one thread each (``dask worker --nthreads
  1``): the numerics use the cores through Numba, and a Model keeps decoder state that
  is not shared between threads.
- A file that cannot be decoded gives a Result holding the reason, as locally. A file
  whose worker dies (Dask reschedules its task on another worker, see
  ``distributed.scheduler.allowed-failures``) loses nothing; one that keeps killing
  workers is reported as failed and the others still decode.
- Outputs are written by the caller, on the client side (``npspeech decode``
  writes them atomically); workers only return transcripts.

Paths are sent as absolute paths: on a cluster of several machines every worker must
see the model, the scorer and the audio at the same paths (a shared file system).

dask and distributed are imported only here, when a function is called
(``pip install 'npspeech[dask]'``).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..batch import (
    THREAD_VARIABLES,
    ModelSpec,
    Result,
    Source,
    load_model,
    transcribe_source,
    worker_threads,
)
from ..errors import ConfigError, NpspeechError

#: What ``--scheduler`` starts on this machine instead of connecting: ``local:N``.
LOCAL_PREFIX = "local:"
#: Seconds a client waits for a scheduler before giving up with a message.
CONNECT_TIMEOUT = 30.0
#: Prefix of the task keys (shown on the Dask dashboard).
KEY_PREFIX = "npspeech-decode"
INSTALL_HINT = "pip install 'npspeech[dask]'"


def transcribe(
    paths: Sequence[str | os.PathLike | Source],
    model: str | os.PathLike | ModelSpec,
    client: Any,
    *,
    n_best: int = 1,
    decode_config: Any = None,
    backend: str | None = None,
    on_done: Callable[[Result], None] | None = None,
) -> Iterator[Result]:
    """Decode files on a Dask cluster, yielding one Result per file in input order.

    Parameters
    ----------
    paths
        Audio files (paths, or :class:`npspeech.batch.Source` items as
        :func:`npspeech.batch.discover` makes them).
    model
        The model file (with ``decode_config`` and ``backend``), or a
        :class:`npspeech.batch.ModelSpec`. Workers load it themselves, once each.
    client
        A connected ``distributed.Client``.
    n_best
        Candidate transcripts per file.
    decode_config
        :class:`npspeech.config.DecodeConfig`; None for greedy decoding. Ignored with
        a ModelSpec.
    backend
        Kernel backend on the workers; None for their default. Ignored with a
        ModelSpec.
    on_done
        Called on the client with each Result as soon as its task finishes (in
        completion order; a progress bar's update).

    Yields
    ------
    Result
        In the order of ``paths``. A file that failed holds the reason in
        ``Result.error`` (naming the file); the others still decode.

    Notes
    -----
    All tasks are submitted at once and the scheduler balances them over the
    workers. Leaving the generator early cancels the tasks not yet finished.
    """
    from distributed import as_completed

    spec = _absolute_spec(_spec_of(model, decode_config, backend))
    sources = [_absolute_source(_source_of(p)) for p in paths]
    run = uuid.uuid4().hex[:12]
    futures = [
        client.submit(
            _transcribe_on_worker,
            source,
            spec,
            n_best,
            key=f"{KEY_PREFIX}-{run}-{index}",
            retries=0,
        )
        for index, source in enumerate(sources)
    ]
    index_of = {future.key: index for index, future in enumerate(futures)}
    finished: dict[int, Result] = {}
    suspects: list[int] = []  # tasks lost with workers that died while they ran
    next_index = 0

    def done(index: int, result: Result) -> Iterator[Result]:
        finished[index] = result
        if on_done is not None:
            on_done(result)
        nonlocal next_index
        while next_index in finished:  # the next ones in input order
            yield finished.pop(next_index)
            next_index += 1

    pending = list(futures)
    try:
        for future in as_completed(futures):
            index = index_of[future.key]
            result = _result_of(future, sources[index])
            if result is None:
                suspects.append(index)
                continue
            yield from done(index, result)
        # A worker that dies takes every task it held with it, and the scheduler
        # blames them all; each is tried again alone, so that only a file that kills
        # whatever decodes it is reported.
        for index in sorted(suspects):
            retry = client.submit(
                _transcribe_on_worker,
                sources[index],
                spec,
                n_best,
                key=f"{KEY_PREFIX}-{run}-{index}-alone",
                retries=0,
            )
            pending.append(retry)
            retry_result = _result_of(retry, sources[index])
            yield from done(index, retry_result or _died(sources[index]))
    finally:
        # a consumer that stops early (a closed pipe) cancels what is still running
        client.cancel([f for f in pending if not f.done()])


def _result_of(future: Any, source: Source) -> Result | None:
    """The Result of a finished task, or None when the workers running it died."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker:
        return None


def _died(source: Source) -> Result:
    return Result(
        source,
        error=f"{source.name}: the Dask workers decoding it died (killed or out of "
        "memory) every time it was tried",
    )


def _spec_of(model: Any, decode_config: Any, backend: str | None) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    if decode_config is None:
        from ..config import DecodeConfig

        decode_config = DecodeConfig()
    return ModelSpec(os.fspath(model), backend, decode_config)


def _source_of(item: Any) -> Source:
    if isinstance(item, Source):
        return item
    from pathlib import Path

    path = os.fspath(item)
    return Source(path, path, Path(path).stem)


def _absolute_spec(spec: ModelSpec) -> ModelSpec:
    """The spec with absolute model and scorer paths: workers may run elsewhere."""
    config = spec.decode_config
    if getattr(config, "scorer", ""):
        config = dataclasses.replace(config, scorer=os.path.abspath(config.scorer))
    return ModelSpec(os.path.abspath(spec.path), spec.backend, config)


def _absolute_source(source: Source) -> Source:
    """The source with an absolute path to read; its name (for messages and output
    lines) stays as the user gave it."""
    if source.path is None:
        return source
    return dataclasses.replace(source, path=os.path.abspath(source.path))


# -- on the workers --------------------------------------------------------------------

# (spec, thread id) -> loaded Model, or the message of the error that loading raised.
# Module state lives as long as the worker process: each worker thread loads a model
# once, and a restarted worker (a fresh process) loads it again.
_MODELS: dict[tuple[ModelSpec, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def _worker_model(spec: ModelSpec) -> Any:
    """This worker thread's model for ``spec`` (loaded on first use), or the str of
    the error that loading it raised (a model file missing on this node)."""
    key = (spec, threading.get_ident())
    with _MODELS_LOCK:
        cached = _MODELS.get(key)
    if cached is None:
        try:
            cached = load_model(spec)
        except NpspeechError as error:  # reported with each file, as locally
            cached = str(error)
        with _MODELS_LOCK:
            _MODELS[key] = cached
    return cached


def _transcribe_on_worker(source: Source, spec: ModelSpec, n_best: int) -> Result:
    """The task: decode one source with this worker's model."""
    model = _worker_model(spec)
    if isinstance(model, str):
        return Result(source, error=f"{source.name}: {model}")
    return transcribe_source(model, source, n_best)


# -- clients ---------------------------------------------------------------------------


def connect(scheduler: str, *, timeout: float = CONNECT_TIMEOUT) -> tuple[Any, Any]:
    """A client for ``scheduler``, and the local cluster started for it (or None).

    Parameters
    ----------
    scheduler
        The address of a running scheduler (``tcp://host:8786``, as ``dask
        scheduler`` prints it), or ``local:N`` to start N worker processes on this
        machine, one task thread each, the cores shared out between them for the
        kernels (as ``--jobs`` does).
    timeout
        Seconds to wait for the scheduler.

    Returns
    -------
    client : distributed.Client
    cluster : distributed.LocalCluster or None
        Close it after the client (:func:`close`).

    Raises
    ------
    ConfigError
        dask/distributed not installed, a malformed ``local:N``, or no scheduler
        answering at the address.
    """
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            f"--scheduler needs dask and distributed: {INSTALL_HINT}"
        ) from None
    cluster = None
    if scheduler.startswith(LOCAL_PREFIX):
        count = scheduler[len(LOCAL_PREFIX) :]
        if not count.isdigit() or int(count) < 1:
            raise ConfigError(
                f"--scheduler {scheduler}: give local:N with N >= 1 worker processes"
            )
        workers = int(count)
        # the cores shared out as --jobs shares them (Dask's own default is one
        # OpenMP/BLAS thread per worker process, whatever the machine)
        threads = str(worker_threads(workers))
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            # any free port for the scheduler's web server: never a clash with 8787
            dashboard_address=":0",
            env={name: threads for name in THREAD_VARIABLES},
        )
        address = cluster.scheduler_address
    else:
        address = scheduler
    try:
        client = distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as error:
        if cluster is not None:
            cluster.close()
        raise ConfigError(
            f"--scheduler {scheduler}: no Dask scheduler answered ({error})"
        ) from None
    return client, cluster


def close(client: Any, cluster: Any) -> None:
    """Close a client from :func:`connect` and the local cluster it started."""
    client.close()
    if cluster is not None:
        cluster.close()
