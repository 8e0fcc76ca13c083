# -*- test-case-name: tests.test_staging -*-
"""
Tests for L{wazuhcluster.staging} and L{wazuhcluster.placing}: files staged,
verified, and placed one by one, master wins.
"""

import errno
import hashlib
import os
import stat

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.test_pathrules import FILESET
from wazuhcluster import placing
from wazuhcluster.pathrules import UnsafePath
from wazuhcluster.staging import (
    StagedSync,
    StagingError,
    TransferMismatch,
    cleanStaging,
    cleanStagingAreas,
    isDiskFull,
)

OLD = {
    "etc/client.keys": b"001 old any key\n",
    "etc/shared/default/agent.conf": b"<old/>\n",
    "etc/shared/gone/agent.conf": b"<gone/>\n",
    "etc/shared/gone/ar.conf": b"excluded, left behind\n",
    "etc/shared/kept/agent.conf": b"<kept/>\n",
    "etc/shared/kept/extra.txt": b"extra\n",
    "etc/shared/kept/ossec.conf": b"excluded, untouched\n",
    "etc/rules/local_rules.xml": b"<old/>\n",
    "etc/rules/sub/extra.xml": b"<extra/>\n",
    "var/multigroups/aa/merged.mg": b"#old\n",
}

NEW = {
    "etc/client.keys": b"001 new any key\n002 b any key\n",
    "etc/shared/default/agent.conf": b"<new/>\n",
    "etc/shared/fresh/deep/custom.yml": b"policy: new\n",
    "etc/rules/local_rules.xml": b"<new/>\n" * 1000,
    "var/multigroups/bb/merged.mg": b"#new\n",
}

DELETIONS = [
    "etc/shared/gone/agent.conf",
    "etc/shared/kept/extra.txt",
    "etc/rules/sub/extra.xml",
    "var/multigroups/aa/merged.mg",
    "etc/lists/already-gone",
]


def md5(data):
    return hashlib.md5(data).hexdigest()


class StagingTestsMixin:
    """
    A home holding L{OLD} and a staging area.
    """

    def setUp(self):
        self.root = FilePath(self.mktemp())
        self.root.makedirs()
        for relpath, content in OLD.items():
            self.put(relpath, content)
        self.stagingDir = self.root.descendant(["queue", "cluster", "master"])

    def put(self, relpath, content):
        child = self.root.preauthChild(relpath)
        child.parent().makedirs(ignoreExistingDirectory=True)
        child.setContent(content)

    def content(self, relpath):
        child = self.root.preauthChild(relpath)
        return child.getContent() if child.isfile() else None

    def stage(self, files, sync=None, chunk=7, **kwargs):
        """
        Stage C{files} (path to bytes) in chunks of C{chunk} bytes, each
        finished with its true size and MD5.
        """
        sync = sync or StagedSync(self.root, self.stagingDir, FILESET, **kwargs)
        for relpath, content in files.items():
            staged = sync.begin(relpath)
            for start in range(0, len(content), chunk):
                staged.write(content[start : start + chunk])
            staged.finish(md5(content), len(content))
        return sync

    def assertStagingEmpty(self):
        if self.stagingDir.exists():
            self.assertEqual(self.stagingDir.listdir(), [])

    def forceCopies(self):
        """
        Make the staging area look like another file system, so staged files
        are copied beside their targets before the renames.
        """
        realDeviceOf = placing._deviceOf
        self.patch(placing, "_deviceOf", lambda path: realDeviceOf(path) + 1)

    def tempFiles(self):
        return sorted(p.path for p in self.root.walk() if p.basename().endswith(".tmp"))

    def assertNewApplied(self, files=NEW):
        for relpath, content in files.items():
            self.assertEqual(self.content(relpath), content, relpath)
            mode = stat.S_IMODE(os.stat(self.root.preauthChild(relpath).path).st_mode)
            self.assertEqual(mode, 0o640 if relpath == "etc/client.keys" else 0o660)
        self.assertEqual(self.tempFiles(), [])
        self.assertStagingEmpty()

    def recordReplaces(self):
        calls = []
        realReplace = os.replace

        def replace(source, destination):
            calls.append((source, destination))
            return realReplace(source, destination)

        self.patch(os, "replace", replace)
        return calls


