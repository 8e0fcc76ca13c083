# -*- test-case-name: tests.test_watcher -*-
"""
The inotify pieces under L{wazuhcluster.watcher.TreeWatcher}: the masks of
its watches, a notifier that says when it closes, and the blocking listing
of a tree's directories it runs in a thread.
"""

import os

from twisted.internet import inotify

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


class Notifier(inotify.INotify):
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


def listDirectories(top):
    """
    Every directory below C{top} (not C{top} itself), never through a
    symbolic link.  Blocking: runs in a thread.
    """
    found = []
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                names = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        found.extend(names)
        pending.extend(names)
    return found
