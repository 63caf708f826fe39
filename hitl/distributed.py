"""Everything Ray: join or start a cluster, sharded pre-labeling, top-k selection and Dawid-Skene.

Ray is optional. Importing this module never imports ``ray``; every entry point runs
in-process when Ray is absent (or when the job is too small to be worth it), and the
in-process run and the Ray run evaluate the same function on the same shards, so they
return the same numbers.

- :func:`connect` joins the cluster named by ``RAY_ADDRESS`` (Ray's own convention) or
  starts a private local Ray that sends nothing off the machine.
- :func:`prelabel` / :class:`Prelabeler` run ``model.predict_proba`` (or any row-wise
  method, e.g. ``TextEncoder.encode``) over row shards on a pool of actors, one per CPU
  or one per GPU; a killed actor is replaced and its shards run again, so every row is
  computed exactly once in the result.
- :func:`select_sharded` keeps the top k of each shard and merges them into the exact
  global top k.
- :func:`fit_dawid_skene` runs Dawid-Skene EM with the E-step on shards of tasks and the
  M-step sums added up on the driver.

Settings live in :data:`settings` (read from ``HITL_RAY_*`` environment variables at
import, changeable at run time).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .errors import ConfigError, HitlError, ValidationError

__all__ = [
    "ClusterError",
    "ClusterInfo",
    "RaySettings",
    "settings",
    "ray_available",
    "connect",
    "shutdown",
    "release",
    "is_connected",
    "cluster_info",
    "shard_bounds",
    "Shared",
    "share",
    "Prelabeler",
    "prelabel",
    "select_sharded",
    "fit_dawid_skene",
    "aggregate",
]


class ClusterError(HitlError, RuntimeError):
    """The Ray cluster could not be reached or kept losing workers."""


# ---------------------------------------------------------------------------------- settings


def _env_int(name: str, default: int | None, minimum: int = 1) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"is {raw!r}", field=name, expected="an integer") from None
    if value < minimum:
        raise ConfigError(f"is {value}", field=name, expected=f"an integer >= {minimum}")
    return value


def _env_choice(name: str) -> Any:
    raw = os.environ.get(name, "").strip().lower()
    choices = {"": "auto", "auto": "auto", "1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if raw not in choices:
        raise ConfigError(f"is {raw!r}", field=name, expected="auto, 1 or 0")
    return choices[raw]


@dataclass
class RaySettings:
    """Knobs of the Ray layer; the defaults come from ``HITL_RAY_*`` environment variables.

    Attributes
    ----------
    num_cpus : int or None
        CPUs of a local Ray start (``HITL_RAY_NUM_CPUS``); None means all cores.
    threshold_rows : int
        Below this many rows ``use_ray="auto"`` never uses Ray (``HITL_RAY_THRESHOLD_ROWS``,
        default 100,000).
    threshold_answers : int
        Below this many answers sharded Dawid-Skene runs in-process
        (``HITL_RAY_THRESHOLD_ANSWERS``, default 1,000,000).
    shard_rows : int
        Rows per shard (``HITL_RAY_SHARD_ROWS``, default 65,536).
    use_ray : "auto", True or False
        What ``use_ray=None`` means everywhere (``HITL_USE_RAY``: ``auto``, ``1`` or
        ``0``; default ``auto``).
    start_seconds : float
        What a local Ray start costs on an idle machine, used by the automatic choice
        when Ray is not running yet; scaled up by the load average per core.
    actor_seconds : float
        What starting a pool of actors costs on an idle machine (scaled the same way).
    put_bytes_per_second : float
        Speed of copying a pool into the object store, for the automatic choice.
    max_actor_failures : int
        Actor deaths tolerated per job before it gives up with :class:`ClusterError`.
    """

    num_cpus: int | None = field(default_factory=lambda: _env_int("HITL_RAY_NUM_CPUS", None))
    threshold_rows: int = field(default_factory=lambda: _env_int("HITL_RAY_THRESHOLD_ROWS", 100_000, 0))
    threshold_answers: int = field(default_factory=lambda: _env_int("HITL_RAY_THRESHOLD_ANSWERS", 1_000_000, 0))
    shard_rows: int = field(default_factory=lambda: _env_int("HITL_RAY_SHARD_ROWS", 65_536))
    use_ray: Any = field(default_factory=lambda: _env_choice("HITL_USE_RAY"))
    start_seconds: float = 6.0
    actor_seconds: float = 2.0
    put_bytes_per_second: float = 1.0e9
    max_actor_failures: int = 8


settings = RaySettings()


def ray_available() -> bool:
    """True when ``ray`` can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("needs Ray, which is not installed", field="use_ray",
                          expected="`pip install 'hitl[ray]'`, or use_ray=False") from exc
    return ray


# ---------------------------------------------------------------------------------- connect


@dataclass
class ClusterInfo:
    """Where this process's Ray runs.

    Attributes
    ----------
    address : str
        GCS address of the cluster (``host:port``) or the ``ray://`` address joined.
    local : bool
        True when :func:`connect` started Ray on this machine.
    num_cpus, num_gpus : int
        Resources of the whole cluster at connect time.
    temp_dir, home : str or None
        Private folders of a local start: Ray's session files, and the ``HOME`` its
        processes see (holding an empty ``ray_bootstrap_config.yaml``).
    """

    address: str
    local: bool
    num_cpus: int
    num_gpus: int
    temp_dir: str | None = None
    home: str | None = None
    owned: bool = True


_STATE: dict[str, Any] = {"info": None}