class ApplyTests(StagingTestsMixin, SynchronousTestCase):
    """
    A complete L{StagedSync.apply}.
    """

    def test_fullApply(self):
        """
        Every staged file lands with its bytes and the item's permissions
        (client.keys 0640, others 0660); extras are deleted, directories left
        empty (or holding only excluded files) are removed where the item
        says so, other directories and excluded files are kept; the result
        lists what changed, what each placed file now is, and staging is
        emptied.
        """
        result = self.stage(NEW).apply(DELETIONS)
        self.assertNewApplied()
        for relpath in DELETIONS:
            self.assertIsNone(self.content(relpath))
        self.assertFalse(self.root.preauthChild("etc/shared/gone").exists())
        self.assertFalse(self.root.preauthChild("var/multigroups/aa").exists())
        self.assertTrue(self.root.preauthChild("etc/rules/sub").isdir())
        kept = "etc/shared/kept/ossec.conf"
        self.assertEqual(self.content(kept), OLD[kept])
        fresh = self.root.preauthChild("etc/shared/fresh/deep")
        self.assertEqual(stat.S_IMODE(os.stat(fresh.path).st_mode), 0o770)
        self.assertEqual(sorted(result.created),
                         ["etc/shared/fresh/deep/custom.yml", "var/multigroups/bb/merged.mg"])
        self.assertEqual(sorted(result.updated), ["etc/client.keys",
                                                  "etc/rules/local_rules.xml",
                                                  "etc/shared/default/agent.conf"])
        self.assertEqual(sorted(result.deleted), sorted(DELETIONS[:-1]))
        self.assertEqual(sorted(result.removedDirs), ["etc/shared/gone", "var/multigroups/aa"])
        self.assertEqual(result.failed, {})
        placed = result.placed["etc/rules/local_rules.xml"]
        self.assertEqual((placed.md5, placed.size),
                         (md5(NEW["etc/rules/local_rules.xml"]),
                          len(NEW["etc/rules/local_rules.xml"])))
        self.assertEqual(placed.stat.st_ino,
                         os.stat(self.root.preauthChild("etc/rules/local_rules.xml").path).st_ino)

    def test_emptyFile(self):
        """
        An empty file is staged and applied.
        """
        self.stage({"etc/lists/empty": b""}).apply([])
        self.assertEqual(self.content("etc/lists/empty"), b"")

    def test_verifiedFilesGetTheirMode(self):
        """
        A staged file gets its item's permissions when it is verified, so
        that placing it is a rename: one C{os.replace} per file, straight
        from staging.
        """
        sync = self.stage(NEW)
        for relpath in NEW:
            mode = stat.S_IMODE(os.stat(sync.files[relpath].stagedPath).st_mode)
            self.assertEqual(mode, 0o640 if relpath == "etc/client.keys" else 0o660)
        replaces = self.recordReplaces()
        sync.apply([])
        self.assertEqual([d for _, d in replaces],
                         [self.root.preauthChild(p).path for p in sorted(NEW)])
        self.assertTrue(all(s.endswith(".part") for s, _ in replaces))
        self.assertNewApplied()

    def test_copiedAcrossFileSystems(self):
        """
        When the staging area and the targets are on different file systems,
        staged files are copied beside their targets (with the item's
        permissions) and those copies renamed.
        """
        self.forceCopies()
        replaces = self.recordReplaces()
        self.stage(NEW).apply(DELETIONS)
        self.assertNewApplied()
        self.assertEqual(len(replaces), len(NEW))
        for source, destination in replaces:
            self.assertEqual(os.path.dirname(source), os.path.dirname(destination))
            self.assertTrue(os.path.basename(source).startswith("."))

    def test_acrossMounts(self):
        """
        Where renaming a staged file fails with C{EXDEV} although the file
        systems look the same (another mount of it), the file is copied
        beside its target and the copy renamed.
        """
        realReplace = os.replace

        def replace(source, destination):
            if source.endswith(".part"):
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            return realReplace(source, destination)

        self.patch(os, "replace", replace)
        self.stage(NEW).apply(DELETIONS)
        self.assertNewApplied()

    def test_ownershipKept(self):
        """
        As root, a replaced file keeps its owner and a new file gets the
        home's owner; otherwise files keep the owner they are created with.
        """
        keys = self.root.preauthChild("etc/client.keys").path
        if os.geteuid() != 0:
            self.stage(NEW).apply([])
            self.assertEqual(os.stat(keys).st_uid, os.geteuid())
            return
        os.chown(keys, 1234, 2345)
        os.chown(self.root.path, 3456, 4567)
        self.stage(NEW).apply([])
        self.assertEqual(os.stat(keys)[stat.ST_UID:stat.ST_GID + 1], (1234, 2345))
        created = os.stat(self.root.preauthChild("var/multigroups/bb/merged.mg").path)
        self.assertEqual((created.st_uid, created.st_gid), (3456, 4567))

    def test_flushedWithoutSyncfs(self):
        """
        Durability costs no flush of a whole file system: every staged file
        is fsynced before the first rename, and each directory changed once
        after the last; with C{durable=False} nothing is flushed.
        """
        events = []
        realReplace = os.replace
        self.patch(os, "replace", lambda s, d: (events.append("replace"), realReplace(s, d)))
        self.patch(placing, "fsyncPath", lambda path: events.append("fsync"))
        self.patch(placing, "fsyncDirectory", lambda path: events.append(("dir", path)))
        self.stage(NEW).apply([])
        self.assertEqual(events[:len(NEW)], ["fsync"] * len(NEW))
        self.assertEqual(events[len(NEW):2 * len(NEW)], ["replace"] * len(NEW))
        directories = [e[1] for e in events[2 * len(NEW):]]
        self.assertEqual(len(directories), len(set(directories)))
        self.assertIn(self.root.preauthChild("etc/rules").path, directories)
        del events[:]
        self.stage({"etc/lists/x": b"x"}, durable=False).apply([])
        self.assertEqual(events, ["replace"])


    def test_bigApplyFlushesTheFileSystemOnce(self):
        """
        From L{placing.SYNCFS_FILES} staged files on, one flush of the file
        system replaces a flush of each file before the renames, and of
        each directory after them (where syncfs exists); every file arrives.
        """
        self.patch(placing, "SYNCFS_FILES", 3)
        events = []
        realReplace = os.replace
        self.patch(os, "replace", lambda s, d: (events.append("replace"), realReplace(s, d)))
        self.patch(placing, "fsyncPath", lambda path: events.append("fsync"))
        self.patch(placing, "fsyncDirectory", lambda path: events.append("dir"))
        self.patch(placing, "canSyncFileSystem", lambda: True)
        self.patch(placing, "syncFileSystem", lambda path: events.append("syncfs"))
        files = {f"etc/shared/g{n}/agent.conf": b"%d" % n for n in range(4)}
        self.stage(files).apply([])
        self.assertEqual(events, ["syncfs"] + ["replace"] * 4 + ["syncfs"])
        for relpath, content in files.items():
            self.assertEqual(self.root.preauthChild(relpath).getContent(), content)


