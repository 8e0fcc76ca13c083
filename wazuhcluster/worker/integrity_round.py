# -*- test-case-name: tests.test_integrity_sync -*-
"""
The blocking steps of a worker's integrity round (run in the feature's
thread queue): comparing what the master sent with this worker's files, and
this worker's new state once the files are placed, without a rescan.
"""

from wazuhcluster.integrity import FileMeta
from wazuhcluster.manifest import ManifestDecoder, compareDelta, compareManifests
from wazuhcluster.pathrules import itemFor


def compareRound(chunks, full, entries, fileset, mine, dirty):
    """
    Decode what the master sent and compare it with this worker's files.
    Blocking: runs in the thread queue.

    @return: C{(comparison, expected)}: the L{Comparison}, and for every path
        looked at, what the master has there (C{(md5, size)} or L{None}).
    """
    decoder = ManifestDecoder(fileset, maxEntries=entries, deletions=not full)
    for chunk in chunks:
        decoder.feed(chunk)
    master = decoder.finish()
    if full:
        comparison = compareManifests(master, mine.manifest())
        expected = dict(master)
        expected.update((path, None) for path in comparison.extra)
        return comparison, expected
    view = dict(dirty)
    view.update(master)
    files = mine.files
    worker = {path: (files[path].md5, files[path].size) for path in view if path in files}
    return compareDelta(view, worker), view


def afterApply(result, snapshot, expected, dirty, full, fileset):
    """
    This worker's new snapshot and dirty set once C{result} was placed.
    Blocking (O(changes), O(files) for a full round): runs in the queue.
    """
    changes = {}
    for path, placed in result.placed.items():
        item = itemFor(fileset, path)
        st = placed.stat
        key = None if st is None else (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        mtime = 0.0 if st is None else st.st_mtime_ns / 1e9
        changes[path] = FileMeta(placed.md5, mtime, placed.size, item.path, key)
    for path in result.deleted:
        if path in snapshot.files:
            changes[path] = None
    for removed in result.removedDirs:
        prefix = removed + "/"
        for path in snapshot.files:
            if path.startswith(prefix) and path not in changes:
                changes[path] = None
    updated = snapshot.withChanges(changes)
    newDirty = {} if full else dict(dirty)
    for path, entry in expected.items():
        meta = updated.files.get(path)
        mine = None if meta is None else (meta.md5, meta.size)
        if mine == (None if entry is None else tuple(entry)):
            newDirty.pop(path, None)
        else:
            newDirty[path] = entry
    return updated, newDirty


def feedAll(receiver, pieces):
    """
    Feed the pieces of one FileData to the stream receiver.
    """
    for piece in pieces:
        receiver.feed(piece)
