# -*- test-case-name: tests.test_streams -*-
"""
Files over AMP with bounded memory, the disk work off the reactor thread.

The stream of one integrity round is a sequence of records::

    F TAB <path> LF                 a file begins
    D TAB <n> LF <n bytes>          bytes of it
    E TAB <md5> TAB <size> LF       it ended: what was sent, in all
    X TAB <path> TAB <reason> LF    the file is not sent this round (gone,
                                    unreadable); drop what came of it

The sender reads every file once, computing its MD5 while it reads
(L{FileReader}, in a thread): each round carries a consistent version of
every file even while the master's files keep changing, and the next round
brings anything newer.  L{StreamSender} sends what the reader produced as
L{wazuhcluster.commands.FileData} commands, at most C{window} bytes
unacknowledged, reading the next batch in the session's thread while the
previous ones travel.  L{StreamReceiver} parses the stream into a
L{wazuhcluster.staging.StagedSync}, in the worker's session thread.

Every file is opened without following a symbolic link at any component of
its path (C{openBeneath}).
"""

import hashlib
import os
import stat

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wazuhcluster.chunks import MAX_CHUNK, splitBytes
from wazuhcluster.commands import FILE_DATA_VALUES
from wazuhcluster.errors import ClusterError
from wazuhcluster.staging import StagingError, isDiskFull

#: The bytes one FileData command carries.
STREAM_CHUNK = FILE_DATA_VALUES * MAX_CHUNK

#: Bytes a sender may have sent and not seen acknowledged.
DEFAULT_WINDOW = 4 * STREAM_CHUNK

#: The longest record line accepted (a path is at most 4096 bytes).
MAX_HEADER = 4096 + 128

#: The longest D record accepted.
MAX_DATA_RECORD = 16 * 1024 * 1024

#: How far ahead of the file being read the disk is asked to read.
PREFETCH_FILES = 256
PREFETCH_BYTES = 32 * 1024 * 1024

_READ_PIECE = 1024 * 1024


class StreamError(ClusterError):
    """
    A file stream is malformed.
    """

    code = 3035


def openBeneath(rootPath, relpath):
    """
    Open C{relpath} below C{rootPath} for reading, never following a
    symbolic link (each directory is opened relative to its parent with
    C{O_NOFOLLOW}), and only a regular file.

    @return: the file descriptor.
    @raise OSError: it cannot be opened, a component is a link (C{ELOOP}) or
        not a directory, or the file is not a regular file.
    """
    parts = relpath.split("/")
    directory = os.open(rootPath, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                            | os.O_CLOEXEC, dir_fd=directory)
            os.close(directory)
            directory = inner
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=directory)
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(f"{relpath} is not a regular file")
    return fd


def _record(*fields):
    return ("\t".join(fields) + "\n").encode("utf-8")


class FileReader:
    """
    Produces the stream of some files of a home, a batch at a time.
    Blocking: every method runs in the session's thread, one at a time.
    """

    def __init__(self, root, relpaths, prefetch=True, substitutes=None):
        """
        @param root: the home's path (L{str}).
        @param relpaths: the files to send, in order.
        @param substitutes: relpath to another path below C{root} to read
            for it (the master serves a held-back client.keys from its copy).
        """
        self.root = root
        self.relpaths = list(relpaths)
        self.substitutes = dict(substitutes or {})
        self.prefetch = prefetch
        self.sent = 0
        self.gone = {}
        self._index = 0
        self._advised = 0
        self._fd = None
        self._md5 = None
        self._size = 0

    def read(self, budget):
        """
        The next bytes of the stream: about C{budget} of them (a file's
        records may go a little over), or C{b""} once everything was read.
        """
        out = bytearray()
        while len(out) < budget:
            if self._fd is None:
                if self._index == len(self.relpaths):
                    break
                self._advise()
                self._open(out)
                continue
            relpath = self.relpaths[self._index - 1]
            try:
                piece = os.read(self._fd, min(_READ_PIECE, max(budget - len(out), 4096)))
            except OSError as e:
                self._closeFile()
                self._skip(out, relpath, e.strerror or str(e))
                continue
            if not piece:
                out += _record("E", self._md5.hexdigest(), str(self._size))
                self._closeFile()
                continue
            self._md5.update(piece)
            self._size += len(piece)
            out += _record("D", str(len(piece)))
            out += piece
        self.sent += len(out)
        return bytes(out)

    def _open(self, out):
        relpath = self.relpaths[self._index]
        self._index += 1
        try:
            self._fd = openBeneath(self.root, self.substitutes.get(relpath, relpath))
        except OSError as e:
            self._skip(out, relpath, e.strerror or str(e), begun=False)
            return
        self._md5 = hashlib.md5()
        self._size = 0
        out += _record("F", relpath)

    def _skip(self, out, relpath, reason, begun=True):
        self.gone[relpath] = reason
        out += _record("X", relpath, reason.replace("\t", " ").replace("\n", " ")[:200])

    def _closeFile(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _advise(self):
        """
        Ask the kernel to start reading the next files (a hint: opening a
        file whose inode is not cached waits for the disk; reading ahead
        lets those waits overlap).
        """
        if not self.prefetch or self._advised > self._index + PREFETCH_FILES // 2:
            return
        start = max(self._advised, self._index)
        end = min(len(self.relpaths), start + PREFETCH_FILES)
        for relpath in self.relpaths[start:end]:
            try:
                fd = openBeneath(self.root, relpath)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)
        self._advised = end

    def close(self):
        """
        Release the file being read, if any.
        """
        self._closeFile()


