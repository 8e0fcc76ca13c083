# -*- test-case-name: tests.test_integrity_sync -*-
"""
The worker's side of integrity: on connect, every C{worker.sync_integrity}
seconds and whenever the master announces a change, compare digests (one
round trip when in sync), then fetch the master's manifest, compare, stage
what is missing or changed, and apply it all at once (master always wins:
extra files are deleted).

One round at a time; a change announced during a round brings one more
round after it.
"""

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.protocols import amp

from wazuhcluster.commands import (
    FILE_DATA_VALUES,
    MAX_CHUNK,
    FileData,
    IntegrityChanged,
    IntegrityCheck,
    ManifestChunk,
    RequestFiles,
    StartTransfer,
    SyncAborted,
    TransferAborted,
    TransferDone,
)
from wazuhcluster.integrity import ManifestDecoder, compareManifests
from wazuhcluster.local_integrity import LocalIntegrity
from wazuhcluster.staging import StagedSync
from wazuhcluster.streams import FileStreamReceiver

#: Manifest chunks asked for at once.
MANIFEST_WINDOW = 8


def batchPaths(paths, limit=MAX_CHUNK):
    """
    Join C{paths} by newlines into values of at most C{limit} bytes.
    """
    batch, size = [], 0
    for path in paths:
        encoded = path.encode("utf-8")
        if batch and size + len(encoded) + 1 > limit:
            yield b"\n".join(batch)
            batch, size = [], 0
        batch.append(encoded)
        size += len(encoded) + 1
    if batch:
        yield b"\n".join(batch)


class _Transfer:
    """
    The files of one round being received.
    """

    def __init__(self, session, staged, receiver, deletions):
        self.session = session
        self.staged = staged
        self.receiver = receiver
        self.deletions = deletions
        self.done = Deferred()


