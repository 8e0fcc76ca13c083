# -*- test-case-name: tests.test_local_integrity -*-
"""
The local integrity task: the node's own snapshot of its synced files, kept
fresh.

L{LocalIntegrity} rescans the synced files every interval
(C{master.recalculate_integrity} on the master), incrementally and in a
thread, and sooner when L{wazuhcluster.watcher.TreeWatcher} reports a change.
Subscribers hear about every new digest. Scans never overlap: a request made
while one runs is served by exactly one more scan after it.

Logging follows the original (WAZUH.md section 4.3)::

    INFO: [Master] [Local integrity] Starting.
    INFO: [Master] [Local integrity] Finished in 0.012s. Calculated metadata
          of 12 files.    (one line)

but, to keep cluster.log readable, only the first scan logs both lines at
info. Later scans log "Starting." at debug (whether anything changed is known
only at the end), and "Finished..." at info when the digest changed, at debug
otherwise: an unchanged periodic run is silent at the default level.
"""

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from wazuhcluster.integrity import scanFiles
from wazuhcluster.integrity_parts import rescanParts
from wazuhcluster.watcher import TreeWatcher

SUBTAG = "Local integrity"

TRIGGER_DELAY = 0.05
"""
Seconds of quiet after the last L{LocalIntegrity.trigger} before scanning.
"""

MAX_TRIGGER_DELAY = 1.0
"""
Seconds after the first of a burst of triggers by which the scan starts
however long the burst goes on (a file being written keeps triggering).
"""


def _ignore(failure):
    """
    Swallow a scan failure that was already logged, or a cancellation.
    """
    return None


