"""
Tests for L{wazuhcluster.local_integrity}.

Deterministic: a L{Clock} drives the timer and the trigger delay, and the
scans run synchronously (or wait for a Deferred the test fires by hand).
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, formatEvent
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.test_watcher import FILESET, NO_INOTIFY, waitFor, write
from wazuhcluster.integrity import ScanResult, Snapshot, scanFiles
from wazuhcluster.local_integrity import (
    MAX_TRIGGER_DELAY,
    TRIGGER_DELAY,
    LocalIntegrity,
)
from wazuhcluster.logs import ClusterLogger

INTERVAL = 8.0


class Scans:
    """
    A C{runInThread} that records the calls and runs them synchronously, or,
    when C{hold} is set, runs them at once but delivers the result only on
    L{release} (a scan that read the disk and is still busy).

    @ivar calls: the C{(f, args)} of every call.
    @ivar held: C{(Deferred, result)} of the held calls.
    @ivar failNext: an exception the next call fails with.
    """

    def __init__(self):
        self.calls = []
        self.held = []
        self.hold = False
        self.failNext = None

    def __call__(self, f, *args):
        self.calls.append((f, args))
        if self.failNext is not None:
            error, self.failNext = self.failNext, None
            return maybeDeferred(self._raise, error)
        if self.hold:
            d = Deferred()
            self.held.append((d, f(*args)))
            return d
        return maybeDeferred(f, *args)

    @staticmethod
    def _raise(error):
        raise error

    def release(self):
        """
        Fire the Deferred of the oldest held call.
        """
        d, result = self.held.pop(0)
        d.callback(result)


class LocalIntegrityTests(SynchronousTestCase):
    """
    L{LocalIntegrity} with a fake clock and synchronous scans.
    """

    def setUp(self):
        self.root = FilePath(self.mktemp())
        self.agentConf = self.root.preauthChild("etc/shared/default/agent.conf")
        write(self.agentConf, b"<agent_config/>\n")
        write(self.root.preauthChild("etc/client.keys"), b"001 a any k\n")
        self.clock = Clock()
        self.scans = Scans()
        self.events = []
        self.published = []
        self.service = LocalIntegrity(
            self.root,
            FILESET,
            INTERVAL,
            ClusterLogger("Master", "Main", observer=self.events.append),
            clock=self.clock,
            runInThread=self.scans,
            watch=False,
            reactor=self.clock,
        )
        self.service.subscribe(lambda snapshot, changes: self.published.append(snapshot))

    def start(self):
        self.service.startService()
        self.addCleanup(self.stop)

    def stop(self):
        if self.service.running:
            self.successResultOf(self.service.stopService())

    def lines(self, level=None):
        """
        The formatted log messages (at C{level} only, if given).
        """
        return [
            formatEvent(e)
            for e in self.events
            if level is None or e["log_level"] == level
        ]

    def test_firstScan(self):
        """
        Starting the service scans at once: the snapshot is set, C{whenReady}
        fires with it, subscribers are called with it, and both log lines are
        at info level with the C{Local integrity} sub-tag.
        """
        ready = self.service.whenReady()
        self.assertIsNone(self.service.snapshot)
        self.start()
        snapshot = self.service.snapshot
        self.assertEqual(
            sorted(snapshot.files),
            ["etc/client.keys", "etc/shared/default/agent.conf"],
        )
        self.assertIs(self.successResultOf(ready), snapshot)
        self.assertIs(self.successResultOf(self.service.whenReady()), snapshot)
        self.assertEqual(self.published, [snapshot])
        self.assertEqual(
            self.lines(LogLevel.info),
            ["Starting.", "Finished in 0.000s. Calculated metadata of 2 files."],
        )
        self.assertEqual(
            {e["cluster_subtag"] for e in self.events}, {"Local integrity"}
        )
        self.assertEqual({e["cluster_tag"] for e in self.events}, {"Master"})

    def test_elapsedTime(self):
        """
        The finished line reports the time the scan took, by the clock.
        """
        self.scans.hold = True
        self.start()
        self.clock.advance(1.2345)
        self.scans.release()
        self.assertIn(
            "Finished in 1.234s. Calculated metadata of 2 files.", self.lines()
        )

    def test_periodicRescan(self):
        """
        The service rescans every interval, passing the previous snapshot so
        that the scan is incremental, and picks up changes.
        """
        self.start()
        first = self.service.snapshot
        self.agentConf.setContent(b"<agent_config>changed</agent_config>\n")
        self.clock.advance(INTERVAL - 0.001)
        self.assertEqual(len(self.scans.calls), 1)
        self.clock.advance(0.001)
        self.assertEqual(len(self.scans.calls), 2)
        f, args = self.scans.calls[1]
        self.assertIs(f, scanFiles)
        self.assertEqual(args, (self.root, FILESET, first))
        self.assertNotEqual(self.service.snapshot.digest, first.digest)
        self.clock.advance(INTERVAL)
        self.assertEqual(len(self.scans.calls), 3)

    def test_subscribersOnlyOnDigestChange(self):
        """
        Subscribers are called only when the digest changes; a periodic run
        that found nothing new logs at debug level only.
        """
        self.start()
        del self.events[:]
        self.clock.advance(INTERVAL)
        self.assertEqual(len(self.scans.calls), 2)
        self.assertEqual(len(self.published), 1)
        self.assertEqual(self.lines(LogLevel.info), [])
        self.assertEqual(
            self.lines(LogLevel.debug),
            ["Starting.", "Finished in 0.000s. Calculated metadata of 2 files."],
        )
        self.agentConf.setContent(b"changed")
        self.clock.advance(INTERVAL)
        self.assertEqual(len(self.published), 2)
        self.assertIs(self.published[-1], self.service.snapshot)
        self.assertEqual(
            self.lines(LogLevel.info),
            ["Finished in 0.000s. Calculated metadata of 2 files."],
        )

    def test_unsubscribe(self):
        """
        The callable returned by C{subscribe} stops the notifications.
        """
        more = []
        unsubscribe = self.service.subscribe(lambda snapshot, changes: more.append(snapshot))
        self.start()
        unsubscribe()
        self.agentConf.setContent(b"changed")
        self.clock.advance(INTERVAL)
        self.assertEqual(len(more), 1)
        self.assertEqual(len(self.published), 2)

    def test_subscriberErrorLogged(self):
        """
        A subscriber that raises is logged; the others are still called.
        """

        def broken(snapshot, changes):
            raise RuntimeError("boom")

        self.service._subscribers.insert(0, broken)
        self.start()
        self.assertEqual(len(self.published), 1)
        failures = [e for e in self.events if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertIsInstance(failures[0]["log_failure"].value, RuntimeError)

    def test_triggerDebounced(self):
        """
        Many triggers close together cause a single scan,
        L{TRIGGER_DELAY} seconds after the last one.
        """
        self.start()
        for _ in range(10):
            self.service.trigger()
            self.clock.advance(TRIGGER_DELAY / 2)
        self.assertEqual(len(self.scans.calls), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.clock.advance(TRIGGER_DELAY / 2)
        self.assertEqual(len(self.scans.calls), 2)
        self.clock.advance(TRIGGER_DELAY * 10)
        self.assertEqual(len(self.scans.calls), 2)

    def test_triggerBurstBounded(self):
        """
        Triggers that never stop still cause a scan
        L{MAX_TRIGGER_DELAY} seconds after the first of them.
        """
        self.start()
        step = TRIGGER_DELAY / 5
        for _ in range(int(MAX_TRIGGER_DELAY / step) - 1):
            self.service.trigger()
            self.clock.advance(step)
        self.assertEqual(len(self.scans.calls), 1)
        self.service.trigger()
        self.clock.advance(step)
        self.assertEqual(len(self.scans.calls), 2)

    def test_triggerPicksUpChange(self):
        """
        A triggered scan sees the change and notifies subscribers without
        waiting for the timer.
        """
        self.start()
        self.agentConf.setContent(b"changed")
        self.service.trigger()
        self.clock.advance(TRIGGER_DELAY)
        self.assertEqual(len(self.published), 2)

    def test_triggerDuringScan(self):
        """
        Triggers made while a scan runs cause exactly one more scan, started
        when the running one finishes; scans never overlap.
        """
        self.scans.hold = True
        self.start()
        for _ in range(3):
            self.service.trigger()
            self.clock.advance(TRIGGER_DELAY)
        self.assertEqual(len(self.scans.calls), 1)
        self.scans.release()
        self.assertEqual(len(self.scans.calls), 2)
        self.assertEqual(len(self.scans.held), 1)
        self.scans.release()
        self.clock.advance(TRIGGER_DELAY)
        self.assertEqual(len(self.scans.calls), 2)

    def test_timerDuringScanWaits(self):
        """
        A timer tick while a triggered scan runs does not start a second scan
        in parallel.
        """
        self.start()
        self.scans.hold = True
        self.service.trigger()
        self.clock.advance(TRIGGER_DELAY)
        self.assertEqual(len(self.scans.held), 1)
        self.clock.advance(INTERVAL)
        self.assertEqual(len(self.scans.held), 1)
        self.scans.release()
        self.assertEqual(len(self.scans.held), 1)
        self.scans.release()
        self.assertEqual(self.scans.held, [])

    def test_rescanNow(self):
        """
        C{rescanNow} scans at once and fires with the new snapshot.
        """
        self.start()
        self.agentConf.setContent(b"changed")
        snapshot = self.successResultOf(self.service.rescanNow())
        self.assertIs(snapshot, self.service.snapshot)
        self.assertEqual(len(self.scans.calls), 2)
        self.assertEqual(len(self.published), 2)

    def test_rescanNowDuringScan(self):
        """
        C{rescanNow} during a scan waits for a scan started after the call,
        which sees changes made before it.
        """
        self.scans.hold = True
        self.start()
        self.agentConf.setContent(b"changed")
        d = self.service.rescanNow()
        self.scans.release()
        self.assertNoResult(d)
        first = self.service.snapshot
        self.scans.release()
        snapshot = self.successResultOf(d)
        self.assertNotEqual(snapshot.digest, first.digest)
        self.assertEqual(
            snapshot.files["etc/shared/default/agent.conf"].size, len(b"changed")
        )

    def test_rescanNowNotRunning(self):
        """
        C{rescanNow} on a stopped service fails with L{CancelledError}.
        """
        self.failureResultOf(self.service.rescanNow(), CancelledError)

    def test_scanErrorLoggedLoopContinues(self):
        """
        A scan that fails is logged at error level, fails the C{rescanNow}
        that waited for it, and the periodic scans go on.
        """
        self.start()
        self.scans.failNext = OSError("disk on fire")
        self.failureResultOf(self.service.rescanNow(), OSError)
        failures = [e for e in self.events if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["log_level"], LogLevel.error)
        self.scans.failNext = OSError("still on fire")
        self.clock.advance(INTERVAL)
        self.agentConf.setContent(b"changed")
        self.clock.advance(INTERVAL)
        self.assertEqual(len(self.scans.calls), 4)
        self.assertEqual(len(self.published), 2)
        self.assertTrue(self.service._loop.running)

    def test_firstScanFailsThenRecovers(self):
        """
        If the first scan fails, C{whenReady} waits for the first one that
        succeeds.
        """
        self.scans.failNext = OSError("not yet")
        ready = self.service.whenReady()
        self.start()
        self.assertNoResult(ready)
        self.assertIsNone(self.service.snapshot)
        self.clock.advance(INTERVAL)
        self.assertIs(self.successResultOf(ready), self.service.snapshot)

    def test_symlinksWarnedOnce(self):
        """
        A skipped symbolic link is warned about once, not on every scan.
        """
        os.symlink("/etc", self.root.preauthChild("etc/shared/link").path)
        self.start()
        self.clock.advance(INTERVAL)
        self.clock.advance(INTERVAL)
        warnings = self.lines(LogLevel.warn)
        self.assertEqual(
            warnings, ["Symlinks are never synced: etc/shared/link skipped"]
        )

    def test_scanErrorsLoggedOnce(self):
        """
        A file that cannot be read is logged at error level when it first
        fails, at debug level while it keeps failing, and again at error
        level if it fails again after recovering.
        """
        results = iter([("etc/x: Permission denied",)] * 2 + [()] + [
            ("etc/x: Permission denied",)
        ])

        def fakeScan(f, root, fileset, previous):
            return maybeDeferred(ScanResult, Snapshot.empty(), 0, (), next(results))

        self.service._runInThread = fakeScan
        self.start()
        for _ in range(3):
            self.clock.advance(INTERVAL)
        message = "Can't read metadata from file etc/x: Permission denied"
        self.assertEqual(self.lines(LogLevel.error), [message, message])
        self.assertEqual(self.lines(LogLevel.debug).count(message), 1)

    def test_stopServiceWaitsForRunningScan(self):
        """
        C{stopService} returns a Deferred that fires only when the running
        scan finished; no further scan starts, and requests that had not
        started fail with L{CancelledError}.
        """
        self.scans.hold = True
        self.start()
        self.service.trigger()
        self.clock.advance(TRIGGER_DELAY)
        pending = self.service.rescanNow()
        stopped = self.service.stopService()
        self.assertNoResult(stopped)
        self.failureResultOf(pending, CancelledError)
        self.scans.release()
        self.successResultOf(stopped)
        self.assertEqual(len(self.scans.calls), 1)
        self.assertIsNotNone(self.service.snapshot)

    def test_noDelayedCallsAfterStop(self):
        """
        After C{stopService} nothing is left scheduled: no timer, no pending
        trigger.
        """
        self.start()
        self.service.trigger()
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.successResultOf(self.service.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.service.trigger()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class WatchedLocalIntegrityTests(TestCase):
    """
    L{LocalIntegrity} with real inotify, threads and reactor.
    """

    skip = NO_INOTIFY

    def test_changeSeenWithoutTimer(self):
        """
        With C{watch=True}, a file written on disk reaches the subscribers
        long before the periodic scan.
        """
        root = FilePath(self.mktemp())
        write(root.preauthChild("etc/shared/default/agent.conf"), b"a")
        published = []
        service = LocalIntegrity(
            root,
            FILESET,
            3600,
            ClusterLogger("Master", "Main", observer=lambda e: None),
            runInThread=deferToThread,
            watch=True,
            reactor=reactor,
        )
        service.subscribe(lambda snapshot, changes: published.append(snapshot))
        service.startService()
        self.addCleanup(service.stopService)

        d = service.whenReady()

        def ready(snapshot):
            write(root.preauthChild("etc/shared/default/new.conf"), b"b")
            return waitFor(lambda: len(published) == 2)

        def check(seen):
            self.assertTrue(seen, "the change was not picked up")
            self.assertIn("etc/shared/default/new.conf", published[-1].files)

        return d.addCallback(ready).addCallback(check)

    def test_fileChangeRescansItsDirectory(self):
        """
        A file written in a watched directory is picked up by a rescan of
        that directory alone (not of the whole tree), which gives the
        snapshot a full scan gives; a new directory with files is seen too.
        """
        root = FilePath(self.mktemp())
        for group in range(5):
            write(root.preauthChild(f"etc/shared/g{group}/agent.conf"), b"a")
        calls = []

        def runInThread(f, *args):
            calls.append(f.__name__)
            return deferToThread(f, *args)

        published = []
        service = LocalIntegrity(
            root, FILESET, 3600, ClusterLogger("Master", "Main", observer=lambda e: None),
            runInThread=runInThread, watch=True, reactor=reactor)
        service.subscribe(lambda snapshot, changes: published.append((snapshot, changes)))
        service.startService()
        self.addCleanup(service.stopService)

        @inlineCallbacks
        def run():
            yield service.whenReady()
            del calls[:]
            write(root.preauthChild("etc/shared/g3/agent.conf"), b"changed")
            self.assertTrue((yield waitFor(lambda: len(published) == 2)))
            snapshot, changes = published[-1]
            self.assertEqual(list(changes), ["etc/shared/g3/agent.conf"])
            self.assertIn("rescanParts", calls)
            self.assertNotIn("scanFiles", calls)
            full = yield deferToThread(scanFiles, root, FILESET)
            self.assertEqual(snapshot.digest, full.snapshot.digest)
            write(root.preauthChild("etc/shared/g9/sub/new.conf"), b"new")
            self.assertTrue((yield waitFor(
                lambda: "etc/shared/g9/sub/new.conf" in published[-1][0].files)))
            full = yield deferToThread(scanFiles, root, FILESET)
            self.assertEqual(service.snapshot.digest, full.snapshot.digest)

        return run()

