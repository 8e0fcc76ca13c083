# -*- test-case-name: tests.test_watcher -*-
"""
inotify watches on the synced directories: a hint that pulls the next local
integrity scan forward.

L{TreeWatcher} watches the directory of every synced item (the whole tree of
a recursive item, only the directory itself otherwise) and calls
C{onPathChange(part)} with the directory an event names (or C{onChange()}
when it names none): the scan of that part finds out what changed, and the
periodic full scan stays authoritative, because inotify can lose events (a
queue overflow is invisible through L{twisted.internet.inotify}, STYLE.md
section 7).

Twisted's notifier closes itself as soon as any watched directory is deleted;
L{TreeWatcher} notices, builds a new one and calls C{onChange()} since events
may have been missed meanwhile. Item directories that do not exist yet are
found later through a watch on their nearest existing parent (and a periodic
check). Without inotify (not Linux, or the kernel refuses: too many watches or
instances) it logs one warning and leaves the work to the timer.
"""

import os

from twisted.internet import inotify
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel
from twisted.python.filepath import FilePath
from twisted.python.runtime import platform

from wazuhcluster.integrity_parts import eventPart
from wazuhcluster.inotifytree import (
    CHANGE_MASK,
    ITEM_MASK,
    PARENT_MASK,
    Notifier,
    listDirectories,
)

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


class TreeWatcher:
    """
    Call C{onChange()} when anything may have changed under the synced item
    directories of C{root}.

    New subdirectories of recursive items are watched as they appear (this
    class adds them itself, as trees, instead of Twisted's C{autoAdd}: that
    way directories moved into an item are watched too, and symbolic links are
    never followed). A watched directory that is moved or deleted makes the
    watcher rebuild its notifier.

    Directory trees are listed in a thread (a tree walk never runs on the
    reactor thread); the watches are then added on the reactor thread, and
    the tree listed again until no unwatched directory is left, so that a
    directory made meanwhile is either watched or reported.
    """

    def __init__(
        self,
        root,
        fileset,
        onChange,
        reactor,
        log,
        makeNotifier=Notifier,
        supported=platform.supportsINotify,
        checkInterval=CHECK_INTERVAL,
        clock=None,
        runInThread=None,
        onPathChange=None,
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
        @param clock: the clock of the timers (the reactor by default).
        @param runInThread: C{deferToThread}-like, for the tree walks.
        @param onPathChange: if given, called instead of C{onChange} for an
            event that names what changed, with the part to rescan:
            C{(reldir, deep)}, the directory relative to the home (ending
            with C{/}) and whether its subdirectories are concerned (the
            event named a directory).
        """
        if runInThread is None:
            from twisted.internet.threads import deferToThread as runInThread
        self._root = root
        self._fileset = fileset
        self._onChange = onChange
        self._onPathChange = onPathChange
        self._reactor = reactor
        self._clock = reactor if clock is None else clock
        self._runInThread = runInThread
        self._generation = 0
        self._log = log
        self._makeNotifier = makeNotifier
        self._supported = supported
        self._checkInterval = checkInterval
        self._notifier = None
        self._missing = ()
        self._watched = set()
        self._watchedNames = set()  # their paths as text, for the events
        self._listings = 0
        self._notifyWhenWatching = False
        self._building = False
        self._watchingWaiters = []
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

        @return: a Deferred firing once the directories are watched (see
            L{whenWatching}).
        """
        if self._running:
            return self.whenWatching()
        if not self._supported():
            self._warnUnavailable("not supported on this platform")
            return succeed(None)
        self._running = True
        self._build(notify=False)
        self._loop = LoopingCall(self._check)
        self._loop.clock = self._clock
        self._loop.start(self._checkInterval, now=False).addErrback(
            lambda f: self._log.failure("The inotify backstop stopped", f,
                                        level=LogLevel.error))
        return self.whenWatching()

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

        @param notify: whether to call C{onChange()} once it is built (and
            its directories watched).
        """
        self._close()
        self._watched = set()
        self._watchedNames = set()  # their paths as text, for the events
        self._building = True
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
        finally:
            self._building = False
        if notify:
            if self._listings:
                self._notifyWhenWatching = True
            else:
                self._changed()

    def _close(self):
        """
        Close the current notifier, if any, without rebuilding it.
        """
        notifier, self._notifier = self._notifier, None
        self._generation += 1
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
        self._rebuildCall = self._clock.callLater(delay, self._rebuild)

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
        Watch C{top} and every directory below it, never through a symlink:
        C{top} now, the tree as listed in a thread, and again until a listing
        finds nothing new.
        """
        if not self._watch(top, ITEM_MASK, self._treeEvent):
            return
        self._listAndWatch(top, self._generation, passes=3, notify=not self._building)

    def _listAndWatch(self, top, generation, passes, added=False, notify=True):
        """
        List the tree of C{top} in a thread, watch what is not watched yet,
        and list again (at most C{passes} times) until nothing new appears;
        then, if anything was added, say that something may have changed
        (it could have, in a directory not watched yet).
        """
        self._listings += 1
        d = self._runInThread(listDirectories, top.path)

        def listed(paths):
            if generation != self._generation or self._notifier is None:
                return
            new = False
            for path in paths:
                directory = FilePath(path)
                if directory not in self._watched:
                    new = self._guarded(self._watch, directory, ITEM_MASK,
                                        self._treeEvent) or new
            if new and passes > 1:
                self._listAndWatch(top, generation, passes - 1, True, notify)
            elif (new or added) and notify:
                self._changed()

        d.addCallback(listed)
        d.addErrback(lambda f: self._log.failure("Error listing {top}", f,
                                                 level=LogLevel.error, top=top.path))
        d.addBoth(self._listed)

    def _listed(self, ignored):
        self._listings -= 1
        if not self._listings:
            if self._notifyWhenWatching:
                self._notifyWhenWatching = False
                self._changed()
            waiters, self._watchingWaiters = self._watchingWaiters, []
            for waiter in waiters:
                waiter.callback(None)

    def whenWatching(self):
        """
        @return: a Deferred firing once every directory known so far is
            watched (the tree listings in threads are done).
        """
        if not self._listings:
            return succeed(None)
        d = Deferred()
        self._watchingWaiters.append(d)
        return d

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
        if directory in self._watched:
            return False
        try:
            self._notifier.watch(directory, mask=mask, callbacks=[callback])
        except inotify.INotifyError:
            if directory.isdir():
                raise
            return False
        self._watched.add(directory)
        self._watchedNames.add(os.fsdecode(directory.path))
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
            self._changed(self._partOf(path, mask))

    def _partOf(self, path, mask):
        """
        The part to rescan for an event on C{path} (L{eventPart}), or
        L{None} for everything, as for an event on a watched directory
        itself.
        """
        if self._onPathChange is None:
            return None
        path = os.fsdecode(path.path)  # inotify names bytes paths
        if path in self._watchedNames:
            return None
        return eventPart(os.fsdecode(self._root.path), path, bool(mask & inotify.IN_ISDIR))

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

    def _changed(self, part=None):
        """
        Tell the owner (of C{part} only, when given); its errors must not
        reach Twisted's notifier (which would close).
        """
        try:
            if part is None:
                self._onChange()
            else:
                self._onPathChange(part)
        except Exception:
            self._log.failure("Error in the change callback", level=LogLevel.error)
