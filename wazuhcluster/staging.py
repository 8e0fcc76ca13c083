# -*- test-case-name: tests.test_staging -*-
"""
Worker-side staged apply of the files sent by the master.

A L{StagedSync} receives every file of one integrity sync into a private
directory under the peer's staging area (C{queue/cluster/<peer>/}), checking
each file's size and MD5 as it is closed. L{StagedSync.apply} touches the
synced tree only once every file has arrived and verified, and then:

 1. deletes the extra files and, for items with C{remove_subdirs_if_empty},
    their parent directories left empty (or holding only excluded files);
 2. places each staged file next to its target as C{.<name>.tmp}, with the
    item's permissions and the owner of the file it replaces (or of the
    home);
 3. flushes the file system (C{syncfs}, or C{fsync} per file);
 4. renames each C{.<name>.tmp} over its target (C{os.replace}, atomic).

Whatever fails, each target is either its old or its new version, never a
mix; the C{.tmp} files not renamed yet are removed, and the staging directory
is always emptied.

Everything here blocks: callers run C{apply} in a thread.
"""

import ctypes
import errno
import hashlib
import os
import shutil
import stat
import tempfile

from attrs import frozen

from wazuhcluster.errors import ClusterError
from wazuhcluster.pathrules import (
    UnsafePath,
    checkNotThroughSymlink,
    checkSyncedPath,
)

DIRECTORY_MODE = 0o770
"""
The mode of directories created while applying files (as Wazuh does).
"""

_HEX = frozenset("0123456789abcdef")


class StagingError(ClusterError):
    """
    A staged sync cannot go on (misuse, incomplete set, file system conflict).
    """

    code = 3033


class TransferMismatch(StagingError):
    """
    A received file does not match the size or MD5 announced for it.
    """


class IncompleteSync(StagingError):
    """
    L{StagedSync.apply} was called before every expected file arrived and
    verified.
    """


@frozen
class ApplyResult:
    """
    What L{StagedSync.apply} changed.

    @ivar created: paths written that did not exist before.
    @ivar updated: paths written over an existing file.
    @ivar deleted: extra paths removed (those already gone are not listed).
    @ivar removedDirs: directories removed because they were left empty.
    @ivar errors: one C{"path: reason"} text per extra file or directory that
        could not be removed (these do not stop the apply).
    """

    created: tuple
    updated: tuple
    deleted: tuple
    removedDirs: tuple
    errors: tuple = ()


