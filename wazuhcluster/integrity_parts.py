# -*- test-case-name: tests.test_integrity_parts -*-
"""
Rescanning only the directories inotify named (L{rescanParts}).

A change to one file of 50 000 should cost the master the metadata of the
directory that holds it, not a walk of the whole tree: the watcher names the
directory of each event (L{wazuhcluster.watcher.TreeWatcher}), and
L{wazuhcluster.local_integrity.LocalIntegrity} rescans just those parts of
the previous snapshot.  A part is C{(reldir, deep)}: the directory, relative
to the home and ending with C{/}, and whether its subdirectories are
rescanned too (a directory that appeared, went or moved); otherwise only
the files directly in it.  The result is the snapshot a full
L{wazuhcluster.integrity.scanFiles} would compute if nothing changed outside
the parts; the periodic full scan stays the safety net.
"""

import os
import stat

from wazuhcluster.integrity import FileScan, ScanResult
from wazuhcluster.pathrules import segmentProblem


def eventPart(root, path, isDirectory):
    """
    The part to rescan for an inotify event on C{path} (a file system path
    under the home C{root}): the directory holding a file, or a directory
    the event names with its subdirectories.

    @return: C{(reldir, deep)}, or L{None} for a path outside the home.
    """
    directory = path if isDirectory else os.path.dirname(path)
    prefix = root.rstrip("/") + "/"
    if not directory.startswith(prefix):
        return None
    return directory[len(prefix):].rstrip("/") + "/", isDirectory


def owningItem(fileset, reldir):
    """
    The item whose files C{reldir} holds (the deepest item directory that
    is C{reldir} or, for a recursive item, one of its parents), or L{None}.
    """
    owner = None
    for item in fileset.items:
        if reldir == item.path or (item.recursive and reldir.startswith(item.path)):
            if owner is None or len(item.path) > len(owner.path):
                owner = item
    return owner


def _walkable(root, item, reldir):
    """
    Whether a full scan would walk C{reldir} of C{item}: every directory
    from the item's down to it is a real directory (never a symbolic link)
    with a name that can be synced.  Blocking (a few C{lstat}s).
    """
    tail = reldir[len(item.path):]
    segments = [segment for segment in tail.split("/") if segment]
    if any(segmentProblem(segment) is not None for segment in segments):
        return False
    path = os.path.join(root, item.path)
    for segment in [""] + segments:
        path = os.path.join(path, segment) if segment else path
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return False
        except OSError:
            return False
    return True


def _inPart(path, meta, walked):
    """
    Whether the file at C{path} of the previous snapshot lies in one of the
    C{walked} parts (so a rescan that did not find it means it is gone).
    """
    return any(meta.item == itemPath and path.startswith(reldir)
               and (deep or "/" not in path[len(reldir):])
               for itemPath, reldir, deep in walked)


def rescanParts(root, fileset, previous, parts):
    """
    The snapshot of C{previous} with the C{parts} rescanned.  Blocking: runs
    in a thread.

    @param root: the node home.
    @type root: L{twisted.python.filepath.FilePath}
    @param fileset: the synced file set.
    @param previous: the last L{Snapshot} of the same home.
    @param parts: C{(reldir, deep)} pairs; those outside every item are
        ignored.
    @rtype: L{ScanResult}
    """
    scan = FileScan(root, fileset, previous)
    walked = []
    for reldir, deep in sorted(set(parts)):
        item = owningItem(fileset, reldir)
        if item is None:
            continue
        walked.append((item.path, reldir, deep))
        if _walkable(scan.root, item, reldir):
            scan.walkItem(item, reldir, deep)
    old = previous.files
    prefixes = tuple(reldir for _, reldir, _ in walked)
    candidates = [path for path in old
                  if path.startswith(prefixes) and _inPart(path, old[path], walked)
                  ] if prefixes else []
    # Every file found whose metadata changed is stored (its new stat key
    # spares the next scan a re-hash); only new contents count as changes.
    updates = {path: None for path in candidates if path not in scan.files}
    updates.update((path, meta) for path, meta in scan.files.items()
                   if old.get(path) is not meta)
    changes = {path: meta for path, meta in updates.items()
               if meta is None or path not in old
               or (old[path].md5, old[path].size) != (meta.md5, meta.size)}
    return ScanResult(previous.withChanges(updates), scan.rehashed,
                      tuple(sorted(scan.symlinks)), tuple(scan.errors), changes,
                      tuple(sorted(scan.skippedNames)))
