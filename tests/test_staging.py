# -*- test-case-name: tests.test_staging -*-
"""
Tests for L{wazuhcluster.staging}.
"""

import errno
import hashlib
import os
import stat

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.test_pathrules import FILESET
from wazuhcluster import staging
from wazuhcluster.pathrules import UnsafePath
from wazuhcluster.staging import (
    IncompleteSync,
    StagedSync,
    StagingError,
    TransferMismatch,
    cleanStaging,
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
        return child.getContent() if child.exists() else None

    def stage(self, files, sync=None, chunk=7):
        """
        Stage C{files} (path to bytes) in chunks of C{chunk} bytes.
        """
        sync = sync or StagedSync(self.root, self.stagingDir, FILESET)
        for relpath, content in files.items():
            staged = sync.open(relpath, md5(content), len(content))
            for start in range(0, len(content), chunk):
                staged.write(content[start : start + chunk])
            staged.close()
        return sync

    def assertStagingEmpty(self):
        if self.stagingDir.exists():
            self.assertEqual(self.stagingDir.listdir(), [])

    def forceCopies(self):
        """
        Make the staging area look like another file system, so staged files
        are copied beside their targets as C{.tmp} before the renames.
        """
        realDeviceOf = staging._deviceOf
        self.patch(staging, "_deviceOf", lambda path: realDeviceOf(path) + 1)

    def tempFiles(self):
        return sorted(
            p.path for p in self.root.walk() if p.basename().endswith(".tmp")
        )


class ApplyTests(StagingTestsMixin, SynchronousTestCase):
    """
    Tests for a complete L{StagedSync.apply}.
    """

    def test_fullApply(self):
        """
        Every staged file lands with its bytes and the item's permissions
        (client.keys 0640, others 0660); extras are deleted, directories left
        empty (or holding only excluded files) are removed where the item
        says so, other directories and excluded files are kept; the result
        lists what changed and staging is emptied.
        """
        result = self.stage(NEW).apply(DELETIONS)
        for relpath, content in NEW.items():
            self.assertEqual(self.content(relpath), content)
            mode = stat.S_IMODE(os.stat(self.root.preauthChild(relpath).path).st_mode)
            self.assertEqual(mode, 0o640 if relpath == "etc/client.keys" else 0o660)
        for relpath in DELETIONS:
            self.assertIsNone(self.content(relpath))
        self.assertFalse(self.root.preauthChild("etc/shared/gone").exists())
        self.assertFalse(self.root.preauthChild("var/multigroups/aa").exists())
        self.assertTrue(self.root.preauthChild("etc/rules/sub").isdir())
        kept = "etc/shared/kept/ossec.conf"
        self.assertEqual(self.content(kept), OLD[kept])
        fresh = self.root.preauthChild("etc/shared/fresh/deep")
        self.assertEqual(stat.S_IMODE(os.stat(fresh.path).st_mode), 0o770)
        self.assertEqual(
            sorted(result.created),
            ["etc/shared/fresh/deep/custom.yml", "var/multigroups/bb/merged.mg"],
        )
        self.assertEqual(
            sorted(result.updated),
            [
                "etc/client.keys",
                "etc/rules/local_rules.xml",
                "etc/shared/default/agent.conf",
            ],
        )
        self.assertEqual(sorted(result.deleted), sorted(DELETIONS[:-1]))
        self.assertEqual(
            sorted(result.removedDirs), ["etc/shared/gone", "var/multigroups/aa"]
        )
        self.assertEqual(result.errors, ())
        self.assertEqual(self.tempFiles(), [])
        self.assertStagingEmpty()

    def test_acrossFileSystems(self):
        """
        When the staging area is on another file system (rename fails with
        C{EXDEV}), staged files are copied next to their targets instead.
        """
        realRename = os.rename

        def rename(source, destination):
            if source.endswith(".part"):
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            return realRename(source, destination)

        self.patch(os, "rename", rename)
        self.stage(NEW).apply([])
        for relpath, content in NEW.items():
            self.assertEqual(self.content(relpath), content)
        self.assertEqual(self.tempFiles(), [])
        self.assertStagingEmpty()

    def test_withoutSyncfs(self):
        """
        Where C{syncfs} is unavailable, files are fsynced one by one and the
        apply still completes; with C{durable=False} nothing is flushed.
        """
        self.patch(staging, "_canSyncfs", lambda: False)
        self.stage(NEW).apply(DELETIONS)
        self.assertEqual(self.content("etc/client.keys"), NEW["etc/client.keys"])
        sync = StagedSync(self.root, self.stagingDir, FILESET, durable=False)
        self.stage({"etc/lists/x": b"x"}, sync).apply([])
        self.assertEqual(self.content("etc/lists/x"), b"x")

    def test_emptyFile(self):
        """
        An empty file is staged and applied.
        """
        self.stage({"etc/lists/empty": b""}).apply([])
        self.assertEqual(self.content("etc/lists/empty"), b"")

    def test_ownershipKept(self):
        """
        When running as root, a replaced file keeps its owner and a new file
        gets the home's owner.
        """
        if os.geteuid() != 0:
            self.skipTest("chown needs root")
        keys = self.root.preauthChild("etc/client.keys").path
        os.chown(keys, 1234, 2345)
        os.chown(self.root.path, 3456, 4567)
        self.stage(NEW).apply([])
        self.assertEqual(os.stat(keys)[stat.ST_UID : stat.ST_GID + 1], (1234, 2345))
        created = os.stat(self.root.preauthChild("var/multigroups/bb/merged.mg").path)
        self.assertEqual((created.st_uid, created.st_gid), (3456, 4567))

    def test_fileReplacesDirectory(self):
        """
        A file the master has where the worker has a directory of extra files
        is applied after those extras (and their directory) are removed.
        """
        result = self.stage({"etc/shared/gone": b"now a file"}).apply(
            ["etc/shared/gone/agent.conf"]
        )
        self.assertEqual(self.content("etc/shared/gone"), b"now a file")
        self.assertEqual(result.removedDirs, ("etc/shared/gone",))

    def test_directoryReceivingFilesKept(self):
        """
        A directory whose extras are all deleted but which receives a new file
        in the same sync is not removed.
        """
        result = self.stage({"etc/shared/gone/new.conf": b"new"}).apply(
            ["etc/shared/gone/agent.conf"]
        )
        self.assertEqual(result.removedDirs, ())
        self.assertEqual(self.content("etc/shared/gone/new.conf"), b"new")
        excluded = "etc/shared/gone/ar.conf"
        self.assertEqual(self.content(excluded), OLD[excluded])

    def assertNewApplied(self):
        for relpath, content in NEW.items():
            self.assertEqual(self.content(relpath), content)
            mode = stat.S_IMODE(os.stat(self.root.preauthChild(relpath).path).st_mode)
            self.assertEqual(mode, 0o640 if relpath == "etc/client.keys" else 0o660)
        self.assertEqual(self.tempFiles(), [])
        self.assertStagingEmpty()

    def recordReplaces(self):
        """
        Record the C{(source, destination)} of every C{os.replace}.
        """
        calls = []
        realReplace = os.replace

        def replace(source, destination):
            calls.append((source, destination))
            return realReplace(source, destination)

        self.patch(os, "replace", replace)
        return calls

    def test_closeSetsPermissions(self):
        """
        A staged file gets its item's permissions when it is closed and
        verified, so that placing it is a rename.
        """
        sync = self.stage(NEW)
        for relpath in NEW:
            staged = sync._files[relpath]
            mode = stat.S_IMODE(os.stat(staged.stagedPath).st_mode)
            self.assertEqual(mode, 0o640 if relpath == "etc/client.keys" else 0o660)
        sync.abort()

    def test_renamedStraightIntoPlace(self):
        """
        On one file system each staged file is renamed over its target in
        a single C{os.replace}, and no C{.tmp} file is made or removed.
        """
        replaces = self.recordReplaces()
        unlinked = []
        realUnlink = os.unlink

        def unlink(path, *a, **kw):
            unlinked.append(path)
            return realUnlink(path, *a, **kw)

        self.patch(os, "unlink", unlink)
        self.stage(NEW).apply([])
        self.assertNewApplied()
        self.assertEqual(
            [destination for _, destination in replaces],
            [self.root.preauthChild(p).path for p in sorted(NEW)],
        )
        self.assertTrue(all(source.endswith(".part") for source, _ in replaces))
        self.assertEqual([p for p in unlinked if p.endswith(".tmp")], [])

    def test_copiedAcrossFileSystems(self):
        """
        When the staging area and the targets are on different file systems,
        staged files are copied beside their targets as C{.<name>.tmp} (with
        the item's permissions) and those copies are renamed.
        """
        self.forceCopies()
        replaces = self.recordReplaces()
        self.stage(NEW).apply(DELETIONS)
        self.assertNewApplied()
        self.assertEqual(len(replaces), len(NEW))
        for source, destination in replaces:
            directory, name = os.path.split(destination)
            self.assertEqual(source, os.path.join(directory, f".{name}.tmp"))

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

    def test_staleTemporaryReplaced(self):
        """
        A C{.<name>.tmp} left by an interrupted copy does not stop a copy.
        """
        self.put("etc/rules/.local_rules.xml.tmp", b"stale")
        self.forceCopies()
        self.stage(NEW).apply([])
        self.assertNewApplied()

    def test_eachDirectoryExaminedOnce(self):
        """
        Each directory is examined or created once per apply, however many
        files it receives: one C{lstat} per target plus one per directory.
        """
        files = {
            f"etc/shared/g{group}/sub/f{index}.conf": b"%d" % index
            for group in range(3)
            for index in range(20)
        }
        files.update({f"etc/rules/r{index}.xml": b"r" for index in range(20)})
        sync = self.stage(files)
        lstats, mkdirs = [], []
        realLstat, realMkdir = os.lstat, os.mkdir

        def lstat(path, *a, **kw):
            lstats.append(path)
            return realLstat(path, *a, **kw)

        def mkdir(path, *a, **kw):
            mkdirs.append(path)
            return realMkdir(path, *a, **kw)

        self.patch(os, "lstat", lstat)
        self.patch(os, "mkdir", mkdir)
        sync.apply([])
        directories = {os.path.dirname(p) for p in files}
        self.assertEqual(len(mkdirs), 6)
        self.assertEqual(len(set(mkdirs)), len(mkdirs))
        self.assertLessEqual(len(lstats), len(files) + len(directories) + 3)
        for relpath, content in files.items():
            self.assertEqual(self.content(relpath), content)

    def test_flushedBeforeRenames(self):
        """
        With C{syncfs}, the staging area's file system is flushed before the
        first rename and the home's after the last; without it, every staged
        file is fsynced before the first rename.
        """
        events = []
        realReplace, realFsync = os.replace, os.fsync

        def replace(source, destination):
            events.append("replace")
            return realReplace(source, destination)

        self.patch(os, "replace", replace)
        self.patch(staging, "_canSyncfs", lambda: True)
        self.patch(staging, "_syncfs", lambda path: events.append("syncfs"))
        self.stage(NEW).apply([])
        self.assertEqual(events, ["syncfs"] + ["replace"] * len(NEW) + ["syncfs"])

        del events[:]
        self.patch(staging, "_canSyncfs", lambda: False)
        self.patch(os, "fsync", lambda fd: (events.append("fsync"), realFsync(fd)))
        self.stage({p: c + b"again" for p, c in NEW.items()}).apply([])
        self.assertEqual(
            events[: 2 * len(NEW)], ["fsync"] * len(NEW) + ["replace"] * len(NEW)
        )


class RejectTests(StagingTestsMixin, SynchronousTestCase):
    """
    Transfers that do not match what was announced apply nothing.
    """

    def assertNothingApplied(self):
        for relpath, content in OLD.items():
            self.assertEqual(self.content(relpath), content)
        for relpath in NEW:
            if relpath not in OLD:
                self.assertIsNone(self.content(relpath))
        self.assertEqual(self.tempFiles(), [])

    def test_wrongMd5(self):
        """
        A file whose bytes do not hash to the announced MD5 is rejected when
        closed, and the sync then refuses to apply.
        """
        sync = self.stage(NEW)
        staged = sync.open("etc/lists/bad", md5(b"good"), 4)
        staged.write(b"evil")
        error = self.assertRaises(TransferMismatch, staged.close)
        self.assertIn("MD5", str(error))
        self.assertRaises(IncompleteSync, sync.apply, DELETIONS)
        self.assertNothingApplied()
        self.assertStagingEmpty()

    def test_short(self):
        """
        A file closed before its announced size arrived is rejected.
        """
        sync = self.stage(NEW)
        staged = sync.open("etc/lists/short", md5(b"12345"), 5)
        staged.write(b"1234")
        self.assertRaises(TransferMismatch, staged.close)
        self.assertRaises(IncompleteSync, sync.apply, DELETIONS)
        self.assertNothingApplied()

    def test_long(self):
        """
        Bytes beyond the announced size are rejected as they are written.
        """
        sync = self.stage(NEW)
        staged = sync.open("etc/lists/long", md5(b"123"), 3)
        staged.write(b"12")
        self.assertRaises(TransferMismatch, staged.write, b"34")
        self.assertRaises(StagingError, staged.write, b"3")
        self.assertRaises(IncompleteSync, sync.apply, DELETIONS)
        self.assertNothingApplied()

    def test_stillOpen(self):
        """
        A file still being received blocks the apply.
        """
        sync = self.stage(NEW)
        sync.open("etc/lists/pending", md5(b"x"), 1)
        self.assertRaises(IncompleteSync, sync.apply, [])
        self.assertNothingApplied()
        self.assertStagingEmpty()

    def test_expectedSet(self):
        """
        With C{expected}, a missing or an unexpected file blocks the apply.
        """
        self.assertRaises(
            IncompleteSync, self.stage(NEW).apply, [], expected=[*NEW, "etc/lists/x"]
        )
        self.assertRaises(
            IncompleteSync, self.stage(NEW).apply, [], expected=list(NEW)[1:]
        )
        self.assertNothingApplied()
        self.stage(NEW).apply([], expected=NEW)
        self.assertEqual(self.content("etc/client.keys"), NEW["etc/client.keys"])

    def test_unsafePathsRefused(self):
        """
        Hostile paths are refused when opened, and hostile deletions refuse
        the whole apply.
        """
        sync = StagedSync(self.root, self.stagingDir, FILESET)
        hostile = ["../x", "/etc/client.keys", "etc/ossec.conf", "etc/shared/a\x00b"]
        for relpath in hostile:
            self.assertRaises(UnsafePath, sync.open, relpath, md5(b""), 0)
        sync = self.stage(NEW)
        self.assertRaises(UnsafePath, sync.apply, ["etc/shared/../../etc/ossec.conf"])
        self.assertNothingApplied()

    def test_badAnnouncement(self):
        """
        Malformed MD5s or sizes and a file sent twice are refused.
        """
        sync = StagedSync(self.root, self.stagingDir, FILESET)
        self.assertRaises(StagingError, sync.open, "etc/lists/a", "XYZ", 0)
        self.assertRaises(StagingError, sync.open, "etc/lists/a", md5(b""), -1)
        self.assertRaises(StagingError, sync.open, "etc/lists/a", md5(b""), True)
        sync.open("etc/lists/a", md5(b""), 0).close()
        self.assertRaises(StagingError, sync.open, "etc/lists/a", md5(b""), 0)

    def test_sentAndDeleted(self):
        """
        A path both sent and listed for deletion is refused.
        """
        sync = self.stage(NEW)
        self.assertRaises(StagingError, sync.apply, ["etc/client.keys"])
        self.assertNothingApplied()

    def test_symlinkedDirectoryRefused(self):
        """
        A file to be written through a symlinked directory refuses the whole
        apply, and nothing is written outside the home.
        """
        outside = FilePath(self.mktemp())
        outside.makedirs()
        os.symlink(outside.path, self.root.preauthChild("etc/shared/evil").path)
        sync = self.stage({**NEW, "etc/shared/evil/agent.conf": b"evil"})
        self.assertRaises(UnsafePath, sync.apply, DELETIONS)
        self.assertEqual(outside.listdir(), [])
        self.assertNothingApplied()
        self.assertStagingEmpty()

    def test_symlinkedDeletionRefused(self):
        """
        A deletion through a symlinked directory refuses the whole apply.
        """
        outside = FilePath(self.mktemp())
        outside.makedirs()
        outside.child("agent.conf").setContent(b"precious")
        os.symlink(outside.path, self.root.preauthChild("etc/shared/evil").path)
        sync = self.stage(NEW)
        self.assertRaises(UnsafePath, sync.apply, ["etc/shared/evil/agent.conf"])
        self.assertEqual(outside.child("agent.conf").getContent(), b"precious")
        self.assertNothingApplied()

    def test_symlinkedTargetRefused(self):
        """
        A target that is a symlink refuses the whole apply; the file it
        points to is untouched.
        """
        outside = FilePath(self.mktemp())
        outside.parent().makedirs(ignoreExistingDirectory=True)
        outside.setContent(b"precious")
        self.root.preauthChild("etc/lists").makedirs()
        os.symlink(outside.path, self.root.preauthChild("etc/lists/link").path)
        sync = self.stage({**NEW, "etc/lists/link": b"evil"})
        self.assertRaises(UnsafePath, sync.apply, [])
        self.assertEqual(outside.getContent(), b"precious")
        self.assertNothingApplied()
        self.assertStagingEmpty()

    def test_symlinkBelowCheckedDirectory(self):
        """
        A symlink below a directory already verified for other files of the
        same apply is still refused.
        """
        outside = FilePath(self.mktemp())
        outside.makedirs()
        self.put("etc/shared/ok/agent.conf", b"ok")
        os.symlink(outside.path, self.root.preauthChild("etc/shared/ok/evil").path)
        files = {
            **NEW,
            "etc/shared/ok/agent.conf": b"new",
            "etc/shared/ok/b.conf": b"new",
            "etc/shared/ok/evil/deep/agent.conf": b"evil",
        }
        sync = self.stage(files)
        self.assertRaises(UnsafePath, sync.apply, DELETIONS)
        self.assertEqual(outside.listdir(), [])
        self.assertNothingApplied()
        self.assertEqual(self.content("etc/shared/ok/agent.conf"), b"ok")

    def test_fileInTheWayOfDirectory(self):
        """
        A file where a directory must go is a conflict: nothing is renamed.
        """
        self.put("etc/lists/afile", b"x")
        sync = self.stage({**NEW, "etc/lists/afile/sub/x": b"x"})
        self.assertRaises(StagingError, sync.apply, [])
        self.assertNothingApplied()
        self.assertEqual(self.content("etc/lists/afile"), b"x")
        self.assertStagingEmpty()

    def test_directoryInTheWay(self):
        """
        A directory where a file must go is a conflict: nothing is renamed.
        """
        self.root.preauthChild("etc/lists/adir").makedirs()
        sync = self.stage({**NEW, "etc/lists/adir": b"x"})
        self.assertRaises(StagingError, sync.apply, [])
        self.assertNothingApplied()
        self.assertStagingEmpty()


class AbortTests(StagingTestsMixin, SynchronousTestCase):
    """
    Tests for L{StagedSync.abort} and L{cleanStaging}.
    """

    def test_abortCleans(self):
        """
        Aborting removes every staged byte, open or closed, applies nothing,
        and the sync cannot be used afterwards.
        """
        sync = self.stage(NEW)
        sync.open("etc/lists/open", md5(b"xy"), 2).write(b"x")
        sync.abort()
        sync.abort()
        self.assertStagingEmpty()
        self.assertEqual(self.content("etc/client.keys"), OLD["etc/client.keys"])
        self.assertRaises(StagingError, sync.apply, [])
        self.assertRaises(StagingError, sync.open, "etc/lists/x", md5(b""), 0)

    def test_applyOnce(self):
        """
        A sync that was applied cannot be applied again.
        """
        sync = self.stage(NEW)
        sync.apply([])
        self.assertRaises(StagingError, sync.apply, [])

    def test_cleanStaging(self):
        """
        L{cleanStaging} empties the directory (files, directories, links,
        without following links) and creates it when missing.
        """
        outside = FilePath(self.mktemp())
        outside.makedirs()
        outside.child("keep").setContent(b"x")
        cleanStaging(self.stagingDir)
        self.assertTrue(self.stagingDir.isdir())
        self.stagingDir.child("file").setContent(b"x")
        self.stagingDir.child("dir").child("sub").makedirs()
        os.symlink(outside.path, self.stagingDir.child("link").path)
        cleanStaging(self.stagingDir)
        self.assertStagingEmpty()
        self.assertEqual(outside.listdir(), ["keep"])

    def test_cleanStagingSymlinkRefused(self):
        """
        A staging directory that is a symlink is refused.
        """
        outside = FilePath(self.mktemp())
        outside.makedirs()
        self.stagingDir.parent().makedirs()
        os.symlink(outside.path, self.stagingDir.path)
        self.assertRaises(UnsafePath, cleanStaging, self.stagingDir)


class CrashTests(StagingTestsMixin, SynchronousTestCase):
    """
    A failure in the middle of an apply leaves every file old or new.
    """

    def failingReplace(self, failAt):
        """
        Patch C{os.replace} to raise on its C{failAt}-th call.
        """
        calls = []
        realReplace = os.replace

        def replace(source, destination):
            calls.append(destination)
            if len(calls) == failAt:
                raise OSError(5, "Simulated I/O error")
            return realReplace(source, destination)

        self.patch(os, "replace", replace)
        return calls

    def applyFailingAtRename(self, failAt):
        """
        Apply L{NEW} with rename number C{failAt} failing, and check that
        every target is complete old or new (exactly C{failAt - 1} new), no
        C{.tmp} file is left and staging is empty.
        """
        self.failingReplace(failAt)
        sync = self.stage(NEW)
        self.assertRaises(OSError, sync.apply, DELETIONS)
        states = []
        for relpath, content in NEW.items():
            current = self.content(relpath)
            self.assertIn(current, (OLD.get(relpath), content))
            states.append(current == content)
        self.assertEqual(states.count(True), failAt - 1)
        self.assertEqual(self.tempFiles(), [])
        self.assertStagingEmpty()

    def test_failureAtEveryStep(self):
        """
        Whichever rename fails, each target holds its complete old or new
        bytes, no C{.tmp} file is left in the item directories, staging is
        emptied, and a second sync completes the job.
        """
        for failAt in range(1, len(NEW) + 1):
            self.setUp()
            self.applyFailingAtRename(failAt)
            self.patch(os, "replace", os.rename)
            self.stage(NEW).apply(DELETIONS)
            for relpath, content in NEW.items():
                self.assertEqual(self.content(relpath), content)

    def test_failureWhilePlacing(self):
        """
        A failure while putting files next to their targets (before any
        rename) leaves every target old and no C{.tmp} file behind.
        """
        calls = []
        realChmod = os.fchmod

        def fchmod(fd, mode):
            calls.append(fd)
            if len(calls) == 3:
                raise OSError(28, "No space left on device")
            return realChmod(fd, mode)

        sync = self.stage(NEW)
        self.forceCopies()
        self.patch(os, "fchmod", fchmod)
        self.assertRaises(OSError, sync.apply, [])
        self.assertEqual(len(calls), 3)
        for relpath in NEW:
            self.assertEqual(self.content(relpath), OLD.get(relpath))
        self.assertEqual(self.tempFiles(), [])
        self.assertStagingEmpty()

    def test_failureCreatingDirectory(self):
        """
        A failure creating a missing directory (before any rename) leaves
        every target old.
        """

        def mkdir(path, mode=0o777):
            raise OSError(28, "No space left on device")

        sync = self.stage(NEW)
        self.patch(os, "mkdir", mkdir)
        self.assertRaises(OSError, sync.apply, [])
        for relpath in NEW:
            self.assertEqual(self.content(relpath), OLD.get(relpath))
        self.assertEqual(self.tempFiles(), [])
        self.assertStagingEmpty()

    def test_failureFlushing(self):
        """
        A failure flushing the staged bytes, before any rename, leaves every
        target old, whether staged files are renamed or copied.
        """

        def syncfs(path):
            raise OSError(5, "Simulated I/O error")

        self.patch(staging, "_canSyncfs", lambda: True)
        self.patch(staging, "_syncfs", syncfs)
        for copies in (False, True):
            if copies:
                self.forceCopies()
            sync = self.stage(NEW)
            self.assertRaises(OSError, sync.apply, [])
            for relpath in NEW:
                self.assertEqual(self.content(relpath), OLD.get(relpath))
            self.assertEqual(self.tempFiles(), [])
            self.assertStagingEmpty()

    def test_failureClosing(self):
        """
        A staged file that cannot get its permissions when closed is
        discarded, and the sync then refuses to apply.
        """

        def fchmod(fd, mode):
            raise OSError(28, "No space left on device")

        sync = self.stage(NEW)
        staged = sync.open("etc/lists/x", md5(b"x"), 1)
        staged.write(b"x")
        self.patch(os, "fchmod", fchmod)
        self.assertRaises(OSError, staged.close)
        self.assertFalse(staged.verified)
        self.assertFalse(os.path.exists(staged.stagedPath))
        self.assertRaises(IncompleteSync, sync.apply, [])
        for relpath in NEW:
            self.assertEqual(self.content(relpath), OLD.get(relpath))
        self.assertStagingEmpty()

    def test_failureAtEveryCopiedRename(self):
        """
        With files copied beside their targets, whichever rename fails each
        target is old or new and the copies not renamed are removed.
        """
        for failAt in range(1, len(NEW) + 1):
            self.setUp()
            self.forceCopies()
            self.applyFailingAtRename(failAt)
