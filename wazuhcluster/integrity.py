# -*- test-case-name: tests.test_integrity -*-
"""
File metadata, snapshots, incremental scans, manifests and comparison.

The local integrity of a node is a L{Snapshot}: for every synced file (the
C{files} section of cluster.json, WAZUH.md section 2.4) its MD5, modification
time, size and item, plus one digest of the whole set. L{scanFiles} builds it
from the node home, re-hashing only files whose size, mtime, ctime or inode
changed since the previous snapshot, and says which files changed.

The digest is a multiset hash: the sum, modulo 2**256, of the SHA-256 of
every C{path TAB md5} line.  It does not depend on the order of the files,
and a change of k files updates it in O(k) (L{Snapshot.withChanges}): a
worker that applied k files knows its new digest without rescanning, and the
master's history of changes (L{wazuhcluster.integrity_history}) lets a worker
receive only the changes since the digest it holds.

Peers exchange manifests and deltas (L{wazuhcluster.manifest}).

Everything here is pure and blocking: callers run it in a thread
(C{deferToThread}), never on the reactor thread.
"""

import hashlib
import os
import stat
import time
from types import MappingProxyType

from attrs import Factory, field, frozen

from wazuhcluster.pathrules import (
    MAX_PATH_BYTES,
    nameProblem,
    segmentProblem,
)

READ_SIZE = 1024 * 1024
"""
Bytes read at a time while hashing a file.
"""

RACY_WINDOW_NS = 2_000_000_000
"""
A file modified less than this long before a scan started may change again
without its mtime moving (coarse file system timestamps): its metadata is not
trusted by the next scan, which hashes it again. (Any later write moves the
mtime past this window, and any metadata change moves the ctime, which is part
of the stat key.)
"""

_READ_FLAGS = (
    os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
)


@frozen
class FileMeta:
    """
    The metadata of one synced file.

    @ivar md5: the hex MD5 of the contents.
    @ivar mtime: the modification time, in seconds since the epoch.
    @ivar size: the size in bytes.
    @ivar item: the key of the item the file belongs to (e.g. C{etc/shared/}).
    @ivar statKey: C{(size, mtime_ns, ctime_ns, inode)} when the file was
        hashed, used by L{scanFiles} to decide whether to hash it again;
        L{None} forces a re-hash. Not part of equality nor of any manifest.
    """

    md5: str
    mtime: float
    size: int
    item: str
    _statKey: tuple = field(default=None, eq=False, repr=False)


def _frozenMapping(files):
    return MappingProxyType(dict(files))


_MODULUS = 1 << 256


def entryHash(path, md5):
    """
    The contribution of one file to a snapshot digest.
    """
    line = f"{path}\t{md5}\n".encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha256(line).digest(), "big")


def _total(files):
    return sum(entryHash(path, meta.md5) for path, meta in files.items()) % _MODULUS


def _computeTotal(snapshot):
    return _total(snapshot.files)


def _digestOf(snapshot):
    return f"{snapshot.total:064x}"


