# -*- test-case-name: tests.test_staging -*-
"""
Placing staged files into the synced tree (L{wazuhcluster.staging}).

Master wins, file by file:

  1. the extra files are deleted first (an extra file may stand where the
     master now has a directory), then, for items with
     C{remove_subdirs_if_empty}, their parent directories left empty (or
     holding only excluded files);
  2. each staged file is placed on its own: every directory on the way from
     its item directory is examined without following links; a regular file
     where the master has a directory is removed, a missing directory
     created (0770); a directory where the master has a file is removed with
     everything in it; a symbolic link anywhere on the way refuses that file
     (never written through);
  3. before the renames every staged file is flushed (their writeback started
     when they were verified), then each is renamed over its target
     (C{os.replace}, atomic), and each directory changed is flushed once.
     Nothing flushes a whole file system.

Whatever fails, each target is its old or its new version, never a mix, and
a file that cannot be placed is reported in the result without stopping the
others.  Where the staging area and a target are on different file systems,
the staged file is first copied beside the target.

Everything here blocks: it runs in a thread.
"""

import errno
import os
import stat
from concurrent.futures import ThreadPoolExecutor

from attrs import evolve, frozen

from wazuhcluster.fsutil import (
    canSyncFileSystem,
    copyBeside,
    fsyncDirectory,
    fsyncPath,
    removeTree,
    syncFileSystem,
    unlinkQuietly,
)

#: The mode of directories created while placing files (as Wazuh does).
DIRECTORY_MODE = 0o770

#: Threads flushing staged files before the renames.
FLUSH_THREADS = 8

#: Files (or directories) from which one flush of their file system replaces
#: a flush of each.
SYNCFS_FILES = 256


@frozen
class Placed:
    """
    One file placed: what the worker now holds there.

    @ivar md5: its MD5.
    @ivar size: its size.
    @ivar stat: its C{os.stat_result} once in place.
    """

    md5: str
    size: int
    stat: object


@frozen
class PlaceResult:
    """
    What a placement changed.

    @ivar created: paths written that did not exist before.
    @ivar updated: paths written over an existing file.
    @ivar deleted: extra paths removed (those already gone are not listed).
    @ivar removedDirs: directories removed (left empty, or in the way).
    @ivar placed: path to L{Placed} for every file written.
    @ivar failed: path to the reason it could not be placed or deleted.
    """

    created: tuple
    updated: tuple
    deleted: tuple
    removedDirs: tuple
    placed: dict
    failed: dict

    def withFailures(self, more):
        """
        This result with C{more} failures (path to reason) added.
        """
        if not more:
            return self
        return evolve(self, failed={**self.failed, **more})


class _Refused(Exception):
    """
    One file cannot be placed; the message says why.
    """


def _reason(error):
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