class MasterWinsTests(StagingTestsMixin, SynchronousTestCase):
    """
    Whatever the worker has at a path, it becomes what the master has.
    """

    def test_fileReplacesDirectory(self):
        """
        A file where the worker has a directory (even one holding excluded
        or unknown files) replaces the directory.
        """
        self.put("etc/lists/audit-keys/old-list", b"old")
        self.put("etc/lists/audit-keys/notes.swp", b"excluded")
        result = self.stage({"etc/lists/audit-keys": b"now a list"}).apply(
            ["etc/lists/audit-keys/old-list"])
        self.assertEqual(self.content("etc/lists/audit-keys"), b"now a list")
        self.assertIn("etc/lists/audit-keys", result.removedDirs)
        self.assertEqual(result.failed, {})

    def test_directoryReplacesFile(self):
        """
        A directory of files where the worker has a file: the file goes,
        the directory comes with its files, in an item that keeps empty
        directories too (C{etc/lists}).
        """
        self.put("etc/lists/audit-keys", b"was a file")
        files = {"etc/lists/audit-keys/a": b"a", "etc/lists/audit-keys/b/c": b"c"}
        result = self.stage(files).apply(["etc/lists/audit-keys"])
        self.assertNewApplied(files)
        self.assertEqual(result.failed, {})
        self.assertIn("etc/lists/audit-keys", result.deleted)

    def test_fileInTheWayWithoutDeletion(self):
        """
        Even when the worker did not list the file in the way as extra (a
        name it does not sync), the master's directory replaces it.
        """
        self.put("etc/shared/web", b"a file named like a group")
        files = {"etc/shared/web/agent.conf": b"<agent_config/>"}
        result = self.stage(files).apply([])
        self.assertNewApplied(files)
        self.assertIn("etc/shared/web", result.deleted)

    def test_directoryReceivingFilesKept(self):
        """
        A directory whose extras are all deleted but which receives a new file
        in the same sync is not removed.
        """
        result = self.stage({"etc/shared/gone/new.conf": b"new"}).apply(
            ["etc/shared/gone/agent.conf"])
        self.assertEqual(result.removedDirs, ())
        self.assertEqual(self.content("etc/shared/gone/new.conf"), b"new")
        self.assertEqual(self.content("etc/shared/gone/ar.conf"), OLD["etc/shared/gone/ar.conf"])


