# -*- test-case-name: tests.test_chunks -*-
"""
The one way a value bigger than an AMP value travels: as I{records}.

A chunked value is a sequence of records, each a byte string without a
newline, written one after the other, each followed by C{\\n}, and cut into
chunks of at most L{MAX_CHUNK} bytes.  L{packRecords} cuts at record
boundaries, so that each chunk holds whole records (a receiver can store and
acknowledge a chunk on its own); only a record longer than a chunk is split
over several consecutive chunks.  L{RecordReader} takes the chunks in order
and gives back whole records, refusing, before anything is allocated beyond
its bounds, a chunk too long, a record too long, too many records or too
many bytes.

Every big value of the protocol is one of these: the integrity manifest and
its deltas (C{path TAB md5 TAB size}), the paths a worker asks for, agent-info
rows and agent-group assignments (one compact JSON value per record), and
the results of control requests (one JSON document, a single record).
L{decodeJson} is the guarded JSON decoder for records a peer sent.
"""

import json

#: The largest chunk of payload one AMP value carries (AMP's limit is 65 535).
MAX_CHUNK = 60000

#: The deepest nesting a JSON record from a peer may have.
MAX_JSON_DEPTH = 32


class RecordError(ValueError):
    """
    Chunks received from a peer break the record framing or its bounds.
    """


def encodeJson(value):
    """
    One compact JSON record (ASCII: non-ASCII text is escaped, so a record
    never holds a raw newline).
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _depth(text, limit):
    """
    Whether the brackets of JSON C{text} nest deeper than C{limit} (counted
    outside strings, without parsing).
    """
    if text.count("[") + text.count("{") <= limit:
        # Fewer openers than the limit, wherever they are: the usual case,
        # decided without walking the text character by character.
        return False
    depth = 0
    inString = escaped = False
    for char in text:
        if inString:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                inString = False
        elif char == '"':
            inString = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def decodeJson(record, maxDepth=MAX_JSON_DEPTH):
    """
    Decode one JSON record a peer sent.

    @raise RecordError: not UTF-8, not JSON, or nested deeper than
        C{maxDepth} (checked before parsing: deep nesting would exhaust the
        parser's recursion).
    """
    try:
        text = bytes(record).decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError("a record is not UTF-8") from None
    if _depth(text, maxDepth):
        raise RecordError(f"a JSON record is nested deeper than {maxDepth} levels")
    try:
        return json.loads(text)
    except ValueError as e:
        raise RecordError(f"a record is not JSON: {e}") from None


def packRecords(records, limit=MAX_CHUNK):
    """
    Cut C{records} into chunks.

    @param records: an iterable of L{bytes} records, none holding C{b"\\n"}.
    @param limit: the largest chunk, in bytes.
    @return: an iterator of C{(count, chunk)}: how many records end in the
        chunk, and its bytes. Nothing at all for no record.
    @raise ValueError: a record holds a newline.
    """
    parts, size, count = [], 0, 0
    for record in records:
        if b"\n" in record:
            raise ValueError("a record may not hold a newline")
        length = len(record) + 1
        if parts and size + length > limit:
            yield count, b"".join(parts)
            parts, size, count = [], 0, 0
        if length > limit:
            line = record + b"\n"
            pieces = [line[i:i + limit] for i in range(0, len(line), limit)]
            for piece in pieces[:-1]:
                yield 0, piece
            parts, size, count = [pieces[-1]], len(pieces[-1]), 1
            continue
        parts.append(record)
        parts.append(b"\n")
        size += length
        count += 1
    if parts:
        yield count, b"".join(parts)


def chunkRecords(records, limit=MAX_CHUNK):
    """
    The chunks of L{packRecords}, without the counts; at least one chunk
    (empty) for no record.
    """
    chunks = [chunk for _, chunk in packRecords(records, limit)]
    return chunks or [b""]


class RecordReader:
    """
    Reassemble the records of chunks received in order, within bounds.

    @ivar records: how many records were read so far.
    @ivar received: how many bytes were read so far.
    """

    def __init__(self, maxRecordLength=MAX_CHUNK, maxRecords=None, maxBytes=None):
        """
        @param maxRecordLength: the longest record accepted.
        @param maxRecords: the most records accepted, or L{None}.
        @param maxBytes: the most bytes accepted over all chunks, or L{None}.
        """
        self.maxRecordLength = maxRecordLength
        self.maxRecords = maxRecords
        self.maxBytes = maxBytes
        self.records = 0
        self.received = 0
        self._partial = bytearray()

    def feed(self, chunk):
        """
        Take the next chunk.

        @type chunk: L{bytes}
        @return: the records it completes, in order.
        @raise RecordError: a bound is broken.
        """
        if not isinstance(chunk, bytes):
            raise RecordError("a chunk is not bytes")
        if len(chunk) > MAX_CHUNK:
            raise RecordError(f"a chunk of {len(chunk)} bytes")
        self.received += len(chunk)
        if self.maxBytes is not None and self.received > self.maxBytes:
            raise RecordError(f"more than {self.maxBytes} bytes")
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if lines and self._partial:
            lines[0] = bytes(self._partial) + lines[0]
            self._partial = bytearray()
        if len(self._partial) + len(tail) > self.maxRecordLength:
            raise RecordError(f"a record longer than {self.maxRecordLength} bytes")
        self._partial += tail
        for line in lines:
            if len(line) > self.maxRecordLength:
                raise RecordError(f"a record longer than {self.maxRecordLength} bytes")
        self.records += len(lines)
        if self.maxRecords is not None and self.records > self.maxRecords:
            raise RecordError(f"more than {self.maxRecords} records")
        return lines

    def finish(self):
        """
        The value ended: check it ended with a whole record.

        @raise RecordError: it ended inside a record.
        """
        if self._partial:
            raise RecordError("the value ended in the middle of a record")


def readRecords(chunks, **bounds):
    """
    All the records of C{chunks} (a whole value), read by a L{RecordReader}
    with C{bounds}.
    """
    reader = RecordReader(**bounds)
    records = []
    for chunk in chunks:
        records.extend(reader.feed(chunk))
    reader.finish()
    return records


def splitBytes(data, limit=MAX_CHUNK):
    """
    Cut raw bytes (a stream, not records) into pieces of at most C{limit};
    at least one piece.
    """
    return [data[i:i + limit] for i in range(0, len(data), limit)] or [b""]
