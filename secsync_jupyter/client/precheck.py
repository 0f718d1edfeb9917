"""Load-path speed-up: the updates of a large ``document`` frame checked ahead of the engine.

Loading a document means parsing, verifying (Ed25519), decrypting and decoding every update
of the relay's ``document`` frame. :func:`precheck_frame` does that work before
:meth:`SyncEngine.receive <secsync_jupyter.client.engine.SyncEngine.receive>` sees the frame:

* in threads (:func:`check_in_threads`; the signature checks release the GIL), or
* for very large frames in worker processes (:func:`check_in_processes`; no GIL at all,
  ``spawn``, started on first use and kept).

The result, a :class:`Precheck`, holds one named result per update (:class:`Unparsable`,
:class:`Rejected`, :class:`Accepted`, or ``None`` for "not checked ahead"). Each was checked
against the clock its author would have if every earlier update of the frame is accepted
(``assumed_clock``); the engine uses a result only when that assumption holds when it
reaches the update, and checks the update itself otherwise — so the engine's errors and
their codes are exactly those of the plain path. This module never changes the engine's
state; it reads what :meth:`SyncEngine.precheck_basis` tells it.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from ..protocol import ParseError, ProtocolError, Update, verify_and_decrypt_update

__all__ = [
    "PARALLEL_THRESHOLD",
    "PROCESS_MIN_UPDATES",
    "Accepted",
    "Precheck",
    "PrecheckBasis",
    "Rejected",
    "Unparsable",
    "check_in_processes",
    "check_in_threads",
    "check_signatures_in_processes",
    "check_signatures_in_threads",
    "precheck_frame",
    "process_pool",
    "verify_pool",
    "warm_process_pool",
]

log = logging.getLogger("secsync_jupyter.client")

#: frames with fewer updates are not checked ahead (the engine checks them itself)
PARALLEL_THRESHOLD = 64
#: ``document`` frames with at least this many updates are checked in worker processes
#: (no GIL: every core verifies); ``None`` disables the process pool (threads only)
PROCESS_MIN_UPDATES: int | None = 20_000
#: updates per task sent to one worker process
PROCESS_CHUNK = 8192


# ------------------------------------------------------------------ results


class Unparsable(NamedTuple):
    """The update did not parse (the engine records 211)."""

    error: ParseError


class Rejected(NamedTuple):
    """The update parsed but did not verify (or decrypt) against ``assumed_clock``."""

    update: Update
    assumed_clock: int
    error: ProtocolError


class Accepted(NamedTuple):
    """The update verified and decrypted against ``assumed_clock``; ``changes`` are its
    decoded changes, or ``decode_error`` says why they could not be decoded (204)."""

    update: Update | CheckedUpdate
    assumed_clock: int
    changes: list[Any] | None
    decode_error: Exception | None = None


#: one update's result; ``None``: not checked ahead (the engine checks it itself)
Result = Unparsable | Rejected | Accepted | None


@dataclass
class Precheck:
    """The results of one frame's updates (in frame order), all against ``snapshot_id``."""

    snapshot_id: str
    results: list[Result]


@dataclass(frozen=True)
class PrecheckBasis:
    """What the engine would check a frame's updates against (see
    :meth:`SyncEngine.precheck_basis`)."""

    doc_id: str
    snapshot_id: str
    key: bytes
    #: each author's last clock on that snapshot before the frame
    clocks: Mapping[str, int]


class CheckedPublicData:
    """What the engine reads of an update's publicData after a worker process checked it."""

    __slots__ = ("clock", "pub_key", "raw")

    def __init__(self, pub_key: str, clock: int, raw: Mapping[str, Any]):
        self.pub_key, self.clock, self.raw = pub_key, clock, raw


class CheckedUpdate:
    """An update a worker process accepted (not parsed again in this process)."""

    __slots__ = ("ciphertext", "public_data")

    def __init__(self, public_data: CheckedPublicData, ciphertext: str):
        self.public_data, self.ciphertext = public_data, ciphertext


# ------------------------------------------------------------------ checking


def assume_clocks(updates: Sequence[Any], clocks: Mapping[str, int]) -> list[int]:
    """Each update's author's current clock, predicted from the raw frame: every earlier
    update with the next clock is assumed accepted (-2 for an update without a readable
    author and clock)."""
    clocks = dict(clocks)
    assumed: list[int] = []
    for raw in updates:
        try:
            pd = raw["publicData"]
            pub, clock = pd["pubKey"], pd["clock"]
            current = clocks.get(pub, -1)
            if type(clock) is int and clock == current + 1:
                clocks[pub] = clock
        except (KeyError, TypeError):
            current = -2
        assumed.append(current)
    return assumed