class IntegrityWorker(MultiService):
    """
    The worker's integrity feature.

    @ivar local: the L{LocalIntegrity} of this worker's synced files.
    @ivar rounds: completed rounds (for tests and health).
    """

    name = "integrity"

    def __init__(self, worker):
        super().__init__()
        self.worker = worker
        self.runInThread = worker.runInThread
        self.log = worker.log.withSubtag("Integrity check")
        self.syncLog = worker.log.withSubtag("Integrity sync")
        self.local = LocalIntegrity(
            worker.home.root,
            worker.items.fileset,
            worker.items.worker.sync_integrity,
            worker.log.withSubtag("Local integrity"),
            worker.clock,
            runInThread=worker.runInThread,
            # No inotify on workers: every round rescans them anyway, and
            # watching the files a sync is writing costs more than it saves
            # (it doubled the apply of a 20 000-file sync).
            watch=False,
            reactor=worker.reactor,
        )
        self.local.setServiceParent(self)
        self.local.subscribe(self._localChanged)
        self.connection = None
        self.rounds = 0
        self.lastSynced = None
        self._loop = None
        self._running = None
        self._again = False
        self._transfer = None

    # -- connection life -------------------------------------------------------

    def locatorFor(self, connection):
        return _WorkerIntegrityLocator(self)

    def start(self, connection):
        self.connection = connection
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.worker.clock
        self._loop.start(self.worker.items.worker.sync_integrity, now=True)

    def stop(self):
        self.connection = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._again = False
        self._abortTransfer(SyncAborted("Error 3023 - The connection to the master was lost"))

    def stopService(self):
        self.stop()
        return super().stopService()

    # -- rounds ----------------------------------------------------------------

    def check(self):
        """
        Run a round now, or one more after the running one.  Never fails.
        """
        if self.connection is None:
            return None
        if self._running is not None:
            self._again = True
            return None
        self._running = self._round(self.connection)
        self._running.addErrback(self._roundFailed)
        self._running.addBoth(self._roundEnded)
        return None

    def _roundFailed(self, failure):
        self.syncLog.error("Error synchronizing integrity: {error}",
                           error=failure.getErrorMessage())

    def _roundEnded(self, ignored):
        self._running = None
        self.rounds += 1
        if self._again and self.connection is not None:
            self._again = False
            self.check()

    def _localChanged(self, snapshot):
        # A local edit (or our own apply): make sure it matches the master.
        if self.connection is not None:
            self.check()

    @inlineCallbacks
    def _round(self, connection):
        clock = self.worker.clock
        started = clock.seconds()
        self.log.info("Starting.")
        mine = yield self.local.rescanNow()
        answer = yield connection.callRemote(IntegrityCheck, digest=mine.digest)
        if answer["in_sync"]:
            self.lastSynced = answer["master_digest"]
            self.log.info("Finished in {elapsed:.3f}s. Sync not required.",
                          elapsed=clock.seconds() - started)
            return
        session = answer["session"]
        master = yield self._fetchManifest(connection, session, answer["manifest_chunks"],
                                           answer["files"])
        comparison = compareManifests(master, mine.manifest())
        self.log.info("Finished in {elapsed:.3f}s. Sync required.",
                      elapsed=clock.seconds() - started)
        syncStarted = clock.seconds()
        self.syncLog.info("Starting.")
        self.syncLog.info(
            "Files to create: {missing} | Files to update: {shared} | Files to delete: {extra}",
            missing=len(comparison.missing), shared=len(comparison.shared),
            extra=len(comparison.extra))
        wanted = comparison.missing + comparison.shared
        staged = StagedSync(self.worker.home.root, self.worker.home.staging(connection.masterName),
                            self.worker.items.fileset)
        receiver = FileStreamReceiver(staged, {path: master[path] for path in wanted})
        transfer = self._transfer = _Transfer(session, staged, receiver, list(comparison.extra))
        try:
            for paths in batchPaths(wanted):
                yield connection.callRemote(RequestFiles, session=session, paths=paths)
            yield connection.callRemote(StartTransfer, session=session,
                                        missing=len(comparison.missing),
                                        shared=len(comparison.shared),
                                        extra=len(comparison.extra))
            result = yield transfer.done
        except BaseException:
            self._abortTransfer(None)
            raise
        self.lastSynced = answer["master_digest"]
        self.syncLog.info("Finished in {elapsed:.3f}s.", elapsed=clock.seconds() - syncStarted)
        if self._touchesClientKeys(result):
            agents = getattr(self.worker, "agents", None)
            if agents is not None:
                yield agents.clientKeysChanged()
        self.local.trigger()

    @staticmethod
    def _touchesClientKeys(result):
        return "etc/client.keys" in (result.created + result.updated + result.deleted)

    def _fetchManifest(self, connection, session, chunks, files):
        decoder = ManifestDecoder(self.worker.items.fileset, maxEntries=files)
        results = [None] * chunks
        queue = iter(range(chunks))

        @inlineCallbacks
        def fetcher():
            for index in queue:
                answer = yield connection.callRemote(ManifestChunk, session=session, index=index)
                results[index] = answer["data"]

        d = gatherResults([fetcher() for _ in range(min(MANIFEST_WINDOW, chunks))],
                          consumeErrors=True)

        def decode(_):
            for chunk in results:
                if chunk:
                    decoder.feed(chunk)
            return decoder.entries

        d.addCallback(decode)
        d.addErrback(lambda failure: failure.value.subFailure
                     if hasattr(failure.value, "subFailure") else failure)
        return d

    # -- receiving -------------------------------------------------------------

    def _current(self, session):
        transfer = self._transfer
        if transfer is None or transfer.session != session:
            raise SyncAborted("Error 3036 - No transfer in progress for this session")
        return transfer

    def receive(self, session, data):
        """
        Stage the next chunk of the stream; the answer acknowledges it.
        """
        transfer = self._current(session)
        try:
            transfer.receiver.feed(data)
        except SyncAborted as error:
            self._abortTransfer(error)
            raise
        except Exception as error:
            # A disk error while staging: refuse the chunk (a declared
            # error), abandon this round; the next one retries.
            aborted = SyncAborted(f"Error 3033 - Could not stage the files: {error}")
            self._abortTransfer(aborted)
            raise aborted
        return {}

    def transferDone(self, session):
        transfer = self._current(session)
        try:
            transfer.receiver.finish()
        except SyncAborted as error:
            self._abortTransfer(error)
            raise
        self._transfer = None
        d = self.runInThread(transfer.staged.apply, transfer.deletions,
                             expected=list(transfer.receiver.expected))

        def applied(result):
            for error in result.errors:
                self.syncLog.warn("Could not remove {error}", error=error)
            transfer.done.callback(result)
            return {"created": len(result.created), "updated": len(result.updated),
                    "deleted": len(result.deleted)}

        def failed(failure):
            error = SyncAborted(f"Error 3033 - Could not apply the files: "
                                f"{failure.getErrorMessage()}")
            transfer.done.errback(error)
            raise error

        return d.addCallbacks(applied, failed)

    def transferAborted(self, session, reason):
        transfer = self._transfer
        if transfer is not None and transfer.session == session:
            self._abortTransfer(SyncAborted(f"The master aborted the transfer: {reason}"))

    def _abortTransfer(self, error):
        transfer, self._transfer = self._transfer, None
        if transfer is None:
            return
        transfer.staged.abort()
        if error is not None and not transfer.done.called:
            transfer.done.errback(error)

    def masterChanged(self, digest):
        snapshot = self.local.snapshot
        if snapshot is None or snapshot.digest != digest:
            self.check()


class _WorkerIntegrityLocator(amp.CommandLocator):
    """
    The integrity responders on the master connection.
    """

    def __init__(self, feature):
        super().__init__()
        self.feature = feature

    @FileData.responder
    def fileData(self, session, data, **more):
        answer = self.feature.receive(session, data)
        for n in range(2, FILE_DATA_VALUES + 1):
            piece = more.get(f"data{n}")
            if piece is not None:
                answer = self.feature.receive(session, piece)
        return answer

    @TransferDone.responder
    def transferDone(self, session):
        return self.feature.transferDone(session)

    @TransferAborted.responder
    def transferAborted(self, session, reason):
        self.feature.transferAborted(session, reason)
        return {}

    @IntegrityChanged.responder
    def integrityChanged(self, digest):
        self.feature.masterChanged(digest)
        return {}