class StreamSender:
    """
    Sends a L{FileReader}'s stream as chunks, at most C{window} bytes
    unacknowledged, reading ahead in the session's thread queue.

    @ivar inFlight: bytes sent and not acknowledged yet.
    @ivar maxInFlight: the most ever in flight (for tests).
    """

    def __init__(self, reader, send, queue, window=DEFAULT_WINDOW, chunkSize=STREAM_CHUNK):
        """
        @param send: called with each chunk; returns a Deferred firing when
            the peer acknowledged it.
        @param queue: the session's L{wazuhcluster.session.ThreadQueue}.
        """
        if window < chunkSize:
            raise ValueError("the window must hold at least one chunk")
        self.reader = reader
        self.send = send
        self.queue = queue
        self.window = window
        self.chunkSize = chunkSize
        self.inFlight = 0
        self.maxInFlight = 0
        self._buffer = bytearray()
        self._reading = False
        self._eof = False
        self._failure = None
        self._done = Deferred()

    def start(self):
        """
        @return: a Deferred firing once every chunk was acknowledged, or
            failing with the first failure (or the reason of L{stop}).
        """
        self._pump()
        return self._done

    def stop(self, reason):
        """
        Abandon the stream; the L{start} Deferred fails with C{reason}.
        """
        self._fail(Failure(ClusterError(f"Transfer {reason}", 3035)))

    def _pump(self):
        if self._failure is not None or self._done.called:
            return
        while len(self._buffer) >= self.chunkSize or (self._eof and self._buffer):
            if self.inFlight + min(self.chunkSize, len(self._buffer)) > self.window:
                break
            chunk = bytes(self._buffer[:self.chunkSize])
            del self._buffer[:self.chunkSize]
            self.inFlight += len(chunk)
            self.maxInFlight = max(self.maxInFlight, self.inFlight)
            d = self.send(chunk)
            d.addCallbacks(self._acknowledged, self._fail, callbackArgs=(len(chunk),))
        if self._eof:
            if not self._buffer and not self.inFlight and not self._done.called:
                self._done.callback(self.reader.sent)
            return
        if not self._reading and self.inFlight + len(self._buffer) < self.window:
            self._reading = True
            d = self.queue.run(self.reader.read, self.chunkSize)
            d.addCallbacks(self._read, self._fail)

    def _read(self, data):
        self._reading = False
        if not data:
            self._eof = True
        self._buffer += data
        self._pump()

    def _acknowledged(self, ignored, size):
        self.inFlight -= size
        self._pump()

    def _fail(self, failure):
        self._reading = False
        if self._failure is None:
            self._failure = failure
            self._buffer = bytearray()
            if not self._done.called:
                self._done.errback(failure)
        return None


