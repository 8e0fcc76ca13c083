# -*- test-case-name: tests.test_fsutil -*-
"""
Tests for L{wazuhcluster.fsutil}.
"""

import os
import stat

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster import fsutil


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class AtomicWriteTests(SynchronousTestCase):
    """
    L{fsutil.atomicWrite} replaces a file with its mode from the first byte.
    """

    def setUp(self):
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.target = self.directory.child("client.keys")

    def test_createsWithMode(self):
        """
        A new file gets the content and exactly the mode asked for, and no
        temporary file is left.
        """
        fsutil.atomicWrite(self.target, b"001 a any k\n", 0o640)
        self.assertEqual(self.target.getContent(), b"001 a any k\n")
        self.assertEqual(_mode(self.target.path), 0o640)
        self.assertEqual(os.listdir(self.directory.path), ["client.keys"])

    def test_replaces(self):
        """
        An existing file is replaced (a new inode), a path string works too.
        """
        self.target.setContent(b"old")
        before = os.stat(self.target.path).st_ino
        fsutil.atomicWrite(self.target.path, b"new", 0o600)
        self.assertEqual(self.target.getContent(), b"new")
        self.assertNotEqual(os.stat(self.target.path).st_ino, before)

    def test_failureKeepsOld(self):
        """
        When the write fails, the old file is untouched and the temporary
        file removed.
        """
        self.target.setContent(b"old")

        def brokenReplace(source, destination):
            raise OSError(28, "No space left on device")

        self.patch(os, "replace", brokenReplace)
        self.assertRaises(OSError, fsutil.atomicWrite, self.target, b"new", 0o640)
        self.assertEqual(self.target.getContent(), b"old")
        self.assertEqual(os.listdir(self.directory.path), ["client.keys"])

    def test_temporaryNameIsExcluded(self):
        """
        Temporary names sit beside the target, start with a dot and end in
        C{.tmp} (an extension integrity sync never takes).
        """
        name = fsutil.temporaryBeside(self.target)
        self.assertEqual(os.path.dirname(name), self.directory.path)
        self.assertTrue(os.path.basename(name).startswith(".client.keys."))
        self.assertTrue(name.endswith(".tmp"))
        self.assertNotEqual(name, fsutil.temporaryBeside(self.target))


class CopyBesideTests(SynchronousTestCase):
    """
    L{fsutil.copyBeside} copies a file next to a target with a mode.
    """

    def test_copy(self):
        """
        The copy has the bytes and the mode, in the target's directory.
        """
        base = FilePath(self.mktemp())
        base.makedirs()
        source = base.child("source")
        source.setContent(b"x" * 100000)
        target = base.child("sub").child("target")
        target.parent().makedirs()
        copy = fsutil.copyBeside(source, target.path, 0o660)
        self.assertEqual(os.path.dirname(copy), target.parent().path)
        self.assertEqual(FilePath(copy).getContent(), b"x" * 100000)
        self.assertEqual(_mode(copy), 0o660)

    def test_removeTreeDoesNotFollowLinks(self):
        """
        L{fsutil.removeTree} removes a tree and the links in it, never what
        they point to.
        """
        base = FilePath(self.mktemp())
        outside = base.child("outside")
        outside.makedirs()
        outside.child("keep").setContent(b"k")
        tree = base.child("tree")
        tree.makedirs()
        os.symlink(outside.path, tree.child("link").path)
        fsutil.removeTree(tree)
        self.assertFalse(tree.exists())
        self.assertEqual(outside.child("keep").getContent(), b"k")
        fsutil.removeTree(tree)


class SyncFileSystemTests(SynchronousTestCase):
    def test_flushes(self):
        """
        L{fsutil.syncFileSystem} flushes the file system of a directory
        (Linux has syncfs), and says which path it could not open.
        """
        self.assertTrue(fsutil.canSyncFileSystem())
        directory = FilePath(self.mktemp())
        directory.makedirs()
        fsutil.syncFileSystem(directory.path)
        error = self.assertRaises(OSError, fsutil.syncFileSystem, directory.child("no").path)
        self.assertEqual(error.filename, directory.child("no").path)

    def test_failureRaises(self):
        """
        A failed syncfs raises L{OSError} with the C library's error.
        """
        import ctypes
        import errno

        class FailingLibc:
            def syncfs(self, fd):
                ctypes.set_errno(errno.EIO)
                return -1

        directory = FilePath(self.mktemp())
        directory.makedirs()
        error = self.assertRaises(OSError, fsutil.syncFileSystem, directory.path,
                                  libc=FailingLibc())
        self.assertEqual(error.errno, errno.EIO)

    def test_withoutSyncfs(self):
        """
        A C library without syncfs is told apart.
        """
        self.assertFalse(fsutil.canSyncFileSystem(libc=object()))

