# -*- test-case-name: tests.test_integrity_sync -*-
"""
The master's side of integrity: its local integrity (the snapshot of its
synced files, kept fresh by a timer and inotify), the announcement of every
change to all workers at once, and the sessions through which a worker
fetches the master's manifest and the files it lacks.

The master serves only files of the snapshot the session was opened on, and
always wins: whatever the worker has, it ends up with the master's files.
"""

import uuid

from twisted.application.service import MultiService
from twisted.protocols import amp

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
from wazuhcluster.integrity import encodeManifest
from wazuhcluster.local_integrity import LocalIntegrity
from wazuhcluster.streams import STREAM_CHUNK, FileStreamSender, fileDataArguments

#: Bytes of file data in flight to one worker (4 commands of 4 values).
STREAM_WINDOW = 4 * STREAM_CHUNK


class Session:
    """
    One worker's sync against one snapshot of the master.
    """

    def __init__(self, snapshot, manifest):
        self.id = uuid.uuid4().hex
        self.snapshot = snapshot
        self.manifest = manifest
        self.requested = {}
        self.sender = None
        self.started = None


class IntegrityMaster(MultiService):
    """
    The master's integrity feature.

    @ivar local: the L{LocalIntegrity} of the master's files.
    """

    name = "integrity"

    def __init__(self, master):
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
            watch=master.watchFiles,
            reactor=master.reactor,
        )
        self.local.setServiceParent(self)
        self.local.subscribe(self._changed)
        self._manifests = {}

    def manifestFor(self, snapshot):
        """
        The manifest chunks of C{snapshot}, encoded once per snapshot.
        """
        chunks = self._manifests.get(snapshot.digest)
        if chunks is None:
            chunks = list(encodeManifest(snapshot)) or [b""]
            self._manifests = {snapshot.digest: chunks}
        return chunks

    def _changed(self, snapshot):
        """
        The master's files changed: tell every worker at once.
        """
        for connection in list(self.master.workers.values()):
            self._updateInSync(connection)
            d = connection.callRemote(IntegrityChanged, digest=snapshot.digest)
            d.addErrback(lambda failure, c=connection: c.log.debug(
                "Could not announce the new integrity digest: {error}",
                error=failure.getErrorMessage()))

    def _updateInSync(self, connection):
        snapshot = self.local.snapshot
        connection.status.integrity_in_sync = bool(
            snapshot is not None
            and getattr(connection, "integrityDigest", None) == snapshot.digest
        )

    def locatorFor(self, connection):
        connection.integrityDigest = None
        connection.integritySession = None
        return _MasterIntegrityLocator(self, connection)

    def workerDisconnected(self, connection):
        session = getattr(connection, "integritySession", None)
        if session is not None and session.sender is not None:
            session.sender.stop("cancelled: the worker disconnected")
        connection.integritySession = None


