# -*- test-case-name: tests.test_integrity_sync -*-
"""
The master's side of integrity: its local integrity (the snapshot of its
synced files, kept fresh by a timer and inotify) with a bounded history of
its changes, the announcement of every change to all workers at once, and,
per worker connection, the session through which the worker learns what
changed since the state it holds (or the whole manifest) and fetches the
files it lacks.

The master serves only files of the snapshot a round was opened on, and
always wins: whatever the worker has, it ends up with the master's files.
What it announces passes through the client.keys guard
(L{wazuhcluster.master.clientkeys_guard}): a client.keys that lost too many
agents is held back, and the last one announced is served instead.
"""

import uuid

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.chunks import RecordError, RecordReader
from wazuhcluster.commands import (
    FileData,
    IntegrityChanged,
    IntegrityCheck,
    ManifestChunk,
    RequestFiles,
    StartTransfer,
    SyncAborted,
    SyncRefused,
    TransferAborted,
    TransferDone,
)
from wazuhcluster.health import TaskTimes
from wazuhcluster.integrity_history import Answer, IntegrityHistory
from wazuhcluster.local_integrity import LocalIntegrity
from wazuhcluster.master.clientkeys_guard import ClientKeysGuard
from wazuhcluster.manifest import encodeManifest
from wazuhcluster.pathrules import MAX_PATH_BYTES
from wazuhcluster.session import IFeature, IFeatureSession, ThreadQueue
from wazuhcluster.streams import FileReader, StreamSender, fileDataArguments

#: The most files a worker may say it will delete in one round.
MAX_EXTRA = 10_000_000


class _Round:
    """
    One worker's round against one snapshot of the master.
    """

    def __init__(self, snapshot, answer, started):
        self.id = uuid.uuid4().hex
        self.snapshot = snapshot
        self.answer = answer
        self.started = started
        self.requested = set()
        self.sender = None
        self.syncStarted = None


