"""`povwatch connector watch --config FILE`: the connector as a service, until SIGTERM or SIGINT.

Drop folders: a file directly in a folder is taken once its size and mtime have held for `settle_seconds`
(a file still being copied is left alone), processed with the folder's feed, then moved to `done/` or `failed/`
(subfolders of the drop folder) with `<name>.summary.json` beside it: the summary, or for a file that cannot be
processed at all (unreadable, missing columns) the one-line `error`. Names starting with `.` or ending in
`.part`, `.tmp` or `~` are being written by someone: ignored. SQL sources are polled every `interval_seconds`.

Nothing is lost or repeated across a SIGKILL at any moment. Every `checkpoint_rows` rows the publisher is
flushed (the broker acknowledged every message so far) and only then the checkpoint is written
(services.watch.checkpoint: the row, or the SQL cursor, and the topics' offsets). On restart the rows up to the
checkpoint are read again but not sent, and the messages that reached the topics after the checkpoint are read
back (their event ids and dead-letter keys) and not sent again. Event ids are deterministic
(connectors.framework.event_id_of), so a row is the same event on every attempt.

A broker or database that cannot be reached is one line on stderr and another attempt at the next scan or
poll; the file stays where it is.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import signal
import sys
import time
from collections.abc import Container
from pathlib import Path
from typing import Any

from connectors.catalog import get_feed
from connectors.framework import EventHandler, FeedSpec, Resume, Summary, bind_source, run_rows
from connectors.pseudonym import pseudonymiser_of
from connectors.sources import file_source
from connectors.sources.sql import Cursor, SqlSource
from plumbing.clock import utc_now
from plumbing.kafka_io import KafkaPublisher, read_since, topic_end_offsets
from plumbing.settings import Settings
from schemas.codec import default_codec
from schemas.errors import BrokerUnavailable, DecodeError, EnvironmentProblem, InputFileError
from services.ingest import audit_run
from services.watch.checkpoint import FileMark, Offsets, SqlMark, StateStore, merge_offsets
from services.watch.config import FolderConfig, SqlConfig, WatchConfig, load_config
from services.watch.metrics import WatchMetrics

__all__ = ["WatchService", "run_watch"]

_BUSY_SUFFIXES = (".part", ".tmp", "~")


def log(message: str) -> None:
    stamp = utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} povwatch watch: {message}", file=sys.stderr, flush=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    stem, suffix, n = Path(name).stem, Path(name).suffix, 2
    while target.exists() or target.with_name(target.name + ".summary.json").exists():
        target = folder / f"{stem}.{n}{suffix}"
        n += 1
    return target


class WatchService:
    def __init__(self, config: WatchConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.bootstrap = config.bootstrap or settings.bootstrap
        self.codec = default_codec()
        self.pseudonymiser = pseudonymiser_of(settings)
        self.state = StateStore(config.state)
        self.metrics = WatchMetrics()
        self._settling: dict[Path, tuple[int, int, float]] = {}
        self._sql = {s.spec.name: SqlSource(s.spec) for s in config.sql}
        self._next_poll = {s.spec.name: 0.0 for s in config.sql}
        self._sql_resumed: set[str] = set()

    def _clock(self) -> dt.datetime:
        return utc_now()

    def _handler(self, spec: FeedSpec) -> EventHandler:
        return EventHandler(spec, pseudonymiser=self.pseudonymiser, codec=self.codec, clock=self._clock)

    def _publisher(self, spec: FeedSpec) -> KafkaPublisher:
        return KafkaPublisher(self.bootstrap, client_id=f"povwatch-watch-{spec.department}",
                              require_topics=[spec.topic, spec.dlq])

    async def run(self) -> None:
        for folder in self.config.folders:
            for sub in (folder.path, folder.path / "done", folder.path / "failed"):
                sub.mkdir(parents=True, exist_ok=True)
        self.metrics.serve(self.config.metrics_port)
        log(f"watching {', '.join(str(f.path) for f in self.config.folders) or 'no folder'}; SQL sources: "
            f"{', '.join(self._sql) or 'none'}; /metrics on port {self.config.metrics_port or '(off)'}")
        try:
            while True:
                await self.scan()
                for source in self.config.sql:
                    if time.monotonic() >= self._next_poll[source.spec.name]:
                        await self.poll(source)
                        self._next_poll[source.spec.name] = time.monotonic() + source.interval
                await asyncio.sleep(self.config.scan_seconds)
        finally:
            for sql in self._sql.values():
                sql.close()
            self.state.close()

    # ----- drop folders -----------------------------------------------------------------------------------
    def _candidates(self, folder: FolderConfig) -> list[tuple[Path, os.stat_result]]:
        found = []
        for entry in os.scandir(folder.path):
            if entry.name.startswith(".") or entry.name.endswith(_BUSY_SUFFIXES) or not entry.is_file():
                continue
            try:
                found.append((Path(entry.path), entry.stat()))
            except FileNotFoundError:
                continue
        return sorted(found, key=lambda item: (item[1].st_mtime_ns, item[0].name))

    async def scan(self) -> None:
        now = time.monotonic()
        for folder in self.config.folders:
            candidates = self._candidates(folder)
            oldest = min((st.st_mtime for _, st in candidates), default=None)
            self.metrics.lag.labels(str(folder.path)).set(0 if oldest is None else max(0.0, time.time() - oldest))
            for path, st in candidates:
                signature = (st.st_size, st.st_mtime_ns)
                previous = self._settling.get(path)
                if previous is None or previous[:2] != signature:
                    self._settling[path] = (*signature, now)
                    continue
                if now - previous[2] < self.config.settle_seconds:
                    continue
                key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
                try:
                    await self.process_file(folder, path, key)
                except (BrokerUnavailable, EnvironmentProblem) as exc:
                    self.metrics.errors.labels(str(folder.path)).inc()
                    log(f"{path.name}: {exc}; trying again at the next scan")
                    return
                self._settling.pop(path, None)

    async def _already_sent(self, spec: FeedSpec, offsets: Offsets) -> set[str]:
        """Event ids and dead-letter keys that reached the topics at or after `offsets`."""
        found: set[str] = set()
        async for record in read_since(self.bootstrap, [spec.topic, spec.dlq], offsets):
            if record.topic == spec.dlq:
                if record.key is not None:
                    found.add(record.key.decode("utf-8", "replace"))
                continue
            try:
                event_id = self.codec.decode(record.value).record.get("event_id")
            except DecodeError:
                continue
            if isinstance(event_id, str):
                found.add(event_id)
        return found

    async def process_file(self, folder: FolderConfig, path: Path, key: str) -> None:
        spec = get_feed(folder.department, folder.feed)
        try:
            source = file_source(path)
            bound = bind_source(spec, source)
        except InputFileError as exc:
            self._finish(folder, path, key, {"department": spec.department, "feed": spec.feed, "file": path.name,
                                             "error": str(exc)}, failed=True)
            return
        try:
            mark = self.state.file(key)
            if mark is None:
                mark = FileMark(0, await topic_end_offsets(self.bootstrap, [spec.topic, spec.dlq]))
                self.state.save_file(key, mark)
                already: Container[str] = frozenset()
            else:
                already = await self._already_sent(spec, mark.offsets)
                log(f"{path.name}: resuming after row {mark.row} ({len(already)} of its messages already on "
                    f"the topics after that checkpoint: not sent again)")
            base = mark.offsets
            async with self._publisher(spec) as publisher:
                async def acked(row: int) -> None:
                    self.state.save_file(key, FileMark(row, merge_offsets(base, publisher.acked)))

                summary = await run_rows(
                    spec, source, self._handler(spec), publisher, codec=self.codec, clock=self._clock,
                    zone=self.settings.zone, resume=Resume(mark.row, already), on_acked=acked,
                    ack_every=self.config.checkpoint_rows, bound=bound,
                    on_progress=self.metrics.tracker(spec.department, spec.feed))
        except InputFileError as exc:  # the file broke part-way (e.g. a damaged workbook)
            self._finish(folder, path, key, {"department": spec.department, "feed": spec.feed, "file": path.name,
                                             "error": str(exc)}, failed=True)
            return
        finally:
            source.close()
        self._finish(folder, path, key, summary.as_dict(), failed=False)
        log(f"{path.name}: read {summary.read}, published {summary.published}, rejected {summary.rejected}, "
            f"duplicates {summary.duplicates}")
        await audit_run(self.settings.model_copy(update={"bootstrap": self.bootstrap}), summary)

    def _finish(self, folder: FolderConfig, path: Path, key: str, summary: dict[str, Any], *, failed: bool) -> None:
        """Summary beside the file's new place, then the move, then the checkpoint forgotten: a crash between
        two steps is completed on restart (the file is still there, its checkpoint says every row is done)."""
        target = _free_name(folder.path / ("failed" if failed else "done"), path.name)
        summary = {**summary, "file": path.name, "outcome": "failed" if failed else "done"}
        _write_json(target.with_name(target.name + ".summary.json"), summary)
        os.replace(path, target)
        self.state.forget_file(key)
        self.metrics.files.labels(folder.department, folder.feed, "failed" if failed else "done").inc()
        if failed:
            log(f"{path.name}: failed: {summary['error']} (moved to {target.parent.name}/)")
        else:
            self.metrics.last_success.labels(str(folder.path)).set(time.time())

    # ----- SQL sources ------------------------------------------------------------------------------------
    def _sql_lag(self, cursor: Cursor) -> float:
        updated = cursor.updated
        if isinstance(updated, str):
            try:
                updated = dt.datetime.fromisoformat(updated)
            except ValueError:
                return math.nan
        if isinstance(updated, dt.datetime):
            if updated.tzinfo is None:
                updated = updated.replace(tzinfo=self.settings.zone)  # a database's local time
            return max(0.0, (self._clock() - updated).total_seconds())
        return math.nan

    async def poll(self, config: SqlConfig) -> None:
        name = config.spec.name
        spec = get_feed(config.department, config.feed)
        source = self._sql[name]
        try:
            mark = self.state.sql(name)
            already: Container[str] = frozenset()
            if mark is None:
                mark = SqlMark(Cursor(), await topic_end_offsets(self.bootstrap, [spec.topic, spec.dlq]))
                self.state.save_sql(name, mark)
            elif name not in self._sql_resumed:
                found = await self._already_sent(spec, mark.offsets)
                log(f"{name}: resuming after row {mark.cursor.rows} ({len(found)} messages already on the topics "
                    "after that checkpoint: not sent again)")
                already = found
            self._sql_resumed.add(name)
            async with self._publisher(spec) as publisher:
                while True:
                    batch = await asyncio.to_thread(source.fetch, mark.cursor)
                    if batch.count == 0:
                        break
                    summary: Summary = await run_rows(
                        spec, batch.source, self._handler(spec), publisher, codec=self.codec, clock=self._clock,
                        zone=self.settings.zone, resume=Resume(mark.cursor.rows, already),
                        on_progress=self.metrics.tracker(spec.department, spec.feed))
                    mark = SqlMark(batch.last, merge_offsets(mark.offsets, publisher.acked))
                    self.state.save_sql(name, mark)  # run_rows has flushed: the batch is acknowledged
                    log(f"{name}: read {summary.read}, published {summary.published}, rejected {summary.rejected}, "
                        f"duplicates {summary.duplicates}; cursor at row {mark.cursor.rows}")
                    await audit_run(self.settings.model_copy(update={"bootstrap": self.bootstrap}), summary,
                                    "connector.sql-batch")
                    if batch.count < config.spec.batch_rows:
                        break
        except (BrokerUnavailable, EnvironmentProblem, InputFileError) as exc:
            self.metrics.errors.labels(name).inc()
            log(f"{exc}; polling again in {config.interval:g} s")
            return
        self.metrics.last_success.labels(name).set(time.time())
        self.metrics.lag.labels(name).set(self._sql_lag(mark.cursor))


def run_watch(settings: Settings, config_path: Path) -> int:
    config = load_config(config_path)
    service = WatchService(config, settings)

    async def main() -> None:
        work = asyncio.ensure_future(service.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, work.cancel)
        try:
            await work
        except asyncio.CancelledError:
            log("stopped")

    asyncio.run(main())
    return 0
