# -*- test-case-name: tests.test_streams -*-
"""
Tests for L{wazuhcluster.streams}: files read once (MD5 computed while
sending), sent as chunks with a window of bytes in flight, and parsed into a
staged sync.
"""

import hashlib
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.cluster import runInline
from tests.test_pathrules import FILESET
from wazuhcluster.chunks import MAX_CHUNK
from wazuhcluster.commands import FILE_DATA_VALUES
from wazuhcluster.session import ThreadQueue
from wazuhcluster.staging import StagedSync
from wazuhcluster.streams import (
    STREAM_CHUNK,
    FileReader,
    StreamError,
    StreamReceiver,
    StreamSender,
    fileDataArguments,
    openBeneath,
)


def md5(data):
    return hashlib.md5(data).hexdigest()


class ManualPeer:
    """
    Records chunks; acknowledges them only when told to.
    """

    def __init__(self):
        self.pending = []
        self.received = []

    def send(self, chunk):
        d = Deferred()
        self.pending.append((chunk, d))
        return d

    def ackAll(self):
        while self.pending:
            self.ackOne()

    def ackOne(self):
        chunk, d = self.pending.pop(0)
        self.received.append(chunk)
        d.callback(None)


def makeHome(testCase, files):
    root = FilePath(testCase.mktemp())
    root.makedirs()
    for relpath, content in files.items():
        child = root.preauthChild(relpath)
        child.parent().makedirs(ignoreExistingDirectory=True)
        child.setContent(content)
    return root


FILES = {
    "etc/rules/a.xml": b"a" * 10,
    "etc/rules/big.xml": os.urandom(3 * STREAM_CHUNK + 17),
    "etc/lists/empty": b"",
    "etc/shared/default/agent.conf": b"<agent_config/>\n",
}


class ReaderTests(SynchronousTestCase):
    """
    L{FileReader} produces the stream of some files.
    """

    def readAll(self, reader, budget=1000):
        out = b""
        while True:
            data = reader.read(budget)
            if not data:
                return out
            out += data

    def test_records(self):
        """
        Each file is C{F}, its C{D} pieces and C{E} with its MD5 and size.
        """
        root = makeHome(self, {"etc/rules/a.xml": b"hello"})
        stream = self.readAll(FileReader(root.path, ["etc/rules/a.xml"]))
        self.assertEqual(stream, b"F\tetc/rules/a.xml\nD\t5\nhello"
                         + f"E\t{md5(b'hello')}\t5\n".encode())

    def test_goneFileSkipped(self):
        """
        A file that vanished is an C{X} record; the others are sent.
        """
        root = makeHome(self, {"etc/rules/a.xml": b"a"})
        reader = FileReader(root.path, ["etc/rules/gone.xml", "etc/rules/a.xml"])
        stream = self.readAll(reader)
        self.assertTrue(stream.startswith(b"X\tetc/rules/gone.xml\t"))
        self.assertIn(b"F\tetc/rules/a.xml\n", stream)
        self.assertIn("etc/rules/gone.xml", reader.gone)

    def test_neverThroughSymlinks(self):
        """
        No component of a path is followed when it is a link: a symlinked
        directory, or a symlink as the file itself, is not read.
        """
        root = makeHome(self, {"etc/rules/a.xml": b"a"})
        outside = FilePath(self.mktemp())
        outside.makedirs()
        outside.child("secret").setContent(b"secret")
        os.symlink(outside.path, root.preauthChild("etc/shared").path)
        os.symlink(outside.child("secret").path, root.preauthChild("etc/rules/link.xml").path)
        self.assertRaises(OSError, openBeneath, root.path, "etc/shared/secret")
        self.assertRaises(OSError, openBeneath, root.path, "etc/rules/link.xml")
        stream = self.readAll(FileReader(root.path, ["etc/shared/secret", "etc/rules/link.xml"]))
        self.assertNotIn(b"secret\n", stream.replace(b"X\t", b""))
        self.assertEqual(stream.count(b"X\t"), 2)

    def test_consistentVersion(self):
        """
        The MD5 in the C{E} record is that of the bytes sent, even if the
        file changes while it is read: the worker gets one consistent
        version.
        """
        root = makeHome(self, {"etc/lists/l": b"x" * 5000})
        reader = FileReader(root.path, ["etc/lists/l"])
        first = reader.read(2000)
        root.preauthChild("etc/lists/l").setContent(b"y" * 3000)
        rest = self.readAll(reader, 2000)
        staged = StagedSync(root, root.preauthChild("queue/cluster/m"), FILESET,
                            durable=False)
        receiver = StreamReceiver(staged, ["etc/lists/l"])
        receiver.feed(first + rest)
        receiver.finish()
        self.assertEqual(receiver.received, {"etc/lists/l"})
        self.assertEqual(receiver.failed, {})
        staged.abort()


