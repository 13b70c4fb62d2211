"""`--backend ray`: simulator actors across a Ray cluster, policy server replicas on GPU nodes.

Cluster: `ray start --head` on one node, `ray start --address HEAD:6379` on the others, the same
mibot-eval install (and checkpoint cache or hub access) on every node; the driver joins with
`--ray-address auto`. `--ray-address local` starts a private instance on this machine (on loopback).

Policy: each replica is a Ray actor (a GPU share when the cluster has GPUs: one GPU each, or a fraction
when `--ray-policy-replicas` exceeds the GPUs, see `replica_gpu_share`) that runs the
WebSocket policy server of mibot_eval.serving.server on its node; simulator actors connect to one replica each
(round-robin), so batching across simulators, validation and the msgpack wire format are the
server's, whatever the transport. `--policy ws://...` uses running servers instead; a Policy object
handed to `execute` (tests) is served from the driver.

Simulators: `--workers N` actors (one CPU each; default: the cluster's CPUs minus the replicas'),
each a `WorkerCore` (envs created lazily in the actor, reused across a task's episodes). The driver
gives each actor one episode at a time from the shared WorkQueue (in-order trial ranges) and writes
every finished episode to its results store at once, so a lost node costs only its in-flight
episodes: they are retried once on another actor (then recorded as errors), as are episodes that
exceed --episode-timeout (the actor is killed). Episode specs and results cross Ray as msgpack
bytes; Ray itself ships the actor classes with cloudpickle inside the trusted cluster (enable Ray's
token authentication and keep its ports off untrusted networks).
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.run import interrupts
from mibot_eval.run.backends.options import ParallelOptions
from mibot_eval.serving import codec

WAIT_S = 0.5
PASS_ENV = ("MUJOCO_GL", "HF_HUB_OFFLINE", "HF_HOME", "HF_ENDPOINT", "MIBOT_EVAL_CACHE",
            "MIBOT_EVAL_TOKEN_FILE", "HF_HUB_CACHE", "TRANSFORMERS_OFFLINE")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'mibot-eval[ray]'") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes (ray.init retries a dead GCS address for a long time)."""
    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--ray-address must be auto, local or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise UserError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); "
                        "start one with `ray start --head` or use --ray-address auto/local") from None


def _loopback_only() -> None:
    """A private instance on this machine needs no reachable address: keep Ray on 127.0.0.1 even
    if ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set (Ray 2.60 reads it at
    import; its services look the flag up at call time)."""
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - other Ray layouts: the env var alone applies
        return
    ray_constants.ENABLE_RAY_CLUSTER = False



def replica_gpu_share(gpus: int, replicas: int) -> float:
    """The GPU fraction each policy replica asks Ray for: replicas spread evenly over the GPUs, and
    several on one GPU share it (`--ray-policy-replicas 4` on one GPU: 0.25 each). Ray places a
    fractional request on a single GPU, so the share is 1 / (replicas per GPU, rounded up)."""
    if gpus <= 0:
        return 0.0
    return 1.0 / math.ceil(replicas / gpus)

class SimActor:
    """A simulator process on some node (wrapped by ray.remote at run time)."""

    def __init__(self, policy_url: str) -> None:
        from mibot_eval.run.backends.worker import WorkerCore
        from mibot_eval.serving.process_env import prepare_process_env

        prepare_process_env()
        from mibot_eval.serving.client import RemotePolicy

        self.core = WorkerCore(RemotePolicy(policy_url))
        self.pid = os.getpid()

    def add_suite(self, payload: bytes) -> None:
        self.core.add_suite(codec.unpack(payload))

    def run(self, payload: bytes) -> bytes:
        message = codec.unpack(payload)
        try:
            result, video = self.core.run(message["spec"], message["video"], int(message["fps"]))
        except UserError as exc:
            return codec.pack({"fatal": str(exc)})
        return codec.pack({"result": result, "video": video})

    def ping(self) -> int:
        return self.pid


