# -*- test-case-name: tests.test_chunks -*-
"""
Tests for L{wazuhcluster.chunks}: the one chunked-value mechanism.
"""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.chunks import (
    MAX_CHUNK,
    RecordError,
    RecordReader,
    chunkRecords,
    decodeJson,
    encodeJson,
    packRecords,
    readRecords,
    splitBytes,
)

records = st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")),
                   max_size=60)


class PackRecordsTests(SynchronousTestCase):
    """
    L{packRecords} and L{RecordReader} are inverse, within the bounds.
    """

    @settings(max_examples=200, deadline=None)
    @given(records, st.integers(min_value=2, max_value=700))
    def test_roundTrip(self, values, limit):
        """
        Whatever the records and the chunk size, reading the chunks gives the
        records back, and no chunk exceeds the limit.
        """
        packed = list(packRecords(values, limit))
        for _, chunk in packed:
            self.assertLessEqual(len(chunk), limit)
        self.assertEqual(sum(count for count, _ in packed), len(values))
        reader = RecordReader(maxRecordLength=10000)
        out = []
        for count, chunk in packed:
            got = reader.feed(chunk)
            self.assertEqual(len(got), count)
            out.extend(got)
        reader.finish()
        self.assertEqual(out, values)

    def test_wholeRecordsPerChunk(self):
        """
        Records shorter than a chunk are never split: each chunk ends with a
        newline.
        """
        values = [b"x" * 97] * 50
        for _, chunk in packRecords(values, 1000):
            self.assertTrue(chunk.endswith(b"\n"))

    def test_longRecordSpansChunks(self):
        """
        A record longer than a chunk is cut over consecutive chunks; the
        chunks that do not end it count zero records.
        """
        packed = list(packRecords([b"a", b"b" * 25, b"c"], 10))
        self.assertEqual([count for count, _ in packed], [1, 0, 0, 2])
        self.assertEqual(b"".join(chunk for _, chunk in packed), b"a\n" + b"b" * 25 + b"\nc\n")

    def test_newlineRefused(self):
        """
        A record holding a newline cannot be packed.
        """
        self.assertRaises(ValueError, list, packRecords([b"a\nb"]))

    def test_emptyValue(self):
        """
        No record: no chunk from L{packRecords}, one empty chunk from
        L{chunkRecords}, and that reads back as no record.
        """
        self.assertEqual(list(packRecords([])), [])
        self.assertEqual(chunkRecords([]), [b""])
        self.assertEqual(readRecords([b""]), [])


class BoundsTests(SynchronousTestCase):
    """
    L{RecordReader} refuses what breaks its bounds before keeping it.
    """

    def test_chunkTooLong(self):
        """
        A chunk longer than L{MAX_CHUNK} is refused.
        """
        reader = RecordReader()
        self.assertRaises(RecordError, reader.feed, b"x" * (MAX_CHUNK + 1))

    def test_recordTooLong(self):
        """
        A record longer than the bound is refused, even spread over chunks
        that never end it.
        """
        reader = RecordReader(maxRecordLength=100)
        reader.feed(b"x" * 60)
        self.assertRaises(RecordError, reader.feed, b"x" * 60)
        self.assertRaises(RecordError, RecordReader(maxRecordLength=10).feed, b"y" * 11 + b"\n")

    def test_tooManyRecords(self):
        """
        More records than the bound are refused.
        """
        reader = RecordReader(maxRecords=3)
        reader.feed(b"a\nb\n")
        self.assertRaises(RecordError, reader.feed, b"c\nd\n")

    def test_tooManyBytes(self):
        """
        More bytes than the bound are refused.
        """
        reader = RecordReader(maxBytes=10)
        reader.feed(b"123456\n")
        self.assertRaises(RecordError, reader.feed, b"12345\n")

    def test_endsInsideRecord(self):
        """
        A value ending without the newline of its last record is refused.
        """
        reader = RecordReader()
        reader.feed(b"a\nb")
        self.assertRaises(RecordError, reader.finish)

    def test_notBytes(self):
        """
        A chunk that is not bytes is refused.
        """
        self.assertRaises(RecordError, RecordReader().feed, "text")


class JsonTests(SynchronousTestCase):
    """
    JSON records: compact, ASCII, decoded with a depth bound.
    """

    def test_roundTrip(self):
        """
        A value encodes to one ASCII line and decodes back.
        """
        value = {"a": ["\u00e9\n", 1, None], "b": {"c": True}}
        record = encodeJson(value)
        self.assertNotIn(b"\n", record)
        record.decode("ascii")
        self.assertEqual(decodeJson(record), value)

    def test_deepNestingRefused(self):
        """
        Deeply nested JSON (which would exhaust the parser's recursion) is a
        L{RecordError}, not a C{RecursionError}; brackets inside strings do
        not count.
        """
        self.assertRaises(RecordError, decodeJson, b"[" * 100000 + b"]" * 100000)
        self.assertEqual(decodeJson(json.dumps(["[" * 100]).encode()), ["[" * 100])

    def test_notJson(self):
        """
        Text that is not JSON, or bytes that are not UTF-8, are refused.
        """
        self.assertRaises(RecordError, decodeJson, b"{nope")
        self.assertRaises(RecordError, decodeJson, b"\xff")


class SplitBytesTests(SynchronousTestCase):
    """
    L{splitBytes} cuts raw bytes.
    """

    def test_split(self):
        """
        Pieces of at most the limit, in order; one empty piece for nothing.
        """
        self.assertEqual(splitBytes(b"abcdefg", 3), [b"abc", b"def", b"g"])
        self.assertEqual(splitBytes(b"", 3), [b""])
