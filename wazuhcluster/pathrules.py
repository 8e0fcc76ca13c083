# -*- test-case-name: tests.test_pathrules -*-
"""
Rules for paths of synced files (DESIGN.md, "Behaviour": paths from a peer
are untrusted).

A synced path is a C{/}-separated path relative to the node home, such as
C{etc/shared/default/agent.conf}. L{checkSyncedPath} accepts it only when it
is normalised, free of control characters, inside exactly one item of the
file set, allowed by that item's C{recursive} flag and file rule, and not
excluded. L{checkNotThroughSymlink} refuses paths that would reach the file
system through a symbolic link.

The local scan (L{wazuhcluster.integrity}) uses the same rules, one directory
entry at a time (L{segmentProblem}, L{nameProblem}), so that a master never
announces a path its workers would refuse.

Everything here is pure and blocking-free apart from L{checkNotThroughSymlink}
(a few C{lstat} calls); callers run it wherever they run the file work.
"""

import os
import stat
import unicodedata

from wazuhcluster.errors import ClusterError

MAX_PATH_BYTES = 4096
"""
The longest synced path accepted, in UTF-8 bytes (Linux C{PATH_MAX}).
"""

MAX_SEGMENT_BYTES = 255
"""
The longest single path component accepted, in UTF-8 bytes (C{NAME_MAX}).
"""


class UnsafePath(ClusterError):
    """
    A path received from a peer, or about to be written, breaks the rules for
    synced files.

    @ivar path: the offending path, as received.
    @ivar reason: why it was refused.
    """

    code = 3022

    def __init__(self, path, reason):
        super().__init__(f"Refused path {path!r}: {reason}")
        self.path = path
        self.reason = reason


def segmentProblem(segment):
    """
    Why C{segment} cannot be one component of a synced path, or L{None}.

    @param segment: one C{/}-free component of a path.
    @type segment: L{str}
    @return: a short reason, or L{None} when the component is acceptable.
    """
    if segment in ("", ".", ".."):
        return f"component {segment!r} is not allowed"
    if "\\" in segment:
        return "backslash is not allowed"
    if not segment.isprintable():
        for char in segment:
            if unicodedata.category(char) in ("Cc", "Cs"):
                return "control or undecodable character is not allowed"
    try:
        encoded = segment.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if len(encoded) > MAX_SEGMENT_BYTES:
        return "component too long"
    return None


def nameProblem(fileset, item, basename):
    """
    Why a file called C{basename} inside C{item} is not synced, or L{None}.

    @param fileset: the synced file set.
    @type fileset: L{wazuhcluster.clusteritems.FileSet}
    @param item: the item the file belongs to.
    @type item: L{wazuhcluster.clusteritems.FileItem}
    @param basename: the file's name (already checked by L{segmentProblem}).
    @return: a short reason, or L{None} when the file is synced.
    """
    if fileset.isExcluded(basename):
        return "excluded file name"
    if not item.matchesName(basename):
        return f"not a file of item {item.path!r}"
    return None


def itemFor(fileset, relpath):
    """
    The item owning C{relpath}: the one with the longest directory prefix.

    @param fileset: the synced file set.
    @param relpath: a C{/}-separated path relative to the home.
    @return: the L{wazuhcluster.clusteritems.FileItem}, or L{None} if no item
        directory contains C{relpath}.
    """
    best = None
    for item in fileset.items:
        if relpath.startswith(item.path) and len(relpath) > len(item.path):
            if best is None or len(item.path) > len(best.path):
                best = item
    return best


def checkSyncedPath(fileset, relpath):
    """
    Accept C{relpath} only if it names a synced file.

    @param fileset: the synced file set.
    @type fileset: L{wazuhcluster.clusteritems.FileSet}
    @param relpath: the untrusted path, C{/}-separated and relative to the
        node home (e.g. C{etc/shared/default/agent.conf}).
    @return: the L{wazuhcluster.clusteritems.FileItem} the path belongs to.
    @raise UnsafePath: when the path is not a valid synced path; the message
        says why.
    """
    if not isinstance(relpath, str):
        raise UnsafePath(relpath, "not a text path")
    if not relpath:
        raise UnsafePath(relpath, "empty path")
    if relpath.startswith("/"):
        raise UnsafePath(relpath, "absolute path")
    segments = relpath.split("/")
    for segment in segments:
        problem = segmentProblem(segment)
        if problem is not None:
            raise UnsafePath(relpath, problem)
    if len(relpath.encode("utf-8")) > MAX_PATH_BYTES:
        raise UnsafePath(relpath, "path too long")
    item = itemFor(fileset, relpath)
    if item is None:
        raise UnsafePath(relpath, "not inside a synced item")
    inner = relpath[len(item.path) :]
    if not item.recursive and "/" in inner:
        raise UnsafePath(relpath, f"item {item.path!r} is not recursive")
    problem = nameProblem(fileset, item, segments[-1])
    if problem is not None:
        raise UnsafePath(relpath, problem)
    return item


def checkNotThroughSymlink(root, relpath):
    """
    Refuse C{relpath} if reaching it from C{root} goes through a symlink.

    Every existing component under C{root} (each directory on the way and the
    final file) is examined with C{lstat}; the walk stops at the first
    component that does not exist yet or is not a directory (nothing can be
    reached through it). C{root} itself is trusted.

    @param root: the node home.
    @type root: L{twisted.python.filepath.FilePath}
    @param relpath: a C{/}-separated path relative to C{root} (already
        accepted by L{checkSyncedPath}).
    @raise UnsafePath: if a component is a symlink.
    """
    current = root.path
    segments = relpath.split("/")
    for index, segment in enumerate(segments):
        current = os.path.join(current, segment)
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return
        if stat.S_ISLNK(mode):
            shown = "/".join(segments[: index + 1])
            raise UnsafePath(relpath, f"{shown!r} is a symbolic link")
        if not stat.S_ISDIR(mode):
            return
