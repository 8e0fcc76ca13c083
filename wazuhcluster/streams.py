# -*- test-case-name: tests.test_streams -*-
"""
Files over AMP with bounded memory.

The sender reads each file with L{twisted.protocols.basic.FileSender} (a pull
producer) into a L{ChunkConsumer}, which cuts the bytes into chunk commands
of at most L{MAX_CHUNK} bytes and stops asking the producer for more while a
window of bytes is unacknowledged.  Files travel back to back in one framed
stream (a header line C{<path>\\t<md5>\\t<size>\\n}, then exactly C{size}
bytes), so many small files share a chunk and no file costs a round trip.

The receiver, L{FileStreamReceiver}, parses the stream into a
L{wazuhcluster.staging.StagedSync}, which verifies every file and applies
them all at once.
"""

import os

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.commands import FILE_DATA_VALUES, MAX_CHUNK, SyncAborted
from wazuhcluster.errors import ClusterError

#: Bytes a sender may have sent and not yet seen acknowledged.
DEFAULT_WINDOW = 16 * MAX_CHUNK

#: The bytes one chunk command carries (L{FILE_DATA_VALUES} values).
STREAM_CHUNK = FILE_DATA_VALUES * MAX_CHUNK

#: The longest header line accepted (a path is at most 4096 bytes).
MAX_HEADER = 4096 + 64


class StreamError(ClusterError):
    """
    A file stream could not be sent (a file changed or vanished meanwhile).
    """

    code = 3035


def encodeHeader(relpath, md5, size):
    """
    The header line announcing one file of a stream.
    """
    return f"{relpath}\t{md5}\t{size}\n".encode("utf-8")