class IsolationTests(StagingTestsMixin, SynchronousTestCase):
    """
    One file that cannot be placed never blocks the others.
    """

    def test_symlinkedDirectoryRefusesOnlyItsFiles(self):
        """
        A file under a symlinked directory is refused (never written through
        the link); every other file is placed.
        """
        outside = FilePath(self.mktemp())
        outside.makedirs()
        os.symlink(outside.path, self.root.preauthChild("etc/shared/linked").path)
        files = dict(NEW)
        files["etc/shared/linked/agent.conf"] = b"through the link"
        result = self.stage(files).apply([])
        self.assertEqual(list(result.failed), ["etc/shared/linked/agent.conf"])
        self.assertIn("symbolic link", result.failed["etc/shared/linked/agent.conf"])
        self.assertEqual(outside.listdir(), [])
        self.assertNewApplied()

    def test_symlinkedDeletionRefused(self):
        """
        A deletion through a symlinked directory is refused; the target
        outside is untouched; the other deletions happen.
        """
        outside = FilePath(self.mktemp())
        outside.makedirs()
        outside.child("precious").setContent(b"keep")
        os.symlink(outside.path, self.root.preauthChild("etc/rules/linked").path)
        result = self.stage({}).apply(["etc/rules/linked/precious", "etc/rules/sub/extra.xml"])
        self.assertEqual(outside.child("precious").getContent(), b"keep")
        self.assertIn("etc/rules/linked/precious", result.failed)
        self.assertIsNone(self.content("etc/rules/sub/extra.xml"))

    def test_symlinkTargetReplacedNotFollowed(self):
        """
        A symlink where the master has a file is replaced by the file; what
        it pointed to is untouched.
        """
        outside = FilePath(self.mktemp())
        outside.setContent(b"keep")
        target = self.root.preauthChild("etc/rules/local_rules.xml")
        target.remove()
        os.symlink(outside.path, target.path)
        self.stage({"etc/rules/local_rules.xml": b"<new/>"}).apply([])
        self.assertFalse(target.islink())
        self.assertEqual(target.getContent(), b"<new/>")
        self.assertEqual(outside.getContent(), b"keep")

    def test_renameFailureIsolated(self):
        """
        A rename that fails leaves that target old and reports it; the
        others are new; no temporary file is left.
        """
        realReplace = os.replace
        failing = self.root.preauthChild("etc/rules/local_rules.xml").path

        def replace(source, destination):
            if destination == failing:
                raise OSError(5, "Simulated I/O error")
            return realReplace(source, destination)

        self.patch(os, "replace", replace)
        result = self.stage(NEW).apply(DELETIONS)
        self.assertEqual(result.failed, {"etc/rules/local_rules.xml": "Simulated I/O error"})
        self.assertEqual(self.content("etc/rules/local_rules.xml"),
                         OLD["etc/rules/local_rules.xml"])
        others = {p: c for p, c in NEW.items() if p != "etc/rules/local_rules.xml"}
        self.assertNewApplied(others)

    def test_directoryCreationFailureIsolated(self):
        """
        A directory that cannot be created fails the files below it only.
        """
        realMkdir = os.mkdir

        def mkdir(path, mode=0o777):
            if path.endswith("fresh"):
                raise OSError(28, "No space left on device")
            return realMkdir(path, mode)

        self.patch(os, "mkdir", mkdir)
        result = self.stage(NEW).apply([])
        self.assertEqual(list(result.failed), ["etc/shared/fresh/deep/custom.yml"])
        others = {p: c for p, c in NEW.items() if "fresh" not in p}
        self.assertNewApplied(others)

    def test_unsafeDeletionRefused(self):
        """
        A deletion outside the synced set is refused and reported.
        """
        result = self.stage({}).apply(["etc/ossec.conf", "../outside"])
        self.assertEqual(sorted(result.failed), ["../outside", "etc/ossec.conf"])