@frozen
class Snapshot:
    """
    The synced files of one node at one moment.

    @ivar files: a read-only mapping of path (relative to the home,
        C{/}-separated) to L{FileMeta}.
    @ivar total: the multiset hash of the C{(path, md5)} pairs, as an
        integer (computed from C{files} unless given).
    @ivar digest: C{total} as 64 hex digits: two snapshots with the same
        paths and contents have the same digest whatever their modification
        times.
    """

    files: MappingProxyType = field(
        converter=_frozenMapping, repr=lambda files: f"<{len(files)} files>"
    )
    total: int = field(default=Factory(_computeTotal, takes_self=True), eq=False,
                       repr=False)
    digest: str = field(
        init=False, eq=False, default=Factory(_digestOf, takes_self=True)
    )

    @classmethod
    def empty(cls):
        """
        A snapshot without any file.
        """
        return cls({})

    def manifest(self):
        """
        The comparable view of this snapshot.

        @return: a new L{dict} of path to C{(md5, size)}, the shape
            L{compareManifests} and L{decodeManifest} use.
        """
        return {path: (meta.md5, meta.size) for path, meta in self.files.items()}

    def withChanges(self, changes):
        """
        This snapshot with C{changes} applied, its digest updated in O(k).

        @param changes: a mapping of path to its new L{FileMeta}, or L{None}
            for a file that is gone.
        @rtype: L{Snapshot}
        """
        files = dict(self.files)
        total = self.total
        for path, meta in changes.items():
            old = files.pop(path, None)
            if old is not None:
                total -= entryHash(path, old.md5)
            if meta is not None:
                files[path] = meta
                total += entryHash(path, meta.md5)
        return Snapshot(files, total % _MODULUS)

    def changesFrom(self, other):
        """
        What changed from C{other} to this snapshot (O(n)).

        @return: a dict of path to L{FileMeta} (new or changed contents) or
            L{None} (gone).
        """
        changes = {path: None for path in other.files if path not in self.files}
        for path, meta in self.files.items():
            old = other.files.get(path)
            if old is None or (old.md5, old.size) != (meta.md5, meta.size):
                changes[path] = meta
        return changes


@frozen
class ScanResult:
    """
    What L{scanFiles} found.

    @ivar snapshot: the new L{Snapshot}.
    @ivar rehashed: how many files were read and hashed (the others kept the
        previous snapshot's metadata).
    @ivar skippedSymlinks: paths of symbolic links found where a synced file
        or directory could be; never followed nor synced.
    @ivar errors: one C{"path: reason"} text per file or directory that could
        not be read (it is left out of the snapshot).
    @ivar changes: what changed since the previous snapshot: path to new
        L{FileMeta}, or L{None} for a file gone (every file when there was
        no previous snapshot).
    @ivar skippedNames: entries skipped because their name is not UTF-8 (or
        holds control characters), as C{repr}s of their path.
    """

    snapshot: Snapshot
    rehashed: int
    skippedSymlinks: tuple
    errors: tuple
    changes: dict = field(factory=dict, eq=False, repr=False)
    skippedNames: tuple = ()


def hashFile(path, buffer=None):
    """
    Hash one regular file without following a symlink.

    @param path: the absolute file system path.
    @param buffer: an optional reusable L{bytearray} of L{READ_SIZE} bytes.
    @return: C{(md5hex, stat_result)}, the stat taken from the open file
        before reading it.
    @raise OSError: if the file cannot be opened or read, is a symlink
        (C{ELOOP}) or is not a regular file (C{EISDIR} and friends).
    """
    if buffer is None:
        buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    fd = os.open(path, _READ_FLAGS)
    with open(fd, "rb", buffering=0, closefd=True) as stream:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
        md5 = hashlib.md5()
        while True:
            count = stream.readinto(view)
            if not count:
                break
            md5.update(view[:count])
    return md5.hexdigest(), st


