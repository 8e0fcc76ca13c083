"""
Tests for L{wazuhcluster.watcher}.

Most tests use real inotify with the real reactor: they wait (polling, a few
seconds at most) for the callback instead of assuming a delay.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.inotify import INotifyError
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel
from twisted.python.filepath import FilePath
from twisted.python.runtime import platform
from twisted.trial.unittest import SynchronousTestCase, TestCase

from wazuhcluster.clusteritems import FileItem, FileSet
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.watcher import REBUILD_DELAY, TreeWatcher

FILESET = FileSet(
    items=(
        FileItem("etc/", 0o640, ("client.keys",), False, False),
        FileItem("etc/shared/", 0o660, ("all",), True, True),
        FileItem("var/multigroups/", 0o660, ("merged.mg",), True, True),
    ),
    excluded_files=frozenset(),
    excluded_extensions=(),
)

WAIT = 5.0
QUIET = 0.3

NO_INOTIFY = None if platform.supportsINotify() else "inotify is not available here"


def sleep(seconds):
    return deferLater(reactor, seconds, lambda: None)


@inlineCallbacks
def waitFor(predicate, timeout=WAIT):
    """
    Poll C{predicate} on the real reactor until it is true or C{timeout}
    seconds passed.

    @return: a Deferred firing with the last value of C{predicate()}.
    """
    waited = 0.0
    while not predicate() and waited < timeout:
        yield sleep(0.01)
        waited += 0.01
    return predicate()


def write(path, data=b"x"):
    path.parent().makedirs(ignoreExistingDirectory=True)
    path.setContent(data)


class Recorder:
    """
    Count C{onChange} calls and collect log events.
    """

    def __init__(self):
        self.changes = 0
        self.events = []
        self.log = ClusterLogger(
            "Master", "Local integrity", observer=self.events.append
        )

    def onChange(self):
        self.changes += 1

    def warnings(self):
        return [e for e in self.events if e["log_level"] == LogLevel.warn]


class TreeWatcherTests(TestCase):
    """
    L{TreeWatcher} with real inotify.
    """

    skip = NO_INOTIFY

    def setUp(self):
        self.root = FilePath(self.mktemp())
        self.shared = self.root.preauthChild("etc/shared")
        self.shared.child("default").makedirs()
        self.recorder = Recorder()

    def startWatcher(self, fileset=FILESET):
        """
        A started watcher; the test's next C{yield} waits until it watches
        (see L{expectChange}).
        """
        watcher = TreeWatcher(
            self.root, fileset, self.recorder.onChange, reactor, self.recorder.log
        )
        self.watching = watcher.start()
        self.addCleanup(watcher.stop)
        return watcher

    @inlineCallbacks
    def expectChange(self, action, what):
        """
        Run C{action} and fail unless C{onChange} is called soon after.
        """
        yield self.watching
        self.recorder.changes = 0
        action()
        changed = yield waitFor(lambda: self.recorder.changes > 0)
        self.assertTrue(changed, f"no onChange after {what}")

    @inlineCallbacks
    def settle(self):
        """
        Wait until the events of earlier actions were delivered.
        """
        yield sleep(QUIET)
        self.recorder.changes = 0

    @inlineCallbacks
    def test_fileWrittenInItemDir(self):
        """
        Writing a file in a watched item directory calls C{onChange}.
        """
        self.startWatcher()
        yield self.expectChange(
            lambda: write(self.shared.descendant(["default", "agent.conf"])), "a write"
        )

    @inlineCallbacks
    def test_startDoesNotNotify(self):
        """
        Starting the watcher does not call C{onChange} by itself.
        """
        watcher = self.startWatcher()
        yield sleep(QUIET)
        self.assertTrue(watcher.active)
        self.assertEqual(self.recorder.changes, 0)

    @inlineCallbacks
    def test_newSubdirectoryWatched(self):
        """
        A subdirectory created in a recursive item after start is watched: a
        file written inside it later calls C{onChange}.
        """
        self.startWatcher()
        group = self.shared.child("newgroup")
        yield self.expectChange(group.makedirs, "a mkdir")
        yield self.settle()
        yield self.expectChange(
            lambda: write(group.child("agent.conf")), "a write in the new directory"
        )

    @inlineCallbacks
    def test_movedInDirectoryWatched(self):
        """
        A directory tree moved into a recursive item is watched, down to its
        subdirectories.
        """
        outside = FilePath(self.mktemp())
        outside.child("sub").makedirs()
        self.startWatcher()
        group = self.shared.child("moved")
        yield self.expectChange(lambda: outside.moveTo(group), "a move in")
        yield self.settle()
        yield self.expectChange(
            lambda: write(group.descendant(["sub", "x.conf"])),
            "a write in the moved-in tree",
        )

    @inlineCallbacks
    def test_deletedSubdirectoryRebuilds(self):
        """
        Deleting a watched subdirectory closes Twisted's notifier; the watcher
        builds a new one and calls C{onChange}, and later writes elsewhere are
        still reported.
        """
        watcher = self.startWatcher()
        doomed = self.shared.child("doomed")
        doomed.child("deeper").makedirs()
        yield self.settle()
        first = watcher._notifier
        yield self.expectChange(doomed.remove, "a deletion")
        rebuilt = yield waitFor(
            lambda: watcher._notifier is not None and watcher._notifier is not first
        )
        self.assertTrue(rebuilt, "the notifier was not re-created")
        self.assertFalse(first.connected)
        yield self.settle()
        yield self.expectChange(
            lambda: write(self.shared.descendant(["default", "merged.mg"])),
            "a write after the re-creation",
        )

    @inlineCallbacks
    def test_rebuildNotifies(self):
        """
        After re-creating its notifier the watcher calls C{onChange} once,
        since events may have been lost meanwhile.
        """
        watcher = self.startWatcher()
        self.shared.child("doomed").makedirs()
        yield self.settle()
        first = watcher._notifier
        first.loseConnection()
        self.assertEqual(self.recorder.changes, 0)
        yield sleep(REBUILD_DELAY + QUIET)
        self.assertIsNot(watcher._notifier, first)
        self.assertTrue(watcher.active)
        self.assertEqual(self.recorder.changes, 1)

    @inlineCallbacks
    def test_missingItemDirPickedUp(self):
        """
        An item directory that does not exist at start (nor its parent) is
        watched once it is created: its creation and later writes inside it
        call C{onChange}.
        """
        self.startWatcher()
        multigroups = self.root.preauthChild("var/multigroups")
        yield self.expectChange(multigroups.makedirs, "the creation of the item")
        yield self.settle()
        yield self.expectChange(
            lambda: write(multigroups.descendant(["ab12", "merged.mg"])),
            "a write in the new item",
        )

    @inlineCallbacks
    def test_unrelatedChangesInParentIgnored(self):
        """
        The watch on the parent of a missing item directory reports only the
        appearance of that directory, not other activity in the parent.
        """
        self.root.child("var").makedirs()
        self.startWatcher()
        yield self.settle()
        write(self.root.descendant(["var", "other", "file"]))
        yield sleep(QUIET)
        self.assertEqual(self.recorder.changes, 0)

    @inlineCallbacks
    def test_replacedItemDirRebuilds(self):
        """
        An item directory moved away and replaced by a new one is watched
        again: writes in the new directory call C{onChange}.
        """
        watcher = self.startWatcher()
        first = watcher._notifier
        self.shared.moveTo(self.root.preauthChild("etc/shared.old"))
        self.shared.makedirs()
        rebuilt = yield waitFor(
            lambda: watcher._notifier is not None and watcher._notifier is not first
        )
        self.assertTrue(rebuilt)
        yield self.settle()
        yield self.expectChange(
            lambda: write(self.shared.child("ar.conf")), "a write in the new item dir"
        )

    @inlineCallbacks
    def test_symlinkedDirectoryNotFollowed(self):
        """
        A symbolic link to a directory inside a recursive item is not
        followed: changes in its target are not reported.
        """
        outside = FilePath(self.mktemp())
        outside.makedirs()
        os.symlink(outside.path, self.shared.child("link").path)
        self.startWatcher()
        yield self.settle()
        write(outside.child("file"))
        yield sleep(QUIET)
        self.assertEqual(self.recorder.changes, 0)

    @inlineCallbacks
    def test_onChangeErrorLogged(self):
        """
        An exception raised by C{onChange} is logged and does not stop the
        watcher.
        """

        def broken():
            self.recorder.changes += 1
            raise RuntimeError("boom")

        self.recorder.onChange = broken
        watcher = self.startWatcher()
        yield self.expectChange(lambda: write(self.shared.child("a")), "a write")
        self.assertTrue(watcher._notifier.connected)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 0)
        errors = [e for e in self.recorder.events if e.get("log_failure")]
        self.assertTrue(errors)
        yield self.expectChange(lambda: write(self.shared.child("b")), "a second write")

    @inlineCallbacks
    def test_stopCloses(self):
        """
        C{stop} closes the notifier: later changes are not reported.
        """
        watcher = self.startWatcher()
        notifier = watcher._notifier
        watcher.stop()
        self.assertFalse(notifier.connected)
        self.assertFalse(watcher.active)
        write(self.shared.child("a"))
        yield sleep(QUIET)
        self.assertEqual(self.recorder.changes, 0)


class FailingNotifier:
    """
    A notifier factory the kernel always refuses.
    """

    def __init__(self, reactor=None):
        raise INotifyError("INotify initialization error.")


class UnavailableTests(SynchronousTestCase):
    """
    L{TreeWatcher} where inotify is missing or refused: a warning, then
    nothing (the periodic scan does the work).
    """

    def setUp(self):
        self.root = FilePath(self.mktemp())
        self.root.makedirs()
        self.clock = Clock()
        self.recorder = Recorder()

    def makeWatcher(self, **kwargs):
        return TreeWatcher(
            self.root, FILESET, self.recorder.onChange, self.clock, self.recorder.log,
            **kwargs,
        )

    def test_unsupportedPlatform(self):
        """
        Without inotify support, C{start} logs one warning and schedules
        nothing.
        """
        watcher = self.makeWatcher(supported=lambda: False)
        watcher.start()
        watcher.stop()
        watcher.start()
        self.assertEqual(len(self.recorder.warnings()), 1)
        self.assertIn("periodic scan", self.recorder.warnings()[0]["log_format"])
        self.assertFalse(watcher.active)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_creationRefused(self):
        """
        When the kernel refuses the notifier, the watcher warns once, retries
        now and then without warning again, and C{stop} cancels the retries.
        """
        watcher = self.makeWatcher(makeNotifier=FailingNotifier, supported=lambda: True)
        watcher.start()
        self.assertFalse(watcher.active)
        self.clock.advance(3600)
        self.assertEqual(len(self.recorder.warnings()), 1)
        self.assertEqual(self.recorder.changes, 0)
        watcher.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