class StreamReceiver:
    """
    Parses a stream into a L{wazuhcluster.staging.StagedSync}.  Blocking:
    L{feed} and L{finish} run in the session's thread, one at a time.

    @ivar received: paths of the files that arrived whole and verified.
    @ivar failed: path to reason for the files that did not.
    """

    def __init__(self, staged, wanted):
        """
        @param wanted: the paths asked for; anything else is refused.
        """
        self.staged = staged
        self.wanted = frozenset(wanted)
        self.received = set()
        self.failed = {}
        self._seen = set()
        self._line = bytearray()
        self._current = None
        self._file = None
        self._data = 0

    def feed(self, data):
        """
        Take the next bytes of the stream.

        @raise StreamError: the stream is malformed (the round is abandoned).
        @raise StagingError: the round's bound is reached or the disk is
            full (the round is abandoned).
        """
        view = memoryview(data)
        while view:
            if self._data:
                take = min(self._data, len(view))
                if self._file is not None:
                    self._write(view[:take])
                self._data -= take
                view = view[take:]
                continue
            end = bytes(view[:MAX_HEADER + 1]).find(b"\n")
            if end < 0:
                self._line += view
                if len(self._line) > MAX_HEADER:
                    raise StreamError("Record too long in the file stream")
                return
            self._line += view[:end]
            view = view[end + 1:]
            line, self._line = bytes(self._line), bytearray()
            self._record(line)

    def _write(self, data):
        try:
            self._file.write(data)
        except StagingError:
            raise
        except OSError as e:
            if isDiskFull(e):
                raise StagingError(f"No room to stage the files: {e.strerror}") from None
            self.failed[self._file.relpath] = e.strerror or str(e)
            self._file.discard()
            self._file = None

    def _record(self, line):
        try:
            fields = line.decode("utf-8").split("\t")
        except UnicodeDecodeError:
            raise StreamError("A record of the file stream is not UTF-8") from None
        kind = fields[0]
        if kind == "D" and len(fields) == 2 and fields[1].isdigit():
            size = int(fields[1])
            if size > MAX_DATA_RECORD:
                raise StreamError(f"A data record of {size} bytes in the file stream")
            if self._current is None:
                raise StreamError("File data outside a file in the stream")
            self._data = size
        elif kind == "F" and len(fields) == 2:
            self._begin(fields[1])
        elif kind == "E" and len(fields) == 3 and fields[2].isdigit():
            self._end(fields[1], int(fields[2]))
        elif kind == "X" and len(fields) == 3:
            self._gone(fields[1], fields[2])
        else:
            raise StreamError(f"Malformed record {line[:60]!r} in the file stream")

    def _begin(self, relpath):
        if self._current is not None:
            raise StreamError("A file began inside another in the stream")
        if relpath not in self.wanted or relpath in self._seen:
            raise StreamError(f"Unexpected file {relpath[:100]!r} in the stream")
        self._seen.add(relpath)
        self._current = relpath
        try:
            self._file = self.staged.begin(relpath)
        except StagingError:
            raise
        except (ClusterError, OSError) as e:
            self.failed[relpath] = str(e)
            self._file = None

    def _end(self, md5, size):
        if self._current is None:
            raise StreamError("A file ended that did not begin in the stream")
        relpath, self._current = self._current, None
        staged, self._file = self._file, None
        if staged is None:
            return
        try:
            staged.finish(md5, size)
        except StagingError as e:
            self.failed[relpath] = str(e)
            return
        except OSError as e:
            self.failed[relpath] = e.strerror or str(e)
            return
        self.received.add(relpath)

    def _gone(self, relpath, reason):
        if self._current is not None and self._current != relpath:
            raise StreamError("A file was dropped inside another in the stream")
        if relpath not in self.wanted:
            raise StreamError(f"Unexpected file {relpath[:100]!r} in the stream")
        self._seen.add(relpath)
        self._current = None
        if self._file is not None:
            self._file.discard()
            self._file = None
        self.failed[relpath] = f"not sent by the master: {reason}"

    def finish(self):
        """
        The stream ended: it must end between files.  Files asked for and
        never sent count as failed.

        @raise StreamError: it ended inside a file.
        """
        if self._current is not None or self._line or self._data:
            raise StreamError("The file stream ended in the middle of a file")
        for relpath in self.wanted - self._seen:
            self.failed[relpath] = "not sent by the master"


def fileDataArguments(chunk):
    """
    The L{wazuhcluster.commands.FileData} values carrying C{chunk} (at most
    L{STREAM_CHUNK} bytes).
    """
    pieces = splitBytes(chunk)
    arguments = {"data": pieces[0]}
    for n, piece in enumerate(pieces[1:], start=2):
        arguments[f"data{n}"] = piece
    return arguments
