# -*- test-case-name: tests.test_clientkeys -*-
"""
Tests for L{wazuhcluster.clientkeys}.
"""

import os
import stat

from hypothesis import given
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.clientkeys import (
    CLIENT_KEYS_MODE,
    ClientKey,
    formatClientKeys,
    isValidAgentIp,
    isValidAgentName,
    lockClientKeys,
    nextAgentId,
    parseAgentId,
    parseClientKeys,
    readClientKeys,
    writeClientKeys,
)

KEY = "a" * 64

_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-",
    min_size=1,
    max_size=20,
).filter(lambda name: not name.startswith("!"))


class ParseTests(SynchronousTestCase):
    """
    Tests for L{parseClientKeys}.
    """

    def test_valid(self):
        """
        Well-formed lines give one L{ClientKey} each, in file order, and no
        problems.
        """
        text = f"001 web1 any {KEY}\n002 db.2 10.0.0.0/24 {KEY}\n"
        entries, problems = parseClientKeys(text)
        self.assertEqual(
            entries,
            [
                ClientKey("001", "web1", "any", KEY),
                ClientKey("002", "db.2", "10.0.0.0/24", KEY),
            ],
        )
        self.assertEqual(problems, [])

    def test_malformedLinesReportedWithLineNumbers(self):
        """
        Each malformed line is skipped and reported with its 1-based line
        number and the reason; the good lines around it are kept.
        """
        text = "\n".join(
            [
                f"001 good any {KEY}",
                "002 short any",
                f"x03 badid any {KEY}",
                f"004 bad/name any {KEY}",
                f"005 badip 999.1.1.1 {KEY}",
                f"000 manager any {KEY}",
                f"006 extra any {KEY} more",
                f"007 good2 192.168.1.7 {KEY}",
            ]
        )
        entries, problems = parseClientKeys(text)
        self.assertEqual([e.id for e in entries], ["001", "007"])
        self.assertEqual(
            [p.split(":")[0] for p in problems],
            ["line 2", "line 3", "line 4", "line 5", "line 6", "line 7"],
        )
        self.assertIn("expected 4 fields", problems[0])
        self.assertIn("invalid agent ID", problems[1])
        self.assertIn("invalid agent name", problems[2])
        self.assertIn("invalid IP", problems[3])
        self.assertIn("reserved for the manager", problems[4])

    def test_problemsNeverQuoteKeys(self):
        """
        A report about a malformed line never contains the line's key.
        """
        secret = "f" * 64
        _, problems = parseClientKeys(
            f"001 bad/name any {secret}\n002 x any {secret} y"
        )
        self.assertEqual(len(problems), 2)
        for problem in problems:
            self.assertNotIn(secret, problem)

    def test_removedAgentsSkipped(self):
        """
        Lines Wazuh marks as removed (name starting with C{!}, ID starting
        with C{#}) are skipped without a report.
        """
        text = f"001 !gone any {KEY}\n#002 gone2 any {KEY}\n003 kept any {KEY}\n"
        entries, problems = parseClientKeys(text)
        self.assertEqual([e.name for e in entries], ["kept"])
        self.assertEqual(problems, [])

    def test_blankLinesIgnored(self):
        """
        Blank and whitespace-only lines are neither entries nor problems,
        and fields may be separated by any whitespace.
        """
        entries, problems = parseClientKeys(f"\n   \n001\tweb  any {KEY}\r\n\n")
        self.assertEqual(entries, [ClientKey("001", "web", "any", KEY)])
        self.assertEqual(problems, [])

    def test_duplicatesReported(self):
        """
        A line repeating an earlier ID or name is reported and skipped; the
        first occurrence wins.
        """
        text = f"001 a any {KEY}\n001 b any {KEY}\n002 a any {KEY}\n003 c any {KEY}\n"
        entries, problems = parseClientKeys(text)
        self.assertEqual(
            [(e.id, e.name) for e in entries], [("001", "a"), ("003", "c")]
        )
        self.assertEqual(len(problems), 2)
        self.assertTrue(problems[0].startswith("line 2: duplicate agent ID"))
        self.assertTrue(problems[1].startswith("line 3: duplicate agent name"))

    def test_idsNormalised(self):
        """
        IDs are zero-padded to three digits whatever their spelling in the
        file; longer IDs are kept as they are.
        """
        entries, _ = parseClientKeys(
            f"1 a any {KEY}\n0042 b any {KEY}\n1000 c any {KEY}"
        )
        self.assertEqual([e.id for e in entries], ["001", "042", "1000"])

    @given(st.text())
    def test_neverRaises(self, text):
        """
        Parsing any text whatsoever returns entries and problems and never
        raises.
        """
        entries, problems = parseClientKeys(text)
        self.assertIsInstance(entries, list)
        self.assertIsInstance(problems, list)

    @given(
        st.lists(
            st.tuples(
                st.integers(1, 100000),
                _names,
                st.sampled_from(["any", "10.1.2.3", "fe80::1", "10.0.0.0/8"]),
            ),
            unique_by=(lambda t: t[0], lambda t: t[1]),
        )
    )
    def test_roundTrip(self, agents):
        """
        What L{formatClientKeys} writes, L{parseClientKeys} reads back
        unchanged.
        """
        entries = [ClientKey(f"{n:03d}", name, ip, KEY) for n, name, ip in agents]
        parsed, problems = parseClientKeys(formatClientKeys(entries).decode("utf-8"))
        self.assertEqual(parsed, entries)
        self.assertEqual(problems, [])