class StagedFile:
    """
    One file being received into the staging directory.

    @ivar relpath: the target path, relative to the home.
    @ivar item: the L{wazuhcluster.config.FileItem} it belongs to.
    @ivar expectedMd5: the announced hex MD5.
    @ivar expectedSize: the announced size.
    @ivar verified: whether the file was closed with the right size and MD5.
    """

    def __init__(self, relpath, item, expectedMd5, expectedSize, path):
        self.relpath = relpath
        self.item = item
        self.expectedMd5 = expectedMd5
        self.expectedSize = expectedSize
        self.verified = False
        self._path = path
        self._written = 0
        self._md5 = hashlib.md5()
        self._stream = None
        fd = os.open(
            path,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
        self._stream = open(fd, "wb", buffering=0, closefd=True)

    @property
    def isOpen(self):
        """
        Whether bytes can still be written.
        """
        return self._stream is not None

    def write(self, data):
        """
        Append C{data} to the staged file.

        @param data: L{bytes}.
        @raise TransferMismatch: if the file would exceed its expected size
            (the staged file is then discarded).
        @raise StagingError: if the file is closed.
        """
        if self._stream is None:
            raise StagingError(f"Staged file {self.relpath!r} is not open")
        if self._written + len(data) > self.expectedSize:
            self.discard()
            raise TransferMismatch(
                f"File {self.relpath!r} is longer than the announced "
                f"{self.expectedSize} bytes"
            )
        view = memoryview(data)
        try:
            while view:
                view = view[self._stream.write(view) :]
        except BaseException:
            self.discard()
            raise
        self._md5.update(data)
        self._written += len(data)

    def close(self):
        """
        Finish the file and check its size and MD5.

        @raise TransferMismatch: if the size or MD5 differ from the announced
            ones (the staged file is then discarded).
        @raise StagingError: if the file is not open.
        """
        if self._stream is None:
            raise StagingError(f"Staged file {self.relpath!r} is not open")
        self._stream.close()
        self._stream = None
        if self._written != self.expectedSize:
            self.discard()
            raise TransferMismatch(
                f"File {self.relpath!r} is shorter than announced: "
                f"{self._written} of {self.expectedSize} bytes"
            )
        md5 = self._md5.hexdigest()
        if md5 != self.expectedMd5:
            self.discard()
            raise TransferMismatch(
                f"File {self.relpath!r} has MD5 {md5}, "
                f"{self.expectedMd5} was announced"
            )
        self.verified = True

    def discard(self):
        """
        Drop the staged bytes; the file then never counts as verified.
        """
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self.verified = False
        _unlinkQuietly(self._path)

    @property
    def stagedPath(self):
        """
        The file system path of the staged bytes.
        """
        return self._path


class StagedSync:
    """
    The files of one integrity sync, staged and then applied all together.

    @ivar root: the node home.
    @ivar stagingDir: the peer's staging area (C{queue/cluster/<peer>/}); this
        sync uses a private directory inside it.
    @ivar fileset: the synced file set, for path rules and permissions.
    """

    def __init__(self, root, stagingDir, fileset, durable=True):
        """
        @param root: the node home (L{twisted.python.filepath.FilePath}).
        @param stagingDir: the staging area (L{twisted.python.filepath.FilePath});
            created if missing.
        @param fileset: the L{wazuhcluster.config.FileSet}.
        @param durable: flush the written files to disk before renaming them
            into place (disable only in tests and benchmarks of pure logic).
        """
        self.root = root
        self.stagingDir = stagingDir
        self.fileset = fileset
        self._durable = durable
        self._files = {}
        self._privateDir = None
        self._finished = False

    def open(self, relpath, expectedMd5, expectedSize):
        """
        Start receiving the new contents of C{relpath}.

        @param relpath: the target path (untrusted: checked by
            L{checkSyncedPath}).
        @param expectedMd5: the announced hex MD5 (32 lowercase digits).
        @param expectedSize: the announced size in bytes.
        @rtype: L{StagedFile}
        @raise UnsafePath: if the path is refused.
        @raise StagingError: if the sync is finished, the path was already
            opened, or the MD5/size are not well formed.
        """
        self._checkUsable()
        item = checkSyncedPath(self.fileset, relpath)
        if relpath in self._files:
            raise StagingError(f"File {relpath!r} sent twice")
        if not (
            isinstance(expectedMd5, str)
            and len(expectedMd5) == 32
            and _HEX.issuperset(expectedMd5)
        ):
            raise StagingError(f"Bad MD5 {expectedMd5!r} for {relpath!r}")
        if (
            not isinstance(expectedSize, int)
            or isinstance(expectedSize, bool)
            or expectedSize < 0
        ):
            raise StagingError(f"Bad size {expectedSize!r} for {relpath!r}")
        path = os.path.join(self._ensurePrivateDir(), f"{len(self._files):07d}.part")
        staged = StagedFile(relpath, item, expectedMd5, expectedSize, path)
        self._files[relpath] = staged
        return staged

    def apply(self, deletions, expected=None):
        """
        Put every staged file in place and delete C{deletions}.

        Nothing is changed unless every opened file is closed and verified
        (and, if C{expected} is given, the staged paths are exactly
        C{expected}), every deletion is a valid synced path not also staged,
        and no path goes through a symlink. The staging directory is emptied
        whatever happens, and the sync cannot be used again.

        @param deletions: paths of extra files to remove (untrusted).
        @param expected: optional iterable of the paths that must have been
            staged.
        @rtype: L{ApplyResult}
        @raise IncompleteSync: if a file is missing, unverified or unexpected.
        @raise UnsafePath: if a path is refused.
        @raise StagingError: on a file system conflict (e.g. a directory
            where a file goes).
        @raise OSError: on a file system error while placing files; each
            target is then old or new, never partial.
        """
        self._checkUsable()
        try:
            staged, toDelete = self._plan(deletions, expected)
            return _Applier(self.root, self.fileset, self._durable).run(
                staged, toDelete
            )
        finally:
            self._finish()

    def abort(self):
        """
        Drop everything staged; nothing is applied. Safe to call more than
        once, and after L{apply}.
        """
        self._finish()

    def _checkUsable(self):
        if self._finished:
            raise StagingError("This staged sync is already finished")

    def _ensurePrivateDir(self):
        if self._privateDir is None:
            _ensureStagingDir(self.stagingDir)
            self._privateDir = tempfile.mkdtemp(
                prefix="sync-", dir=self.stagingDir.path
            )
        return self._privateDir

    def _plan(self, deletions, expected):
        unverified = sorted(p for p, f in self._files.items() if not f.verified)
        if unverified:
            raise IncompleteSync(
                f"{len(unverified)} files not received completely, "
                f"e.g. {unverified[0]!r}"
            )
        if expected is not None:
            expected = set(expected)
            missing = sorted(expected - self._files.keys())
            unexpected = sorted(self._files.keys() - expected)
            if missing or unexpected:
                raise IncompleteSync(
                    f"{len(missing)} expected files not received, "
                    f"{len(unexpected)} unexpected files received"
                )
        toDelete = []
        for relpath in dict.fromkeys(deletions):
            item = checkSyncedPath(self.fileset, relpath)
            if relpath in self._files:
                raise StagingError(f"File {relpath!r} both sent and deleted")
            toDelete.append((relpath, item))
        staged = [self._files[p] for p in sorted(self._files)]
        for relpath in [s.relpath for s in staged] + [d[0] for d in toDelete]:
            checkNotThroughSymlink(self.root, relpath)
        return staged, toDelete

    def _finish(self):
        self._finished = True
        for staged in self._files.values():
            if staged.isOpen:
                staged.discard()
        if self._privateDir is not None:
            shutil.rmtree(self._privateDir, ignore_errors=True)
            self._privateDir = None


class _Applier:
    """
    The file system work of one L{StagedSync.apply}.
    """

    def __init__(self, root, fileset, durable):
        self.root = root
        self.fileset = fileset
        self.durable = durable
        self.asRoot = os.geteuid() == 0
        self.syncfs = durable and _canSyncfs()
        rootStat = os.stat(root.path)
        self.homeOwner = (rootStat.st_uid, rootStat.st_gid)
        self.deleted = []
        self.removedDirs = []
        self.errors = []
        self.placed = []

    def run(self, staged, toDelete):
        """
        Delete, prune, place, flush and rename.

        @param staged: the verified L{StagedFile}s, sorted by path.
        @param toDelete: C{(relpath, item)} pairs of extra files.
        @rtype: L{ApplyResult}
        """
        protected = _ancestors(s.relpath for s in staged)
        self.deleteExtras(toDelete, protected)
        created, updated = [], []
        renamed = 0
        try:
            for each in staged:
                self.place(each)
            self.flush([tmp for tmp, _, _, _ in self.placed])
            for tmp, target, relpath, existed in self.placed:
                os.replace(tmp, target)
                renamed += 1
                (updated if existed else created).append(relpath)
            if created or updated or self.deleted:
                self.flush([target for _, target, _, _ in self.placed])
        finally:
            for tmp, _, _, _ in self.placed[renamed:]:
                _unlinkQuietly(tmp)
        return ApplyResult(
            tuple(created),
            tuple(updated),
            tuple(self.deleted),
            tuple(self.removedDirs),
            tuple(self.errors),
        )

    def deleteExtras(self, toDelete, protected):
        """
        Remove extra files, then the directories they leave empty.
        """
        toPrune = set()
        for relpath, item in toDelete:
            try:
                checkNotThroughSymlink(self.root, relpath)
                os.unlink(os.path.join(self.root.path, relpath))
            except FileNotFoundError:
                pass
            except (OSError, UnsafePath) as e:
                self.errors.append(f"{relpath}: {_reason(e)}")
                continue
            else:
                self.deleted.append(relpath)
            if item.remove_subdirs_if_empty:
                toPrune.add((relpath.rpartition("/")[0], item.path.rstrip("/")))
        for reldir, itemDir in sorted(toPrune, reverse=True):
            self.pruneUpwards(reldir, itemDir, protected)

    def pruneUpwards(self, reldir, itemDir, protected):
        """
        Remove C{reldir} and its parents up to (not including) C{itemDir}
        while they are empty or hold only excluded files.
        """
        while reldir != itemDir and reldir.startswith(itemDir + "/"):
            if reldir in protected:
                return
            path = os.path.join(self.root.path, reldir)
            try:
                if os.path.islink(path) or not self.removeIfEmpty(path):
                    return
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    self.errors.append(f"{reldir}: {_reason(e)}")
                return
            else:
                self.removedDirs.append(reldir)
            reldir = reldir.rpartition("/")[0]

    def removeIfEmpty(self, path):
        """
        Remove the directory C{path} if it holds nothing but excluded
        regular files.

        @return: whether it was removed.
        """
        leftovers = []
        with os.scandir(path) as entries:
            for entry in entries:
                if not (
                    entry.is_file(follow_symlinks=False)
                    and self.fileset.isExcluded(entry.name)
                ):
                    return False
                leftovers.append(entry.path)
        for leftover in leftovers:
            os.unlink(leftover)
        os.rmdir(path)
        return True

    def place(self, staged):
        """
        Put the staged bytes at C{<dir>/.<name>.tmp} next to the target, with
        the item's mode and the right owner.
        """
        checkNotThroughSymlink(self.root, staged.relpath)
        target = os.path.join(self.root.path, staged.relpath)
        directory, name = os.path.split(target)
        self.makeParents(staged.relpath)
        try:
            current = os.lstat(target)
        except FileNotFoundError:
            current = None
        if current is not None and not stat.S_ISREG(current.st_mode):
            raise StagingError(f"{staged.relpath!r} exists and is not a file")
        tmp = os.path.join(directory, f".{name}.tmp")
        _unlinkQuietly(tmp)
        self.placed.append((tmp, target, staged.relpath, current is not None))
        _moveOrCopy(staged.stagedPath, tmp)
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, staged.item.permissions)
            if self.asRoot:
                owner = self.homeOwner if current is None else (
                    current.st_uid,
                    current.st_gid,
                )
                os.fchown(fd, *owner)
            if self.durable and not self.syncfs:
                os.fsync(fd)
        finally:
            os.close(fd)

    def makeParents(self, relpath):
        """
        Create the missing directories of C{relpath} (mode 0o770), refusing
        any symlink on the way.
        """
        current = self.root.path
        for segment in relpath.split("/")[:-1]:
            current = os.path.join(current, segment)
            try:
                os.mkdir(current, DIRECTORY_MODE)
            except FileExistsError:
                pass
            else:
                os.chmod(current, DIRECTORY_MODE)
                if self.asRoot:
                    os.chown(current, *self.homeOwner)
            mode = os.lstat(current).st_mode
            if not stat.S_ISDIR(mode):
                raise StagingError(f"{relpath!r}: a parent is not a directory")

    def flush(self, paths):
        """
        Make written data durable: one C{syncfs} of the home's file system
        where available (otherwise files were fsynced as they were placed,
        and the directories of C{paths} are fsynced here).
        """
        if not self.durable:
            return
        if self.syncfs:
            _syncfs(self.root.path)
            return
        for directory in sorted({os.path.dirname(p) for p in paths}):
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def cleanStaging(stagingDir):
    """
    Empty a staging directory (creating it if missing); called when a peer
    connects or disconnects.

    @param stagingDir: the staging area (L{twisted.python.filepath.FilePath}).
    @raise UnsafePath: if C{stagingDir} is a symlink.
    """
    _ensureStagingDir(stagingDir)
    with os.scandir(stagingDir.path) as entries:
        entries = list(entries)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            _unlinkQuietly(entry.path)


def _ensureStagingDir(stagingDir):
    if stagingDir.islink():
        raise UnsafePath(stagingDir.path, "the staging directory is a symlink")
    if not stagingDir.isdir():
        stagingDir.makedirs(ignoreExistingDirectory=True)
        stagingDir.chmod(DIRECTORY_MODE)


def _ancestors(relpaths):
    parents = set()
    for relpath in relpaths:
        while "/" in relpath:
            relpath = relpath.rpartition("/")[0]
            parents.add(relpath)
    return parents


def _moveOrCopy(source, destination):
    try:
        os.rename(source, destination)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(source, "rb") as src:
        with open(os.open(destination, flags, 0o600), "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
    _unlinkQuietly(source)


def _unlinkQuietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _reason(error):
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return getattr(error, "reason", str(error))


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _canSyncfs():
    libc = _libc()
    return libc is not None and hasattr(libc, "syncfs")


def _syncfs(path):
    """
    Flush the whole file system holding C{path} (Linux C{syncfs(2)}).
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc().syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
    finally:
        os.close(fd)