def _plan(engine: Any, frame: Mapping[str, Any]):
    """``(basis, updates, assumed clocks, deserialize)`` for checking ``frame``, or None."""
    basis = engine.precheck_basis(frame)
    if basis is None:
        return None
    updates = frame["updates"]
    return basis, updates, assume_clocks(updates, basis.clocks), engine.adapter.deserialize_changes


def check_update(
    raw: Any,
    current: int,
    key: bytes,
    snapshot_id: str,
    doc_id: str,
    deserialize: Callable[[bytes], list[Any]],
) -> Unparsable | Rejected | Accepted:
    """Parse, verify (against ``current``, the author's clock), decrypt and decode one update."""
    try:
        update = Update.from_json(raw)
    except ParseError as exc:
        return Unparsable(exc)
    try:
        content = verify_and_decrypt_update(
            update, key, snapshot_id, current, current_doc_id=doc_id
        )
    except ProtocolError as exc:
        return Rejected(update, current, exc)
    try:
        return Accepted(update, current, deserialize(content))
    except Exception as exc:
        return Accepted(update, current, None, exc)


def check_in_threads(
    engine: Any, frame: Mapping[str, Any], map_chunks: Callable[..., Iterable[Any]] | None = None
) -> Precheck | None:
    """Parse, verify, decrypt and decode the updates of ``frame`` in up to 16 chunks.

    ``map_chunks(fn, chunks)`` (e.g. ``executor.map``) runs the chunks in parallel; the
    plain ``map`` by default. Returns ``None`` when the frame is not worth it or the engine
    cannot say what the updates would be checked against.
    """
    plan = _plan(engine, frame)
    if plan is None:
        return None
    basis, updates, assumed, deserialize = plan
    key, snapshot_id, doc_id = basis.key, basis.snapshot_id, basis.doc_id
    n = len(updates)
    size = max(PARALLEL_THRESHOLD, math.ceil(n / 16))

    def run(start: int) -> list[Result]:
        return [
            check_update(raw, current, key, snapshot_id, doc_id, deserialize)
            for raw, current in zip(
                updates[start : start + size], assumed[start : start + size], strict=True
            )
        ]

    mapper = map_chunks or map
    results = [r for part in mapper(run, range(0, n, size)) for r in part]
    return Precheck(snapshot_id, results)


def check_updates_chunk(
    raws: list[Any],
    currents: list[int],
    key: bytes,
    snapshot_id: str,
    doc_id: str,
    deserialize: Callable[[bytes], list[Any]],
) -> list[list[Any] | None]:
    """Parse, verify, decrypt and decode updates (runs in a worker process).

    Returns the decoded changes of each update, or ``None`` when anything about it is
    wrong (the engine then checks it again and records the exact error).
    """
    out: list[list[Any] | None] = []
    append = out.append
    for raw, current in zip(raws, currents, strict=True):
        try:
            result = check_update(raw, current, key, snapshot_id, doc_id, deserialize)
        except Exception:  # anything unexpected: the engine checks this one itself
            result = None
        ok = isinstance(result, Accepted) and result.decode_error is None
        append(result.changes if ok else None)
    return out


def check_in_processes(
    engine: Any,
    frame: Mapping[str, Any],
    submit: Callable[..., Any],
    chunk: int = PROCESS_CHUNK,
) -> Precheck | None:
    """Like :func:`check_in_threads`, with the work in other processes (no GIL at all).

    ``submit(fn, *args)`` returns a future (e.g. a ``ProcessPoolExecutor``'s). Each worker
    gets the raw update objects of its chunk and returns only the decoded changes; an update
    a worker did not accept gets ``None`` (the engine checks it again itself). The adapter's
    ``deserialize_changes`` must be picklable (a module-level function).
    """
    plan = _plan(engine, frame)
    if plan is None:
        return None
    basis, updates, assumed, deserialize = plan
    futures = [
        submit(
            check_updates_chunk,
            updates[start : start + chunk],
            assumed[start : start + chunk],
            basis.key,
            basis.snapshot_id,
            basis.doc_id,
            deserialize,
        )
        for start in range(0, len(updates), chunk)
    ]
    results: list[Result] = []
    append = results.append
    i = 0
    for future in futures:
        for changes in future.result():
            if changes is None:
                append(None)
            else:
                raw = updates[i]
                pd = raw["publicData"]
                public_data = CheckedPublicData(pd["pubKey"], pd["clock"], MappingProxyType(pd))
                append(Accepted(CheckedUpdate(public_data, raw["ciphertext"]), assumed[i], changes))
            i += 1
    return Precheck(basis.snapshot_id, results)


