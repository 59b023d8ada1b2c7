"""A gang: N rank actors in one placement group, one process group, one resident model.

The driver bootstraps torch.distributed itself (rank 0's node IP and a free port from rank 0's
actor), so two gangs on one node never collide and nothing goes through files. Any sign of a
broken gang (an actor died, ranks disagree, a job overran) tears the whole gang down: killing
every actor is what guarantees no rank is left waiting in a collective.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import msgspec
import structlog

from services import metrics
from services.contracts import Job, encode
from services.gangs import DOWN, READY, STARTING, WAITING
from services.generator import placement
from services.generator.rank import RankWorker
from services.generator.settings import GeneratorSettings
from services.models_config import ServedTask

log = structlog.get_logger("wan22.gang")

PEER_GRACE_S = 10.0  # after one rank fails, how long the others get to fail the same way


class GangBroken(RuntimeError):
    """The gang cannot run jobs any more; it has been torn down and is rebuilt on next use."""


class JobCancelled(Exception):
    def __init__(self, step: int) -> None:
        super().__init__(f"cancelled at step {step}")
        self.step = step


class JobFailed(RuntimeError):
    """Every rank raised the same model error: the gang is healthy, the job is not."""


class Gang:
    def __init__(
        self,
        served: ServedTask,
        settings: GeneratorSettings,
        world_size: int,
        placement_name: str,
        on_state: Callable[[Gang], None] | None = None,
    ) -> None:
        self.served, self.settings, self.world_size = served, settings, world_size
        self.placement_name, self.on_state = placement_name, on_state
        self.actors: list[Any] = []
        self.members: list[dict[str, Any]] = []
        self.placement_group: Any = None
        self.state, self.since = DOWN, time.time()
        self.load_s = 0.0
        self.warmup_s: dict[str, float] = {}  # seconds of each `warmup` shape, before ready
        self._busy = anyio.Lock()  # one job, rebuild or health check at a time

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def master(self) -> str:
        """The rendezvous address of the process group: rank 0's node IP and port."""
        return f"{self.members[0]['host']}:{self.members[0]['port']}" if self.members else ""

    @property
    def use_gpu(self) -> bool:
        import ray

        if self.settings.device != "auto":
            return self.settings.device == "cuda"
        return ray.cluster_resources().get("GPU", 0) >= 1

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state, self.since = state, time.time()
        metrics.GANG_WAITING.labels(self.served.name).set(1 if state == WAITING else 0)
        if self.on_state:
            self.on_state(self)

    async def start(self) -> None:
        """Placement group, actors, process group, model load: ready before any job is claimed.
        Waits for as long as Ray has no room for the placement group."""
        async with self._busy:
            await self._start()

    async def _start(self) -> None:
        started = time.perf_counter()
        gpu = self.use_gpu
        bundle = {"GPU": 1.0, "CPU": 1.0} if gpu else {"CPU": 1.0}
        self._set_state(STARTING)
        try:
            self.placement_group = await placement.create(
                self.placement_name, [bundle] * self.world_size, self.served.placement_strategy
            )
            await placement.wait_placed(self.placement_group, lambda: self._set_state(WAITING))
            self._set_state(STARTING)
            self.actors = self._spawn(gpu)
            # The deadline starts once placed: waiting for nodes is not a failure, a hung load is.
            await asyncio.wait_for(self._bootstrap(gpu), self.settings.gang_start_timeout_s)
        except BaseException:
            self._set_state(DOWN)  # whatever was created goes with the next teardown
            raise
        self._set_state(READY)
        metrics.MODEL_LOAD_SECONDS.labels(self.served.name).set(self.load_s)
        log.info(
            "gang.ready",
            task=self.served.name,
            world_size=self.world_size,
            gpu=gpu,
            load_s=round(self.load_s, 2),
            warmup_s=self.warmup_s,
            start_s=round(time.perf_counter() - started, 2),
            master=self.master,
            members=[f"{m['node']}:{m['pid']}@{m['host']}" for m in self.members],
        )

    def _spawn(self, gpu: bool) -> list[Any]:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        actor_cls = ray.remote(RankWorker)
        return [
            actor_cls.options(
                num_cpus=1,
                num_gpus=1 if gpu else 0,
                max_restarts=0,
                max_concurrency=3,  # a job's run, the previous job's collect, a health ping
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self.placement_group, placement_group_bundle_index=rank
                ),
            ).remote(
                rank,
                self.world_size,
                self.settings.redis_url,
                self.settings.prefix,
                self.settings.progress_maxlen if self.settings.progress else 0,
            )
            for rank in range(self.world_size)
        ]

    async def _bootstrap(self, gpu: bool) -> None:
        self.members = list(await asyncio.gather(*(a.identity.remote() for a in self.actors)))
        master = self.members[0]
        await asyncio.gather(
            *(
                a.setup.remote(master["host"], master["port"], gpu, self.settings.collective_timeout_s)
                for a in self.actors
            )
        )
        served = msgspec.msgpack.encode(self.served)
        self.load_s = max(await asyncio.gather(*(a.load.remote(served) for a in self.actors)))
        self.warmup_s = await self._warm_up()

    async def _warm_up(self) -> dict[str, float]:
        """One short job per `warmup` shape on every rank at once, the same collectives as a job,
        so the first user's job at a shape pays no compile or autotuning (wan.warmup)."""
        seconds: dict[str, float] = {}
        for shape in self.served.warmup:
            per_rank = await asyncio.gather(*(a.warm_up.remote(shape) for a in self.actors))
            seconds[shape] = round(max(per_rank), 3)
            metrics.GANG_WARMUP_SECONDS.labels(self.served.name, shape).set(seconds[shape])
        return seconds

    async def run(self, job: Job, image: Any, attempt: int, worker: str) -> dict[str, Any]:
        """`denoise`, then `collect`: rank 0's result with the encoded video and poster."""
        return await self.collect(await self.denoise(job, image, attempt, worker))

    async def denoise(self, job: Job, image: Any, attempt: int, worker: str) -> dict[str, Any]:
        """All ranks run the job together (rebuilding the gang first if it broke); returns rank 0's
        timings as soon as the ranks are done, while rank 0 still encodes: the gang is free for
        the next job."""
        async with self._busy:
            if not self.ready:
                await self.teardown("rebuilding")
                await self._start()
            result = await self._run(job, image, attempt, worker)
            result["rank0"] = self.actors[0]  # the actor holding the encoding, even if the gang is rebuilt
            return result

    async def collect(self, result: dict[str, Any]) -> dict[str, Any]:
        """Rank 0's encoded video and poster of a denoised job, added to its result. Does not hold
        the gang: the next job may be denoising meanwhile."""
        from ray.exceptions import RayActorError

        actor = result.pop("rank0", None)
        if "collect" not in result or actor is None:
            return result
        try:
            return result | await actor.collect.remote(result["collect"])
        except RayActorError as exc:
            raise GangBroken(f"rank 0 died before the video was collected: {_describe(_cause(exc))}") from None

    async def check_health(self, timeout_s: float = 10.0) -> None:
        """Between jobs, ping every rank; a dead one gets the gang rebuilt now rather than when the
        next job arrives (and /readyz says so meanwhile), and so does a gang that is down. No job
        is claimed while the gang is not ready, so this is what brings it back. Skipped while a job
        runs."""
        from ray.exceptions import RayActorError

        try:
            self._busy.acquire_nowait()
        except anyio.WouldBlock:
            return
        try:
            if self.ready:
                try:
                    with anyio.fail_after(timeout_s):
                        await asyncio.gather(*(a.ping.remote() for a in self.actors))
                    return
                except (RayActorError, TimeoutError) as exc:
                    await self.teardown(f"health check failed: {type(exc).__name__}")
            else:
                await self.teardown("rebuilding")
            await self._start()
        finally:
            self._busy.release()

    async def _run(self, job: Job, image: Any, attempt: int, worker: str) -> dict[str, Any]:
        payload = encode(job)
        tasks = [asyncio.ensure_future(_await(a.run.remote(payload, image, attempt, worker))) for a in self.actors]
        try:
            async with asyncio.timeout(self.settings.job_timeout_s):
                return await self._gather(tasks)
        except TimeoutError:
            await self.teardown("job overran its timeout")
            raise GangBroken(f"job ran longer than {self.settings.job_timeout_s:g} s") from None
        finally:
            for task in tasks:
                task.cancel()

    async def _gather(self, tasks: Sequence[asyncio.Future[Any]]) -> dict[str, Any]:
        from ray.exceptions import RayActorError

        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if t.exception() is not None]
        if not failed:
            return tasks[0].result()  # type: ignore[no-any-return]
        died = any(isinstance(t.exception(), RayActorError) for t in failed)
        if pending and not died:  # a healthy gang fails on every rank at once; give the others a moment
            _, pending = await asyncio.wait(pending, timeout=PEER_GRACE_S)
        errors = [t.exception() for t in tasks if t.done() and t.exception() is not None]
        await self._raise_for(errors, stuck=bool(pending))
        raise AssertionError("unreachable")

    async def _raise_for(self, errors: list[BaseException | None], *, stuck: bool) -> None:
        from ray.exceptions import RayActorError

        causes = [_cause(e) for e in errors if e is not None]
        if all(type(c).__name__ == "Cancelled" for c in causes) and not stuck:
            raise JobCancelled(getattr(causes[0], "step", 0))
        if stuck or any(isinstance(e, RayActorError) for e in errors):
            reason = "a rank died" if any(isinstance(e, RayActorError) for e in errors) else "ranks disagree"
            await self.teardown(f"{reason}: {causes[0]}")
            raise GangBroken(f"{reason}: {_describe(causes[0])}")
        raise JobFailed(_describe(causes[0]))

    async def teardown(self, reason: str) -> None:
        """Kill every rank and release the placement group; the next job rebuilds the gang."""
        import ray
        from ray.util.placement_group import remove_placement_group

        if self.actors or self.placement_group:
            log.warning("gang.teardown", reason=reason, task=self.served.name)
            if reason != "shutdown":
                metrics.GANG_REBUILDS.labels(self.served.name).inc()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        if self.placement_group is not None:
            remove_placement_group(self.placement_group)
        self.actors, self.members, self.placement_group = [], [], None
        self._set_state(DOWN)


async def _await(ref: Any) -> Any:
    return await ref


def _cause(error: BaseException) -> BaseException:
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


def _describe(error: BaseException) -> str:
    name = type(error).__name__
    if "OutOfMemoryError" in name:
        return f"CUDA out of memory: {str(error).splitlines()[0] if str(error) else name}"
    text = str(error).strip().splitlines()
    return f"{name}: {text[-1] if text else ''}"