@implementer(IFeatureSession)
class MasterIntegritySession(amp.CommandLocator):
    """
    Integrity on one worker connection.
    """

    def __init__(self, feature, peer):
        super().__init__()
        self.feature = feature
        self.peer = peer
        self.locator = self
        self.clock = feature.master.clock
        self.queue = ThreadQueue(feature.master.runInThread)
        self.checkLog = peer.log.withSubtag("Integrity check")
        self.syncLog = peer.log.withSubtag("Integrity sync")
        self.round = None
        self.checkTimes = TaskTimes()
        self.syncTimes = TaskTimes()
        self.totals = {"missing": 0, "shared": 0, "extra": 0}
        self.free = True
        self.workerDigest = None
        self._stopped = False

    # -- life --------------------------------------------------------------------

    def start(self):
        self.feature.sessions[self.peer.name] = self

    def stop(self):
        self._stopped = True
        if self.feature.sessions.get(self.peer.name) is self:
            del self.feature.sessions[self.peer.name]
        self._dropRound("cancelled: the worker disconnected")
        self.queue.close()
        return self.queue.idle()

    def health(self):
        snapshot = self.feature.published.snapshot
        return {
            "sync_integrity_free": self.free,
            "last_check_integrity": self.checkTimes.masterDates(),
            "last_sync_integrity": dict(self.syncTimes.masterDates(), total_extra_valid=0,
                                        total_files=dict(self.totals)),
            "integrity_in_sync": bool(snapshot is not None
                                      and self.workerDigest == snapshot.digest),
        }

    def masterChanged(self, snapshot):
        """
        The master's files changed: tell the worker.
        """
        d = self.peer.callRemote(IntegrityChanged, digest=snapshot.digest)
        d.addErrback(lambda f: self.checkLog.debug(
            "Could not announce the new integrity digest: {error}",
            error=f.getErrorMessage()))

    def _dropRound(self, reason):
        current, self.round = self.round, None
        if current is not None and current.sender is not None:
            current.sender.stop(reason)
            self.free = True

    def _round(self, sessionId):
        current = self.round
        if current is None or current.id != sessionId:
            raise SyncRefused("Error 3036 - Unknown or expired integrity session")
        return current

    # -- responders ----------------------------------------------------------------

    @IntegrityCheck.responder
    def integrityCheck(self, digest, base=None):
        d = self.feature.whenReady()
        d.addCallback(self._check, digest, base)
        return d

    def _check(self, snapshot, digest, base):
        now = self.clock.seconds()
        self.checkTimes.begin(now)
        self.checkLog.info("Starting.")
        self._dropRound("replaced by a newer sync")
        if digest == snapshot.digest:
            self.checkTimes.finish(self.clock.seconds())
            self.workerDigest = digest
            self.checkLog.info("Finished in {elapsed:.3f}s. Sync not required.",
                               elapsed=self.clock.seconds() - now)
            return {"in_sync": True, "master_digest": snapshot.digest, "session": "",
                    "full": False, "chunks": 0, "entries": 0, "data": b""}
        self.workerDigest = None
        answer = self.feature.deltaAnswer(snapshot, base, digest)
        if answer is not None:
            return self._open(snapshot, answer, now)
        d = self.feature.manifestChunks(snapshot)
        d.addCallback(lambda chunks: self._open(
            snapshot, Answer(True, chunks, len(snapshot.files)), now))
        return d

    def _open(self, snapshot, answer, started):
        if self._stopped:
            raise SyncRefused("Error 3023 - The connection is closing")
        self.round = _Round(snapshot, answer, started)
        return {"in_sync": False, "master_digest": snapshot.digest,
                "session": self.round.id, "full": answer.full,
                "chunks": len(answer.chunks), "entries": answer.entries,
                "data": answer.chunks[0]}

    @ManifestChunk.responder
    def manifestChunk(self, session, index):
        current = self._round(session)
        if not 0 < index < len(current.answer.chunks):
            raise SyncRefused("Error 3036 - No such manifest chunk")
        data = current.answer.chunks[index]
        return self.peer.whenWritable().addCallback(lambda _: {"data": data})

    @RequestFiles.responder
    def requestFiles(self, session, paths):
        current = self._round(session)
        if current.sender is not None:
            raise SyncRefused("Error 3036 - The transfer already started")
        files = current.snapshot.files
        reader = RecordReader(maxRecordLength=MAX_PATH_BYTES,
                              maxRecords=len(files) - len(current.requested))
        try:
            records = reader.feed(paths)
            reader.finish()
        except RecordError as e:
            raise SyncRefused(f"Error 3036 - Malformed file request: {e}")
        for record in records:
            relpath = record.decode("utf-8", "replace")
            if relpath not in files:
                raise SyncRefused(
                    f"Error 3036 - {relpath[:200]!r} is not a synced file of the master")
            current.requested.add(relpath)
        return {}

    @StartTransfer.responder
    def startTransfer(self, session, missing, shared, extra):
        current = self._round(session)
        if current.sender is not None:
            raise SyncRefused("Error 3036 - The transfer already started")
        if (min(missing, shared, extra) < 0 or missing + shared != len(current.requested)
                or extra > MAX_EXTRA):
            raise SyncRefused(
                f"Error 3036 - Counts {missing}/{shared}/{extra} do not match the "
                f"{len(current.requested)} files requested")
        now = self.clock.seconds()
        self.checkTimes.finish(now)
        self.checkLog.info("Finished in {elapsed:.3f}s. Sync required.",
                           elapsed=now - current.started)
        self.syncTimes.begin(now)
        self.totals = {"missing": missing, "shared": shared, "extra": extra}
        self.free = False
        self.syncLog.info("Starting.")
        self.syncLog.info(
            "Files to create in worker: {missing} | Files to update in worker: {shared} | "
            "Files to delete in worker: {extra}", missing=missing, shared=shared, extra=extra)
        files = current.snapshot.files
        reader = FileReader(self.feature.master.home.root.path, sorted(current.requested),
                            substitutes=self.feature.published.substitutes(current.snapshot))
        current.sender = StreamSender(
            reader,
            lambda chunk: self.peer.callRemote(FileData, session=current.id,
                                               **fileDataArguments(chunk)),
            self.queue)
        current.syncStarted = now
        self.clock.callLater(0, self._send, current, reader)
        return {"files": len(current.requested),
                "bytes": sum(files[p].size for p in current.requested)}

    # -- sending -------------------------------------------------------------------

    def _send(self, current, reader):
        if self.round is not current:
            self.queue.run(reader.close)
            return
        d = current.sender.start()
        d.addBoth(self._readerDone, reader)
        d.addCallback(lambda _: self._finish(current))
        d.addErrback(self._failed, current)

    def _readerDone(self, result, reader):
        self.queue.run(reader.close).addErrback(lambda _: None)
        return result

    def _finish(self, current):
        timeout = max(self.feature.master.items.communication.timeout_receiving_file, 1)
        d = self.peer.callRemote(TransferDone, session=current.id)
        d.addTimeout(timeout, self.clock)
        d.addCallback(self._applied, current)
        return d

    def _applied(self, result, current):
        if self.round is current:
            self.round = None
        self.syncTimes.finish(self.clock.seconds())
        self.free = True
        if not result["failed"]:
            self.workerDigest = current.snapshot.digest
        self.syncLog.info("Finished in {elapsed:.3f}s.",
                          elapsed=self.clock.seconds() - current.syncStarted)
        self.feature.master.syncEvents.finished(
            "integrity", self.peer.name, current.syncStarted,
            self.clock.seconds() - current.syncStarted, current.sender.reader.sent, "sent")

    def _failed(self, failure, current):
        if self.round is current:
            self.round = None
        self.free = True
        if self._stopped:
            return None
        self.syncLog.error("Error synchronizing integrity: {error}",
                           error=failure.getErrorMessage())
        if failure.check(SyncAborted):
            return None
        # The master could not send: tell the worker so it drops what it
        # staged; a rescan picks up whatever changed meanwhile.
        self.feature.local.trigger()
        d = self.peer.callRemote(TransferAborted, session=current.id,
                                 reason=failure.getErrorMessage()[:1000])
        d.addErrback(lambda _: None)
        return None