# -------------------------------------------------------------------- pools

_VERIFY_POOL: ThreadPoolExecutor | None = None
_PROCESS_POOL: Any = None


def _workers() -> int:
    return max(2, min(4, os.cpu_count() or 2))


def verify_pool() -> ThreadPoolExecutor:
    """The shared thread pool for signature checks (PyNaCl releases the GIL) and for
    decoding large frames off the event loop."""
    global _VERIFY_POOL
    if _VERIFY_POOL is None:
        _VERIFY_POOL = ThreadPoolExecutor(_workers(), thread_name_prefix="secsync-verify")
    return _VERIFY_POOL


def process_pool():
    """The shared process pool for very large frames (``spawn``: safe in a kernel).

    Started on first use and kept: spawning costs about half a second once.
    """
    global _PROCESS_POOL
    if _PROCESS_POOL is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _PROCESS_POOL = ProcessPoolExecutor(
            _workers(),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_warm_worker,
        )
    return _PROCESS_POOL


def _warm_worker() -> None:
    from . import ydoc  # noqa: F401  (imports the protocol core too)


def _reset_process_pool() -> None:
    global _PROCESS_POOL, _POOL_READY
    pool, _PROCESS_POOL = _PROCESS_POOL, None
    _POOL_READY = None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def _picklable(fn: Any) -> bool:
    try:
        pickle.dumps(fn)
        return True
    except Exception:
        return False


def precheck_frame(engine: Any, frame: Mapping[str, Any]) -> Precheck | None:
    """Check a large ``document`` frame's updates ahead of :meth:`SyncEngine.receive`.

    Blocking (run it off the event loop). Very large frames go to worker processes, others
    to the verify threads; if the process pool is unusable, threads it is.
    """
    updates = frame.get("updates")
    n = len(updates) if isinstance(updates, list) else 0
    if (
        PROCESS_MIN_UPDATES is not None
        and n >= PROCESS_MIN_UPDATES
        and _picklable(engine.adapter.deserialize_changes)
    ):
        try:
            return check_in_processes(engine, frame, process_pool().submit)
        except Exception:  # e.g. a broken pool (a worker was killed): use threads
            log.warning("secsync: the process pool failed; verifying in threads", exc_info=True)
            _reset_process_pool()
    return check_in_threads(engine, frame, verify_pool().map)


#: a membership log at least this long has its entry signatures checked in the verify pool
LOG_PARALLEL_THRESHOLD = 32
#: ... and at least this long partly in the worker processes when they are running
#: (:func:`check_signatures_in_processes`; e.g. started by a large frame or
#: :func:`warm_process_pool`) ...
LOG_PROCESS_THRESHOLD = 256
#: ... which a log at least this long starts (spawning costs about as much as verifying a few
#: thousand entries); ``None``: never started for a log
LOG_PROCESS_START: int | None = 8192


def _sodium_open() -> Any:
    """``(ffi, crypto_sign_open)`` of the libsodium that PyNaCl bundles, or ``None``."""
    try:
        import nacl.bindings  # noqa: F401  (initializes libsodium)
        from nacl._sodium import ffi, lib

        return ffi, lib.crypto_sign_open
    except (ImportError, AttributeError):  # another PyNaCl layout: the public wrapper
        return None


_SODIUM_OPEN = _sodium_open()


