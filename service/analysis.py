"""Uploaded media analysed in the background, by the code ``dfstream eval`` uses (``score_frames``),
every face of ``frames`` evenly spaced frames. The queue is bounded; jobs run in worker threads,
never in a request. A job's results are written in one transaction when it ends, so a crash leaves
no half-written rows: a job found ``queued`` or ``running`` at start is run again, and gives the
same numbers (nothing in scoring is random) -- unless it was started ``max_attempts`` times already,
then it is failed with that reason: a file that kills the process must not kill it at every start.
Each job has a wall-clock limit; ``queued`` rows the queue does not hold are picked up every
``rescan_s``, whatever the database holds when it starts."""

from __future__ import annotations

import asyncio
import collections
import logging
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import av
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.errors import DfstreamError, LifecycleError, QueueFullError, one_line
from core.lifecycle import Lifecycle
from core.queues import DropOldestQueue
from pipeline.evaluation.datasets import spaced_video_frames
from pipeline.evaluation.metrics import AGGREGATIONS
from pipeline.evaluation.scoring import FaceScore, score_frames
from pipeline.evaluation.voice import file_score, listen, score_windows
from pipeline.judging.ensemble import EnsembleManager
from pipeline.judging.listening import VoiceConfig
from pipeline.models.audio.scorer import VoiceModel
from pipeline.models.detector import BaseDetector
from pipeline.models.faces.finder import FaceDetector
from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from service.config import AnalysisConfig, MediaLimitsConfig
from service.db.models import FaceResult, MediaFile, utcnow

log = logging.getLogger(__name__)
ANALYSIS = Subject.service("analysis")
RETRIES, RETRY_AFTER_S = 3, 10.0  # a job the database failed (it restarts) is tried again
STOP_GRACE_S = 30.0  # past its limit, how long a job's thread has to notice before it is given up


class _Stopping(LifecycleError):
    """The server is stopping: the job goes back to ``queued``, and runs again on the next start."""


class _OverTime(DfstreamError):
    """The job passed ``job_timeout_s`` (or was given up after it): it fails, saying so."""


def file_label(p: float, fake_at: float, real_below: float) -> str:
    """The live label's thresholds, applied to a whole file's P(fake)."""
    if p >= fake_at:
        return "fake"
    return "real" if p < real_below else "uncertain"