class _MasterIntegrityLocator(amp.CommandLocator):
    """
    The integrity responders of one worker connection.
    """

    def __init__(self, feature, connection):
        super().__init__()
        self.feature = feature
        self.connection = connection
        self.checkLog = connection.log.withSubtag("Integrity check")
        self.syncLog = connection.log.withSubtag("Integrity sync")

    @property
    def clock(self):
        return self.feature.master.clock

    def _session(self, sessionId):
        session = self.connection.integritySession
        if session is None or session.id != sessionId:
            raise SyncRefused("Error 3036 - Unknown or expired integrity session")
        return session

    @IntegrityCheck.responder
    def integrityCheck(self, digest):
        snapshot = self.feature.local.snapshot
        if snapshot is None:
            raise SyncRefused("Error 3034 - The master has not calculated its integrity yet")
        status = self.connection.status
        now = self.clock.seconds()
        status.integrity_check.begin(now)
        self.checkLog.info("Starting.")
        previous = self.connection.integritySession
        if previous is not None and previous.sender is not None:
            previous.sender.stop("replaced by a newer sync")
        self.connection.integritySession = None
        if digest == snapshot.digest:
            status.integrity_check.finish(self.clock.seconds())
            self.connection.integrityDigest = digest
            self.feature._updateInSync(self.connection)
            self.checkLog.info("Finished in {elapsed:.3f}s. Sync not required.",
                               elapsed=self.clock.seconds() - now)
            return {"in_sync": True, "master_digest": snapshot.digest, "session": "",
                    "manifest_chunks": 0, "files": len(snapshot.files)}
        session = Session(snapshot, self.feature.manifestFor(snapshot))
        session.checkStarted = now
        self.connection.integritySession = session
        return {"in_sync": False, "master_digest": snapshot.digest, "session": session.id,
                "manifest_chunks": len(session.manifest), "files": len(snapshot.files)}

    @ManifestChunk.responder
    def manifestChunk(self, session, index):
        current = self._session(session)
        if not 0 <= index < len(current.manifest):
            raise SyncRefused("Error 3036 - No such manifest chunk")
        return {"data": current.manifest[index]}

    @RequestFiles.responder
    def requestFiles(self, session, paths):
        current = self._session(session)
        if current.sender is not None:
            raise SyncRefused("Error 3036 - The transfer already started")
        try:
            names = paths.decode("utf-8").split("\n") if paths else []
        except UnicodeDecodeError:
            raise SyncRefused("Error 3036 - File names must be UTF-8")
        files = current.snapshot.files
        for relpath in names:
            meta = files.get(relpath)
            if meta is None:
                raise SyncRefused(
                    f"Error 3036 - {relpath!r} is not a synced file of the master")
            current.requested[relpath] = (meta.md5, meta.size)
        return {}

    @StartTransfer.responder
    def startTransfer(self, session, missing, shared, extra):
        current = self._session(session)
        if current.sender is not None:
            raise SyncRefused("Error 3036 - The transfer already started")
        status = self.connection.status
        now = self.clock.seconds()
        status.integrity_check.finish(now)
        self.checkLog.info("Finished in {elapsed:.3f}s. Sync required.",
                           elapsed=now - current.checkStarted)
        status.integrity_sync.begin(now)
        status.total_files = {"missing": missing, "shared": shared, "extra": extra}
        status.sync_integrity_free = False
        self.syncLog.info("Starting.")
        self.syncLog.info(
            "Files to create in worker: {missing} | Files to update in worker: {shared} | "
            "Files to delete in worker: {extra}", missing=missing, shared=shared, extra=extra)
        entries = [(path, md5, size) for path, (md5, size) in sorted(current.requested.items())]
        current.sender = FileStreamSender(
            self.feature.master.home.root, entries,
            lambda chunk: self.connection.callRemote(FileData, session=session,
                                                     **fileDataArguments(chunk)),
            window=STREAM_WINDOW, runInThread=self.feature.master.runInThread,
            chunkSize=STREAM_CHUNK)
        current.started = now
        self.clock.callLater(0, self._send, current)
        return {"files": len(entries), "bytes": sum(size for _, _, size in entries)}

    def _send(self, session):
        d = session.sender.start()
        d.addCallback(lambda _: self._finish(session))
        d.addErrback(self._failed, session)

    def _finish(self, session):
        timeout = max(self.feature.master.items.communication.timeout_receiving_file, 1)
        d = self.connection.callRemote(TransferDone, session=session.id)
        d.addTimeout(timeout, self.clock)
        d.addCallback(self._applied, session)
        return d

    def _applied(self, result, session):
        if self.connection.integritySession is session:
            self.connection.integritySession = None
        status = self.connection.status
        status.integrity_sync.finish(self.clock.seconds())
        status.sync_integrity_free = True
        self.connection.integrityDigest = session.snapshot.digest
        self.feature._updateInSync(self.connection)
        self.syncLog.info("Finished in {elapsed:.3f}s.",
                          elapsed=self.clock.seconds() - session.started)

    def _failed(self, failure, session):
        if self.connection.integritySession is session:
            self.connection.integritySession = None
        self.connection.status.sync_integrity_free = True
        self.syncLog.error("Error synchronizing integrity: {error}",
                           error=failure.getErrorMessage())
        if failure.check(SyncAborted):
            return
        # The master could not send: tell the worker so it drops what it
        # staged; a rescan picks up whatever changed meanwhile.
        self.feature.local.trigger()
        d = self.connection.callRemote(TransferAborted, session=session.id,
                                       reason=failure.getErrorMessage()[:1000])
        d.addErrback(lambda _: None)
