# -*- test-case-name: tests.test_staging -*-
"""
Worker-side staged apply of the files sent by the master.

A L{StagedSync} receives every file of one integrity sync into a private
directory under the peer's staging area (C{queue/cluster/<peer>/}), checking
each file's size and MD5 as it is closed and then giving it the item's
permissions (and, as root, the home's owner). L{StagedSync.apply} touches the
synced tree only once every file has arrived and verified, and then:

 1. checks every path, each directory of the home being examined once: no
    file is written or deleted through a symlink;
 2. deletes the extra files and, for items with C{remove_subdirs_if_empty},
    their parent directories left empty (or holding only excluded files);
 3. creates the missing directories, checks each target is a file (or
    missing) and gives the staged file the owner of the file it replaces;
    where the staging area and a target are on different file systems, the
    staged file is copied beside the target as C{.<name>.tmp} instead;
 4. flushes the file systems written (C{syncfs}, or C{fsync} per file);
 5. renames each staged file (or its copy) over its target (C{os.replace},
    atomic), then flushes again.

Whatever fails, each target is either its old or its new version, never a
mix; the C{.tmp} copies not renamed yet are removed, and the staging
directory is always emptied.

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
from wazuhcluster.pathrules import UnsafePath, checkSyncedPath

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

    When it is closed with the right size and MD5, the staged file gets the
    item's permissions (and, when running as root, the owner given here), so
    that placing it is a plain rename.

    @ivar relpath: the target path, relative to the home.
    @ivar item: the L{wazuhcluster.clusteritems.FileItem} it belongs to.
    @ivar expectedMd5: the announced hex MD5.
    @ivar expectedSize: the announced size.
    @ivar owner: C{(uid, gid)} given to the staged file when it is closed, or
        L{None} to leave it as created.
    @ivar verified: whether the file was closed with the right size and MD5.
    """

    def __init__(self, relpath, item, expectedMd5, expectedSize, path, owner=None):
        self.relpath = relpath
        self.item = item
        self.expectedMd5 = expectedMd5
        self.expectedSize = expectedSize
        self.owner = owner
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
        Finish the file: check its size and MD5, then give it the item's
        permissions (and its owner).

        @raise TransferMismatch: if the size or MD5 differ from the announced
            ones (the staged file is then discarded).
        @raise StagingError: if the file is not open.
        @raise OSError: if the file cannot be finished (it is then
            discarded).
        """
        if self._stream is None:
            raise StagingError(f"Staged file {self.relpath!r} is not open")
        try:
            self._checkContents()
            self._setMetadata(self._stream.fileno())
            self._stream.close()
        except BaseException:
            self.discard()
            raise
        self._stream = None
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

    def _checkContents(self):
        """
        Raise L{TransferMismatch} unless the bytes written have the announced
        size and MD5.
        """
        if self._written != self.expectedSize:
            raise TransferMismatch(
                f"File {self.relpath!r} is shorter than announced: "
                f"{self._written} of {self.expectedSize} bytes"
            )
        md5 = self._md5.hexdigest()
        if md5 != self.expectedMd5:
            raise TransferMismatch(
                f"File {self.relpath!r} has MD5 {md5}, "
                f"{self.expectedMd5} was announced"
            )

    def _setMetadata(self, fd):
        """
        Give the open staged file the item's permissions and C{owner}.
        """
        os.fchmod(fd, self.item.permissions)
        if self.owner is not None:
            os.fchown(fd, *self.owner)


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
        @param fileset: the L{wazuhcluster.clusteritems.FileSet}.
        @param durable: flush the written files to disk before renaming them
            into place (disable only in tests and benchmarks of pure logic).
        """
        self.root = root
        self.stagingDir = stagingDir
        self.fileset = fileset
        self._durable = durable
        self._files = {}
        self._privateDir = None
        self._stagedOwner = None
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
        staged = StagedFile(
            relpath, item, expectedMd5, expectedSize, path, self._ownerForStaged()
        )
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
            applier = _Applier(self.root, self.fileset, self._durable, self._privateDir)
            return applier.run(staged, toDelete)
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

    def _ownerForStaged(self):
        """
        The owner given to staged files: the home's when running as root
        (the usual owner of a new file; L{_Applier} changes it where the
        target exists with another owner), otherwise L{None} (chown needs
        root).
        """
        if self._stagedOwner is None and os.geteuid() == 0:
            rootStat = os.stat(self.root.path)
            self._stagedOwner = (rootStat.st_uid, rootStat.st_gid)
        return self._stagedOwner

    def _plan(self, deletions, expected):
        """
        Check that the staged set is complete and the deletions are valid
        synced paths (the file system is checked by L{_Applier.inspect}).

        @return: C{(staged files sorted by path, [(relpath, item)] to
            delete)}.
        """
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
        return staged, toDelete

    def _finish(self):
        self._finished = True
        for staged in self._files.values():
            if staged.isOpen:
                staged.discard()
        if self._privateDir is not None:
            shutil.rmtree(self._privateDir, ignore_errors=True)
            self._privateDir = None


