# -*- test-case-name: tests.test_watcher -*-
"""
inotify watches on the synced directories: a hint that pulls the next local
integrity scan forward.

L{TreeWatcher} watches the directory of every synced item (the whole tree of
a recursive item, only the directory itself otherwise) and calls C{onChange()}
on any change. It never says I{what} changed: the scan finds out, and the
periodic scan stays authoritative, because inotify can lose events (a queue
overflow is invisible through L{twisted.internet.inotify}, STYLE.md section 7).

Twisted's notifier closes itself as soon as any watched directory is deleted;
L{TreeWatcher} notices, builds a new one and calls C{onChange()} since events
may have been missed meanwhile. Item directories that do not exist yet are
found later through a watch on their nearest existing parent (and a periodic
check). Without inotify (not Linux, or the kernel refuses: too many watches or
instances) it logs one warning and leaves the work to the timer.
"""

import os

from twisted.internet import inotify
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel
from twisted.python.runtime import platform

CHANGE_MASK = (
    inotify.IN_CREATE
    | inotify.IN_MODIFY
    | inotify.IN_DELETE
    | inotify.IN_MOVED_FROM
    | inotify.IN_MOVED_TO
    | inotify.IN_ATTRIB
    | inotify.IN_CLOSE_WRITE
    | inotify.IN_DELETE_SELF
    | inotify.IN_MOVE_SELF
)
"""
The events that mean "the synced files may have changed".
"""

ITEM_MASK = CHANGE_MASK | inotify.IN_ONLYDIR
"""
The mask of the watches on item directories and their subdirectories.
"""

PARENT_MASK = inotify.IN_CREATE | inotify.IN_MOVED_TO | inotify.IN_ONLYDIR
"""
The mask of a watch on the nearest existing parent of a missing item
directory: only entries appearing matter.
"""

REBUILD_DELAY = 0.1
"""
Seconds between the loss of the notifier and its re-creation (a removal of a
whole tree closes it again and again; this batches them a little).
"""

RETRY_DELAY = 300.0
"""
Seconds between attempts to create the notifier after the kernel refused.
"""

CHECK_INTERVAL = 10.0
"""
Seconds between two backstop checks for missing item directories and a lost
notifier.
"""


class _Notifier(inotify.INotify):
    """
    An L{inotify.INotify} that reports when it closes.

    @ivar onLost: called with this notifier when its file descriptor closes,
        whoever closed it (Twisted closes it when a watched directory is
        deleted).
    """

    onLost = None

    def connectionLost(self, reason):
        super().connectionLost(reason)
        onLost, self.onLost = self.onLost, None
        if onLost is not None:
            onLost(self)