class SenderTests(SynchronousTestCase):
    """
    L{StreamSender} keeps at most its window in flight.
    """

    def makeSender(self, files, window=2 * STREAM_CHUNK):
        root = makeHome(self, files)
        reader = FileReader(root.path, sorted(files))
        peer = ManualPeer()
        sender = StreamSender(reader, peer.send, ThreadQueue(runInline), window=window)
        return sender, peer

    def test_windowRespected(self):
        """
        Unacknowledged bytes never exceed the window; acknowledging lets the
        rest go; the Deferred fires once all were acknowledged.
        """
        sender, peer = self.makeSender(FILES)
        done = sender.start()
        self.assertLessEqual(sender.inFlight, 2 * STREAM_CHUNK)
        self.assertNoResult(done)
        while peer.pending:
            peer.ackOne()
            self.assertLessEqual(sender.inFlight, 2 * STREAM_CHUNK)
        self.successResultOf(done)
        self.assertLessEqual(sender.maxInFlight, 2 * STREAM_CHUNK)
        self.assertTrue(all(len(c) <= STREAM_CHUNK for c in peer.received))

    def test_failedChunkStops(self):
        """
        A chunk the peer refuses fails the stream.
        """
        sender, peer = self.makeSender(FILES)
        done = sender.start()
        chunk, d = peer.pending.pop(0)
        d.errback(RuntimeError("refused"))
        self.failureResultOf(done, RuntimeError)

    def test_stop(self):
        """
        Stopping abandons the stream.
        """
        sender, peer = self.makeSender(FILES)
        done = sender.start()
        sender.stop("cancelled")
        self.assertIn("cancelled", self.failureResultOf(done).getErrorMessage())


class RoundTripTests(SynchronousTestCase):
    """
    A stream parses back into staged files, whatever its chunking.
    """

    @settings(max_examples=30, deadline=None)
    @given(st.integers(min_value=1, max_value=5000))
    def test_anyChunking(self, cut):
        """
        Cut anywhere, the stream gives every file back, verified.
        """
        root = makeHome(self, FILES)
        reader = FileReader(root.path, sorted(FILES))
        stream = b""
        while True:
            data = reader.read(STREAM_CHUNK)
            if not data:
                break
            stream += data
        target = FilePath(self.mktemp())
        target.makedirs()
        staged = StagedSync(target, target.preauthChild("queue/cluster/m"), FILESET,
                            durable=False)
        receiver = StreamReceiver(staged, FILES)
        for start in range(0, len(stream), cut):
            receiver.feed(stream[start:start + cut])
        receiver.finish()
        self.assertEqual(receiver.received, set(FILES))
        result = staged.apply([])
        self.assertEqual(result.failed, {})
        for relpath, content in FILES.items():
            self.assertEqual(target.preauthChild(relpath).getContent(), content)


class ReceiverTests(SynchronousTestCase):
    """
    L{StreamReceiver} refuses what the worker did not ask for.
    """

    def setUp(self):
        self.root = FilePath(self.mktemp())
        self.root.makedirs()
        self.staged = StagedSync(self.root, self.root.preauthChild("queue/cluster/m"),
                                 FILESET, durable=False)
        self.addCleanup(self.staged.abort)

    def test_unexpectedFile(self):
        """
        A file not asked for is a L{StreamError}.
        """
        receiver = StreamReceiver(self.staged, ["etc/rules/a.xml"])
        self.assertRaises(StreamError, receiver.feed, b"F\tetc/rules/b.xml\n")

    def test_malformed(self):
        """
        Data outside a file, an unknown record, a record too long, a stream
        ending inside a file: each is a L{StreamError}.
        """
        for data in (b"D\t3\nabc", b"Q\tx\n", b"F" * 10000):
            receiver = StreamReceiver(self.staged, ["etc/rules/a.xml"])
            self.assertRaises(StreamError, receiver.feed, data)
        receiver = StreamReceiver(self.staged, ["etc/rules/a.xml"])
        receiver.feed(b"F\tetc/rules/a.xml\nD\t3\nab")
        self.assertRaises(StreamError, receiver.finish)

    def test_wrongMd5FailsOnlyThatFile(self):
        """
        A file whose bytes do not match its C{E} record fails; the stream
        goes on; a file asked for and never sent fails too.
        """
        receiver = StreamReceiver(self.staged, ["etc/rules/a.xml", "etc/rules/b.xml",
                                                "etc/rules/c.xml"])
        receiver.feed(b"F\tetc/rules/a.xml\nD\t1\na" + f"E\t{md5(b'z')}\t1\n".encode())
        receiver.feed(b"F\tetc/rules/b.xml\nD\t1\nb" + f"E\t{md5(b'b')}\t1\n".encode())
        receiver.finish()
        self.assertEqual(receiver.received, {"etc/rules/b.xml"})
        self.assertEqual(sorted(receiver.failed), ["etc/rules/a.xml", "etc/rules/c.xml"])


class FileDataArgumentsTests(SynchronousTestCase):
    """
    L{fileDataArguments} spreads a chunk over the command's values.
    """

    def test_values(self):
        """
        A full chunk uses every value, each under AMP's limit.
        """
        arguments = fileDataArguments(b"x" * STREAM_CHUNK)
        self.assertEqual(len(arguments), FILE_DATA_VALUES)
        self.assertTrue(all(len(v) <= MAX_CHUNK for v in arguments.values()))
        self.assertEqual(fileDataArguments(b""), {"data": b""})