class VerifyTests(StagingTestsMixin, SynchronousTestCase):
    """
    Staged bytes are checked against what the master says it sent.
    """

    def test_wrongMd5(self):
        """
        A file whose bytes do not hash to the MD5 the master computed is
        refused and discarded; it is not placed, the others are.
        """
        sync = self.stage(NEW)
        staged = sync.begin("etc/lists/bad")
        staged.write(b"evil")
        error = self.assertRaises(TransferMismatch, staged.finish, md5(b"good"), 4)
        self.assertIn("MD5", str(error))
        self.assertFalse(os.path.exists(staged.stagedPath))
        sync.apply([])
        self.assertIsNone(self.content("etc/lists/bad"))
        self.assertNewApplied()

    def test_wrongSize(self):
        """
        A file of another size than the master says is refused.
        """
        sync = StagedSync(self.root, self.stagingDir, FILESET)
        staged = sync.begin("etc/lists/x")
        staged.write(b"abc")
        self.assertRaises(TransferMismatch, staged.finish, md5(b"abc"), 4)
        sync.abort()

    def test_unsafePathsRefused(self):
        """
        Paths outside the synced set are refused before anything is written.
        """
        sync = StagedSync(self.root, self.stagingDir, FILESET)
        for relpath in ("../x", "etc/ossec.conf", "/etc/passwd", "etc/rules/../../x"):
            self.assertRaises(UnsafePath, sync.begin, relpath)
        sync.abort()
        self.assertStagingEmpty()

    def test_sentTwice(self):
        """
        The same path twice in one sync is refused.
        """
        sync = self.stage({"etc/lists/x": b"x"})
        self.assertRaises(StagingError, sync.begin, "etc/lists/x")
        sync.abort()