def _statKey(st):
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class FileScan:
    """
    The state of one L{scanFiles} run.
    """

    def __init__(self, root, fileset, previous):
        self.root = root.path
        self.fileset = fileset
        self.previous = {} if previous is None else previous.files
        self.itemDirs = frozenset(item.path for item in fileset.items)
        self.racyAfter = time.time_ns() - RACY_WINDOW_NS
        self.buffer = bytearray(READ_SIZE)
        self.files = {}
        self.rehashed = 0
        self.symlinks = []
        self.errors = []
        self.skippedNames = []

    def walkItem(self, item, start=None, deep=True):
        """
        Add every synced file of C{item} (iteratively, depth first).

        @param start: the directory of the item to walk from (relative to
            the home, ending with C{/}; the item's own by default).
        @param deep: whether to walk its subdirectories too (in a recursive
            item).
        """
        pending = [item.path if start is None else start]
        while pending:
            reldir = pending.pop()
            try:
                with os.scandir(os.path.join(self.root, reldir)) as entries:
                    entries = list(entries)
            except FileNotFoundError:
                continue
            except OSError as e:
                self.errors.append(f"{reldir}: {e.strerror or e}")
                continue
            for entry in entries:
                self.visit(item, reldir, entry, pending if deep else None)

    def visit(self, item, reldir, entry, pending):
        """
        Handle one directory entry of C{item} found in C{reldir}; a
        subdirectory to walk goes to C{pending} (unless it is L{None}).
        """
        name = entry.name
        relpath = reldir + name
        problem = segmentProblem(name)
        if problem is not None:
            if "undecodable" in problem or "control" in problem:
                self.skippedNames.append(ascii(relpath))
            return
        if entry.is_symlink():
            if item.recursive or nameProblem(self.fileset, item, name) is None:
                self.symlinks.append(relpath)
            return
        try:
            isDir = entry.is_dir(follow_symlinks=False)
        except OSError:
            return
        if isDir:
            subdir = relpath + "/"
            if item.recursive and pending is not None and subdir not in self.itemDirs:
                pending.append(subdir)
            return
        if nameProblem(self.fileset, item, name) is not None:
            return
        self.addFile(item, relpath, entry)

    def addFile(self, item, relpath, entry):
        """
        Record the metadata of one candidate file, hashing it if needed.
        """
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return
        except OSError as e:
            self.errors.append(f"{relpath}: {e.strerror or e}")
            return
        if not stat.S_ISREG(st.st_mode) or len(relpath) * 4 > MAX_PATH_BYTES and (
            len(relpath.encode("utf-8")) > MAX_PATH_BYTES
        ):
            return
        known = self.previous.get(relpath)
        key = _statKey(st)
        if known is not None and known._statKey == key and known.item == item.path:
            self.files[relpath] = known
            return
        try:
            md5, st = hashFile(entry.path, self.buffer)
        except FileNotFoundError:
            return
        except OSError as e:
            self.errors.append(f"{relpath}: {e.strerror or e}")
            return
        self.rehashed += 1
        key = _statKey(st)
        if st.st_mtime_ns > self.racyAfter:
            key = None
        self.files[relpath] = FileMeta(
            md5, st.st_mtime_ns / 1e9, st.st_size, item.path, key
        )


def scanFiles(root, fileset, previous=None):
    """
    Compute the snapshot of the synced files under C{root}.

    Each item directory is walked with C{os.scandir} (subdirectories only for
    recursive items; a subdirectory that is itself an item is left to that
    item). Files and directories are kept only when L{wazuhcluster.pathrules}
    accepts them; symbolic links are never followed nor included, and are
    reported. A file whose C{(size, mtime, ctime, inode)} equals the one
    recorded in C{previous} keeps its previous metadata without being read.

    @param root: the node home.
    @type root: L{twisted.python.filepath.FilePath}
    @param fileset: the synced file set.
    @type fileset: L{wazuhcluster.clusteritems.FileSet}
    @param previous: the last snapshot computed from the same home, or
        L{None} to hash everything.
    @type previous: L{Snapshot} or L{None}
    @rtype: L{ScanResult}
    """
    scan = FileScan(root, fileset, previous)
    for item in fileset.items:
        scan.walkItem(item)
    snapshot, changes = _withChanges(previous, scan.files)
    return ScanResult(
        snapshot,
        scan.rehashed,
        tuple(sorted(scan.symlinks)),
        tuple(scan.errors),
        changes,
        tuple(sorted(scan.skippedNames)),
    )


def _withChanges(previous, files):
    """
    The new snapshot of C{files} and what changed since C{previous}, its
    digest updated from the previous one (every unchanged file kept its
    L{FileMeta} object, so changes are found by identity first).
    """
    if previous is None:
        return Snapshot(files), dict(files)
    old = previous.files
    changes = {path: None for path in old if path not in files}
    total = previous.total
    for path in changes:
        total -= entryHash(path, old[path].md5)
    for path, meta in files.items():
        before = old.get(path)
        if before is meta:
            continue
        if before is not None and (before.md5, before.size) == (meta.md5, meta.size):
            continue
        changes[path] = meta
        if before is not None:
            total -= entryHash(path, before.md5)
        total += entryHash(path, meta.md5)
    return Snapshot(files, total % _MODULUS), changes