class Placer:
    """
    The file system work of one L{wazuhcluster.staging.StagedSync.apply}.
    """

    def __init__(self, root, fileset, durable, stagingPath):
        self.root = root.path
        self.fileset = fileset
        self.durable = durable
        self.asRoot = os.geteuid() == 0
        rootStat = os.stat(self.root)
        self.homeOwner = (rootStat.st_uid, rootStat.st_gid)
        self.stagingDevice = _deviceOf(stagingPath) if stagingPath else None
        self.directories = {"": rootStat.st_dev}
        self.changedDirs = set()
        self.removedDirs = []
        self.deleted = []
        self.failed = {}

    def run(self, staged, removals):
        """
        Delete C{removals} (C{(relpath, item)}), then place C{staged} (the
        verified L{wazuhcluster.staging.StagedFile}s).

        @rtype: L{PlaceResult}
        """
        protected = _ancestors(s.relpath for s in staged)
        self.deleteExtras(removals, protected)
        moves = []
        for each in staged:
            try:
                moves.append(self.prepare(each))
            except (_Refused, OSError) as e:
                self.failed[each.relpath] = _reason(e)
        if self.durable:
            self.flush([move for move in moves if not move[3]])
        created, updated, placed = [], [], {}
        for source, target, each, temporary, existed in moves:
            try:
                self.rename(source, target, each, temporary)
            except OSError as e:
                if temporary:
                    unlinkQuietly(source)
                self.failed[each.relpath] = _reason(e)
                continue
            (updated if existed else created).append(each.relpath)
            self.changedDirs.add(os.path.dirname(target))
            try:
                placed[each.relpath] = Placed(each.md5, each.size, os.lstat(target))
            except OSError:
                placed[each.relpath] = Placed(each.md5, each.size, None)
        if self.durable:
            self.flushDirectories(self.changedDirs)
        return PlaceResult(tuple(created), tuple(updated), tuple(self.deleted),
                           tuple(self.removedDirs), placed, dict(self.failed))

    # -- deletions -----------------------------------------------------------------

    def deleteExtras(self, removals, protected):
        """
        Remove extra files (never through a link), then the directories they
        leave empty where the item says so.
        """
        toPrune = set()
        for relpath, item in removals:
            path = os.path.join(self.root, relpath)
            try:
                self.reach(relpath.rpartition("/")[0], create=False, itemDir=item.path)
                status = os.lstat(path)
                if stat.S_ISDIR(status.st_mode):
                    removeTree(path)
                else:
                    os.unlink(path)
            except FileNotFoundError:
                continue
            except (_Refused, OSError) as e:
                self.failed[relpath] = _reason(e)
                continue
            self.deleted.append(relpath)
            self.changedDirs.add(os.path.dirname(path))
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
            path = os.path.join(self.root, reldir)
            try:
                if os.path.islink(path) or not self.removeIfEmpty(path):
                    return
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    self.failed[reldir] = _reason(e)
                return
            else:
                self.removedDirs.append(reldir)
                self.directories.pop(reldir, None)
                self.changedDirs.add(os.path.dirname(path))
            reldir = reldir.rpartition("/")[0]

    def removeIfEmpty(self, path):
        """
        Remove the directory C{path} if it holds nothing but excluded regular
        files.

        @return: whether it was removed.
        """
        leftovers = []
        with os.scandir(path) as entries:
            for entry in entries:
                if not (entry.is_file(follow_symlinks=False)
                        and self.fileset.isExcluded(entry.name)):
                    return False
                leftovers.append(entry.path)
        for leftover in leftovers:
            os.unlink(leftover)
        os.rmdir(path)
        return True

    # -- placing -------------------------------------------------------------------

    def reach(self, reldir, create, itemDir):
        """
        Make sure C{reldir} is a real directory, examining each component
        from the home once per placement, never following a link.  Below (and
        including) the item directory, a regular file in the way is removed
        (master wins) and, if C{create}, a missing directory is made.

        @return: the C{st_dev} of C{reldir}, or L{None} if it does not exist
            (and C{create} is false).
        @raise _Refused: a component is a symbolic link or cannot be made a
            directory.
        """
        if reldir in self.directories:
            return self.directories[reldir]
        parts = reldir.split("/")
        itemDepth = len(itemDir.rstrip("/").split("/"))
        current = ""
        device = self.directories[""]
        for depth, part in enumerate(parts, start=1):
            current = part if not current else f"{current}/{part}"
            known = self.directories.get(current)
            if known is not None:
                device = known
                continue
            path = os.path.join(self.root, current)
            try:
                status = os.lstat(path)
            except FileNotFoundError:
                status = None
            if status is not None and stat.S_ISLNK(status.st_mode):
                raise _Refused(f"{current!r} is a symbolic link")
            if status is not None and not stat.S_ISDIR(status.st_mode):
                if depth < itemDepth:
                    raise _Refused(f"{current!r} is not a directory")
                os.unlink(path)
                self.deleted.append(current)
                self.changedDirs.add(os.path.dirname(path))
                status = None
            if status is None:
                if not create:
                    return None
                os.mkdir(path, DIRECTORY_MODE)
                os.chmod(path, DIRECTORY_MODE)
                if self.asRoot:
                    os.chown(path, *self.homeOwner, follow_symlinks=False)
                self.changedDirs.add(os.path.dirname(path))
                status = os.lstat(path)
            device = status.st_dev
            self.directories[current] = device
        return device

    def prepare(self, staged):
        """
        Get one staged file ready to be renamed over its target.

        @return: C{(source, target, staged, temporary, existed)}.
        @raise _Refused: the file cannot be placed.
        """
        relpath = staged.relpath
        device = self.reach(relpath.rpartition("/")[0], create=True,
                            itemDir=staged.item.path)
        target = os.path.join(self.root, relpath)
        try:
            current = os.lstat(target)
        except FileNotFoundError:
            current = None
        if current is not None and stat.S_ISDIR(current.st_mode):
            removeTree(target)
            self.removedDirs.append(relpath)
            current = None
        owner = None
        if self.asRoot:
            owner = self.homeOwner if current is None else (current.st_uid, current.st_gid)
            if owner != staged.owner:
                os.chown(staged.stagedPath, *owner, follow_symlinks=False)
        existed = current is not None
        if device != self.stagingDevice:
            copy = copyBeside(staged.stagedPath, target, staged.item.permissions, owner,
                              fsync=self.durable)
            return copy, target, staged, True, existed
        return staged.stagedPath, target, staged, False, existed

    def rename(self, source, target, staged, temporary):
        """
        Rename C{source} over C{target} (atomic).  Should a staged file turn
        out not to be renamable there (C{EXDEV}: another mount of the same
        file system), it is copied beside the target, flushed, and that copy
        renamed instead.
        """
        try:
            os.replace(source, target)
            return
        except OSError as e:
            if e.errno != errno.EXDEV or temporary:
                raise
        owner = None
        if self.asRoot:
            status = os.stat(source)
            owner = (status.st_uid, status.st_gid)
        copy = copyBeside(source, target, staged.item.permissions, owner, fsync=self.durable)
        try:
            os.replace(copy, target)
        except BaseException:
            unlinkQuietly(copy)
            raise

    def flush(self, moves):
        """
        Flush the staged files about to be renamed: one by one, several at a
        time (the kernel commits their metadata together), or, from
        L{SYNCFS_FILES} files on, the staging file system at once (20 000
        files: 8-10 s of fsyncs on ext4 here, where one C{syncfs} finds most
        of the data already written back).
        """
        paths = [source for source, _, _, _, _ in moves]
        if not paths:
            return
        if len(paths) >= SYNCFS_FILES and canSyncFileSystem():
            syncFileSystem(os.path.dirname(paths[0]))
            return
        with ThreadPoolExecutor(min(FLUSH_THREADS, len(paths))) as pool:
            list(pool.map(fsyncPath, paths))

    def flushDirectories(self, directories):
        """
        Flush the directories renames changed: one by one, or from
        L{SYNCFS_FILES} on, their file system at once.
        """
        directories = sorted(directories)
        if len(directories) >= SYNCFS_FILES and canSyncFileSystem():
            try:
                syncFileSystem(self.root)
            except OSError:
                pass
            return
        for directory in directories:
            try:
                fsyncDirectory(directory)
            except OSError:
                pass


def _deviceOf(path):
    """
    The C{st_dev} of C{path} (a function of its own so tests can pretend the
    staging area is on another file system).
    """
    return os.stat(path).st_dev


def _ancestors(relpaths):
    parents = set()
    for relpath in relpaths:
        while "/" in relpath:
            relpath = relpath.rpartition("/")[0]
            parents.add(relpath)
    return parents
