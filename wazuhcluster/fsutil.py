# -*- test-case-name: tests.test_fsutil -*-
"""
The file system steps every writer of the project shares: a file replaced
atomically with its mode from the first byte, flushes of a file or a
directory or a whole file system, a copy beside a target, a quiet unlink.

Temporary files are named C{.<name>.<random>.tmp} in the target's directory:
integrity sync never picks them up (C{.tmp} is an excluded extension) and
the rename that replaces the target stays on one file system.

Everything here blocks: callers in the daemon run it in a thread.
"""

import ctypes
import os
import secrets
import shutil

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _pathOf(path):
    return path if isinstance(path, str) else path.path


def temporaryBeside(target):
    """
    A fresh temporary name in the directory of C{target}.
    """
    directory, name = os.path.split(_pathOf(target))
    return os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")


def atomicWrite(path, data, mode, owner=None, durable=True):
    """
    Replace C{path} with C{data}: the content is written to a temporary file
    created with C{mode} (never readable with wider permissions, even for an
    instant), flushed, and renamed over C{path}; the directory is then
    flushed, so a crash leaves the old or the new file, never a mix.

    @param path: a L{twisted.python.filepath.FilePath} or a path string.
    @type data: L{bytes}
    @param mode: the file's permissions.
    @param owner: C{(uid, gid)} to give the file, or L{None}.
    @param durable: flush the file and its directory (tests of pure logic
        may skip it).
    """
    target = _pathOf(path)
    tmp = temporaryBeside(target)
    fd = os.open(tmp, _CREATE, mode)
    try:
        try:
            os.fchmod(fd, mode)
            if owner is not None:
                os.fchown(fd, *owner)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        unlinkQuietly(tmp)
        raise
    if durable:
        fsyncDirectory(os.path.dirname(target))
    if not isinstance(path, str):
        path.changed()


def fsyncPath(path, flags=os.O_NOFOLLOW):
    """
    Flush C{path} (opened read-only with C{flags}) to disk.
    """
    fd = os.open(_pathOf(path), os.O_RDONLY | flags | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsyncDirectory(path):
    """
    Flush the entries of directory C{path} (creations, renames, removals).
    """
    fsyncPath(path, os.O_DIRECTORY)


def copyBeside(source, target, mode, owner=None, fsync=True):
    """
    Copy C{source} to a temporary file beside C{target}, with C{mode} and
    C{owner} (unless L{None}), flushed if C{fsync}; the copy is removed again
    if anything fails.

    @return: the copy's path.
    """
    copy = temporaryBeside(target)
    fd = os.open(copy, _CREATE, 0o600)
    try:
        with open(_pathOf(source), "rb") as src, open(fd, "wb", closefd=False) as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlinkQuietly(copy)
        raise
    os.close(fd)
    return copy


def unlinkQuietly(path):
    """
    Remove the file C{path} if it is there; ignore every error.
    """
    try:
        os.unlink(_pathOf(path))
    except OSError:
        pass


def removeTree(path):
    """
    Remove the directory tree C{path} without following symbolic links
    (a link inside is removed, not what it points to); a missing tree is
    fine, other errors are ignored.
    """
    shutil.rmtree(_pathOf(path), ignore_errors=True)


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def canSyncFileSystem(libc=None):
    """
    Whether L{syncFileSystem} works here (Linux's C{syncfs(2)}).
    """
    libc = _libc() if libc is None else libc
    return libc is not None and hasattr(libc, "syncfs")


def syncFileSystem(path, libc=None):
    """
    Flush everything written to the file system holding the directory
    C{path} (C{syncfs(2)}): one journal commit, where a flush per file costs
    one each.

    @raise OSError: the directory cannot be opened or the flush failed.
    """
    libc = _libc() if libc is None else libc
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
    finally:
        os.close(fd)