class PolicyReplica:
    """The policy server on a (GPU) node (wrapped by ray.remote at run time)."""

    def __init__(self, checkpoint: str, device: str | None, batch_size: int, batch_wait_ms: float
                 ) -> None:
        import ray

        from mibot_eval.serving.process_env import prepare_process_env
        from mibot_eval.serving.server import make_server

        prepare_process_env()
        self.server = make_server(checkpoint, device, host=ray.util.get_node_ip_address(), port=0,
                                  batch_size=batch_size, batch_wait_ms=batch_wait_ms)
        self._url = self.server.start_in_thread()

    def url(self) -> str:
        return self._url


class RayBackend:
    """The Backend of `--backend ray`. A context manager: joins the cluster and starts the policy
    replicas; `run` runs the episodes on simulator actors."""

    name = "ray"

    def __init__(self, request: Any, info: Any, options: ParallelOptions, policy: Any) -> None:
        self.request, self.info, self.options = request, info, options
        self.injected = policy
        self.ray: Any = None
        self.started_ray = False
        self.replicas: list[Any] = []
        self.driver_server: Any = None
        self.urls: list[str] = []
        self.identity_policy: Any = None
        self.stats: dict[str, Any] = {"actor_restarts": 0, "timeouts": 0, "lost": 0}

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> RayBackend:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        address = self.options.ray_address
        _check_reachable(address)
        if address == "local":  # one machine: keep all of Ray's and our traffic on loopback
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = self.ray = _import_ray()
        if address == "local":
            _loopback_only()
        env_vars = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        env_vars.setdefault("MUJOCO_GL", "egl")
        env_vars.update({"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
        env_vars.setdefault("LP_NUM_THREADS", os.environ.get("LP_NUM_THREADS", "1"))  # 1 CPU each
        if address == "local":
            env_vars["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                  "runtime_env": {"env_vars": env_vars}}
        if address == "local" and self.request.workers:
            replicas = 0 if (self.options.policy_urls or self.injected is not None) else (
                self.options.ray_policy_replicas or 1)
            kwargs["num_cpus"] = max(os.cpu_count() or 1, self.request.workers + replicas)
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise UserError(f"cannot join the Ray cluster at '{address}' ({exc}); start one with "
                            "`ray start --head` (or use --ray-address local)") from None
        self.started_ray = True
        resources = ray.cluster_resources()
        if self.injected is not None:
            from mibot_eval.serving.server import PolicyServer

            identity = {"name": self.info.name}
            lookup = getattr(self.injected, "checkpoint_identity", None)
            if lookup is not None:
                identity = lookup()
            self.driver_server = PolicyServer(self.injected, identity,
                                              host=ray.util.get_node_ip_address(), port=0,
                                              batch_size=self.options.batch_size,
                                              batch_wait_ms=self.options.batch_wait_s * 1000)
            self.urls = [self.driver_server.start_in_thread()]
        elif self.options.policy_urls:
            self.urls = list(self.options.policy_urls)
        else:
            gpus = int(resources.get("GPU", 0))
            count = self.options.ray_policy_replicas or max(1, gpus)
            actor = ray.remote(PolicyReplica).options(
                num_gpus=replica_gpu_share(gpus, count), num_cpus=0 if gpus else 1, max_restarts=0)
            self.replicas = [actor.remote(self.request.checkpoint, self.request.device,
                                          self.options.batch_size, self.options.batch_wait_s * 1000)
                             for _ in range(count)]
            try:
                self.urls = ray.get([r.url.remote() for r in self.replicas])
            except ray.exceptions.RayActorError as exc:
                raise UserError(f"a policy replica failed to start: {exc}") from None
        from mibot_eval.serving.client import RemotePolicy

        self.identity_policy = self._identity_policy(RemotePolicy(self.urls[0]))

    def _identity_policy(self, remote: Any) -> Any:
        if self.injected is None:
            return remote
        injected = self.injected

        class _Injected:  # the driver's own policy, with the identity the run already knows
            supports_prefix = getattr(injected, "supports_prefix", False)

            def describe(self) -> dict[str, Any]:
                return injected.describe()

            def infer(self, requests: Any) -> Any:
                return injected.infer(requests)

        remote.close()
        wrapper = _Injected()
        check = getattr(injected, "check_robot_type", None)
        if check is not None:
            wrapper.check_robot_type = check  # type: ignore[attr-defined]
        return wrapper

    def __exit__(self, *exc: object) -> None:
        close = getattr(self.identity_policy, "close", None)
        if close is not None:
            close()
        if self.driver_server is not None:
            self.driver_server.stop()
        if self.ray is not None and self.started_ray:
            for replica in self.replicas:
                try:
                    self.ray.kill(replica)
                except Exception:  # noqa: BLE001 - already gone
                    pass
            self.ray.shutdown()

    # -- episodes ---------------------------------------------------------------------------------
    def _workers(self) -> int:
        if self.request.workers:
            return self.request.workers
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        return max(1, cpus - (0 if self.ray.cluster_resources().get("GPU") else len(self.replicas)))

    def _new_actor(self, slot: int) -> Any:
        actor = self.ray.remote(SimActor).options(num_cpus=1, max_restarts=0, max_task_retries=0)
        return actor.remote(self.urls[slot % len(self.urls)])

    def run(self, plans: Sequence[Any], todo: Sequence[Any], ledger: Any, videos: Any) -> dict[str, Any]:
        """Run `todo` on simulator actors; returns the cluster's statistics for the manifest."""
        from mibot_eval.run.backends.dispatch import Dispatch
        from mibot_eval.run.backends.worker import suite_payload

        ray = self.ray
        close = getattr(self.identity_policy, "close", None)
        if close is not None:
            close()  # the actors talk to the servers; the driver's idle connection would delay batches
        dispatch = Dispatch(list(todo), ledger, videos)
        by_name = {p.protocol.name: p for p in plans}
        count = min(self._workers(), max(1, len(dispatch.queue)))
        generation = 0
        actors: dict[int, tuple[Any, int, set[str]]] = {}
        for slot in range(count):
            generation += 1
            actors[slot] = (self._new_actor(slot), generation, set())
        flight: dict[Any, tuple[int, Any, float]] = {}  # ref -> (slot, spec, started)
        busy: set[int] = set()
        limit = self.options.episode_timeout_s

        def replace(slot: int, spec: Any, reason: str) -> None:
            nonlocal generation
            actor, gen, _ = actors[slot]
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead with its node
                pass
            dispatch.lost((slot, gen), spec, reason)
            generation += 1
            actors[slot] = (self._new_actor(slot), generation, set())
            self.stats["actor_restarts"] += 1

        try:
            while not dispatch.done:
                interrupts.check()
                for slot, (actor, gen, suites) in actors.items():
                    if slot in busy:
                        continue
                    item = dispatch.next_for((slot, gen))
                    if item is None:
                        continue
                    spec, video = item
                    if spec.suite not in suites:
                        actor.add_suite.remote(codec.pack(suite_payload(by_name[spec.suite],
                                                                        self.request.render)))
                        suites.add(spec.suite)
                    ref = actor.run.remote(codec.pack({"spec": codec.spec_to_wire(spec),
                                                       "video": video, "fps": videos.fps}))
                    flight[ref] = (slot, spec, time.monotonic())
                    busy.add(slot)
                if not flight:
                    if dispatch.done:
                        break
                    raise RuntimeError("no episode in flight but the run is not finished")
                ready, _ = ray.wait(list(flight), num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    slot, spec, _started = flight.pop(ref)
                    busy.discard(slot)
                    try:
                        reply = codec.unpack(ray.get(ref))
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                            ray.exceptions.ObjectLostError) as exc:
                        self.stats["lost"] += 1
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                        replace(slot, spec, f"simulator actor lost ({type(exc).__name__}"
                                            f"{': ' + first[:200] if first else ''})")
                        continue
                    if "fatal" in reply:
                        raise UserError(reply["fatal"])
                    dispatch.finished(reply["result"], reply.get("video"))
                if limit:
                    now = time.monotonic()
                    for ref, (slot, spec, started) in list(flight.items()):
                        if now - started > limit:
                            flight.pop(ref)
                            busy.discard(slot)
                            self.stats["timeouts"] += 1
                            replace(slot, spec,
                                    f"episode exceeded the {limit:g} s time limit (actor killed)")
        finally:
            for actor, _gen, _suites in actors.values():
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        return {**self.stats, "steals": dispatch.queue.steals, "policy_servers": self.urls,
                "workers": count}