class ValidationTests(SynchronousTestCase):
    """
    Tests for the name, IP and ID checks.
    """

    def test_names(self):
        """
        Names are letters, digits, C{_}, C{.} and C{-}, 1 to 128 characters.
        """
        self.assertTrue(isValidAgentName("web-01.example_x"))
        self.assertTrue(isValidAgentName("n" * 128))
        self.assertFalse(isValidAgentName("n" * 129))
        self.assertFalse(isValidAgentName(""))
        self.assertFalse(isValidAgentName("a b"))
        self.assertFalse(isValidAgentName("a/b"))
        self.assertFalse(isValidAgentName("é"))

    def test_ips(self):
        """
        C{any}, IPv4 and IPv6 addresses and CIDR networks are accepted;
        anything else is refused.
        """
        for good in ["any", "10.0.0.1", "10.0.0.0/24", "::1", "2001:db8::/32"]:
            self.assertTrue(isValidAgentIp(good), good)
        for bad in ["", "ANY", "10.0.0.256", "host.example", "10.0.0.1/33"]:
            self.assertFalse(isValidAgentIp(bad), bad)

    def test_parseAgentId(self):
        """
        Agent IDs are decimal strings or non-negative integers.
        """
        self.assertEqual(parseAgentId("001"), 1)
        self.assertEqual(parseAgentId("1000"), 1000)
        self.assertEqual(parseAgentId(7), 7)
        for bad in ["", "-1", "1a", " 1", -1, None, True, 1.0]:
            self.assertRaises(ValueError, parseAgentId, bad)


class FileTests(SynchronousTestCase):
    """
    Tests for L{readClientKeys}, L{writeClientKeys} and L{lockClientKeys}.
    """

    def setUp(self):
        self.dir = FilePath(self.mktemp())
        self.dir.makedirs()
        self.path = self.dir.child("client.keys")

    def test_readMissing(self):
        """
        A missing file is an empty one.
        """
        self.assertEqual(readClientKeys(self.path), ([], []))

    def test_readInvalidUtf8(self):
        """
        Bytes that are not UTF-8 make their line a reported problem, not an
        exception.
        """
        self.path.setContent(b"001 a any " + KEY.encode() + b"\n002 b\xff\xfe any k\n")
        entries, problems = readClientKeys(self.path)
        self.assertEqual([e.id for e in entries], ["001"])
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("line 2:"))

    def test_writeThenRead(self):
        """
        A written file reads back as the same entries.
        """
        entries = [
            ClientKey("001", "a", "any", KEY),
            ClientKey("1000", "b", "10.0.0.1", KEY),
        ]
        writeClientKeys(self.path, entries)
        self.assertEqual(readClientKeys(self.path), (entries, []))
        self.assertEqual(
            self.path.getContent(), f"001 a any {KEY}\n1000 b 10.0.0.1 {KEY}\n".encode()
        )

    def test_writeMode(self):
        """
        The file gets mode 0640, even when it replaces a file with another
        mode.
        """
        self.path.setContent(b"")
        self.path.chmod(0o600)
        writeClientKeys(self.path, [ClientKey("001", "a", "any", KEY)])
        self.assertEqual(
            stat.S_IMODE(os.stat(self.path.path).st_mode), CLIENT_KEYS_MODE
        )

    def test_writeReplacesAtomically(self):
        """
        The new content is renamed over the old file (a new inode, so a
        reader holding the old file never sees a partial one), and no
        temporary file is left behind.
        """
        writeClientKeys(self.path, [ClientKey("001", "a", "any", KEY)])
        before = os.stat(self.path.path).st_ino
        with open(self.path.path, "rb") as reader:
            writeClientKeys(self.path, [ClientKey("002", "b", "any", KEY)])
            self.assertEqual(reader.read(), f"001 a any {KEY}\n".encode())
        self.assertNotEqual(os.stat(self.path.path).st_ino, before)
        self.assertEqual(self.dir.listdir(), ["client.keys"])

    def test_writeFailureKeepsOldFile(self):
        """
        When writing fails, the old file is intact and no temporary file is
        left behind.
        """
        writeClientKeys(self.path, [ClientKey("001", "a", "any", KEY)])

        def broken():
            yield ClientKey("002", "b", "any", KEY)
            raise OSError("disk on fire")

        self.assertRaises(OSError, writeClientKeys, self.path, broken())
        self.assertEqual(self.path.getContent(), f"001 a any {KEY}\n".encode())
        self.assertEqual(self.dir.listdir(), ["client.keys"])

    def test_lock(self):
        """
        L{lockClientKeys} holds a lock on a C{.lock} file next to the keys
        (a name integrity sync never transfers) and releases it on exit.
        """
        import fcntl

        with lockClientKeys(self.path):
            lock = self.dir.child("client.keys.lock")
            self.assertTrue(lock.exists())
            fd = os.open(lock.path, os.O_RDWR)
            try:
                self.assertRaises(
                    BlockingIOError, fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB
                )
            finally:
                os.close(fd)
        fd = os.open(lock.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


class NextAgentIdTests(SynchronousTestCase):
    """
    Tests for L{nextAgentId}.
    """

    def test_empty(self):
        """
        The first agent is C{001}: C{000} is the manager.
        """
        self.assertEqual(nextAgentId([]), "001")

    def test_afterHighest(self):
        """
        The next ID follows the highest one, gaps are not reused.
        """
        entries = [ClientKey("005", "a", "any", KEY), ClientKey("002", "b", "any", KEY)]
        self.assertEqual(nextAgentId(entries), "006")

    def test_beyond999(self):
        """
        IDs grow past 999 without wrapping or truncating.
        """
        self.assertEqual(nextAgentId([ClientKey("999", "a", "any", KEY)]), "1000")
        self.assertEqual(nextAgentId([ClientKey("1000", "a", "any", KEY)]), "1001")