class _Directories:
    """
    The directories of the home examined during one apply.

    Each directory is examined (C{lstat}) at most once, top-down: one found
    to be a real directory (not a symlink) is remembered with its device, and
    the paths below it are not checked again. The home itself is trusted.

    @ivar devices: C{st_dev} of each verified directory, by relative path
        (C{""} is the home).
    @ivar unreachable: relative paths known to be missing, or below a
        missing component or a non-directory.
    """

    def __init__(self, root, rootDevice, owner):
        """
        @param root: the home's path.
        @param rootDevice: the home's C{st_dev}.
        @param owner: C{(uid, gid)} given to created directories, or L{None}.
        """
        self.root = root
        self.owner = owner
        self.devices = {"": rootDevice}
        self.unreachable = set()

    def check(self, relpath):
        """
        Refuse C{relpath} if reaching it from the home goes through a symlink
        (the rule of L{wazuhcluster.pathrules.checkNotThroughSymlink}).

        @return: the C{lstat} of C{relpath}, or L{None} if it cannot exist
            yet (it, or a parent, is missing; or a parent is a file).
        @raise UnsafePath: if a component, the last one included, is a
            symlink.
        """
        if not self._reach(relpath.rpartition("/")[0], relpath):
            return None
        try:
            status = os.lstat(f"{self.root}/{relpath}")
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(status.st_mode):
            raise UnsafePath(relpath, f"{relpath!r} is a symbolic link")
        return status

    def _reach(self, reldir, relpath):
        """
        Examine the directories down to C{reldir} not verified yet.

        @return: whether C{reldir} is a real directory.
        @raise UnsafePath: if one is a symlink (C{relpath} is named).
        """
        pending = []
        while reldir not in self.devices:
            if reldir in self.unreachable:
                self.unreachable.update(pending)
                return False
            pending.append(reldir)
            reldir = reldir.rpartition("/")[0]
        for depth in range(len(pending) - 1, -1, -1):
            each = pending[depth]
            try:
                status = os.lstat(f"{self.root}/{each}")
            except (FileNotFoundError, NotADirectoryError):
                status = None
            if status is not None and stat.S_ISLNK(status.st_mode):
                raise UnsafePath(relpath, f"{each!r} is a symbolic link")
            if status is None or not stat.S_ISDIR(status.st_mode):
                self.unreachable.update(pending[: depth + 1])
                return False
            self.devices[each] = status.st_dev
        return True

    def ensure(self, reldir, relpath):
        """
        Make C{reldir} exist as a real directory, creating the missing ones
        top-down (mode 0o770, owned by C{owner}).

        @return: the C{st_dev} of C{reldir}.
        @raise StagingError: if a component is not a directory.
        @raise UnsafePath: if a component turned into a symlink.
        """
        device = self.devices.get(reldir)
        if device is not None:
            return device
        pending = []
        while reldir not in self.devices:
            pending.append(reldir)
            reldir = reldir.rpartition("/")[0]
        device = self.devices[reldir]
        for each in reversed(pending):
            device = self._makeDirectory(each, relpath, device)
        return device

    def _makeDirectory(self, reldir, relpath, parentDevice):
        """
        Create C{reldir} (its parent is verified), or verify the one there.

        @return: its C{st_dev}.
        """
        path = f"{self.root}/{reldir}"
        try:
            os.mkdir(path, DIRECTORY_MODE)
        except FileExistsError:
            status = os.lstat(path)
            if stat.S_ISLNK(status.st_mode):
                raise UnsafePath(relpath, f"{reldir!r} is a symbolic link")
            if not stat.S_ISDIR(status.st_mode):
                raise StagingError(f"{relpath!r}: a parent is not a directory")
            device = status.st_dev
        else:
            os.chmod(path, DIRECTORY_MODE)
            if self.owner is not None:
                os.chown(path, *self.owner)
            device = parentDevice
        self.devices[reldir] = device
        self.unreachable.discard(reldir)
        return device

    def forget(self, reldir):
        """
        Note that C{reldir} was removed.
        """
        self.devices.pop(reldir, None)
        self.unreachable.add(reldir)


