# -*- test-case-name: tests.test_staging -*-
"""
Worker-side staging of the files sent by the master.

A L{StagedSync} receives the files of one integrity round into a private
directory under the peer's staging area (C{queue/cluster/<peer>/}).  Each
file's bytes are checked as they arrive against the size and MD5 the master
computed while sending, and a verified file gets the item's permissions (and,
as root, the home's owner); writeback to disk starts at once.  Nothing is
written in the synced tree until L{StagedSync.apply}, which places every
verified file (L{wazuhcluster.placing}): each target old or new, never
partial, and one file that cannot be placed never blocks the others.

Bounds: one round stages at most C{maxBytes} (C{communication.max_zip_size})
and stops before the disk is full (L{MIN_FREE_BYTES} and L{MIN_FREE_RATIO}
of the file system stay free).

Everything here blocks: callers run it in a thread (one job at a time per
sync), never on the reactor thread.
"""

import ctypes
import errno
import hashlib
import os
import tempfile

from wazuhcluster.errors import ClusterError
from wazuhcluster.fsutil import removeTree, unlinkQuietly
from wazuhcluster.pathrules import UnsafePath, checkSyncedPath
from wazuhcluster.placing import DIRECTORY_MODE, Placer

#: Bytes of the staging file system that a sync never takes.
MIN_FREE_BYTES = 64 * 1024 * 1024

#: Share of the staging file system that a sync never takes.
MIN_FREE_RATIO = 0.02

#: Bytes written between two free-space checks.
FREE_CHECK_EVERY = 8 * 1024 * 1024

_HEX = frozenset("0123456789abcdef")


class StagingError(ClusterError):
    """
    A staged sync cannot go on (misuse, a bound broken, the disk full).
    """

    code = 3033


class TransferMismatch(StagingError):
    """
    A received file does not match the size or MD5 announced for it.
    """


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()
_SYNC_FILE_RANGE_WRITE = 2


def startWriteback(fd):
    """
    Ask the kernel to start writing C{fd}'s dirty pages now (Linux
    C{sync_file_range}), so that the fsync before the renames mostly finds
    them on disk.  A hint: ignored where unavailable.
    """
    function = getattr(_LIBC, "sync_file_range", None)
    if function is not None:
        function(fd, ctypes.c_longlong(0), ctypes.c_longlong(0), _SYNC_FILE_RANGE_WRITE)


class StagedFile:
    """
    One file being received into the staging directory.

    @ivar relpath: the target path, relative to the home.
    @ivar item: the L{wazuhcluster.clusteritems.FileItem} it belongs to.
    @ivar md5: its MD5 once verified, else L{None}.
    @ivar size: the bytes written so far.
    @ivar verified: whether it was finished with the right size and MD5.
    """

    def __init__(self, relpath, item, path, owner, sync):
        self.relpath = relpath
        self.item = item
        self.size = 0
        self.md5 = None
        self.verified = False
        self.stagedPath = path
        self.owner = owner
        self._sync = sync
        self._hash = hashlib.md5()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        self._stream = open(fd, "wb", buffering=0, closefd=True)

    @property
    def isOpen(self):
        return self._stream is not None

    def write(self, data):
        """
        Append C{data}.

        @raise StagingError: the file is closed, the round's byte bound is
            reached, or the disk is nearly full (the file is then discarded).
        """
        if self._stream is None:
            raise StagingError(f"Staged file {self.relpath!r} is not open")
        try:
            self._sync.account(len(data))
            view = memoryview(data)
            while view:
                view = view[self._stream.write(view):]
        except BaseException:
            self.discard()
            raise
        self._hash.update(data)
        self.size += len(data)

    def finish(self, md5, size):
        """
        The master says the file ended with C{size} bytes of MD5 C{md5}:
        check it, give it the item's permissions and owner, start writeback.

        @raise TransferMismatch: the bytes differ (the file is discarded).
        """
        if self._stream is None:
            raise StagingError(f"Staged file {self.relpath!r} is not open")
        try:
            got = self._hash.hexdigest()
            if size != self.size or md5 != got:
                raise TransferMismatch(
                    f"File {self.relpath!r} arrived as {self.size} bytes of MD5 {got}; "
                    f"the master sent {size} bytes of MD5 {md5}")
            fd = self._stream.fileno()
            os.fchmod(fd, self.item.permissions)
            if self.owner is not None:
                os.fchown(fd, *self.owner)
            if self._sync.durable:
                startWriteback(fd)
            self._stream.close()
        except BaseException:
            self.discard()
            raise
        self._stream = None
        self.md5 = md5
        self.verified = True

    def discard(self):
        """
        Drop the staged bytes; the file never counts as verified.
        """
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self.verified = False
        unlinkQuietly(self.stagedPath)