class Analyzer(Lifecycle):
    """``async with``: picks up what a previous process left and starts ``workers`` loops, a feeder
    (the backlog into the queue, awaiting room) and a re-scan; leaving stops a running job at its
    next chunk of frames (it is queued again for the next start)."""

    def __init__(
        self,
        config: AnalysisConfig,
        data_dir: Path,
        sessions: sessionmaker[Session],
        detectors: Mapping[str, BaseDetector],
        ensemble: EnsembleManager,
        faces: FaceDetector,
        thresholds: tuple[float, float],
        monitor: PerformanceMonitor,
        limits: MediaLimitsConfig | None = None,
        voice: VoiceJudge | None = None,
    ):
        """``voice``: the voice models, when ``audio_detectors`` are configured: a file's sound is
        judged beside its faces."""
        super().__init__("analysis")
        self.voice = voice
        self.config = config
        self.limits = limits or MediaLimitsConfig()
        self.data_dir = data_dir
        self.sessions = sessions
        self.detectors = detectors
        self.ensemble = ensemble
        self.faces = faces
        self.thresholds = thresholds  # (fake at or above, real below)
        self.monitor = monitor
        self.progress: dict[int, float] = {}  # media id → progress, while analysed
        # refused at the door when full (submit raises), so nothing accepted is ever dropped from it
        self._queue: DropOldestQueue[int] = DropOldestQueue(config.queue)
        # found in the database (at start, by the re-scan, a retry) beyond the queue's room; the
        # feeder moves it into the queue as room appears
        self._backlog: collections.deque[int] = collections.deque()
        self._more = asyncio.Event()
        self._held: set[int] = set()  # ids in the queue, the backlog or a worker: the re-scan skips them
        self._given_up: set[int] = set()  # past their limit: their thread stops at its next chunk
        self._stopping = False
        self._tries: dict[int, int] = {}

    async def _open(self) -> None:
        await asyncio.to_thread(self._pick_up, True)
        self.spawn("feeder", self._feed)
        self.spawn("rescan", self._rescan)
        for i in range(self.config.workers):
            self.spawn(f"worker.{i}", self._work)

    async def _close(self) -> None:
        self._stopping = True  # a running job stops at its next chunk of frames

    def has_room(self) -> bool:
        return not (self._queue.full() or self._backlog)

    def submit(self, media_id: int) -> None:
        if not self.has_room():
            raise QueueFullError(f"{self._queue.capacity} analyses are waiting; try again later")
        self._held.add(media_id)
        self._queue.put(media_id)
        self._waiting()

    # ---- what the database holds ----------------------------------------------------------------
    def _pick_up(self, starting: bool) -> None:
        """Rows left ``queued`` (or, at start, ``running``: the process died mid-job) that nothing here
        holds, into the backlog; those started ``max_attempts`` times already are failed instead."""
        states = ("queued", "running") if starting else ("queued",)
        with self.sessions() as session:
            left = session.execute(
                select(MediaFile.id, MediaFile.status, MediaFile.attempts)
                .where(MediaFile.status.in_(states))
                .order_by(MediaFile.id)
            ).all()
        found = 0
        for media_id, state, attempts in left:
            if media_id in self._held:
                continue
            if attempts >= self.config.max_attempts:
                self._finish(
                    media_id,
                    [],
                    error=f"its analysis was started {attempts} times and the process stopped during each "
                    f"(api.analysis.max_attempts): the file may crash the decoder or exhaust the memory",
                )
                continue
            if state == "running":
                self.monitor.count(ANALYSIS, Count.JOBS, outcome="resumed")
                log.warning("media %d: its analysis was interrupted (the process stopped); running it again", media_id)
            self._held.add(media_id)
            self._backlog.append(media_id)
            found += 1
        if found and not starting:
            log.info("analysis: %d queued media found in the database, queued here", found)
        self._more.set()  # thread-safe enough: the feeder also wakes on its own every rescan_s

    async def _rescan(self) -> None:
        while True:
            await asyncio.sleep(self.config.rescan_s)
            await asyncio.to_thread(self._pick_up, False)
            self._more.set()

    async def _feed(self) -> None:
        """The backlog into the queue, each put awaiting room: nothing found is dropped."""
        while True:
            while self._backlog:
                await self._queue.put_wait(self._backlog[0])
                self._backlog.popleft()
                self._waiting()
            self._more.clear()
            try:
                await asyncio.wait_for(self._more.wait(), self.config.rescan_s)
            except TimeoutError:
                pass

    def _waiting(self) -> None:
        self.monitor.set_gauge(ANALYSIS, Gauge.JOBS_WAITING, len(self._queue) + len(self._backlog))

    # ---- the workers -----------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            media_id = await self._queue.get()
            self._waiting()
            retry = False
            try:
                await asyncio.wait_for(
                    _in_daemon_thread(self.analyse, media_id), self.config.job_timeout_s + STOP_GRACE_S
                )
            except TimeoutError:  # its thread is stuck inside one decode call: given up, failed here
                self._given_up.add(media_id)
                await asyncio.to_thread(
                    self._finish,
                    media_id,
                    [],
                    f"the analysis did not stop within its limit of "
                    f"{self.config.job_timeout_s:g} s (api.analysis.job_timeout_s)",
                )
            except Exception as exc:  # noqa: BLE001 -- the database away, or a bug: the worker goes on
                tries = self._tries[media_id] = self._tries.get(media_id, 0) + 1
                log.error(
                    "media %d: analysis could not run (try %d of %d): %s", media_id, tries, RETRIES, one_line(exc)
                )
                retry = tries < RETRIES  # still `running` in the database; the next start would resume it anyway
            finally:
                self.progress.pop(media_id, None)
            if retry:
                asyncio.get_running_loop().call_later(RETRY_AFTER_S, self._retry, media_id)
            else:
                self._held.discard(media_id)
                self._tries.pop(media_id, None)

    def _retry(self, media_id: int) -> None:
        self._backlog.append(media_id)
        self._more.set()

    def analyse(self, media_id: int) -> None:
        with self.sessions() as session:
            media = session.get(MediaFile, media_id)
            if media is None:  # deleted while it waited
                return
            media.status, media.started_at, media.progress, media.error = "running", utcnow(), 0.0, None
            media.attempts += 1  # committed before a frame is decoded: a crash in it is counted
            session.commit()
            path, expected = (
                self.data_dir / media.storage_path,
                min(self.config.frames, media.frames or self.config.frames),
            )
        self.progress[media_id] = 0.0
        started = time.monotonic()
        last_write = [0.0]

        def check() -> None:
            if media_id in self._given_up:
                raise _OverTime("given up")  # the worker already failed it
            if self._stopping:
                raise _Stopping
            if time.monotonic() - started > self.config.job_timeout_s:
                raise _OverTime(
                    f"the analysis passed its limit of {self.config.job_timeout_s:g} s (api.analysis.job_timeout_s)"
                )

        def progress(read: int) -> None:
            check()
            done = min(0.99, read / max(1, expected))
            self.progress[media_id] = done
            if time.monotonic() - last_write[0] > 0.5:
                last_write[0] = time.monotonic()
                with self.sessions() as s:
                    s.execute(update(MediaFile).where(MediaFile.id == media_id).values(progress=done))
                    s.commit()

        try:
            scored, read, _ = score_frames(
                spaced_video_frames(
                    path,
                    self.config.frames,
                    self.limits.ffmpeg_options,
                    self.limits.max_frames,
                    (self.limits.max_width, self.limits.max_height),
                ),
                self.detectors,
                self.ensemble,
                self.faces,
                every_face=True,
                progress=progress,
            )
            if not any(face.face == 0 for face in scored):
                raise DfstreamError(
                    f"no face in any of the {read} sampled frames" if read else "no frame could be decoded"
                )
            voice = self._listen(media_id, path, check) if self.voice is not None else None
        except _Stopping:
            with self.sessions() as session:  # not an attempt that failed: it gives its start back
                session.execute(
                    update(MediaFile)
                    .where(MediaFile.id == media_id)
                    .values(status="queued", attempts=MediaFile.attempts - 1, progress=0.0)
                )
                session.commit()
            log.info("media %d: analysis stopped with the server; it runs again on the next start", media_id)
            return
        except _OverTime as exc:
            if media_id in self._given_up:
                self._given_up.discard(media_id)
                return
            self._finish(media_id, [], error=one_line(exc))
            return
        except (DfstreamError, av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
            self._finish(media_id, [], error=one_line(exc))
            return
        self._finish(media_id, scored, voice=voice)
        log.info(
            "media %d: %d faces in %d frames scored in %.1f s", media_id, len(scored), read, time.monotonic() - started
        )

    def _listen(self, media_id: int, path: Path, check: Callable[[], None]) -> dict:
        """The file's voice, judged as a stream's is; a sound that cannot be judged is the voice
        result's error, never the face result's (the job's own limits still hold: ``check``)."""
        assert self.voice is not None
        try:
            return self.voice.judge(path, self.limits.ffmpeg_options, self.limits.max_duration_s, check)
        except (_Stopping, _OverTime):
            raise
        except (DfstreamError, av.error.FFmpegError, OSError, ValueError) as exc:
            log.warning("media %d: the voice could not be judged: %s", media_id, one_line(exc))
            return {"verdict": None, "error": one_line(exc)}

    def _finish(
        self, media_id: int, scored: list[FaceScore], error: str | None = None, voice: dict | None = None
    ) -> None:
        with self.sessions() as session, session.begin():
            media = session.get(MediaFile, media_id)
            if media is None:
                return
            session.execute(delete(FaceResult).where(FaceResult.media_id == media_id))
            media.finished_at, media.progress = utcnow(), 1.0
            if error is not None:
                media.status, media.error = "failed", error
                self.monitor.count(ANALYSIS, Count.JOBS, outcome="failed")
                log.warning("media %d (%s): analysis failed: %s", media_id, media.original_name, error)
                return
            session.add_all(
                FaceResult(
                    media_id=media_id,
                    frame=f.frame,
                    face=f.face,
                    bbox=[round(v, 1) for v in f.bbox],
                    models=f.models,
                    fake_probability=f.fake_probability,
                    uncertainty=f.uncertainty,
                )
                for f in scored
            )
            largest = [f for f in scored if f.face == 0]  # per frame, the face eval scores
            aggregate = AGGREGATIONS[self.config.aggregation]
            p = float(aggregate([f.fake_probability for f in largest]))
            uncertainties = [f.uncertainty for f in largest if f.uncertainty is not None]
            media.status, media.error, media.aggregation = "done", None, self.config.aggregation
            media.fake_probability, media.frames_scored = round(p, 6), len(largest)
            media.uncertainty = round(statistics.fmean(uncertainties), 6) if uncertainties else None
            media.models = {
                name: round(float(aggregate([f.models[name] for f in largest])), 6) for name in largest[0].models
            }
            media.verdict = file_label(p, *self.thresholds)
            media.voice = voice
            self.monitor.count(ANALYSIS, Count.JOBS, outcome="done")


class VoiceJudge:
    """A file's voice for the analyser: the voice models, their ensemble and the ``voice`` section,
    used as ``dfstream eval --audio-detectors`` uses them (``pipeline.evaluation.voice``)."""

    def __init__(self, voices: Mapping[str, VoiceModel], ensemble: EnsembleManager, config: VoiceConfig):
        self.voices, self.ensemble, self.config = voices, ensemble, config

    def judge(
        self, path: Path, options: dict[str, str], max_seconds: float, between: Callable[[], None] | None = None
    ) -> dict:
        heard = listen(path, self.config, options, max_seconds)
        windows = score_windows(heard, self.voices, self.ensemble, self.config.min_speech, between)
        judged = [w for w in windows if w.judged]
        if not windows:
            verdict, p = "no_audio", None
        elif not judged:
            verdict, p = "no_speech", None
        else:
            p = file_score(windows)
            assert p is not None
            smoothing = self.config.smoothing
            verdict = file_label(p, smoothing.enter, smoothing.leave)
        return {
            "verdict": verdict,
            "spoof_probability": None if p is None else round(p, 6),
            "models": {name: round(file_score(windows, name), 6) for name in self.voices} if judged else {},  # type: ignore[arg-type]
            "windows": [
                {"start": w.start, "end": w.end, "speech": w.speech, "spoof_probability": w.spoof_probability}
                for w in windows
            ],
        }


async def _in_daemon_thread(function, *args) -> None:  # type: ignore[no-untyped-def]
    """``function(*args)`` in a daemon thread: a long analysis never holds up the process's exit
    (asyncio.to_thread's pool is joined at shutdown); what it leaves ``running`` is resumed."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(exc: BaseException | None) -> None:
        if not done.done():
            done.set_exception(exc) if exc is not None else done.set_result(None)

    def target() -> None:
        outcome: BaseException | None = None
        try:
            function(*args)
        except BaseException as exc:  # noqa: BLE001 -- handed to the awaiting task
            outcome = exc
        try:
            loop.call_soon_threadsafe(settle, outcome)
        except RuntimeError:  # the loop is closed: the process is exiting
            pass

    threading.Thread(target=target, name="dfstream.analysis", daemon=True).start()
    await done
