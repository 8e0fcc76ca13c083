# -*- test-case-name: tests.test_integrity_sync -*-
"""
The worker's side of integrity: the feature (L{WorkerIntegrity}), what this
worker knows of its files.

The feature keeps what this worker knows of its files: its snapshot, the
master's digest it last synced to (C{base}), and the files it knows differ
from that state (C{dirty}: what the master had there).  A round compares
digests (one round trip when in sync), receives the master's changes since
C{base} (or the whole manifest when the master does not know C{base}),
compares them with its own files (O(changes)), stages what it lacks and
places it (master always wins: extra files are deleted), then updates its
snapshot from what it placed, without rescanning.  One safety-net scan per
C{worker.sync_integrity} period finds local edits, which the next round
reverts.

The rounds of one connection to the master are
L{wazuhcluster.worker.integrity_session}.
"""

from twisted.application.service import Service
from zope.interface import implementer

from wazuhcluster.integrity import scanFiles
from wazuhcluster.local_integrity import ScanReporter
from wazuhcluster.session import IFeature, ThreadQueue
from wazuhcluster.worker.integrity_session import WorkerIntegritySession


@implementer(IFeature)
class WorkerIntegrity(Service):
    """
    The worker's integrity feature: what this worker knows of its files.

    @ivar snapshot: this worker's L{wazuhcluster.integrity.Snapshot}, or
        L{None} before the first scan.
    @ivar base: the master's digest this worker last synced to, or L{None}.
    @ivar dirty: path to what the master had there at C{base}, for the files
        this worker knows differ from it.
    @ivar rounds: rounds run (for tests).
    @ivar lastSynced: the master's digest after the last successful round.
    """

    name = "integrity"

    def __init__(self, worker, clientKeysChanged=None, durable=True,
                 revocationListChanged=None):
        """
        @param clientKeysChanged: called without arguments after a round
            changed C{etc/client.keys} (the agents feature reconciles its
            database); may return a Deferred.
        @param revocationListChanged: called the same way after a round
            changed C{etc/cluster.crl} (the node reloads it).
        """
        self.worker = worker
        self.queue = ThreadQueue(worker.runInThread)
        self.durable = durable
        self._clientKeysChanged = clientKeysChanged
        self._revocationListChanged = revocationListChanged
        self._reporter = ScanReporter(worker.log.withSubtag("Local integrity"))
        self.snapshot = None
        self.base = None
        self.dirty = {}
        self.rounds = 0
        self.lastSynced = None
        self.current = None
        self._lastScan = None

    def sessionFor(self, peer):
        return WorkerIntegritySession(self, peer)

    def check(self):
        """
        Run a round on the current connection now (or one more after the
        running one).
        """
        if self.current is not None:
            self.current.check()

    def stopService(self):
        super().stopService()
        return self.queue.idle()

    def needsScan(self):
        """
        Whether the safety-net scan is due (none yet, or the last one is one
        C{worker.sync_integrity} period old).
        """
        if self.snapshot is None or self._lastScan is None:
            return True
        period = self.worker.items.worker.sync_integrity
        return self.worker.clock.seconds() - self._lastScan >= period * 0.9

    def forgetScan(self):
        """
        What this worker holds is no longer known for sure: the next round
        scans first.
        """
        self._lastScan = None

    def scan(self):
        """
        Scan this worker's files (in the queue) and adopt the result; files
        that changed locally are remembered as differing from C{base}.

        @return: a Deferred of the snapshot.
        """
        d = self.queue.run(scanFiles, self.worker.home.root, self.worker.items.fileset,
                           self.snapshot)
        return d.addCallback(self._scanned)

    def _scanned(self, result):
        previous = self.snapshot
        self._reporter.report(result)
        self._lastScan = self.worker.clock.seconds()
        if previous is not None:
            for path in result.changes:
                if path not in self.dirty:
                    old = previous.files.get(path)
                    self.dirty[path] = None if old is None else (old.md5, old.size)
        self.snapshot = result.snapshot
        return self.snapshot

    def synced(self, masterDigest, dirty, snapshot=None):
        """
        A round ended: this worker is at C{masterDigest} but for C{dirty}.
        """
        if snapshot is not None:
            self.snapshot = snapshot
        self.base = masterDigest
        self.dirty = dirty
        if not dirty:
            self.lastSynced = masterDigest

    def clientKeysChanged(self):
        if self._clientKeysChanged is None:
            return None
        return self._clientKeysChanged()

    def revocationListChanged(self):
        if self._revocationListChanged is None:
            return None
        return self._revocationListChanged()