class BoundsTests(StagingTestsMixin, SynchronousTestCase):
    """
    A round stages at most C{maxBytes}, and never fills the disk.
    """

    def test_maxBytes(self):
        """
        Writing past the round's byte bound fails; the file is discarded.
        """
        sync = StagedSync(self.root, self.stagingDir, FILESET, maxBytes=10)
        staged = sync.begin("etc/lists/big")
        staged.write(b"x" * 10)
        error = self.assertRaises(StagingError, staged.write, b"x")
        self.assertIn("max_zip_size", str(error))
        self.assertFalse(os.path.exists(staged.stagedPath))
        sync.abort()

    def test_diskNearlyFull(self):
        """
        Staging stops before the disk is full: when fewer than the bytes kept
        free would remain, it fails with a clear error.
        """
        class Status:
            f_bavail = 1000
            f_frsize = 4096
            f_blocks = 100000

        sync = StagedSync(self.root, self.stagingDir, FILESET,
                          statvfs=lambda path: Status())
        error = self.assertRaises(StagingError, sync.begin, "etc/lists/x")
        self.assertIn("Not enough free space", str(error))
        sync.abort()

    def test_noRoomErrors(self):
        """
        A full disk, a reached quota and a reached file-size limit (EFBIG:
        the file system's, or the process's RLIMIT_FSIZE) all mean there is
        no room for the round; other errors are about one file.
        """
        for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            self.assertTrue(isDiskFull(OSError(code, os.strerror(code))), code)
        for error in (OSError(errno.EACCES, "Permission denied"), ValueError("x")):
            self.assertFalse(isDiskFull(error), error)


class AbortTests(StagingTestsMixin, SynchronousTestCase):
    """
    Aborted and finished syncs leave nothing staged.
    """

    def test_abortCleans(self):
        """
        Aborting drops every staged file; nothing is applied.
        """
        sync = self.stage(NEW)
        sync.begin("etc/lists/open").write(b"half")
        sync.abort()
        sync.abort()
        self.assertStagingEmpty()
        for relpath, content in OLD.items():
            self.assertEqual(self.content(relpath), content)

    def test_applyOnce(self):
        """
        A sync cannot be applied twice nor used after it.
        """
        sync = self.stage(NEW)
        sync.apply([])
        self.assertRaises(StagingError, sync.apply, [])
        self.assertRaises(StagingError, sync.begin, "etc/lists/x")

    def test_cleanStaging(self):
        """
        L{cleanStaging} empties a staging area (creating it if missing).
        """
        cleanStaging(self.stagingDir)
        self.assertEqual(self.stagingDir.listdir(), [])
        self.stage({"etc/lists/x": b"x"})
        self.stagingDir.child("stray").setContent(b"s")
        cleanStaging(self.stagingDir)
        self.assertEqual(self.stagingDir.listdir(), [])

    def test_cleanStagingAreas(self):
        """
        L{cleanStagingAreas} (a node starting) empties the staging area of
        every peer under C{queue/cluster}, parts of a sync killed midway
        included, and leaves the control socket and other files alone.
        """
        queue = self.stagingDir.parent()
        sync = self.stage({"etc/lists/x": b"x"})
        sync.begin("etc/lists/half").write(b"half")
        other = queue.child("master2")
        other.makedirs()
        other.child("stray").setContent(b"s")
        queue.child("c-internal.sock").setContent(b"")
        cleanStagingAreas(queue)
        self.assertEqual(self.stagingDir.listdir(), [])
        self.assertEqual(other.listdir(), [])
        self.assertTrue(queue.child("c-internal.sock").exists())
        cleanStagingAreas(self.root.child("missing"))

    def test_cleanStagingSymlinkRefused(self):
        """
        A staging area that is a symlink is refused (never emptied through).
        """
        outside = FilePath(self.mktemp())
        outside.makedirs()
        outside.child("keep").setContent(b"k")
        self.stagingDir.parent().makedirs()
        os.symlink(outside.path, self.stagingDir.path)
        self.assertRaises(UnsafePath, cleanStaging, self.stagingDir)
        self.assertEqual(outside.child("keep").getContent(), b"k")
