# -*- test-case-name: tests.test_streams -*-
"""
Tests for the file stream: FileSender into chunk commands with a window of
bytes in flight, and its parsing into a staged, verified sync.
"""

import hashlib
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.test_pathrules import FILESET
from wazuhcluster.commands import FILE_DATA_VALUES, MAX_CHUNK, SyncAborted
from wazuhcluster.staging import StagedSync
from wazuhcluster.streams import (
    STREAM_CHUNK,
    ChunkConsumer,
    FileStreamReceiver,
    FileStreamSender,
    StreamError,
    encodeHeader,
    fileDataArguments,
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
            chunk, d = self.pending.pop(0)
            self.received.append(chunk)
            d.callback(None)

    def ackOne(self):
        chunk, d = self.pending.pop(0)
        self.received.append(chunk)
        d.callback(None)


def makeHome(testCase, files):
    root = FilePath(testCase.mktemp())
    for relpath, data in files.items():
        path = root.preauthChild(relpath)
        path.parent().makedirs(ignoreExistingDirectory=True)
        path.setContent(data)
    return root


class SenderTests(SynchronousTestCase):
    """
    L{FileStreamSender} and L{ChunkConsumer}.
    """

    FILES = {
        "etc/client.keys": b"001 a any " + b"k" * 64 + b"\n",
        "etc/shared/default/agent.conf": b"<agent_config/>\n",
        "etc/rules/big.xml": os.urandom(3 * MAX_CHUNK + 123),
        "etc/lists/empty": b"",
    }

    def entries(self):
        return [(p, md5(d), len(d)) for p, d in sorted(self.FILES.items())]

    def test_windowBounded(self):
        """
        Bytes sent and not acknowledged never exceed the window, and the
        stream only progresses as acknowledgements come back.
        """
        root = makeHome(self, {"etc/rules/huge.xml": os.urandom(40 * MAX_CHUNK)})
        peer = ManualPeer()
        sender = FileStreamSender(root, [("etc/rules/huge.xml", "0" * 32, 40 * MAX_CHUNK)],
                                  peer.send, window=4 * MAX_CHUNK)
        done = sender.start()
        self.assertEqual(len(peer.pending), 4)
        self.assertNoResult(done)
        while peer.pending:
            peer.ackOne()
            self.assertLessEqual(sender.consumer.inFlight, 4 * MAX_CHUNK)
        self.successResultOf(done)
        self.assertEqual(sender.consumer.maxInFlight, 4 * MAX_CHUNK)
        self.assertTrue(all(len(c) <= MAX_CHUNK for c in peer.received))

    def test_smallFilesShareChunks(self):
        """
        Many small files travel together: 2 000 files of 100 bytes fit in a
        handful of chunks, not one command per file.
        """
        files = {f"etc/shared/g/f{i:04d}": os.urandom(100) for i in range(2000)}
        root = makeHome(self, files)
        peer = ManualPeer()
        sender = FileStreamSender(root, [(p, md5(d), len(d)) for p, d in sorted(files.items())],
                                  peer.send)
        done = sender.start()
        peer.ackAll()
        while peer.pending:
            peer.ackAll()
        self.successResultOf(done)
        self.assertLessEqual(len(peer.received), 6)

    def roundTrip(self, files, entries=None):
        """
        Send C{files} from a master home and receive them into a worker home;
        return the worker root and the apply result.
        """
        master = makeHome(self, files)
        worker = FilePath(self.mktemp())
        worker.makedirs()
        staged = StagedSync(worker, worker.child("staging"), FILESET, durable=False)
        entries = entries or [(p, md5(d), len(d)) for p, d in sorted(files.items())]
        receiver = FileStreamReceiver(staged, {p: (m, s) for p, m, s in entries})

        def deliver(chunk):
            receiver.feed(chunk)
            return succeed(None)

        self.successResultOf(FileStreamSender(master, entries, deliver).start())
        receiver.finish()
        return worker, staged.apply([])

    def test_roundTrip(self):
        """
        Every file arrives byte for byte, empty and multi-chunk ones included.
        """
        worker, result = self.roundTrip(self.FILES)
        for relpath, data in self.FILES.items():
            self.assertEqual(worker.preauthChild(relpath).getContent(), data)
        self.assertEqual(sorted(result.created), sorted(self.FILES))

    @settings(max_examples=25, deadline=None)
    @given(st.lists(st.binary(max_size=3 * MAX_CHUNK // 2), min_size=1, max_size=6))
    def test_roundTripAnySizes(self, contents):
        """
        Files of any sizes and count come through intact.
        """
        files = {f"etc/rules/r{i}.xml": data for i, data in enumerate(contents)}
        worker, result = self.roundTrip(files)
        for relpath, data in files.items():
            self.assertEqual(worker.preauthChild(relpath).getContent(), data)

    def test_fileGrewWhileSending(self):
        """
        A file larger than announced (it changed after the scan) fails the
        stream with L{StreamError} instead of corrupting the framing.
        """
        root = makeHome(self, {"etc/rules/a.xml": b"x" * 500})
        peer = ManualPeer()
        done = FileStreamSender(root, [("etc/rules/a.xml", md5(b"x" * 400), 400)],
                                peer.send).start()
        peer.ackAll()
        self.failureResultOf(done, StreamError)

    def test_fileShrankWhileSending(self):
        """
        A file smaller than announced fails the stream.
        """
        root = makeHome(self, {"etc/rules/a.xml": b"x" * 10})
        peer = ManualPeer()
        done = FileStreamSender(root, [("etc/rules/a.xml", md5(b"x" * 40), 40)],
                                peer.send).start()
        peer.ackAll()
        self.failureResultOf(done, StreamError)

    def test_vanishedFile(self):
        """
        A file deleted since the scan fails the stream.
        """
        root = makeHome(self, {})
        done = FileStreamSender(root, [("etc/rules/gone.xml", "0" * 32, 1)],
                                ManualPeer().send).start()
        self.failureResultOf(done, StreamError)

    def test_chunkFailureStops(self):
        """
        When the peer refuses a chunk the producer is stopped and the stream
        fails with the peer's error.
        """
        root = makeHome(self, {"etc/rules/big.xml": os.urandom(10 * MAX_CHUNK)})
        peer = ManualPeer()
        done = FileStreamSender(root, [("etc/rules/big.xml", "0" * 32, 10 * MAX_CHUNK)],
                                peer.send, window=2 * MAX_CHUNK).start()
        chunk, first = peer.pending.pop(0)
        first.errback(SyncAborted("Error 3033 - disk full"))
        self.failureResultOf(done, SyncAborted)
        peer.ackAll()
        self.assertEqual(len(peer.received), 1)
        self.assertEqual(peer.pending, [])

    def test_consumerRejectsSmallWindow(self):
        """
        A window smaller than one chunk is refused.
        """
        self.assertRaises(ValueError, ChunkConsumer, lambda c: succeed(None), window=10)


class ReceiverTests(SynchronousTestCase):
    """
    L{FileStreamReceiver} refuses anything it did not ask for.
    """

    def receiver(self, expected):
        worker = FilePath(self.mktemp())
        worker.makedirs()
        staged = StagedSync(worker, worker.child("staging"), FILESET, durable=False)
        return staged, FileStreamReceiver(staged, expected)

    def test_wrongMd5(self):
        """
        A file whose bytes do not match the announced MD5 aborts the sync.
        """
        staged, receiver = self.receiver({"etc/rules/a.xml": ("0" * 32, 3)})
        self.assertRaises(SyncAborted, receiver.feed,
                          encodeHeader("etc/rules/a.xml", "0" * 32, 3) + b"abc")

    def test_unexpectedFile(self):
        """
        A file the receiver did not ask for aborts the sync.
        """
        staged, receiver = self.receiver({})
        self.assertRaises(SyncAborted, receiver.feed,
                          encodeHeader("etc/rules/a.xml", md5(b"abc"), 3) + b"abc")

    def test_unsafePath(self):
        """
        A path outside the synced items aborts the sync even if announced.
        """
        bad = "etc/../../evil"
        staged, receiver = self.receiver({bad: (md5(b"abc"), 3)})
        self.assertRaises(SyncAborted, receiver.feed, encodeHeader(bad, md5(b"abc"), 3) + b"abc")

    def test_truncatedStream(self):
        """
        A stream that ends inside a file, or without an expected file, is
        refused at the end.
        """
        staged, receiver = self.receiver({"etc/rules/a.xml": (md5(b"abc"), 3)})
        receiver.feed(encodeHeader("etc/rules/a.xml", md5(b"abc"), 3) + b"ab")
        self.assertRaises(SyncAborted, receiver.finish)
        staged, receiver = self.receiver({"etc/rules/a.xml": (md5(b"abc"), 3)})
        self.assertRaises(SyncAborted, receiver.finish)

    def test_headerSplitAcrossChunks(self):
        """
        Headers and contents may be cut anywhere between chunks.
        """
        staged, receiver = self.receiver({"etc/rules/a.xml": (md5(b"abc"), 3)})
        stream = encodeHeader("etc/rules/a.xml", md5(b"abc"), 3) + b"abc"
        for i in range(len(stream)):
            receiver.feed(stream[i:i + 1])
        receiver.finish()
        self.assertEqual(staged.apply([]).created, ("etc/rules/a.xml",))


class PrefetchTests(SynchronousTestCase):
    """
    The sender keeps the disk reading ahead of it, in a thread.
    """

    def test_readsAhead(self):
        """
        Files are advised to the kernel, in order, before the sender reaches
        them, in bounded batches; every file is advised once.
        """
        from wazuhcluster import streams

        files = {f"etc/shared/g/f{i:04d}": b"x" * 10 for i in range(1200)}
        root = makeHome(self, files)
        batches = []

        def recordingThread(function, paths):
            self.assertIs(function, streams.adviseWillNeed)
            batches.append(list(paths))
            function(paths)
            return succeed(None)

        entries = [(p, md5(d), len(d)) for p, d in sorted(files.items())]
        peer = ManualPeer()
        done = FileStreamSender(root, entries, peer.send, runInThread=recordingThread).start()
        while peer.pending:
            peer.ackAll()
        self.successResultOf(done)
        advised = [path for batch in batches for path in batch]
        self.assertEqual(advised, [root.preauthChild(p).path for p, _, _ in entries])
        self.assertTrue(all(len(batch) <= streams.PREFETCH_FILES for batch in batches))

    def test_adviseIgnoresMissing(self):
        """
        A file that vanished is skipped by the hint.
        """
        from wazuhcluster.streams import adviseWillNeed

        adviseWillNeed([self.mktemp()])


class FileDataArgumentsTests(SynchronousTestCase):
    """
    A stream chunk travels as up to L{FILE_DATA_VALUES} AMP values.
    """

    @settings(max_examples=30, deadline=None)
    @given(st.integers(min_value=0, max_value=STREAM_CHUNK))
    def test_split(self, size):
        """
        The values are in order, each within AMP's limit, and rebuild the
        chunk.
        """
        chunk = bytes(range(256)) * (size // 256) + bytes(size % 256)
        arguments = fileDataArguments(chunk)
        names = ["data"] + [f"data{n}" for n in range(2, FILE_DATA_VALUES + 1)]
        values = [arguments[name] for name in names if name in arguments]
        self.assertEqual(set(arguments) - set(names), set())
        self.assertTrue(all(len(value) <= MAX_CHUNK for value in values))
        self.assertEqual(b"".join(values), chunk)

    def test_commandAcceptsThem(self):
        """
        L{FileData} serialises the biggest chunk (every value under AMP's
        limit).
        """
        from twisted.protocols.amp import AMP

        from wazuhcluster.commands import FileData

        box = FileData.makeArguments(
            dict(session="s", **fileDataArguments(b"x" * STREAM_CHUNK)), AMP())
        self.assertEqual(sum(len(v) for k, v in box.items() if k.startswith(b"data")),
                         STREAM_CHUNK)
