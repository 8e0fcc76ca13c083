# -*- test-case-name: tests.test_integrity_parts -*-
"""
Tests for L{wazuhcluster.integrity_parts}: a rescan of the directories
inotify named gives the snapshot a full scan gives.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from tests.test_integrity import ageFiles, makeHome
from tests.test_pathrules import FILESET
from wazuhcluster.integrity import scanFiles
from wazuhcluster.integrity_parts import eventPart, owningItem, rescanParts

FILES = {
    "etc/client.keys": b"001 a any k\n",
    "etc/rules/local_rules.xml": b"<group/>",
    "etc/shared/default/agent.conf": b"<agent_config/>",
    "etc/shared/g1/agent.conf": b"<agent_config>1</agent_config>",
    "etc/shared/g1/merged.mg": b"m1",
    "etc/shared/g1/sub/deep.txt": b"deep",
    "etc/shared/g2/agent.conf": b"<agent_config>2</agent_config>",
    "etc/lists/audit-keys": b"a:b",
}


class RescanPartsTests(SynchronousTestCase):
    def setUp(self):
        self.root = makeHome(self, FILES)
        ageFiles(self.root)
        self.previous = scanFiles(self.root, FILESET).snapshot

    def assertLikeFullScan(self, parts, changed):
        """
        Rescanning C{parts} gives the full scan's snapshot, and names as
        changed exactly C{changed} (path -> whether it still exists).
        """
        result = rescanParts(self.root, FILESET, self.previous, parts)
        full = scanFiles(self.root, FILESET, self.previous)
        self.assertEqual(result.snapshot.digest, full.snapshot.digest)
        self.assertEqual(
            {path: (meta.md5, meta.size) for path, meta in result.snapshot.files.items()},
            {path: (meta.md5, meta.size) for path, meta in full.snapshot.files.items()})
        self.assertEqual({path: meta is not None for path, meta in result.changes.items()},
                         changed)
        return result

    def test_fileChanged(self):
        """
        A file rewritten in a group directory: only its directory is read
        (one file hashed), the snapshot is the full scan's.
        """
        self.root.preauthChild("etc/shared/g1/agent.conf").setContent(b"<new/>")
        result = self.assertLikeFullScan([("etc/shared/g1/", False)],
                                         {"etc/shared/g1/agent.conf": True})
        self.assertEqual(result.rehashed, 1)

    def test_fileAddedAndRemoved(self):
        """
        A file created and another deleted in the same directory.
        """
        self.root.preauthChild("etc/shared/g2/new.txt").setContent(b"new")
        self.root.preauthChild("etc/shared/g2/agent.conf").remove()
        self.assertLikeFullScan([("etc/shared/g2/", False)],
                                {"etc/shared/g2/new.txt": True,
                                 "etc/shared/g2/agent.conf": False})

    def test_flatPartKeepsSubdirectories(self):
        """
        A flat part leaves the files of its subdirectories as they were.
        """
        self.root.preauthChild("etc/shared/g1/merged.mg").setContent(b"m2")
        self.assertLikeFullScan([("etc/shared/g1/", False)], {"etc/shared/g1/merged.mg": True})

    def test_directoryRemoved(self):
        """
        A subdirectory removed (an event naming a directory: a deep part):
        every file under it is gone.
        """
        self.root.preauthChild("etc/shared/g1").remove()
        self.assertLikeFullScan([("etc/shared/g1/", True)],
                                {"etc/shared/g1/agent.conf": False,
                                 "etc/shared/g1/merged.mg": False,
                                 "etc/shared/g1/sub/deep.txt": False})

    def test_directoryAdded(self):
        """
        A new directory with files in it (moved in whole).
        """
        made = self.root.preauthChild("etc/shared/g3/inner")
        made.makedirs()
        made.child("x.conf").setContent(b"x")
        self.root.preauthChild("etc/shared/g3/agent.conf").setContent(b"3")
        self.assertLikeFullScan([("etc/shared/g3/", True)],
                                {"etc/shared/g3/agent.conf": True,
                                 "etc/shared/g3/inner/x.conf": True})

    def test_symlinkInsteadOfDirectory(self):
        """
        A directory replaced by a symbolic link is never followed: its files
        are gone, as for a full scan.
        """
        elsewhere = makeHome(self, {"etc/shared/g1/agent.conf": b"outside"})
        self.root.preauthChild("etc/shared/g1").remove()
        os.symlink(elsewhere.preauthChild("etc/shared/g1").path,
                   self.root.preauthChild("etc/shared/g1").path)
        self.assertLikeFullScan([("etc/shared/g1/", True)],
                                {"etc/shared/g1/agent.conf": False,
                                 "etc/shared/g1/merged.mg": False,
                                 "etc/shared/g1/sub/deep.txt": False})

    def test_outsideEveryItem(self):
        """
        A part outside the synced items changes nothing; excluded files are
        left out as a full scan leaves them.
        """
        self.root.preauthChild("etc/ossec.conf").setContent(b"<ossec_config/>")
        self.root.preauthChild("etc/shared/g2/ar.conf").setContent(b"excluded")
        result = self.assertLikeFullScan([("var/run/", False), ("etc/shared/g2/", False)],
                                         {})
        self.assertEqual(result.snapshot.digest, self.previous.digest)

    def test_owningItem(self):
        """
        The deepest item holding the directory; a flat item only for its own
        directory.
        """
        self.assertEqual(owningItem(FILESET, "etc/shared/g1/sub/").path, "etc/shared/")
        self.assertEqual(owningItem(FILESET, "etc/").path, "etc/")
        self.assertIsNone(owningItem(FILESET, "etc/other/"))
        self.assertIsNone(owningItem(FILESET, "var/run/"))

    def test_eventPart(self):
        """
        A file event names its directory, flat; a directory event names the
        directory itself, deep; nothing outside the home.
        """
        self.assertEqual(eventPart("/h", "/h/etc/shared/g1/agent.conf", False),
                         ("etc/shared/g1/", False))
        self.assertEqual(eventPart("/h/", "/h/etc/shared/g1", True), ("etc/shared/g1/", True))
        self.assertIsNone(eventPart("/h", "/other/etc/x", False))
        self.assertIsNone(eventPart("/h", "/h2/etc/x", False))