class StagedSync:
    """
    The files of one integrity round, staged and then placed.

    @ivar files: every L{StagedFile} begun, by path.
    @ivar bytes: bytes staged so far.
    """

    def __init__(self, root, stagingDir, fileset, durable=True, maxBytes=None,
                 minFreeBytes=MIN_FREE_BYTES, statvfs=os.statvfs):
        """
        @param root: the node home (L{twisted.python.filepath.FilePath}).
        @param stagingDir: the peer's staging area (a L{FilePath}); this sync
            uses a private directory inside it.
        @param fileset: the synced L{wazuhcluster.clusteritems.FileSet}.
        @param durable: flush files and directories before and after the
            renames (disable only in tests and benchmarks of pure logic).
        @param maxBytes: the most bytes this round may stage, or L{None}.
        @param minFreeBytes: free bytes the staging file system keeps.
        @param statvfs: C{os.statvfs} (tests inject a full disk).
        """
        self.root = root
        self.stagingDir = stagingDir
        self.fileset = fileset
        self.durable = durable
        self.maxBytes = maxBytes
        self.minFreeBytes = minFreeBytes
        self._statvfs = statvfs
        self.files = {}
        self.bytes = 0
        self._sinceCheck = FREE_CHECK_EVERY
        self._privateDir = None
        self._owner = None
        self._finished = False

    def begin(self, relpath):
        """
        Start receiving the new contents of C{relpath} (untrusted: checked by
        L{checkSyncedPath}).

        @rtype: L{StagedFile}
        @raise UnsafePath: the path is refused.
        @raise StagingError: the sync is finished or the path came twice.
        """
        self._checkUsable()
        item = checkSyncedPath(self.fileset, relpath)
        if relpath in self.files:
            raise StagingError(f"File {relpath!r} sent twice")
        path = os.path.join(self._ensurePrivateDir(), f"{len(self.files):07d}.part")
        staged = StagedFile(relpath, item, path, self._ownerForStaged(), self)
        self.files[relpath] = staged
        return staged

    def account(self, count):
        """
        C{count} more bytes are about to be staged.

        @raise StagingError: the round's bound would be exceeded, or the
            disk is nearly full.
        """
        self.bytes += count
        if self.maxBytes is not None and self.bytes > self.maxBytes:
            raise StagingError(
                f"More than {self.maxBytes} bytes in one round "
                "(communication.max_zip_size); the next round brings the rest")
        self._sinceCheck += count
        if self._sinceCheck >= FREE_CHECK_EVERY:
            self._sinceCheck = 0
            self._checkFreeSpace(count)

    def _checkFreeSpace(self, coming):
        status = self._statvfs(self.stagingDir.path)
        free = status.f_bavail * status.f_frsize
        keep = max(self.minFreeBytes, int(status.f_blocks * status.f_frsize * MIN_FREE_RATIO))
        if free - coming < keep:
            raise StagingError(
                f"Not enough free space to stage the files in {self.stagingDir.path} "
                f"({free} bytes free, {keep} kept free)")

    def apply(self, deletions):
        """
        Place every verified file and delete C{deletions} (untrusted paths);
        files not verified are left out.  The staging directory is emptied
        whatever happens, and the sync cannot be used again.

        @rtype: L{wazuhcluster.placing.PlaceResult}
        """
        self._checkUsable()
        try:
            staged = [f for _, f in sorted(self.files.items()) if f.verified]
            removals = []
            rejected = {}
            for relpath in dict.fromkeys(deletions):
                try:
                    item = checkSyncedPath(self.fileset, relpath)
                except UnsafePath as e:
                    rejected[relpath] = e.reason
                    continue
                if relpath not in self.files:
                    removals.append((relpath, item))
            placer = Placer(self.root, self.fileset, self.durable, self._privateDir)
            result = placer.run(staged, removals)
            return result.withFailures(rejected)
        finally:
            self._finish()

    def abort(self):
        """
        Drop everything staged; nothing is placed.  Safe to call more than
        once, and after L{apply}.
        """
        self._finish()

    def _checkUsable(self):
        if self._finished:
            raise StagingError("This staged sync is already finished")

    def _ensurePrivateDir(self):
        if self._privateDir is None:
            ensureStagingDir(self.stagingDir)
            self._checkFreeSpace(0)
            self._privateDir = tempfile.mkdtemp(prefix="sync-", dir=self.stagingDir.path)
        return self._privateDir

    def _ownerForStaged(self):
        """
        As root, the home's owner (the usual owner of a new file; the placer
        changes it where the target exists with another); else L{None}.
        """
        if self._owner is None and os.geteuid() == 0:
            rootStat = os.stat(self.root.path)
            self._owner = (rootStat.st_uid, rootStat.st_gid)
        return self._owner

    def _finish(self):
        self._finished = True
        for staged in self.files.values():
            if staged.isOpen:
                staged.discard()
        if self._privateDir is not None:
            removeTree(self._privateDir)
            self._privateDir = None


def ensureStagingDir(stagingDir):
    """
    Make the staging area exist (0770), refusing a symlink there.
    """
    if stagingDir.islink():
        raise UnsafePath(stagingDir.path, "the staging directory is a symlink")
    if not stagingDir.isdir():
        stagingDir.makedirs(ignoreExistingDirectory=True)
        stagingDir.chmod(DIRECTORY_MODE)


def cleanStaging(stagingDir):
    """
    Empty a staging directory (creating it if missing): when a peer connects,
    and once every session of a connection that ended has stopped.  Blocking:
    run it in a thread.

    @raise UnsafePath: if C{stagingDir} is a symlink.
    """
    ensureStagingDir(stagingDir)
    with os.scandir(stagingDir.path) as entries:
        entries = list(entries)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            removeTree(entry.path)
        else:
            unlinkQuietly(entry.path)


def cleanStagingAreas(clusterQueue):
    """
    Empty every staging directory under C{clusterQueue}
    (C{queue/cluster/*/}) when a node starts: no transfer is in progress
    then, but a node killed in the middle of one left its parts there.
    Blocking: run it in a thread.
    """
    if not clusterQueue.isdir():
        return
    for child in clusterQueue.children():
        if child.isdir() and not child.islink():
            cleanStaging(child)


def isDiskFull(error):
    """
    Whether C{error} says there is no room for the bytes: the disk is full,
    the quota is reached, or the file-size limit of the file system or of
    this process (C{RLIMIT_FSIZE}, systemd's C{LimitFSIZE}) is.  No file of
    the round can then be trusted to fit: the round stops, nothing is
    applied, and the next one retries.
    """
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT,
                                                          errno.EFBIG)