class TreeWatcher:
    """
    Call C{onChange()} when anything may have changed under the synced item
    directories of C{root}.

    New subdirectories of recursive items are watched as they appear (this
    class adds them itself, as trees, instead of Twisted's C{autoAdd}: that
    way directories moved into an item are watched too, and symbolic links are
    never followed). A watched directory that is moved or deleted makes the
    watcher rebuild its notifier.

    Watches are added on the reactor thread, listing directories only
    (C{os.scandir}, no per-file C{stat}).
    """

    def __init__(
        self,
        root,
        fileset,
        onChange,
        reactor,
        log,
        makeNotifier=_Notifier,
        supported=platform.supportsINotify,
        checkInterval=CHECK_INTERVAL,
    ):
        """
        @param root: the node home.
        @type root: L{twisted.python.filepath.FilePath}
        @param fileset: the synced file set.
        @type fileset: L{wazuhcluster.clusteritems.FileSet}
        @param onChange: called without arguments on every hint of a change.
        @param reactor: the reactor (reading file descriptors, C{callLater}).
        @param log: a L{wazuhcluster.logs.ClusterLogger}.
        @param makeNotifier: called with C{reactor=} to make a notifier.
        @param supported: called without arguments: whether this platform
            has inotify.
        @param checkInterval: seconds between two backstop checks.
        """
        self._root = root
        self._fileset = fileset
        self._onChange = onChange
        self._reactor = reactor
        self._log = log
        self._makeNotifier = makeNotifier
        self._supported = supported
        self._checkInterval = checkInterval
        self._notifier = None
        self._missing = ()
        self._rebuildCall = None
        self._loop = None
        self._running = False
        self._warned = False

    @property
    def active(self):
        """
        Whether a notifier is currently watching.
        """
        return self._notifier is not None

    def start(self):
        """
        Start watching (without calling C{onChange}).
        """
        if self._running:
            return
        if not self._supported():
            self._warnUnavailable("not supported on this platform")
            return
        self._running = True
        self._build(notify=False)
        self._loop = LoopingCall(self._check)
        self._loop.clock = self._reactor
        self._loop.start(self._checkInterval, now=False)

    def stop(self):
        """
        Stop watching: close the notifier and cancel every pending call.
        """
        self._running = False
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._rebuildCall is not None and self._rebuildCall.active():
            self._rebuildCall.cancel()
        self._rebuildCall = None
        self._close()

    # -- building -----------------------------------------------------------

    def _build(self, notify):
        """
        Replace the notifier by a new one watching every item directory.

        @param notify: whether to call C{onChange()} once it is built.
        """
        self._close()
        try:
            self._notifier = self._makeNotifier(reactor=self._reactor)
            self._notifier.onLost = self._lost
            self._notifier.startReading()
            self._missing = tuple(self._fileset.items)
            self._watchMissing()
        except (inotify.INotifyError, OSError) as e:
            self._close()
            self._warnUnavailable(str(e))
            self._scheduleBuild(RETRY_DELAY)
            return
        if notify:
            self._changed()

    def _close(self):
        """
        Close the current notifier, if any, without rebuilding it.
        """
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.onLost = None
            notifier.loseConnection()

    def _scheduleBuild(self, delay):
        """
        Rebuild the notifier in C{delay} seconds (one pending call at most).
        """
        if not self._running:
            return
        if self._rebuildCall is not None and self._rebuildCall.active():
            return
        self._rebuildCall = self._reactor.callLater(delay, self._rebuild)

    def _rebuild(self):
        self._rebuildCall = None
        if self._running:
            self._build(notify=True)

    def _lost(self, notifier):
        """
        The notifier closed by itself (a watched directory was deleted).
        """
        if notifier is self._notifier:
            self._notifier = None
            self._scheduleBuild(REBUILD_DELAY)

    def _warnUnavailable(self, reason):
        if not self._warned:
            self._warned = True
            self._log.warn(
                "inotify unavailable ({reason}): changes are found by the "
                "periodic scan only.",
                reason=reason,
            )

    # -- watches ------------------------------------------------------------

    def _itemDir(self, item):
        return self._root.preauthChild(item.path)

    def _watchMissing(self):
        """
        Watch the item directories that exist now, and the nearest existing
        parent of those that still do not.

        @return: whether an item directory was newly watched.
        @raise inotify.INotifyError: if the kernel refuses a watch.
        """
        found = False
        missing = []
        for item in self._missing:
            directory = self._itemDir(item)
            if directory.isdir():
                self._watchItem(item, directory)
                found = True
            else:
                missing.append(item)
        self._missing = tuple(missing)
        for item in self._missing:
            self._watchParent(self._itemDir(item))
        return found

    def _watchItem(self, item, directory):
        if item.recursive:
            self._watchTree(directory)
        else:
            self._watch(directory, ITEM_MASK, self._flatEvent)

    def _watchTree(self, top):
        """
        Watch C{top} and every directory below it, never through a symlink;
        each directory is watched before it is listed, so a subdirectory made
        meanwhile is either listed or reported.
        """
        pending = [top]
        while pending:
            directory = pending.pop()
            if not self._watch(directory, ITEM_MASK, self._treeEvent):
                continue
            try:
                with os.scandir(directory.path) as entries:
                    names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            pending.extend(directory.child(name) for name in names)

    def _watchParent(self, directory):
        """
        Watch the nearest existing parent of C{directory} inside the root.
        """
        while directory != self._root and not directory.isdir():
            directory = directory.parent()
            if not directory.path.startswith(self._root.path):
                return
        if directory.isdir():
            self._watch(directory, PARENT_MASK, self._parentEvent)

    def _watch(self, directory, mask, callback):
        """
        Add one watch.

        @return: whether the directory is watched (C{False} if it vanished).
        @raise inotify.INotifyError: if the kernel refuses for another reason
            (too many watches).
        """
        try:
            self._notifier.watch(directory, mask=mask, callbacks=[callback])
        except inotify.INotifyError:
            if directory.isdir():
                raise
            return False
        return True

    # -- events -------------------------------------------------------------

    def _treeEvent(self, notifier, path, mask):
        """
        An event in a directory of a recursive item.
        """
        if self._notifier is None:
            return
        if mask & inotify.IN_ISDIR and mask & (inotify.IN_CREATE | inotify.IN_MOVED_TO):
            self._guarded(self._watchTree, path)
        self._flatEvent(notifier, path, mask)

    def _flatEvent(self, notifier, path, mask):
        """
        An event in an item directory.

        Events still buffered in a notifier that has closed are dropped: the
        rebuild calls C{onChange()} anyway. A watched directory that moves
        away keeps its watch on the old inode, so the notifier is rebuilt.
        """
        if self._notifier is None:
            return
        if mask & inotify.IN_MOVE_SELF:
            self._close()
            self._scheduleBuild(REBUILD_DELAY)
        elif mask & CHANGE_MASK:
            if self._missing:
                self._guarded(self._watchMissing)
            self._changed()

    def _parentEvent(self, notifier, path, mask):
        """
        Something appeared in the parent of a missing item directory.
        """
        if self._notifier is not None and self._guarded(self._watchMissing):
            self._changed()

    def _check(self):
        """
        The backstop: rebuild a lost notifier, watch item directories that
        appeared unnoticed.
        """
        if self._notifier is not None and not self._notifier.connected:
            self._notifier = None
        if self._notifier is None:
            self._scheduleBuild(REBUILD_DELAY)
        elif self._missing and self._guarded(self._watchMissing):
            self._changed()

    def _guarded(self, f, *args):
        """
        Call C{f}; a refused watch only degrades to the timer.

        @return: what C{f} returned, or L{None} if the kernel refused.
        """
        try:
            return f(*args)
        except inotify.INotifyError as e:
            self._log.debug("Cannot add an inotify watch: {error}", error=e)
            return None

    def _changed(self):
        """
        Tell the owner; its errors must not reach Twisted's notifier (which
        would close).
        """
        try:
            self._onChange()
        except Exception:
            self._log.failure("Error in the change callback", level=LogLevel.error)