class LocalIntegrity(Service):
    """
    Keep the snapshot of this node's synced files up to date.

    @ivar snapshot: the last L{wazuhcluster.integrity.Snapshot}, or L{None}
        until the first scan finished.
    @ivar root: the node home scanned.
    @ivar fileset: the synced L{wazuhcluster.clusteritems.FileSet}.
    @ivar interval: seconds between two periodic scans.
    @ivar log: the logger, with the C{Local integrity} sub-tag.
    """

    name = "local-integrity"

    def __init__(
        self,
        root,
        fileset,
        interval,
        log,
        clock=None,
        runInThread=deferToThread,
        watch=True,
        reactor=None,
    ):
        """
        @param root: the node home.
        @type root: L{twisted.python.filepath.FilePath}
        @param fileset: the synced file set.
        @type fileset: L{wazuhcluster.clusteritems.FileSet}
        @param interval: seconds between two periodic scans.
        @param log: a L{wazuhcluster.logs.ClusterLogger}; its sub-tag is
            replaced by C{Local integrity}.
        @param clock: the L{IReactorTime} for the periodic scans and the
            trigger delay (the reactor by default).
        @param runInThread: C{deferToThread}-like: C{runInThread(f, *args)}
            returns a Deferred firing with C{f(*args)}.
        @param watch: whether to use inotify (L{TreeWatcher}) as a hint.
        @param reactor: the reactor (the global one by default).
        """
        if reactor is None:
            from twisted.internet import reactor
        self.root = root
        self.fileset = fileset
        self.interval = interval
        self.log = log.withSubtag(SUBTAG)
        self.snapshot = None
        self._clock = reactor if clock is None else clock
        self._runInThread = runInThread
        self._watcher = None
        if watch:
            self._watcher = TreeWatcher(root, fileset, self.trigger, reactor, self.log,
                                        clock=self._clock, runInThread=runInThread,
                                        onPathChange=self.trigger)
        self._subscribers = []
        self._readyWaiters = []
        self._scanWaiters = []
        self._idleWaiters = []
        self._scanning = False
        self._triggerCall = None
        self._triggerDeadline = None
        self._parts = set()
        self._fullWanted = False
        self._loop = None
        self._reporter = ScanReporter(self.log)

    # -- public API ---------------------------------------------------------

    def whenReady(self):
        """
        @return: a Deferred firing with the first snapshot (at once if there
            is one already; a scan that fails does not fire it, the next
            successful one does).
        """
        if self.snapshot is not None:
            return succeed(self.snapshot)
        d = Deferred()
        self._readyWaiters.append(d)
        return d

    def subscribe(self, callback):
        """
        Call C{callback(snapshot, changes)} on every new digest, the first
        scan's included (not at once with the current snapshot: see
        L{whenReady}); C{changes} maps each path that changed to its new
        L{wazuhcluster.integrity.FileMeta}, or L{None} when it is gone.
        Errors it raises are logged and ignored.

        @return: a callable without arguments that unsubscribes.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def trigger(self, part=None):
        """
        Ask for a scan soon: after L{TRIGGER_DELAY} seconds without another
        trigger (at most L{MAX_TRIGGER_DELAY} after the first one). If a scan
        is running then, exactly one more runs after it.

        @param part: what changed, C{(reldir, deep)}
            (L{wazuhcluster.integrity_parts}): when every trigger of the
            scan named one, only those parts are rescanned; without it,
            everything.
        """
        if not self.running:
            return
        if part is None:
            self._fullWanted = True
        else:
            self._parts.add(part)
        now = self._clock.seconds()
        if self._triggerCall is None:
            self._triggerDeadline = now + MAX_TRIGGER_DELAY
            self._triggerCall = self._clock.callLater(TRIGGER_DELAY, self._triggered)
        else:
            delay = min(TRIGGER_DELAY, self._triggerDeadline - now)
            self._triggerCall.reset(max(delay, 0))

    def rescanNow(self):
        """
        Scan without waiting for the timer (after the running scan, if any).

        @return: a Deferred firing with the snapshot of a scan that started
            after this call; it fails with the scan's error, or with
            L{CancelledError} if the service stops (or is not running) first.
        """
        self._fullWanted = True
        return self._request()

    # -- service ------------------------------------------------------------

    def startService(self):
        super().startService()
        if self._watcher is None:
            self._startLoop()
            return
        # The first scan starts once the directories are watched: a change
        # made after it is always seen.
        self._watcher.start().addCallback(lambda _: self.running and self._startLoop())

    def _startLoop(self):
        self._loop = LoopingCall(self._periodic)
        self._loop.clock = self._clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: self.log.failure(
                "The local integrity loop stopped", f, level=LogLevel.error
            )
        )

    def stopService(self):
        """
        Stop the timer, the pending trigger and the watcher; requests not
        started yet fail with L{CancelledError}.

        @return: a Deferred firing once the running scan (if any) finished.
        """
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._triggerCall is not None:
            self._triggerCall.cancel()
            self._triggerCall = None
        if self._watcher is not None:
            self._watcher.stop()
        waiters, self._scanWaiters = self._scanWaiters, []
        for d in waiters:
            d.errback(CancelledError("local integrity stopped"))
        if not self._scanning:
            return succeed(None)
        d = Deferred()
        self._idleWaiters.append(d)
        return d

    # -- scanning -----------------------------------------------------------

    def _periodic(self):
        self._fullWanted = True
        return self._request().addErrback(_ignore)

    def _triggered(self):
        self._triggerCall = None
        self._request().addErrback(_ignore)

    def _request(self):
        """
        @return: a Deferred for the snapshot of a scan starting after now.
        """
        if not self.running:
            return fail(CancelledError("local integrity is not running"))
        d = Deferred()
        self._scanWaiters.append(d)
        if not self._scanning:
            self._startScan()
        return d

    def _startScan(self):
        """
        Run one scan in a thread for every request made so far.
        """
        waiters, self._scanWaiters = self._scanWaiters, []
        self._scanning = True
        first = self.snapshot is None
        started = self._clock.seconds()
        if first:
            self.log.info("Starting.")
        else:
            self.log.debug("Starting.")
        parts, self._parts = self._parts, set()
        partial = not (first or self._fullWanted)
        if not partial:
            self._fullWanted = False
            d = maybeDeferred(
                self._runInThread, scanFiles, self.root, self.fileset, self.snapshot
            )
        else:
            d = maybeDeferred(self._runInThread, rescanParts, self.root, self.fileset,
                              self.snapshot, parts)
        d.addCallback(self._scanned, started, first, partial)
        d.addErrback(self._failed)
        d.addBoth(self._finished, waiters)

    def _scanned(self, result, started, first, partial=False):
        """
        Adopt a scan's result (of some parts only when C{partial}), log it,
        tell the subscribers if it changed.

        @return: the new snapshot.
        """
        changed = first or result.snapshot.digest != self.snapshot.digest
        self.snapshot = result.snapshot
        elapsed = self._clock.seconds() - started
        self.log.emit(
            LogLevel.info if changed else LogLevel.debug,
            "Finished in {elapsed:.3f}s. Calculated metadata of {count} files.",
            elapsed=elapsed,
            count=len(result.snapshot.files),
            rehashed=result.rehashed,
        )
        self._reporter.report(result, partial)
        if first:
            self._fireReady()
        if changed:
            self._notify(result.snapshot, result.changes)
        return result.snapshot

    def _failed(self, failure):
        self.log.failure(
            "Error calculating local file integrity", failure, level=LogLevel.error
        )
        return failure

    def _finished(self, result, waiters):
        """
        Answer the requests this scan served, then run the next scan if more
        requests came meanwhile, or wake L{stopService}.
        """
        self._scanning = False
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
        if self._scanWaiters and self.running:
            self._startScan()
        elif not self._scanning:
            idle, self._idleWaiters = self._idleWaiters, []
            for d in idle:
                d.callback(None)
        return None

    def _fireReady(self):
        waiters, self._readyWaiters = self._readyWaiters, []
        for d in waiters:
            d.callback(self.snapshot)

    def _notify(self, snapshot, changes):
        for callback in list(self._subscribers):
            try:
                callback(snapshot, changes)
            except Exception:
                self.log.failure(
                    "Error in a local integrity subscriber", level=LogLevel.error
                )


class ScanReporter:
    """
    Tells the log what a scan skipped: each symbolic link and each file name
    that cannot be synced once (again if it comes back after disappearing),
    each unreadable file at error level when it first fails and at debug
    level while it keeps failing.
    """

    def __init__(self, log):
        self.log = log
        self._symlinks = frozenset()
        self._names = frozenset()
        self._errors = frozenset()

    def report(self, result, partial=False):
        """
        Log what L{wazuhcluster.integrity.ScanResult} C{result} skipped.

        @param partial: the result is of a few directories
            (L{wazuhcluster.integrity_parts}): what it did not see is not
            forgotten.
        """
        self._symlinks = self._reportSymlinks(result.skippedSymlinks, partial)
        self._names = self._reportNames(result.skippedNames, partial)
        self._errors = self._reportErrors(result.errors, partial)

    def _reportSymlinks(self, symlinks, partial):
        """
        Warn once about each symbolic link (again if it comes back after
        disappearing).
        """
        current = frozenset(symlinks)
        for path in sorted(current - self._symlinks):
            self.log.warn("Symlinks are never synced: {path} skipped", path=path)
        return self._symlinks | current if partial else current

    def _reportNames(self, names, partial):
        """
        Warn once about each file whose name cannot be synced (not UTF-8, or
        holding control characters).
        """
        current = frozenset(names)
        for name in sorted(current - self._names):
            self.log.warn("File names must be UTF-8 without control characters: {path} "
                          "skipped", path=name)
        return self._names | current if partial else current

    def _reportErrors(self, errors, partial):
        """
        Log each unreadable file or directory at error level when it first
        fails, at debug level while it keeps failing.
        """
        current = frozenset(errors)
        for error in errors:
            level = LogLevel.debug if error in self._errors else LogLevel.error
            self.log.emit(level, "Can't read metadata from file {error}", error=error)
        return self._errors | current if partial else current
