# -*- test-case-name: tests.test_integrity_sync -*-
"""
The worker's integrity rounds on its connection to the master
(L{WorkerIntegritySession}): when they run, the manifest chunks they fetch,
and the files they receive, stage and place.

Rounds run on connect, every C{worker.sync_integrity} seconds and whenever
the master announces a change: one at a time, one more at most pending,
never more often than every L{MIN_ROUND_INTERVAL} seconds, so a file that
changes ten times a second costs at most two rounds a second while a single
change starts a round at once.  Scans, decoding, comparing, staging and
placing run in the feature's thread queue, one job at a time, so an apply
never races a scan or the cleaning of the staging directory.
"""

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    gatherResults,
    inlineCallbacks,
)
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel
from twisted.protocols import amp
from zope.interface import implementer

from wazuhcluster.chunks import MAX_CHUNK, packRecords
from wazuhcluster.commands import (
    FILE_DATA_VALUES,
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
from wazuhcluster.errors import ClusterError
from wazuhcluster.revocation import CRL_PATH as REVOCATION_LIST
from wazuhcluster.session import IFeatureSession
from wazuhcluster.staging import StagedSync
from wazuhcluster.streams import StreamReceiver
from wazuhcluster.worker import integrity_round

#: Manifest chunks asked for at once.
MANIFEST_WINDOW = 8

#: Seconds between the starts of two rounds, at least.
MIN_ROUND_INTERVAL = 0.5

#: The most files a manifest from the master may hold.
MAX_MANIFEST_ENTRIES = 2_000_000

#: Files too large to sync named one by one in a round's log.
TOO_LARGE_NAMED = 10


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
        self.closed = False


@implementer(IFeatureSession)
class WorkerIntegritySession(amp.CommandLocator):
    """
    Integrity on the connection to the master.
    """

    def __init__(self, feature, peer):
        super().__init__()
        self.feature = feature
        self.peer = peer
        self.locator = self
        self.clock = feature.worker.clock
        self.log = feature.worker.log.withSubtag("Integrity check")
        self.syncLog = feature.worker.log.withSubtag("Integrity sync")
        self.transfer = None
        self._loop = None
        self._running = None
        self._again = False
        self._delayed = None
        self._lastStart = None
        self._stopped = False

    # -- life --------------------------------------------------------------------

    def start(self):
        self.feature.current = self
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.feature.worker.items.worker.sync_integrity, now=True) \
            .addErrback(lambda f: self.log.failure("The integrity loop stopped", f,
                                                   level=LogLevel.error))

    def stop(self):
        if self._stopped:
            return self._whenStopped()
        self._stopped = True
        if self.feature.current is self:
            self.feature.current = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()
        self._delayed = None
        self._abortTransfer(SyncAborted("Error 3023 - The connection to the master was lost"))
        return self._whenStopped()

    def _whenStopped(self):
        waits = [self.feature.queue.idle()]
        if self._running is not None:
            follower = Deferred()
            self._running.addBoth(lambda result: (follower.callback(None), result)[1])
            waits.append(follower)
        return gatherResults(waits).addCallback(lambda _: self.feature.queue.idle())

    def health(self):
        return {}

    # -- scheduling ----------------------------------------------------------------

    def check(self):
        """
        Run a round now, or one more after the running one.  Never fails.
        """
        if self._stopped:
            return None
        if self._running is not None:
            self._again = True
            return None
        now = self.clock.seconds()
        if self._lastStart is not None and now - self._lastStart < MIN_ROUND_INTERVAL:
            if self._delayed is None or not self._delayed.active():
                self._delayed = self.clock.callLater(
                    self._lastStart + MIN_ROUND_INTERVAL - now, self._delayedCheck)
            return None
        self._lastStart = now
        self._running = self._round()
        self._running.addErrback(self._roundFailed)
        self._running.addBoth(self._roundEnded)
        return None

    def _delayedCheck(self):
        self._delayed = None
        self.check()

    def _roundFailed(self, failure):
        if self._stopped or failure.check(CancelledError):
            return None
        self.syncLog.error("Error synchronizing integrity: {error}",
                           error=failure.getErrorMessage())
        return None

    def _roundEnded(self, ignored):
        self._running = None
        self.feature.rounds += 1
        if self._again and not self._stopped:
            self._again = False
            self.check()

    # -- a round -------------------------------------------------------------------

    @inlineCallbacks
    def _round(self):
        feature = self.feature
        worker = feature.worker
        started = self.clock.seconds()
        self.log.info("Starting.")
        if feature.needsScan():
            yield feature.scan()
        mine = feature.snapshot
        d = self.peer.callRemote(IntegrityCheck, digest=mine.digest, base=feature.base)
        d.addTimeout(worker.items.communication.timeout_cluster_request, self.clock)
        answer = yield d
        masterDigest = answer["master_digest"]
        if answer["in_sync"]:
            feature.synced(masterDigest, {})
            self.log.info("Finished in {elapsed:.3f}s. Sync not required.",
                          elapsed=self.clock.seconds() - started)
            return
        chunks = yield self._fetchChunks(answer)
        comparison, expected = yield feature.queue.run(
            integrity_round.compareRound, chunks, answer["full"], answer["entries"], worker.items.fileset, mine,
            feature.dirty)
        if comparison.inSync:
            feature.synced(masterDigest, {})
            self.log.info("Finished in {elapsed:.3f}s. Sync not required.",
                          elapsed=self.clock.seconds() - started)
            return
        self.log.info("Finished in {elapsed:.3f}s. Sync required.",
                      elapsed=self.clock.seconds() - started)
        yield self._sync(answer, comparison, expected, mine)

    def _fetchChunks(self, answer):
        count, entries = answer["chunks"], answer["entries"]
        maxChunks = self.feature.worker.items.communication.max_zip_size // MAX_CHUNK + 1
        if (not 0 < count <= max(entries, 1) or entries > MAX_MANIFEST_ENTRIES
                or count > maxChunks):
            raise SyncAborted(f"Error 3036 - The master announced {entries} entries in "
                              f"{count} chunks (at most {MAX_MANIFEST_ENTRIES} entries in "
                              f"{maxChunks} chunks: communication.max_zip_size)")
        results = [answer["data"]] + [None] * (count - 1)
        indexes = iter(range(1, count))

        @inlineCallbacks
        def fetcher():
            for index in indexes:
                reply = yield self.peer.callRemote(ManifestChunk, session=answer["session"],
                                                   index=index)
                results[index] = reply["data"]

        d = gatherResults([fetcher() for _ in range(min(MANIFEST_WINDOW, count - 1))],
                          consumeErrors=True)
        d.addCallback(lambda _: results)
        d.addErrback(lambda f: f.value.subFailure if hasattr(f.value, "subFailure") else f)
        return d

    @inlineCallbacks
    def _sync(self, answer, comparison, expected, mine):
        feature = self.feature
        worker = feature.worker
        syncStarted = self.clock.seconds()
        session = answer["session"]
        self.syncLog.info("Starting.")
        self.syncLog.info(
            "Files to create: {missing} | Files to update: {shared} | Files to delete: {extra}",
            missing=len(comparison.missing), shared=len(comparison.shared),
            extra=len(comparison.extra))
        maxBytes = worker.items.communication.max_zip_size
        missing, shared = (self._sizeable(paths, expected, maxBytes)
                           for paths in (comparison.missing, comparison.shared))
        wanted = missing + shared
        staged = StagedSync(worker.home.root, worker.home.staging(self.peer.name),
                            worker.items.fileset, durable=feature.durable,
                            maxBytes=worker.items.communication.max_zip_size)
        transfer = self.transfer = _Transfer(session, staged, StreamReceiver(staged, wanted),
                                             list(comparison.extra))
        try:
            for _, paths in packRecords(p.encode("utf-8") for p in wanted):
                yield self.peer.callRemote(RequestFiles, session=session, paths=paths)
            yield self.peer.callRemote(StartTransfer, session=session,
                                       missing=len(missing), shared=len(shared),
                                       extra=len(comparison.extra))
            result = yield transfer.done
        except BaseException:
            self._abortTransfer(None)
            raise
        snapshot, dirty = yield feature.queue.run(
            integrity_round.afterApply, result, feature.snapshot, expected, feature.dirty,
            answer["full"], worker.items.fileset)
        feature.synced(answer["master_digest"], dirty, snapshot)
        for path, reason in sorted(result.failed.items()):
            self.syncLog.error("Could not apply {path}: {reason}", path=path, reason=reason)
        self.syncLog.info("Finished in {elapsed:.3f}s.",
                          elapsed=self.clock.seconds() - syncStarted)
        if "etc/client.keys" in result.placed or "etc/client.keys" in result.deleted:
            yield feature.clientKeysChanged()
        if REVOCATION_LIST in result.placed or REVOCATION_LIST in result.deleted:
            yield feature.revocationListChanged()

    def _sizeable(self, paths, expected, maxBytes):
        """
        C{paths} without the files the master announced larger than one
        round may bring (C{communication.max_zip_size}): they are not asked
        for, and said so (Wazuh's "File too large to be synced").
        """
        kept, tooLarge = [], []
        for path in paths:
            entry = expected.get(path)
            if entry is not None and entry[1] > maxBytes:
                tooLarge.append((path, entry[1]))
            else:
                kept.append(path)
        for path, size in tooLarge[:TOO_LARGE_NAMED]:
            self.syncLog.warn("File too large to be synced: {path} ({size} bytes, more than "
                              "communication.max_zip_size {limit}).", path=path, size=size,
                              limit=maxBytes)
        if len(tooLarge) > TOO_LARGE_NAMED:
            self.syncLog.warn("{count} more files too large to be synced.",
                              count=len(tooLarge) - TOO_LARGE_NAMED)
        return kept

    # -- receiving -----------------------------------------------------------------

    def _current(self, session):
        transfer = self.transfer
        if transfer is None or transfer.session != session or transfer.closed:
            raise SyncAborted("Error 3036 - No transfer in progress for this session")
        return transfer

    @FileData.responder
    def fileData(self, session, data, **more):
        transfer = self._current(session)
        pieces = [data] + [more.get(f"data{n}") for n in range(2, FILE_DATA_VALUES + 1)]
        d = self.feature.queue.run(integrity_round.feedAll, transfer.receiver,
                                   [p for p in pieces if p is not None])
        d.addCallbacks(lambda _: {}, self._stagingFailed, errbackArgs=(transfer,))
        return d

    def _stagingFailed(self, failure, transfer):
        error = SyncAborted(f"Error 3033 - Could not stage the files: {_reason(failure)}")
        if self.transfer is transfer:
            self._abortTransfer(error)
        raise error

    @TransferDone.responder
    def transferDone(self, session):
        transfer = self._current(session)
        transfer.closed = True
        queue = self.feature.queue
        d = queue.run(transfer.receiver.finish)
        d.addCallback(lambda _: queue.run(transfer.staged.apply, transfer.deletions))

        def applied(result):
            if self.transfer is transfer:
                self.transfer = None
            failed = dict(result.failed)
            failed.update(transfer.receiver.failed)
            result = result.withFailures(transfer.receiver.failed)
            if not transfer.done.called:
                transfer.done.callback(result)
            return {"created": len(result.created), "updated": len(result.updated),
                    "deleted": len(result.deleted), "failed": len(failed)}

        def failed(failure):
            error = SyncAborted(f"Error 3033 - Could not apply the files: {_reason(failure)}")
            if self.transfer is transfer:
                self._abortTransfer(error)
            raise error

        return d.addCallbacks(applied, failed)

    @TransferAborted.responder
    def transferAborted(self, session, reason):
        transfer = self.transfer
        if transfer is not None and transfer.session == session:
            self._abortTransfer(SyncAborted(f"The master aborted the transfer: {reason}"))
        return {}

    @IntegrityChanged.responder
    def integrityChanged(self, digest):
        snapshot = self.feature.snapshot
        if snapshot is None or snapshot.digest != digest:
            self.check()
        return {}

    def _abortTransfer(self, error):
        """
        Drop the transfer in progress: its staged files are removed in the
        queue (after any job of it still running), and the round fails.
        """
        transfer, self.transfer = self.transfer, None
        if transfer is None:
            return
        transfer.closed = True
        self.feature.queue.run(transfer.staged.abort).addErrback(lambda _: None)
        # Files may have been placed (the apply was under way): what this
        # worker holds is known again only after a scan.
        self.feature.forgetScan()
        if error is not None and not transfer.done.called:
            transfer.done.errback(error)


def _reason(failure):
    """
    Why C{failure} happened, in words (a L{ClusterError}'s own text, without
    a second C{Error <code> -} prefix).
    """
    if failure.check(ClusterError):
        return failure.value.message
    return failure.getErrorMessage()