@contextlib.contextmanager
def _patched_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then put the old values back."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _loopback_node_ip() -> Iterator[None]:
    """Make this process resolve the node address to 127.0.0.1 during a local start.

    On Linux Ray replaces a loopback node address by the machine's routable one; its
    single-machine mode (what it uses on macOS and Windows) keeps loopback. The spawned
    processes get the same through ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``.
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - layout of another Ray version
        yield
        return
    old = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if old is not None:
            ray_constants.ENABLE_RAY_CLUSTER = old


def local_start_environment(home: str) -> dict[str, str]:
    """Environment variables every process of a local Ray start gets.

    ``HOME`` is a private folder holding an empty ``ray_bootstrap_config.yaml``: Ray's
    usage-statistics module reads that file and, when it is missing, probes cloud
    metadata addresses to guess the provider. Usage statistics are off.
    """
    return {
        "HOME": home,
        # A busy machine can take longer than Ray's default 30 s to bring up its GCS.
        "RAY_gcs_server_port_wait_time_s": os.environ.get("RAY_gcs_server_port_wait_time_s", "120"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    }


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = None,
    runtime_env: dict | None = None,
) -> ClusterInfo:
    """Join the Ray cluster named by ``RAY_ADDRESS``, or start a private local one.

    Idempotent: a second call returns the same :class:`ClusterInfo`. A Ray already
    initialised by the caller is used as it is (and left running by :func:`shutdown`).

    Parameters
    ----------
    address : str, optional
        Cluster to join (``host:port`` or ``ray://host:10001``); default ``RAY_ADDRESS``.
        With neither, Ray starts locally.
    num_cpus : int, optional
        CPUs of a local start; default :attr:`RaySettings.num_cpus`, else all cores.
    num_gpus : int, optional
        GPUs of a local start; default: what Ray detects.
    object_store_memory : int, optional
        Bytes of shared memory for a local start; default Ray's (30 % of RAM).
    runtime_env : dict, optional
        Passed to ``ray.init`` (e.g. ``{"pip": ["hitl"]}`` for a cluster without hitl).

    Notes
    -----
    A local start sends nothing off the machine: no usage statistics
    (``RAY_USAGE_STATS_ENABLED=0``), no dashboard, loopback addresses only, and its
    processes see a private ``HOME`` with an empty ``ray_bootstrap_config.yaml`` so that
    no cloud-metadata address is probed. The environment of this process is changed
    only while ``ray.init`` spawns them (``RAY_USAGE_STATS_ENABLED=0`` stays set).

    Examples
    --------
    >>> from hitl import distributed
    >>> info = distributed.connect(num_cpus=2)       # doctest: +SKIP
    >>> info.local, info.num_cpus                    # doctest: +SKIP
    (True, 2)
    >>> distributed.shutdown()                       # doctest: +SKIP
    """
    ray = _ray()
    info = _STATE["info"]
    if info is not None and ray.is_initialized():
        return info
    if info is not None:  # Ray was shut down behind our back: forget that connection
        _forget(info)
    if ray.is_initialized():
        # Someone else started Ray in this process: use it, never stop it.
        info = _describe(ray, local=False, owned=False)
        _STATE["info"] = info
        return info
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    target = address if address is not None else (os.environ.get("RAY_ADDRESS") or None)
    common = {"namespace": "hitl", "logging_level": "WARNING", "runtime_env": runtime_env}
    if target:
        try:
            ray.init(address=target, **common)
        except Exception as exc:
            raise ClusterError(f"could not join {target!r}: {exc}", field="RAY_ADDRESS",
                               expected="the address of a running Ray cluster") from exc
        info = _describe(ray, local=False, owned=True)
    else:
        n = num_cpus if num_cpus is not None else settings.num_cpus
        if n is None:
            n = os.cpu_count() or 1
        if int(n) < 1:
            raise ConfigError(f"is {n}", field="num_cpus", expected="a positive integer")
        home = tempfile.mkdtemp(prefix="hitl-ray-home-")
        open(os.path.join(home, "ray_bootstrap_config.yaml"), "w").close()
        # Short path: Ray's unix socket names must stay under ~107 characters.
        temp_dir = tempfile.mkdtemp(prefix="hitl-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
        try:
            with _patched_environ(local_start_environment(home)), _loopback_node_ip():
                ray.init(
                    address="local",
                    num_cpus=int(n),
                    num_gpus=num_gpus,
                    object_store_memory=object_store_memory,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    _temp_dir=temp_dir,
                    **common,
                )
        except Exception:
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        info = _describe(ray, local=True, owned=True, temp_dir=temp_dir, home=home)
    _STATE["info"] = info
    return info


def _describe(ray: Any, *, local: bool, owned: bool, temp_dir: str | None = None,
              home: str | None = None) -> ClusterInfo:
    res = ray.cluster_resources()
    try:
        address = ray.get_runtime_context().gcs_address
    except Exception:  # pragma: no cover - Ray Client has no GCS address
        address = os.environ.get("RAY_ADDRESS", "")
    return ClusterInfo(address=address, local=local, num_cpus=int(res.get("CPU", 0)),
                       num_gpus=int(res.get("GPU", 0)), temp_dir=temp_dir, home=home, owned=owned)


def is_connected() -> bool:
    """True when this process is connected to Ray (without importing it if it is not loaded)."""
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def _ray_is_up() -> bool:
    """Connected already, or a cluster to join is named: no local start to pay for."""
    return is_connected() or (bool(os.environ.get("RAY_ADDRESS")) and ray_available())


def cluster_info() -> ClusterInfo | None:
    """The :class:`ClusterInfo` of the current connection, or None."""
    return _STATE["info"] if is_connected() else None


def shutdown() -> None:
    """Stop the actors of this module and disconnect; a local start is stopped and its folders removed.

    A Ray that was running before :func:`connect` is left running. Safe to call twice.
    """
    info = _STATE["info"]
    pool = _POOL.pop("pool", None)
    if pool is not None:
        pool.kill()
    if info is None or not info.owned:
        _STATE["info"] = None
        return
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    _forget(info)


def _forget(info: ClusterInfo) -> None:
    _STATE["info"] = None
    _POOL.pop("pool", None)
    if info.owned:
        for path in (info.temp_dir, info.home):
            if path:
                shutil.rmtree(path, ignore_errors=True)


def release() -> None:
    """Let the actors drop the model and pool they keep between jobs (frees the object store)."""
    pool = _POOL.get("pool")
    if pool is None or not is_connected():
        return
    ray = _ray()
    ray.get([a.forget.remote() for a in pool.actors])


atexit.register(shutdown)


# ---------------------------------------------------------------------------------- shards


def shard_bounds(n: int, shard_rows: int) -> np.ndarray:
    """``(n_shards, 2)`` start/stop rows of consecutive shards of at most ``shard_rows`` rows.

    Examples
    --------
    >>> shard_bounds(10, 4).tolist()
    [[0, 4], [4, 8], [8, 10]]
    """
    shard_rows = int(shard_rows)
    if shard_rows < 1:
        raise ConfigError(f"is {shard_rows}", field="shard_rows", expected="a positive integer")
    starts = np.arange(0, int(n), shard_rows, dtype=np.int64)
    return np.stack([starts, np.minimum(starts + shard_rows, int(n))], axis=1).reshape(-1, 2)


def _n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


def _open_data(spec: tuple) -> Any:
    """The array a data spec names: an object-store array, or a memory-mapped file opened here."""
    kind = spec[0]
    if kind == "memmap":
        _, filename, dtype, shape, offset = spec
        return np.memmap(filename, dtype=np.dtype(dtype), mode="r", shape=tuple(shape), offset=offset)
    import ray

    return ray.get(spec[1])


def _take(X: Any, start: int, stop: int, rows: np.ndarray | None) -> Any:
    return X[start:stop] if rows is None else X[rows]


def _run_rows(model: Any, method: str, X: Any, start: int, stop: int, rows: np.ndarray | None) -> np.ndarray:
    """One shard of a row-wise job: ``model.<method>`` on rows ``start:stop`` (or the given rows)."""
    part = _take(X, start, stop, rows)
    out = np.asarray(getattr(model, method)(part))
    n = stop - start if rows is None else len(rows)
    if out.ndim == 0 or out.shape[0] != n:
        raise ValidationError(f"returned shape {out.shape} for {n} rows", field=f"model.{method}",
                              expected="one output row per input row")
    return out


def _select_rows(P: np.ndarray, start: int, stop: int, strategy: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Local top k of one shard of a probability matrix, as global row positions and scores."""
    from .strategies import select

    try:
        sel = select(strategy, k, proba=P[start:stop])
    except HitlError as exc:
        if exc.item is None or not isinstance(exc.item, (int, np.integer)):
            raise
        # Name the row of the whole pool, not of the shard.
        raise type(exc)(exc.reason, item=int(exc.item) + start, field=exc.field, expected=exc.expected) from None
    return np.asarray(sel.indices, dtype=np.int64) + start, np.asarray(sel.scores, dtype=np.float64)


def _merge_top_k(indices: Sequence[np.ndarray], scores: Sequence[np.ndarray], k: int) -> Any:
    """Exact global top k from each shard's top k: highest score first, ties to the lower row."""
    from .strategies import Selection, top_k

    idx = np.concatenate(indices) if len(indices) else np.empty(0, dtype=np.int64)
    sc = np.concatenate(scores) if len(scores) else np.empty(0, dtype=np.float64)
    # top_k breaks ties by position: put the candidates in row order first.
    order = np.argsort(idx, kind="stable")
    idx, sc = idx[order], sc[order]
    best = top_k(sc, k)
    return Selection(idx[best.indices], sc[best.indices])


# ---------------------------------------------------------------------------------- actors


def _move_to_gpu(model: Any) -> Any:
    """Give a model the GPU Ray assigned to this actor, when it knows how to move."""
    mover = getattr(model, "to_device", None)
    if callable(mover):
        moved = mover("cuda")
        return model if moved is None else moved
    return model


class _Worker:
    """Body of a Ray actor: runs row shards of a model and holds Dawid-Skene shards.

    The model and the data arrive as object references wrapped in a list (so Ray
    does not resolve them on every call); each is fetched once and kept until the
    next job names another one.
    """

    def __init__(self, blas_threads: int | None = 1, use_gpu: bool = False) -> None:
        self._limits = None
        if blas_threads is not None:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=int(blas_threads))
        self._use_gpu = bool(use_gpu)
        self._model: tuple[str, Any] | None = None
        self._data: tuple[Any, Any] | None = None
        self._ds: dict[str, _DSShard] = {}

    def pid(self) -> int:
        return os.getpid()

    def _get_model(self, box: list) -> Any:
        import ray

        key = box[0].hex()
        if self._model is None or self._model[0] != key:
            self._model = None  # let the previous model go before loading the next
            model = ray.get(box[0])
            self._model = (key, _move_to_gpu(model) if self._use_gpu else model)
        return self._model[1]

    def _get_data(self, spec: tuple) -> Any:
        key = spec[1].hex() if spec[0] == "ref" else spec
        if self._data is None or self._data[0] != key:
            self._data = None
            self._data = (key, _open_data(spec))
        return self._data[1]

    def run(self, model_box: list, spec: tuple, method: str, start: int, stop: int,
            rows: np.ndarray | None = None) -> np.ndarray:
        return _run_rows(self._get_model(model_box), method, self._get_data(spec), start, stop, rows)

    def select(self, spec: tuple, start: int, stop: int, strategy: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _select_rows(self._get_data(spec), start, stop, strategy, k)

    def forget(self) -> None:
        self._model = None
        self._data = None

    # Dawid-Skene shards, kept between EM iterations.
    def ds_load(self, job: str, box: list) -> int:
        import ray

        self._ds[job] = _DSShard(*ray.get(box[0]))
        return os.getpid()

    def ds_init(self, job: str) -> tuple:
        return self._ds[job].init()

    def ds_step(self, job: str, log_confusion: np.ndarray, log_class_prior: np.ndarray) -> tuple:
        return self._ds[job].step(log_confusion, log_class_prior)

    def ds_posteriors(self, job: str) -> np.ndarray:
        return self._ds.pop(job).posteriors()

    def ds_drop(self, job: str) -> None:
        self._ds.pop(job, None)


class _ActorPool:
    """A fixed number of :class:`_Worker` actors; dead ones are replaced on request."""

    def __init__(self, n_actors: int, num_gpus: int, blas_threads: int | None) -> None:
        ray = _ray()
        self.key = (int(n_actors), int(num_gpus), blas_threads)
        self.info = _STATE["info"]
        self._cls = ray.remote(_Worker).options(num_cpus=1, num_gpus=num_gpus, max_restarts=0,
                                                 max_task_retries=0)
        self._args = (blas_threads, num_gpus > 0)
        self.actors = [self._cls.remote(*self._args) for _ in range(int(n_actors))]
        self.generation = [0] * int(n_actors)
        self.replaced = 0

    def replace(self, slot: int) -> None:
        ray = _ray()
        with contextlib.suppress(Exception):
            ray.kill(self.actors[slot])
        self.actors[slot] = self._cls.remote(*self._args)
        self.generation[slot] += 1
        self.replaced += 1

    def kill(self) -> None:
        import sys

        ray = sys.modules.get("ray")
        if ray is None or not ray.is_initialized():
            return
        for a in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(a)
        self.actors = []


_POOL: dict[str, _ActorPool] = {}


def _actor_pool(n_actors: int | None, num_gpus: int) -> _ActorPool:
    """The pool of this process, (re)built when the size or the cluster changed."""
    info = connect()
    if n_actors is None:
        n_actors = info.num_gpus if num_gpus else info.num_cpus
    n_actors = max(int(n_actors), 1)
    key = (n_actors, int(num_gpus), 1 if not num_gpus else None)
    pool = _POOL.get("pool")
    if pool is not None and pool.key == key and pool.info is info:
        return pool
    if pool is not None:
        # Its actors hold CPUs the new pool needs.
        pool.kill()
    pool = _ActorPool(n_actors, num_gpus, key[2])
    _POOL["pool"] = pool
    return pool


def _pool_is_warm(n_actors: int | None, num_gpus: int) -> bool:
    pool = _POOL.get("pool")
    info = cluster_info()
    if pool is None or info is None or pool.info is not info:
        return False
    n = n_actors if n_actors is not None else (info.num_gpus if num_gpus else info.num_cpus)
    return pool.key[:2] == (max(int(n), 1), int(num_gpus))


def _busy_factor() -> float:
    """Runnable processes per core over the last minute, at least 1."""
    try:
        return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    except (AttributeError, OSError):  # pragma: no cover - no load average on this OS
        return 1.0


def _wants_gpu(model: Any, num_gpus: Any, info: ClusterInfo | None) -> int:
    """1 when actors should each hold a GPU: asked for, or "auto" with GPUs and a torch-style model."""
    if num_gpus == "auto":
        if info is None or info.num_gpus == 0:
            return 0
        device = getattr(model, "device", None)
        return int(device is not None and str(device).split(":")[0] in ("auto", "cuda"))
    n = int(num_gpus or 0)
    if n not in (0, 1):
        raise ConfigError(f"is {num_gpus!r}", field="num_gpus", expected='"auto", 0 or 1 (GPUs per actor)')
    return n


def _dispatch(pool: _ActorPool, n_shards: int, submit: Callable[[Any, int], Any],
              on_result: Callable[[int, Any], None], *, depth: int = 2) -> int:
    """Run every shard once on the pool's actors; returns how many shard runs were lost and redone.

    Each actor has up to ``depth`` shards queued so it never waits for the driver. A
    shard whose actor dies goes back to the front of the queue and the actor is
    replaced; results are taken once per shard, so no row is lost or doubled.
    """
    ray = _ray()
    from ray.exceptions import RayActorError

    pending = deque(range(n_shards))
    inflight: dict[Any, tuple[int, int, int]] = {}
    load = [0] * len(pool.actors)
    done = np.zeros(n_shards, dtype=bool)
    lost = 0
    failures = 0
    while pending or inflight:
        filled = True
        while pending and filled:  # round robin, so every actor starts at once
            filled = False
            for slot in range(len(pool.actors)):
                if pending and load[slot] < depth:
                    s = pending.popleft()
                    ref = submit(pool.actors[slot], s)
                    inflight[ref] = (s, slot, pool.generation[slot])
                    load[slot] += 1
                    filled = True
        ready, _ = ray.wait(list(inflight), num_returns=1)
        for ref in ready:
            s, slot, gen = inflight.pop(ref)
            current = gen == pool.generation[slot]
            try:
                value = ray.get(ref)
            except RayActorError:
                lost += 1
                pending.appendleft(s)
                if current:
                    failures += 1
                    if failures > settings.max_actor_failures:
                        raise ClusterError(f"{failures} actors died during one job", field="actors",
                                           expected="workers that stay alive") from None
                    pool.replace(slot)
                    load[slot] = 0
                continue
            except ray.exceptions.RayTaskError as exc:
                cause = exc.as_instanceof_cause()
                raise cause from None
            if current:
                load[slot] -= 1
            if not done[s]:
                done[s] = True
                on_result(s, value)
    return lost


# ---------------------------------------------------------------------------------- pre-labeling


class Shared:
    """A model or a pool put in Ray's object store once and reused by every later job.

    A job normally copies its model (and its pool, unless it is the same array as the
    last call's) to the object store; a ``Shared`` object is copied once, at its first
    use on Ray, and each actor loads it once. Only share what will not change: a model
    that is refitted must be shared again.

    Examples
    --------
    >>> enc = share([1, 2, 3])
    >>> enc.value
    [1, 2, 3]
    """

    def __init__(self, value: Any) -> None:
        self.value = value
        self._ref: Any = None
        self._info: ClusterInfo | None = None

    @property
    def ref(self) -> Any:
        """The object reference (connects to Ray and copies the value on first use)."""
        info = connect()
        if self._ref is None or self._info is not info:
            self._ref = _ray().put(self.value)
            self._info = info
        return self._ref

    @property
    def is_put(self) -> bool:
        return self._ref is not None and self._info is cluster_info()


def share(value: Any) -> Shared:
    """Wrap a model or pool so Ray jobs copy it to the object store once (see :class:`Shared`)."""
    return value if isinstance(value, Shared) else Shared(value)



def _check_use_ray(use_ray: Any) -> Any:
    if use_ray not in (None, "auto", True, False):
        raise ConfigError(f"is {use_ray!r}", field="use_ray", expected='"auto", True, False or None (the setting)')
    return use_ray


def _use_ray(use_ray: Any) -> Any:
    """The explicit choice, else :attr:`RaySettings.use_ray`."""
    return _check_use_ray(settings.use_ray if use_ray is None else use_ray)


class Prelabeler:
    """Run a model over a pool in row shards, in-process or on a Ray actor pool.

    Parameters
    ----------
    use_ray : "auto", True, False or None, default None
        None takes :attr:`RaySettings.use_ray` (``HITL_USE_RAY``, default ``"auto"``).
        ``"auto"`` stays in-process below ``threshold_rows`` rows or without Ray; above,
        it times the first shard in-process and uses Ray only when the rest of the job
        is predicted to finish sooner there, counting what Ray still has to pay (start,
        actors, copying the pool to the object store). ``True`` always uses Ray
        (starting it through :func:`connect` if needed).
    threshold_rows : int, optional
        Default :attr:`RaySettings.threshold_rows`.
    shard_rows : int, optional
        Rows per shard; default :attr:`RaySettings.shard_rows`. Results are bit-identical
        between in-process and Ray runs with the same ``shard_rows``.
    n_actors : int, optional
        Actors of the pool; default one per CPU of the cluster (one per GPU with GPU actors).
    num_gpus : "auto", 0 or 1, default "auto"
        GPUs per actor. ``"auto"`` gives each actor one GPU when the cluster has GPUs and
        the model has a ``device`` setting of ``"auto"`` or ``"cuda"`` (torch-backed
        models); there is then one actor per GPU. A model with a ``to_device(device)``
        method is moved to its actor's GPU after loading.
    method : str, default "predict_proba"
        The row-wise method to run (``"encode"`` for :class:`~hitl.models.TextEncoder`,
        ``"embed"``, ...).
    progress : bool, default False
        A tqdm bar counting rows.
    callback : callable, optional
        ``callback(shard_index, rows_done)`` after each shard arrives (driver side);
        ``rows_done`` counts the rows delivered so far.

    Attributes
    ----------
    backend_ : str
        ``"in-process"`` or ``"ray"``: where the last call ran.
    n_lost_ : int
        Shard runs lost to dead actors and run again in the last call.
    rows_done_ : int
        Rows delivered in the last call (each exactly once: equals the rows asked for).
    timings_ : dict
        Seconds spent in the last call (``probe``, ``put``, ``total``) and the estimate
        the automatic choice made (``estimate_in_process``, ``estimate_ray``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from hitl.models import SklearnModel
    >>> X = np.random.default_rng(0).normal(size=(1000, 4))
    >>> m = SklearnModel(LogisticRegression(), n_classes=2).fit(X, (X[:, 0] > 0).astype(int))
    >>> P = Prelabeler(shard_rows=300).predict_proba(m, X)     # small: in-process
    >>> P.shape, bool(np.array_equal(P, m.predict_proba(X)))
    ((1000, 2), True)
    """

    def __init__(
        self,
        use_ray: Any = None,
        *,
        threshold_rows: int | None = None,
        shard_rows: int | None = None,
        n_actors: int | None = None,
        num_gpus: Any = "auto",
        method: str = "predict_proba",
        progress: bool = False,
        callback: Callable[[int, int], None] | None = None,
    ) -> None:
        self.use_ray = _check_use_ray(use_ray)
        self.threshold_rows = threshold_rows
        self.shard_rows = shard_rows
        self.n_actors = n_actors
        self.num_gpus = num_gpus
        self.method = method
        self.progress = progress
        self.callback = callback
        self._cache: tuple | None = None

    # -- public -------------------------------------------------------------------------
    def predict_proba(self, model: Any, X: Any, rows: Any = None) -> np.ndarray:
        """``model.<method>`` of ``X`` (or of ``X[rows]``), row order kept.

        Parameters
        ----------
        model : object with the method named by ``method``
        X : array-like (numpy array, ``numpy.memmap``, or a sequence such as texts)
        rows : array of int, optional
            Positions of the rows to run; default all rows.

        Returns
        -------
        ndarray with one row per input row (``(n, k)`` probabilities for ``predict_proba``).
        """
        t_start = time.perf_counter()
        shared_model = model if isinstance(model, Shared) else None
        shared_X = X if isinstance(X, Shared) else None
        model = model.value if shared_model is not None else model
        X = X.value if shared_X is not None else X
        if not callable(getattr(model, self.method, None)):
            raise ValidationError(f"has no {self.method}()", field="model",
                                  expected=f"an object with a {self.method} method")
        X = _as_rows(X)
        n_all = _n_rows(X)
        if rows is not None:
            rows = _check_rows(rows, n_all)
        n = n_all if rows is None else len(rows)
        shard_rows = int(self.shard_rows or settings.shard_rows)
        bounds = shard_bounds(n, shard_rows)
        self.n_lost_ = 0
        self.rows_done_ = 0
        self.timings_: dict[str, float] = {}
        out_box: dict[str, np.ndarray] = {}
        bar = _bar(n, self.progress, self.method)
        try:
            first = 0
            backend = self._plan(n)
            if backend == "probe":
                # Time the first shard as this process runs it, the second as an actor will
                # (one BLAS/OpenMP thread); both results are kept.
                from threadpoolctl import threadpool_limits

                probes = []
                for i in range(min(2, len(bounds))):
                    b = bounds[i]
                    limit = threadpool_limits(limits=1) if i == 1 else contextlib.nullcontext()
                    t0 = time.perf_counter()
                    with limit:
                        value = _run_rows(model, self.method, X, *b, _sub(rows, b))
                    probes.append((int(b[1] - b[0]), time.perf_counter() - t0))
                    self._store(out_box, n, b, value)
                    bar.update(int(b[1] - b[0]))
                    self._notify(i, int(b[1] - b[0]))
                first = len(probes)
                self.timings_["probe"] = sum(p[1] for p in probes)
                backend = self._decide(model, X, n - sum(p[0] for p in probes), len(bounds) - first, probes,
                                       shared_X is not None and shared_X.is_put)
            rest = bounds[first:]
            if backend == "ray" and len(rest):
                self._run_ray(model, X, rows, rest, first, out_box, bar, n, shared_model, shared_X)
            else:
                backend = "in-process"
                for i, b in enumerate(rest, start=first):
                    self._store(out_box, n, b, _run_rows(model, self.method, X, *b, _sub(rows, b)))
                    bar.update(int(b[1] - b[0]))
                    self._notify(i, int(b[1] - b[0]))
        finally:
            bar.close()
        self.backend_ = backend
        self.timings_["total"] = time.perf_counter() - t_start
        if "out" not in out_box:  # no rows at all: ask the model for the column layout
            return np.asarray(getattr(model, self.method)(_take(X, 0, 0, None)))
        return out_box["out"]

    __call__ = predict_proba

    # -- internals ----------------------------------------------------------------------
    def _notify(self, shard: int, rows: int) -> None:
        self.rows_done_ += rows
        if self.callback is not None:
            self.callback(shard, self.rows_done_)

    @staticmethod
    def _store(out_box: dict, n: int, b: np.ndarray, value: np.ndarray) -> None:
        out = out_box.get("out")
        if out is None:
            out = out_box["out"] = np.empty((n,) + value.shape[1:], dtype=value.dtype)
        elif value.shape[1:] != out.shape[1:]:
            raise ValidationError(f"returned shape {value.shape} after {out.shape[1:]} columns before",
                                  field="model", expected="the same columns for every shard")
        out[b[0]:b[1]] = value

    def _plan(self, n: int) -> str:
        use_ray = _use_ray(self.use_ray)
        if use_ray is False or n == 0:
            return "in-process"
        if use_ray is True:
            _ray()
            return "ray"
        threshold = int(self.threshold_rows if self.threshold_rows is not None else settings.threshold_rows)
        if n < threshold or not ray_available():
            return "in-process"
        return "probe"

    def _decide(self, model: Any, X: Any, remaining: int, n_shards: int, probes: list, X_put: bool = False) -> str:
        """Ray or in-process for the remaining shards, from the timed first shards.

        In-process cost: rows at the rate of the first shard (this process's own
        threads). Ray cost: rows at the one-thread rate of the second shard, spread over
        the actors, plus what is not paid yet: Ray's start, the actors' start, the copy
        of the pool to the object store, a few milliseconds per shard.
        """
        rate_actor = probes[-1][1] / max(probes[-1][0], 1)
        # The first shard may carry one-off costs (lazy loading, compiling); with fewer
        # threads the second can only be slower, so it bounds the first.
        rate_local = min(probes[0][1] / max(probes[0][0], 1), rate_actor)
        est_local = rate_local * remaining
        info = cluster_info()
        gpu = _wants_gpu(model, self.num_gpus, info)
        if self.n_actors:
            workers = int(self.n_actors)
        elif info is not None:
            workers = info.num_gpus if gpu else info.num_cpus
        else:
            workers = settings.num_cpus or os.cpu_count() or 1
        # Starting processes is CPU work: on a machine busy with other jobs it takes longer.
        busy = _busy_factor()
        overhead = 0.0 if info is not None else settings.start_seconds * busy
        if not _pool_is_warm(self.n_actors, gpu):
            overhead += settings.actor_seconds * busy
        will_be_local = info.local if info is not None else not os.environ.get("RAY_ADDRESS")
        if not (X_put or self._cached(X)) and not (will_be_local and _memmap_spec(X) is not None):
            overhead += getattr(X, "nbytes", 0) / settings.put_bytes_per_second
        overhead += 0.005 * n_shards
        est_ray = overhead + rate_actor * remaining / max(workers, 1)
        self.timings_["estimate_in_process"] = est_local
        self.timings_["estimate_ray"] = est_ray
        # A margin, so a near tie stays in-process (fewer moving parts).
        return "ray" if est_ray < 0.9 * est_local else "in-process"

    def _cached(self, X: Any) -> bool:
        c = self._cache
        return bool(c is not None and c[0]() is X and c[1] is cluster_info() and isinstance(X, np.ndarray)
                    and c[2] == (X.shape, X.dtype.str, X.__array_interface__["data"][0]))

    def _data_spec(self, X: Any) -> tuple:
        ray = _ray()
        info = connect()
        mm = _memmap_spec(X) if info.local else None
        if mm is not None:
            return mm
        if self._cached(X):
            return self._cache[3]
        t0 = time.perf_counter()
        spec = ("ref", ray.put(X))
        self.timings_["put"] = time.perf_counter() - t0
        if isinstance(X, np.ndarray):
            self._cache = (weakref.ref(X), info, (X.shape, X.dtype.str, X.__array_interface__["data"][0]), spec)
        return spec

    def _run_ray(self, model: Any, X: Any, rows: np.ndarray | None, bounds: np.ndarray, first: int,
                 out_box: dict, bar: Any, n: int, shared_model: Shared | None = None,
                 shared_X: Shared | None = None) -> None:
        ray = _ray()
        info = connect()
        gpu = _wants_gpu(model, self.num_gpus, info)
        pool = _actor_pool(self.n_actors, gpu)
        spec = ("ref", shared_X.ref) if shared_X is not None else self._data_spec(X)
        model_box = [shared_model.ref if shared_model is not None else ray.put(model)]
        method = self.method

        def submit(actor: Any, s: int) -> Any:
            b = bounds[s]
            return actor.run.remote(model_box, spec, method, int(b[0]), int(b[1]), _sub(rows, b))

        def on_result(s: int, value: np.ndarray) -> None:
            b = bounds[s]
            self._store(out_box, n, b, value)
            bar.update(int(b[1] - b[0]))
            self._notify(s + first, int(b[1] - b[0]))

        self.n_lost_ = _dispatch(pool, len(bounds), submit, on_result)


def _sub(rows: np.ndarray | None, b: np.ndarray) -> np.ndarray | None:
    return None if rows is None else rows[int(b[0]):int(b[1])]


def _as_rows(X: Any) -> Any:
    if hasattr(X, "shape") and hasattr(X, "__getitem__") and not hasattr(X, "iloc"):
        if len(X.shape) == 0:
            raise ValidationError("is a scalar", field="X", expected="rows (an array or a sequence)")
        return X
    if isinstance(X, str):
        raise ValidationError("is a single string", field="X", expected="a sequence of rows")
    if hasattr(X, "to_numpy"):
        return X.to_numpy()
    try:
        seq = list(X)
    except TypeError:
        raise ValidationError(f"is a {type(X).__name__}", field="X", expected="rows (an array or a sequence)") from None
    arr = np.empty(len(seq), dtype=object)
    arr[:] = seq
    return arr


def _check_rows(rows: Any, n: int) -> np.ndarray:
    r = np.asarray(rows)
    if r.ndim != 1 or not (np.issubdtype(r.dtype, np.integer) or r.size == 0):
        raise ValidationError(f"has shape {r.shape} and dtype {r.dtype}", field="rows",
                              expected="a 1-d array of row positions")
    r = r.astype(np.int64, copy=False)
    if r.size and (r.min() < 0 or r.max() >= n):
        i = int(np.flatnonzero((r < 0) | (r >= n))[0])
        raise ValidationError(f"is {int(r[i])}", item=i, field="rows", expected=f"positions in [0, {n})")
    return r


def _memmap_spec(X: Any) -> tuple | None:
    """A memory-mapped pool is opened by each worker from its file instead of being copied."""
    import mmap

    if not isinstance(X, np.memmap) or not isinstance(getattr(X, "_mmap", None), mmap.mmap):
        return None
    if X.base is not X._mmap or not X.flags.c_contiguous or not getattr(X, "filename", None):
        return None
    return ("memmap", str(X.filename), X.dtype.str, tuple(int(s) for s in X.shape), int(X.offset))


def _bar(total: int, enabled: bool, what: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="row", unit_scale=True, desc=what, disable=not enabled, leave=False)


def prelabel(model: Any, X: Any, rows: Any = None, *, use_ray: Any = None, threshold_rows: int | None = None,
             shard_rows: int | None = None, n_actors: int | None = None, num_gpus: Any = "auto",
             method: str = "predict_proba", progress: bool = False) -> np.ndarray:
    """``model.predict_proba`` of a pool, in-process or sharded over Ray actors (see :class:`Prelabeler`).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from hitl.models import SklearnModel
    >>> X = np.random.default_rng(0).normal(size=(500, 3))
    >>> m = SklearnModel(LogisticRegression(), n_classes=2).fit(X, (X[:, 0] > 0).astype(int))
    >>> prelabel(m, X, rows=np.arange(10), use_ray=False).shape
    (10, 2)
    """
    return Prelabeler(use_ray, threshold_rows=threshold_rows, shard_rows=shard_rows, n_actors=n_actors,
                      num_gpus=num_gpus, method=method, progress=progress).predict_proba(model, X, rows)


# ---------------------------------------------------------------------------------- selection


def select_sharded(
    proba: Any,
    n_instances: int,
    strategy: Any = "margin",
    *,
    use_ray: Any = None,
    threshold_rows: int | None = None,
    shard_rows: int | None = None,
    n_actors: int | None = None,
) -> Any:
    """The ``n_instances`` best rows of a probability matrix, each shard keeping its own top k.

    Every shard runs :func:`hitl.strategies.select` on its rows; the merge keeps the
    highest scores, ties going to the lower row, which is exactly what ``select`` does on
    the whole matrix. Works for strategies that score rows independently (least-confident,
    margin, entropy, or any function whose score of a row depends on that row only).

    Parameters
    ----------
    proba : array of shape (n, k)
    n_instances : int
    strategy : str or callable, default "margin"
    use_ray : "auto", True, False or None (the setting, default "auto")
        ``"auto"`` uses Ray only when it is already connected (or ``RAY_ADDRESS`` names
        a cluster) and ``n`` is at least ``threshold_rows``: scoring is too cheap to pay
        for a start.
    threshold_rows, shard_rows, n_actors
        As in :class:`Prelabeler`.

    Returns
    -------
    Selection
        ``indices`` into the rows of ``proba``, best first, and their ``scores``.

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3], [0.55, 0.45]])
    >>> select_sharded(P, 2, "margin", shard_rows=2, use_ray=False).indices.tolist()
    [1, 3]
    """
    from .strategies._core import check_n_instances

    use_ray = _use_ray(use_ray)
    k = check_n_instances(n_instances)
    P = proba if isinstance(proba, np.ndarray) else np.asarray(proba, dtype=np.float64)
    if P.ndim != 2:
        raise ValidationError(f"has shape {P.shape}", field="proba", expected="an (n, k) array of probabilities")
    n = P.shape[0]
    if n == 0:
        from .errors import EmptyPoolError

        raise EmptyPoolError("no candidates to select from", field="proba", expected="at least one unlabeled item")
    bounds = shard_bounds(n, int(shard_rows or settings.shard_rows))
    threshold = int(threshold_rows if threshold_rows is not None else settings.threshold_rows)
    on_ray = use_ray is True or (use_ray == "auto" and _ray_is_up() and n >= threshold and len(bounds) > 1)
    idx: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(bounds)
    sc: list[np.ndarray] = [np.empty(0, dtype=np.float64)] * len(bounds)
    if not on_ray:
        for s, b in enumerate(bounds):
            idx[s], sc[s] = _select_rows(P, int(b[0]), int(b[1]), strategy, k)
        return _merge_top_k(idx, sc, k)
    ray = _ray()
    pool = _actor_pool(n_actors, 0)
    spec = ("ref", ray.put(P))

    def submit(actor: Any, s: int) -> Any:
        return actor.select.remote(spec, int(bounds[s][0]), int(bounds[s][1]), strategy, k)

    def on_result(s: int, value: tuple) -> None:
        idx[s], sc[s] = value

    _dispatch(pool, len(bounds), submit, on_result)
    return _merge_top_k(idx, sc, k)


# ---------------------------------------------------------------------------------- Dawid-Skene


class _DSShard:
    """The answers of one contiguous range of tasks, and their posteriors between EM steps.

    Task indices are local to the range; worker indices stay global, so the M-step
    sums of all shards add up to those of the whole answer set.
    """

    def __init__(self, task: np.ndarray, worker: np.ndarray, label: np.ndarray, n_tasks: int, n_workers: int,
                 n_classes: int, dtype: str, prior: np.ndarray | None, floor: float) -> None:
        self.task, self.worker, self.label = task, worker, label
        self.n_tasks, self.n_workers, self.n_classes = int(n_tasks), int(n_workers), int(n_classes)
        self.dtype = np.dtype(dtype)
        self.prior = prior
        self.log_prior = None if prior is None else np.log(np.maximum(prior, floor)).astype(self.dtype)
        self.post: np.ndarray | None = None

    def _sums(self) -> tuple[np.ndarray, np.ndarray]:
        from .aggregation import ds_m_step_sums

        return ds_m_step_sums(self.post, self.task, self.worker, self.label, self.n_workers)

    def init(self) -> tuple[np.ndarray, np.ndarray, float]:
        from .aggregation.majority import majority_posteriors

        self.post = majority_posteriors(self.task, self.label, self.n_tasks, self.n_classes,
                                        self.prior).astype(self.dtype)
        counts, class_counts = self._sums()
        return counts, class_counts, 0.0

    def step(self, log_confusion: np.ndarray, log_class_prior: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        from .aggregation import ds_e_step

        lp = log_class_prior if self.log_prior is None else self.log_prior
        self.post, ll = ds_e_step(log_confusion, lp, self.task, self.worker, self.label, self.n_tasks)
        counts, class_counts = self._sums()
        return counts, class_counts, float(ll)

    def posteriors(self) -> np.ndarray:
        post = np.asarray(self.post, dtype=np.float64)
        if self.prior is None:
            unanswered = np.bincount(self.task, minlength=self.n_tasks) == 0
            post[unanswered] = 1.0 / self.n_classes
        return post


def _task_ranges(task: np.ndarray, n_tasks: int, n_shards: int) -> np.ndarray:
    """Task boundaries ``(n_shards + 1,)`` that split the answers into shards of about equal size."""
    n_shards = max(1, min(int(n_shards), n_tasks))
    cum = np.cumsum(np.bincount(task, minlength=n_tasks))
    targets = np.linspace(0, cum[-1], n_shards + 1)[1:-1]
    cuts = np.searchsorted(cum, targets, side="left") + 1
    return np.unique(np.concatenate([[0], np.clip(cuts, 0, n_tasks), [n_tasks]])).astype(np.int64)


def _split_answers(task: np.ndarray, worker: np.ndarray, label: np.ndarray, edges: np.ndarray,
                   prior: np.ndarray | None, common: dict) -> list[tuple]:
    """Constructor arguments of one :class:`_DSShard` per task range, answer order kept within each."""
    n_shards = len(edges) - 1
    shard_of = np.searchsorted(edges, task, side="right") - 1
    # A stable sort on a small integer type is a radix sort: linear in the answers.
    small = shard_of.astype(np.uint8 if n_shards <= 255 else np.uint16 if n_shards <= 65535 else np.int64)
    order = np.argsort(small, kind="stable")
    counts = np.bincount(shard_of, minlength=n_shards)
    cut = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for s in range(n_shards):
        sel = order[cut[s]:cut[s + 1]]
        t0, t1 = int(edges[s]), int(edges[s + 1])
        out.append((task[sel] - t0, worker[sel], label[sel], t1 - t0, common["n_workers"], common["n_classes"],
                    common["dtype"], None if prior is None else prior[t0:t1], common["floor"]))
    return out


def fit_dawid_skene(
    task: Any,
    worker: Any,
    label: Any,
    *,
    n_tasks: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
    prior: Any = None,
    aggregator: Any = None,
    n_shards: int | None = None,
    use_ray: Any = None,
    threshold_answers: int | None = None,
    duplicates: str = "refuse",
) -> Any:
    """Fit Dawid-Skene with the E-step on shards of tasks and the M-step sums added up.

    The same EM as :class:`hitl.aggregation.DawidSkene` (same start from majority vote,
    same steps, same stopping rule, same hyper-parameters, taken from ``aggregator``);
    only the order in which the M-step sums are added differs, so posteriors agree with
    an in-process fit to rounding (float64: far below 1e-9).

    Parameters
    ----------
    task, worker, label : array-like of int
        One entry per answer (dense ids from 0).
    n_tasks, n_workers, n_classes : int, optional
    prior : array of shape (n_tasks, n_classes), optional
        The classifier's probabilities as one more annotator.
    aggregator : DawidSkene, optional
        Hyper-parameters (``n_iter``, ``tol``, ``smoothing``, ``diagonal``, ``dtype``);
        it receives the fitted attributes. Default ``DawidSkene()``.
    n_shards : int, optional
        Shards of tasks; default one per actor on Ray, one in-process.
    use_ray : "auto", True, False or None (the setting, default "auto")
        ``"auto"`` uses Ray from ``threshold_answers`` answers on, when Ray is already
        connected or ``RAY_ADDRESS`` names a cluster (in-process EM on a million tasks
        takes seconds: less than starting Ray).
    threshold_answers : int, optional
        Default :attr:`RaySettings.threshold_answers`.
    duplicates : {"refuse", "last"}, default "refuse"
        One vote per (task, worker), as in every aggregator's ``fit``: an exact repeat
        counts once, a conflicting one is refused (``"last"``: the last one is kept).

    Returns
    -------
    DawidSkene
        ``aggregator``, fitted: ``posteriors_``, ``labels_``, ``confusions_``,
        ``class_prior_``, ``n_iter_``, ``log_likelihood_``; plus ``backend_`` and
        ``n_shards_``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([0, 0, 0, 1, 1, 1]); w = np.array([0, 1, 2, 0, 1, 2]); y = np.array([1, 1, 0, 0, 0, 0])
    >>> fit_dawid_skene(t, w, y, n_shards=2, use_ray=False).labels_
    array([1, 0])
    """
    from .aggregation import DawidSkene, check_answers, check_prior, ds_m_step
    from .aggregation import dawid_skene as _ds_module
    from .aggregation._base import one_vote_arrays

    use_ray = _use_ray(use_ray)
    agg = DawidSkene() if aggregator is None else aggregator
    if type(agg) is not DawidSkene:  # a subclass may change the steps
        raise ConfigError(f"is a {type(agg).__name__}", field="aggregator", expected="a hitl.aggregation.DawidSkene")
    t, w, y, nt, nw, k = check_answers(task, worker, label, n_tasks=n_tasks, n_workers=n_workers, n_classes=n_classes)
    t, w, y = one_vote_arrays(t, w, y, nt, nw, duplicates)
    p = None if prior is None else check_prior(prior, nt, k)
    n_iter = int(agg.n_iter)
    if n_iter < 1:
        raise ConfigError(f"is {agg.n_iter}", field="n_iter", expected="an integer >= 1")
    dt = np.dtype(agg.dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ConfigError(f"is {dt}", field="dtype", expected="float64 or float32")
    threshold = int(threshold_answers if threshold_answers is not None else settings.threshold_answers)
    on_ray = use_ray is True or (use_ray == "auto" and len(t) >= threshold and _ray_is_up())
    pool = _actor_pool(None, 0) if on_ray else None
    if n_shards is None:
        n_shards = len(pool.actors) if pool is not None else 1
    if int(n_shards) < 1:
        raise ConfigError(f"is {n_shards}", field="n_shards", expected="a positive integer")
    edges = _task_ranges(t, nt, int(n_shards))
    common = {"n_workers": nw, "n_classes": k, "dtype": dt.str, "floor": float(getattr(_ds_module, "FLOOR", 1e-100))}
    parts = _split_answers(t, w, y, edges, p, common)
    runner = _RayShards(pool, parts) if pool is not None else _LocalShards(parts)
    smoothing, diagonal = float(agg.smoothing), float(getattr(agg, "diagonal", 0.0))
    try:
        counts, class_counts, _ = runner.call("init")
        history: list[float] = []
        it = 0
        for it in range(1, n_iter + 1):
            log_conf, log_class_prior = ds_m_step(counts, class_counts, smoothing, diagonal, dtype=dt)
            counts, class_counts, ll = runner.call("step", log_conf, log_class_prior)
            history.append(ll / len(t))
            if len(history) > 1 and abs(history[-1] - history[-2]) < agg.tol:
                break
        log_conf, log_class_prior = ds_m_step(counts, class_counts, smoothing, diagonal, dtype=dt)
        post = np.concatenate(runner.posteriors(), axis=0)
    finally:
        runner.close()
    agg.n_tasks_, agg.n_workers_, agg.n_classes_ = nt, nw, k
    agg.task_ids_ = agg.worker_ids_ = agg.classes_ = None
    agg.n_iter_ = it
    agg.log_likelihood_ = history
    agg.confusions_ = np.exp(log_conf.astype(np.float64))
    agg.class_prior_ = np.exp(log_class_prior.astype(np.float64))
    agg.posteriors_ = np.ascontiguousarray(post, dtype=np.float64)
    agg.labels_ = agg.posteriors_.argmax(axis=1).astype(np.int64)
    agg.backend_ = "ray" if pool is not None else "in-process"
    agg.n_shards_ = len(parts)
    return agg


def _reduce(results: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray, float]:
    counts = results[0][0].copy()
    class_counts = np.asarray(results[0][1], dtype=np.float64).copy()
    ll = float(results[0][2])
    for c, cc, l_ in results[1:]:
        counts += c
        class_counts += cc
        ll += l_
    return counts, class_counts, ll


class _LocalShards:
    def __init__(self, parts: list[tuple]) -> None:
        self.shards = [_DSShard(*a) for a in parts]

    def call(self, name: str, *args: Any) -> tuple:
        return _reduce([getattr(s, name)(*args) for s in self.shards])

    def posteriors(self) -> list[np.ndarray]:
        return [s.posteriors() for s in self.shards]

    def close(self) -> None:
        self.shards = []


class _RayShards:
    """Shards held by actors; an actor that dies is replaced and its shard reloaded and re-run.

    A step depends only on the parameters sent with it (the E-step rebuilds the
    posteriors from them), so re-running a lost step gives the same numbers.
    """

    def __init__(self, pool: _ActorPool, parts: list[tuple]) -> None:
        ray = _ray()
        self.pool = pool
        self.job = f"ds-{os.getpid()}-{time.monotonic_ns()}"
        self.boxes = [[ray.put(a)] for a in parts]
        self.slot = [i % len(pool.actors) for i in range(len(parts))]
        self.failures = 0
        self.last_step: tuple | None = None
        for i in range(len(parts)):
            self._load(i)

    def _key(self, i: int) -> str:
        return f"{self.job}-{i}"

    def _load(self, i: int) -> Any:
        return self.pool.actors[self.slot[i]].ds_load.remote(self._key(i), self.boxes[i])

    def _run(self, name: str, args: tuple) -> list[Any]:
        ray = _ray()
        from ray.exceptions import RayActorError

        todo = list(range(len(self.boxes)))
        out: list[Any] = [None] * len(self.boxes)
        while todo:
            refs = {getattr(self.pool.actors[self.slot[i]], name).remote(self._key(i), *args): i for i in todo}
            todo = []
            lost_slots: set[int] = set()
            for ref, i in refs.items():
                try:
                    out[i] = ray.get(ref)
                except RayActorError:
                    todo.append(i)
                    lost_slots.add(self.slot[i])
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None
            for slot in lost_slots:
                self.failures += 1
                if self.failures > settings.max_actor_failures:
                    raise ClusterError(f"{self.failures} actors died during one job", field="actors",
                                       expected="workers that stay alive")
                self.pool.replace(slot)
            # Every shard of a replaced actor comes back, in the state this call needs: the
            # posteriors are those of the last step, so that step is run again first.
            for i in range(len(self.boxes)):
                if self.slot[i] in lost_slots:
                    if i not in todo:
                        todo.append(i)
                    self._load(i)
                    if name == "ds_posteriors" and self.last_step is not None:
                        self.pool.actors[self.slot[i]].ds_step.remote(self._key(i), *self.last_step)
            todo.sort()
        if name == "ds_step":
            self.last_step = args
        return out

    def call(self, name: str, *args: Any) -> tuple:
        return _reduce(self._run("ds_" + name, args))

    def posteriors(self) -> list[np.ndarray]:
        return self._run("ds_posteriors", ())

    def close(self) -> None:
        import sys

        ray = sys.modules.get("ray")
        if ray is None or not ray.is_initialized():
            return
        for i in range(len(self.boxes)):
            with contextlib.suppress(Exception):
                self.pool.actors[self.slot[i]].ds_drop.remote(self._key(i))


def aggregate(
    aggregator: Any,
    task: Any,
    worker: Any,
    label: Any,
    *,
    n_tasks: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
    prior: Any = None,
    use_ray: Any = None,
    threshold_answers: int | None = None,
    duplicates: str = "refuse",
) -> Any:
    """``aggregator.fit(...)``, run as :func:`fit_dawid_skene` on Ray when that pays.

    Ray is used for a :class:`~hitl.aggregation.DawidSkene` with at least
    ``threshold_answers`` answers when Ray is up (see :func:`fit_dawid_skene`), or always
    with ``use_ray=True``; every other aggregator, and every smaller job, is fitted
    in-process as usual. ``duplicates`` is the one-vote rule of every ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> from hitl.aggregation import DawidSkene
    >>> agg = aggregate(DawidSkene(), np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([1, 1, 0]))
    >>> agg.labels_
    array([1, 0])
    """
    from .aggregation import DawidSkene

    use_ray = _use_ray(use_ray)
    threshold = int(threshold_answers if threshold_answers is not None else settings.threshold_answers)
    n = _n_rows(task) if not hasattr(task, "columns") else len(task)
    if type(aggregator) is DawidSkene and not hasattr(task, "columns") and (
            use_ray is True or (use_ray == "auto" and n >= threshold and _ray_is_up())):
        return fit_dawid_skene(task, worker, label, n_tasks=n_tasks, n_workers=n_workers, n_classes=n_classes,
                               prior=prior, aggregator=aggregator, use_ray=True, duplicates=duplicates)
    if hasattr(task, "columns"):
        return aggregator.fit(task, prior=prior, duplicates=duplicates)
    return aggregator.fit(task, worker, label, n_tasks=n_tasks, n_workers=n_workers, n_classes=n_classes, prior=prior,
                          duplicates=duplicates)