@implementer(IFeature)
class MasterIntegrity(MultiService):
    """
    The master's integrity feature.

    @ivar local: the L{LocalIntegrity} of the master's files.
    @ivar published: the L{ClientKeysGuard}: what is announced of them.
    @ivar history: the L{IntegrityHistory} of what is announced.
    @ivar sessions: the running sessions by worker name.
    """

    name = "integrity"

    def __init__(self, master, watch=True):
        super().__init__()
        self.master = master
        self.log = master.log.withSubtag("Local integrity")
        self.local = LocalIntegrity(
            master.home.root,
            master.items.fileset,
            master.items.master.recalculate_integrity,
            self.log,
            master.clock,
            runInThread=master.runInThread,
            watch=watch,
            reactor=master.reactor,
        )
        self.local.setServiceParent(self)
        self.published = ClientKeysGuard(
            self.local, master.home.root, master.items.master.max_client_keys_loss,
            master.items.master.recalculate_integrity,
            master.log.withSubtag("Integrity sync"), master.clock, master.runInThread)
        self.published.setServiceParent(self)
        self.published.subscribe(self._changed)
        self.history = IntegrityHistory()
        self.sessions = {}
        self._manifest = None

    def sessionFor(self, peer):
        return MasterIntegritySession(self, peer)

    def whenReady(self):
        """
        @return: a Deferred of the current snapshot, once there is one (a
            worker asking before the master's first scan waits for it).
        """
        return self.published.whenReady().addCallback(lambda _: self.published.snapshot)

    def _changed(self, snapshot, changes):
        self.history.record(snapshot, changes)
        for session in list(self.sessions.values()):
            session.masterChanged(snapshot)

    def deltaAnswer(self, snapshot, base, digest):
        """
        The delta for a worker at C{base} (or C{digest}), or L{None} when it
        needs the whole manifest.
        """
        current = self.history.current
        if current is None or snapshot.digest != current.digest:
            return None
        if base == snapshot.digest:
            return Answer(False, (b"",), 0)
        for start in (base, digest):
            if start:
                answer = self.history.deltaAnswer(start)
                if answer is not None:
                    return answer
        return None

    def manifestChunks(self, snapshot):
        """
        The manifest of C{snapshot}, encoded once per snapshot in a thread.

        @return: a Deferred of a tuple of chunks (at least one).
        """
        cached = self._manifest
        if cached is None or cached.digest != snapshot.digest:
            cached = self._manifest = _OneResult(snapshot.digest)
            d = maybeDeferred(self.master.runInThread, encodeManifest, snapshot)
            d.addCallback(lambda chunks: tuple(chunks) or (b"",))
            d.addBoth(cached.done)
        return cached.get()


class _OneResult:
    """
    The result of one computation, for everyone who asks (before or after it
    is there); a failure is handed to those waiting, and forgotten.
    """

    def __init__(self, digest):
        self.digest = digest
        self._result = None
        self._waiters = []

    def done(self, result):
        if isinstance(result, Failure):
            self.digest = None
        else:
            self._result = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
        return None

    def get(self):
        if self._result is not None:
            return succeed(self._result)
        d = Deferred()
        self._waiters.append(d)
        return d