@frozen
class _Move:
    """
    One rename of the apply: C{source} over C{target}.

    @ivar temporary: whether C{source} is a C{.<name>.tmp} copy beside the
        target (removed if the apply fails before renaming it), rather than
        the staged file itself.
    @ivar existed: whether the target existed (the file is updated, not
        created).
    @ivar mode: the target's permissions.
    @ivar owner: the target's C{(uid, gid)}, or L{None} when not root.
    """

    source: str
    target: str
    relpath: str
    existed: bool
    temporary: bool
    mode: int
    owner: tuple = None


class _Applier:
    """
    The file system work of one L{StagedSync.apply}.

    Staged files already carry their permissions and owner, so where the
    staging area and a target are on the same file system the staged file is
    renamed straight over its target; elsewhere it is first copied beside
    the target as C{.<name>.tmp}.
    """

    def __init__(self, root, fileset, durable, stagingPath):
        """
        @param root: the node home (L{twisted.python.filepath.FilePath}).
        @param fileset: the L{wazuhcluster.clusteritems.FileSet}.
        @param durable: flush data before the renames, and the renames.
        @param stagingPath: the private staging directory, or L{None} when
            nothing was staged.
        """
        self.root = root
        self.fileset = fileset
        self.durable = durable
        self.asRoot = os.geteuid() == 0
        self.syncfs = durable and _canSyncfs()
        rootStat = os.stat(root.path)
        self.homeOwner = (rootStat.st_uid, rootStat.st_gid)
        self.rootDevice = rootStat.st_dev
        self.stagingPath = stagingPath
        self.stagingDevice = None if stagingPath is None else _deviceOf(stagingPath)
        self.directories = _Directories(
            root.path, rootStat.st_dev, self.homeOwner if self.asRoot else None
        )
        self.deleted = []
        self.removedDirs = []
        self.errors = []
        self.moves = []
        self.written = {}
        self.changed = {}

    def run(self, staged, toDelete):
        """
        Inspect, delete, prune, prepare, flush and rename.

        @param staged: the verified L{StagedFile}s, sorted by path.
        @param toDelete: C{(relpath, item)} pairs of extra files.
        @rtype: L{ApplyResult}
        """
        currents = self.inspect(staged, toDelete)
        protected = _ancestors(s.relpath for s in staged)
        self.deleteExtras(toDelete, protected)
        created, updated = [], []
        renamed = 0
        try:
            for each, current in zip(staged, currents):
                self.prepare(each, current)
            self.flushBeforeRenames()
            for move in self.moves:
                self.rename(move)
                renamed += 1
                (updated if move.existed else created).append(move.relpath)
            if created or updated or self.deleted:
                self.flushAfterRenames()
        finally:
            for move in self.moves[renamed:]:
                if move.temporary:
                    _unlinkQuietly(move.source)
        return ApplyResult(
            tuple(created),
            tuple(updated),
            tuple(self.deleted),
            tuple(self.removedDirs),
            tuple(self.errors),
        )

    def inspect(self, staged, toDelete):
        """
        Refuse the whole apply, before anything changes, if a staged file or
        a deletion would go through a symlink (every path checked once, each
        directory examined once).

        @return: the current C{lstat} of each staged target (L{None} where
            missing), in the order of C{staged}.
        @raise UnsafePath: on a symlink.
        """
        currents = [self.directories.check(s.relpath) for s in staged]
        for relpath, _ in toDelete:
            self.directories.check(relpath)
        return currents

    def deleteExtras(self, toDelete, protected):
        """
        Remove extra files, then the directories they leave empty.
        """
        toPrune = set()
        for relpath, item in toDelete:
            try:
                os.unlink(os.path.join(self.root.path, relpath))
            except FileNotFoundError:
                pass
            except OSError as e:
                self.errors.append(f"{relpath}: {_reason(e)}")
                continue
            else:
                self.deleted.append(relpath)
                self.changed[self.rootDevice] = self.root.path
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
                self.directories.forget(reldir)
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

    def prepare(self, staged, current):
        """
        Get C{staged} ready to be renamed over its target: create the
        missing directories, check the target is a file (or missing), give
        the staged file the owner of the file it replaces, or copy it beside
        the target when they are on different file systems.

        @param current: the target's C{lstat} from L{inspect}, or L{None}.
        @raise StagingError: if the target or a parent is in the way.
        """
        relpath = staged.relpath
        reldir = relpath.rpartition("/")[0]
        device = self.directories.ensure(reldir, relpath)
        target = f"{self.root.path}/{relpath}"
        if current is not None and stat.S_ISDIR(current.st_mode):
            current = _lstatOrNone(target)
        if current is not None and not stat.S_ISREG(current.st_mode):
            raise StagingError(f"{relpath!r} exists and is not a file")
        owner = self.ownerFor(current)
        temporary = device != self.stagingDevice
        if temporary:
            source = self.copyBeside(staged, target, owner, device)
        else:
            source = self.readyInStaging(staged, owner)
        self.moves.append(
            _Move(
                source,
                target,
                relpath,
                current is not None,
                temporary,
                staged.item.permissions,
                owner,
            )
        )
        if device not in self.changed:
            self.changed[device] = os.path.dirname(target)

    def readyInStaging(self, staged, owner):
        """
        Get a staged file on the target's file system ready to be renamed
        as it is: give it C{owner} (when it differs from the one it got when
        closed), and fsync it where C{syncfs} is unavailable.

        @return: its path.
        """
        source = staged.stagedPath
        if owner is not None and owner != staged.owner:
            os.chown(source, *owner, follow_symlinks=False)
        if self.durable and not self.syncfs:
            _fsyncPath(source)
        self.written[self.stagingDevice] = self.stagingPath
        return source

    def copyBeside(self, staged, target, owner, device):
        """
        Copy a staged file on another file system beside its target.

        @return: the copy's path (C{.<name>.tmp}).
        """
        fsync = self.durable and not self.syncfs
        mode = staged.item.permissions
        copy = _copyBeside(staged.stagedPath, target, mode, owner, fsync)
        self.written.setdefault(device, os.path.dirname(target))
        return copy

    def ownerFor(self, current):
        """
        The owner a target must have: that of the file it replaces, or the
        home's for a new file; L{None} when not root (chown needs root).
        """
        if not self.asRoot:
            return None
        if current is None:
            return self.homeOwner
        return (current.st_uid, current.st_gid)

    def rename(self, move):
        """
        Rename C{move.source} over its target (atomic). Should the staged
        file turn out not to be renamable there (C{EXDEV}: another mount of
        the same file system), it is copied beside the target, flushed, and
        that copy is renamed instead.
        """
        try:
            os.replace(move.source, move.target)
            return
        except OSError as e:
            if e.errno != errno.EXDEV or move.temporary:
                raise
        copy = _copyBeside(
            move.source, move.target, move.mode, move.owner, self.durable
        )
        try:
            os.replace(copy, move.target)
        except BaseException:
            _unlinkQuietly(copy)
            raise

    def flushBeforeRenames(self):
        """
        Make the bytes about to be renamed durable: one C{syncfs} per file
        system written (the staging area's, and those receiving copies).
        Without C{syncfs}, files were fsynced as they were prepared.
        """
        if self.syncfs:
            for path in self.written.values():
                _syncfs(path)

    def flushAfterRenames(self):
        """
        Make the renames and deletions durable: one C{syncfs} per file
        system changed, or else an C{fsync} of each target directory.
        """
        if not self.durable:
            return
        if self.syncfs:
            for path in self.changed.values():
                _syncfs(path)
            return
        for directory in sorted({os.path.dirname(m.target) for m in self.moves}):
            _fsyncPath(directory, os.O_DIRECTORY)


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


def _deviceOf(path):
    """
    The C{st_dev} of C{path} (a separate function so tests can pretend the
    staging area is on another file system).
    """
    return os.stat(path).st_dev


def _lstatOrNone(path):
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _copyBeside(source, target, mode, owner, fsync):
    """
    Copy C{source} to C{.<name>.tmp} beside C{target}, with C{mode} and
    C{owner} (unless L{None}), fsynced if C{fsync}; the copy is removed
    again if anything fails.

    @return: the copy's path.
    """
    directory, name = os.path.split(target)
    copy = os.path.join(directory, f".{name}.tmp")
    _unlinkQuietly(copy)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(copy, flags, 0o600)
    try:
        with open(source, "rb") as src, open(fd, "wb", closefd=False) as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlinkQuietly(copy)
        raise
    os.close(fd)
    return copy


def _fsyncPath(path, flags=os.O_NOFOLLOW):
    """
    Flush C{path} (opened read-only with C{flags}) to disk.
    """
    fd = os.open(path, os.O_RDONLY | flags | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