@implementer(IConsumer)
class ChunkConsumer:
    """
    Turns a producer's writes into chunk sends, at most C{window} bytes
    unacknowledged.

    @ivar send: called with each chunk (L{bytes}); returns a Deferred that
        fires when the peer acknowledged it.
    @ivar inFlight: bytes sent and not yet acknowledged.
    @ivar maxInFlight: the most bytes ever in flight (for tests).
    """

    def __init__(self, send, window=DEFAULT_WINDOW, chunkSize=MAX_CHUNK):
        if window < chunkSize:
            raise ValueError("the window must hold at least one chunk")
        self.send = send
        self.window = window
        self.chunkSize = chunkSize
        self.inFlight = 0
        self.maxInFlight = 0
        self.failure = None
        self._buffer = bytearray()
        self._producer = None
        self._pumping = False
        self._drained = []

    # -- IConsumer -----------------------------------------------------------

    def registerProducer(self, producer, streaming):
        if streaming:
            raise ValueError("ChunkConsumer takes pull producers only")
        self._producer = producer
        self._pump()

    def unregisterProducer(self):
        self._producer = None

    def write(self, data):
        self._buffer += data
        self._emit(final=False)

    # -- flow ----------------------------------------------------------------

    def _room(self):
        return self.inFlight + self.chunkSize <= self.window

    def _emit(self, final):
        while self.failure is None and self._room() and (
            len(self._buffer) >= self.chunkSize or (final and self._buffer)
        ):
            chunk = bytes(self._buffer[: self.chunkSize])
            del self._buffer[: self.chunkSize]
            self.inFlight += len(chunk)
            self.maxInFlight = max(self.maxInFlight, self.inFlight)
            d = self.send(chunk)
            d.addCallbacks(self._acknowledged, self._failed, callbackArgs=(len(chunk),))

    def _pump(self):
        """
        Ask the producer for more while there is room (a loop, not
        recursion: a big file is thousands of reads).
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            while (self._producer is not None and self.failure is None
                   and self._room() and len(self._buffer) < self.chunkSize):
                self._producer.resumeProducing()
        finally:
            self._pumping = False

    def _acknowledged(self, result, size):
        self.inFlight -= size
        self._emit(final=self._finishing)
        self._pump()
        self._checkDrained()

    def _failed(self, failure):
        if self.failure is None:
            self.failure = failure
            if self._producer is not None:
                producer, self._producer = self._producer, None
                producer.stopProducing()
        self._checkDrained()

    _finishing = False

    def flush(self):
        """
        Send what is buffered; fire when every chunk was acknowledged (or
        fail with the first chunk failure).
        """
        self._finishing = True
        d = Deferred()
        self._drained.append(d)
        self._emit(final=True)
        self._checkDrained()
        return d

    def abort(self, failure):
        """
        Stop: the stream is abandoned.
        """
        self._failed(failure)

    def _checkDrained(self):
        if not self._drained:
            return
        if self.failure is not None:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.errback(self.failure)
        elif self.inFlight == 0 and not self._buffer:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)


@implementer(IConsumer)
class _ExactLength:
    """
    Passes a file's bytes on, refusing more than its announced size.
    """

    def __init__(self, consumer, size, relpath):
        self.consumer = consumer
        self.remaining = size
        self.relpath = relpath
        self.producer = None

    def registerProducer(self, producer, streaming):
        self.producer = producer
        self.consumer.registerProducer(producer, streaming)

    def unregisterProducer(self):
        self.consumer.unregisterProducer()

    def write(self, data):
        if len(data) > self.remaining:
            self.consumer.abort(Failure(StreamError(
                f"File {self.relpath!r} grew while it was being sent")))
            return
        self.remaining -= len(data)
        self.consumer.write(data)


#: How far ahead of the file being sent the disk is asked to read.
PREFETCH_FILES = 512
PREFETCH_BYTES = 32 * 1024 * 1024


def adviseWillNeed(paths):
    """
    Ask the kernel to start reading C{paths} (run in a thread: opening a
    file whose inode is not cached waits for the disk).  Missing files and
    errors are ignored: this is only a hint.
    """
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


class _Prefetcher:
    """
    Keeps the disk reading ahead of a L{FileStreamSender}, in a thread, so
    that the reactor thread's reads of many small files hit the page cache
    instead of waiting for the disk one file at a time.
    """

    def __init__(self, root, files, runInThread):
        self.root = root
        self.files = files
        self.runInThread = runInThread
        self.advised = 0
        self.running = False

    def ahead(self, index):
        """
        The sender is at file C{index}: make sure what follows is on its way.
        """
        if self.running or self.advised >= len(self.files):
            return
        if self.advised - index > PREFETCH_FILES // 2:
            return
        start = max(self.advised, index)
        end, size = start, 0
        while end < len(self.files) and end - start < PREFETCH_FILES and size < PREFETCH_BYTES:
            size += self.files[end][2]
            end += 1
        paths = [self.root.preauthChild(relpath).path for relpath, _, _ in self.files[start:end]]
        self.advised = end
        self.running = True
        d = self.runInThread(adviseWillNeed, paths)
        d.addBoth(self._done)

    def _done(self, ignored):
        self.running = False


class FileStreamSender:
    """
    Sends files of a home, back to back, through a L{ChunkConsumer}.

    @ivar files: C{(relpath, md5, size)} of every file to send, in order.
    """

    def __init__(self, root, files, send, window=DEFAULT_WINDOW, runInThread=None,
                 chunkSize=MAX_CHUNK):
        self.root = root
        self.files = list(files)
        self.consumer = ChunkConsumer(send, window, chunkSize)
        self._prefetcher = (_Prefetcher(root, self.files, runInThread)
                            if runInThread is not None else None)
        self.bytesSent = 0
        self._done = Deferred()
        self._index = 0
        self._current = None
        self._advancing = False
        self._again = False

    def start(self):
        """
        Send everything; the Deferred fires when the last chunk was
        acknowledged, or fails (L{StreamError} if a file changed).
        """
        self._next(None)
        return self._done

    def stop(self, reason="stopped"):
        """
        Abandon the stream (the connection is gone, a newer sync replaced it).
        """
        self.consumer.abort(Failure(StreamError(f"Transfer {reason}")))

    def _next(self, ignored):
        """
        The current file was read to its end: start the next one.  A loop,
        not recursion: small files complete synchronously, one after the
        other.
        """
        if self._advancing:
            self._again = True
            return None
        self._advancing = True
        try:
            self._again = True
            while self._again and not self._done.called:
                self._again = False
                self._step()
        finally:
            self._advancing = False
        return None

    def _step(self):
        if self._current is not None:
            stream, counter = self._current
            stream.close()
            self._current = None
            if counter.remaining:
                return self._fail(Failure(StreamError(
                    f"File {counter.relpath!r} shrank while it was being sent")))
        if self.consumer.failure is not None:
            return self._fail(self.consumer.failure)
        if self._index == len(self.files):
            self.consumer.flush().addCallbacks(self._done.callback, self._fail)
            return None
        if self._prefetcher is not None:
            self._prefetcher.ahead(self._index)
        relpath, md5, size = self.files[self._index]
        self._index += 1
        try:
            stream = _openNoFollow(self.root.preauthChild(relpath).path)
        except OSError as error:
            return self._fail(Failure(StreamError(
                f"File {relpath!r} cannot be read: {error.strerror}")))
        self.consumer.write(encodeHeader(relpath, md5, size))
        counter = _ExactLength(self.consumer, size, relpath)
        self._current = (stream, counter)
        self.bytesSent += size
        FileSender().beginFileTransfer(stream, counter).addCallbacks(self._next, self._senderFailed)
        return None

    def _senderFailed(self, failure):
        if self._current is not None:
            self._current[0].close()
            self._current = None
        return self._fail(self.consumer.failure or failure)

    def _fail(self, failure):
        if not self._done.called:
            self.consumer.abort(failure)
            self._done.errback(failure)
        return None


def _openNoFollow(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    return open(fd, "rb", closefd=True)


class FileStreamReceiver:
    """
    Parses a file stream into a L{wazuhcluster.staging.StagedSync}.

    @ivar expected: what the receiver asked for: C{{relpath: (md5, size)}};
        anything else in the stream is refused.
    """

    def __init__(self, staged, expected):
        self.staged = staged
        self.expected = dict(expected)
        self.received = set()
        self.bytesReceived = 0
        self._header = bytearray()
        self._file = None
        self._remaining = 0

    def feed(self, data):
        """
        Take the next bytes of the stream.

        @raise SyncAborted: on anything unexpected (the caller aborts the
            whole sync).
        """
        self.bytesReceived += len(data)
        view = memoryview(data)
        try:
            while view:
                if self._file is None:
                    view = self._readHeader(view)
                else:
                    view = self._readContent(view)
        except ClusterError as error:
            raise SyncAborted(str(error))

    def _readHeader(self, view):
        end = bytes(view[: MAX_HEADER + 1]).find(b"\n")
        if end < 0:
            self._header += view
            if len(self._header) > MAX_HEADER:
                raise StreamError("File header too long in stream")
            return view[len(view):]
        self._header += view[:end]
        line, self._header = bytes(self._header), bytearray()
        self._open(line)
        return view[end + 1 :]

    def _open(self, line):
        try:
            relpath, md5, size = line.decode("utf-8").split("\t")
            size = int(size)
        except ValueError:
            raise StreamError("Malformed file header in stream")
        if self.expected.get(relpath) != (md5, size) or relpath in self.received:
            raise StreamError(f"Unexpected file {relpath!r} in stream")
        self.received.add(relpath)
        self._file = self.staged.open(relpath, md5, size)
        self._remaining = size
        if size == 0:
            self._closeFile()

    def _readContent(self, view):
        take = min(self._remaining, len(view))
        self._file.write(view[:take])
        self._remaining -= take
        if self._remaining == 0:
            self._closeFile()
        return view[take:]

    def _closeFile(self):
        current, self._file = self._file, None
        current.close()

    def finish(self):
        """
        The stream ended: check that it ended between files and that every
        expected file arrived.

        @raise SyncAborted: otherwise.
        """
        if self._file is not None or self._header:
            raise SyncAborted("Error 3035 - File stream ended in the middle of a file")
        missing = set(self.expected) - self.received
        if missing:
            raise SyncAborted(
                f"Error 3035 - File stream ended without {len(missing)} expected files")


def fileDataArguments(chunk):
    """
    The L{FileData} values carrying C{chunk} (at most L{STREAM_CHUNK} bytes).
    """
    pieces = [chunk[i : i + MAX_CHUNK] for i in range(0, len(chunk), MAX_CHUNK)] or [b""]
    arguments = {"data": pieces[0]}
    for n, piece in enumerate(pieces[1:], start=2):
        arguments[f"data{n}"] = piece
    return arguments