def verify_signatures_chunk(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Ed25519 checks of ``(signature, message, public key)`` items, one ``True`` or ``False``
    each exactly as :func:`~secsync_jupyter.protocol.crypto.verify_detached` answers (runs in
    this thread, a verify thread or a worker process).

    The same libsodium function that ``verify_detached`` reaches through PyNaCl's
    ``crypto_sign_open`` wrapper (``crypto_sign_open`` of signature + message), called
    directly with one output buffer for the whole chunk instead of a fresh one and a copy
    of the message per call (≈ 8 % of a verification's CPU); PyNaCl's wrapper if its
    layout is not the known one."""
    from ..protocol.crypto import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, verify_detached

    if _SODIUM_OPEN is None or not items:
        return [verify_detached(sig, msg, pk) for sig, msg, pk in items]
    ffi, sign_open = _SODIUM_OPEN
    out = ffi.new("unsigned char[]", max(len(msg) for _, msg, _ in items) + SIGNATURE_BYTES)
    out_len = ffi.new("unsigned long long *")
    return [
        len(sig) == SIGNATURE_BYTES
        and len(pk) == PUBLIC_KEY_BYTES
        and sign_open(out, out_len, sig + msg, len(sig) + len(msg), pk) == 0
        for sig, msg, pk in items
    ]


#: a long log's signatures are checked in about this many chunks per verify thread, taken
#: in turn by whichever thread is free (a core busy with something else delays the end by
#: a share of one chunk, not by half the log)
LOG_CHUNKS_PER_THREAD = 8


def check_signatures_in_threads(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """``verify_log(check_signatures=…)``: Ed25519 checks of many log entries by this thread
    and the verify pool together (libsodium releases the GIL), in chunks each takes in turn;
    a short list is checked right here. Results in the order of ``items``."""
    n = len(items)
    if n < LOG_PARALLEL_THRESHOLD:
        return verify_signatures_chunk(items)
    workers = _workers()
    size = max(LOG_PARALLEL_THRESHOLD // 2, -(-n // (workers * LOG_CHUNKS_PER_THREAD)))
    parts: list[list[bool] | None] = [None] * -(-n // size)
    turns = itertools.count()  # its next() is atomic: each chunk goes to one thread

    def work() -> None:
        while (k := next(turns)) < len(parts):
            parts[k] = verify_signatures_chunk(items[k * size : (k + 1) * size])

    helpers = [verify_pool().submit(work) for _ in range(workers - 1)]
    work()
    for helper in helpers:  # one that has not started (a busy pool) is not waited for
        if not helper.cancel():
            helper.result()
    return [ok for part in parts for ok in part]  # type: ignore[union-attr]


_POOL_READY: Any = None


def warm_process_pool() -> None:
    """Start the worker processes in the background (non-blocking after the spawn): a later
    :func:`check_signatures_in_processes` uses them once they are up. Spawning costs about
    half a second of the workers' own time, once per process."""
    global _POOL_READY
    if _POOL_READY is None:
        try:
            pool = process_pool()
            _POOL_READY = [pool.submit(_warm_worker) for _ in range(_workers())]
        except Exception:  # no processes here (e.g. a sandbox): threads it is
            log.warning("secsync: cannot start the process pool", exc_info=True)
            _POOL_READY = []


def _running_pool() -> Any:
    """The process pool when it runs: warmed up with every worker answered, or made for a
    large frame (:func:`precheck_frame`, whose workers answered before it returned); else
    ``None``."""
    ready = _POOL_READY
    if _PROCESS_POOL is None or ready == []:
        return None
    if ready is not None and not all(f.done() and f.exception() is None for f in ready):
        return None
    return _PROCESS_POOL


def check_signatures_in_processes(
    items: Sequence[tuple[bytes, bytes, bytes]],
) -> list[bool] | Iterator[bool]:
    """``verify_log(check_signatures=…)`` for long logs: the Ed25519 checks split between this
    process and the worker processes (no GIL: each core verifies; the results are the same as
    one by one). Only when the pool is already running (:func:`warm_process_pool`) and the log
    has at least :data:`LOG_PROCESS_THRESHOLD` entries, or the log is long enough to start it
    (:data:`LOG_PROCESS_START`); else :func:`check_signatures_in_threads`.

    With the workers, this process checks the first part and returns an iterator: the core
    applies the first part's entries while the workers finish theirs (an error in the first
    part is reported without waiting for them).
    A failing pool (a worker killed) is replaced next time; its items are checked here."""
    n = len(items)
    if LOG_PROCESS_START is not None and n >= LOG_PROCESS_START:
        warm_process_pool()
        pool = _PROCESS_POOL
    else:
        pool = _running_pool() if n >= LOG_PROCESS_THRESHOLD else None
    if pool is None:
        return check_signatures_in_threads(items)
    # one part here, one per worker on the other cores (a worker on our core only adds IPC)
    parts = 1 + max(1, min(_workers(), (os.cpu_count() or 2) - 1))
    size = -(-n // parts)
    chunks = [items[i : i + size] for i in range(size, n, size)]
    try:
        futures = [pool.submit(verify_signatures_chunk, chunk) for chunk in chunks]
    except Exception:  # e.g. a broken pool (a worker was killed)
        log.warning("secsync: the process pool failed; verifying here", exc_info=True)
        _reset_process_pool()
        futures = [None] * len(chunks)
    return _results_in_order(verify_signatures_chunk(items[:size]), futures, chunks)


def _results_in_order(first: list[bool], futures: list[Any], chunks: list[Any]) -> Iterator[bool]:
    """The results of this process's part, then each worker's (waiting for it only then; a
    worker that failed has its part checked here)."""
    yield from first
    for future, chunk in zip(futures, chunks, strict=True):
        part = None
        if future is not None:
            try:
                part = future.result()
            except Exception:
                log.warning("secsync: the process pool failed; verifying here", exc_info=True)
                _reset_process_pool()
        yield from part if part is not None else verify_signatures_chunk(chunk)
