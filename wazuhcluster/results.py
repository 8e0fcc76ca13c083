# -*- test-case-name: tests.test_control -*-
"""
Results larger than one AMP value: one JSON record (L{wazuhcluster.chunks})
kept by the answering side and fetched in chunks by the asking side.

The results one connection keeps are bounded by count and by bytes: the
oldest are dropped first.
"""

import json
import uuid
from collections import OrderedDict

from twisted.internet.defer import inlineCallbacks

from wazuhcluster.chunks import chunkRecords, decodeJson, encodeJson, readRecords
from wazuhcluster.commands import ControlFailed, ControlRequest, FetchResultChunk

#: The most bytes of results one connection keeps.
MAX_RESULT_BYTES = 16 * 1024 * 1024

#: The largest result a client accepts.
MAX_RESULT = 64 * 1024 * 1024


class ResultStore:
    """
    The results one connection is serving, oldest dropped first.
    """

    def __init__(self, maxResults=16, maxBytes=MAX_RESULT_BYTES):
        self.maxResults = maxResults
        self.maxBytes = maxBytes
        self.bytes = 0
        self._results = OrderedDict()

    def put(self, value):
        """
        Keep C{value} (a JSON-able value, or JSON bytes) for fetching; return
        the L{ControlRequest} answer.
        """
        record = value if isinstance(value, bytes) else encodeJson(value)
        chunks = chunkRecords([record])
        resultId = uuid.uuid4().hex
        if len(chunks) > 1:
            size = sum(len(c) for c in chunks)
            if size > self.maxBytes:
                raise ControlFailed(
                    f"Error 3038 - The result ({size} bytes) is larger than "
                    f"{self.maxBytes} bytes")
            self._results[resultId] = chunks
            self.bytes += size
            while len(self._results) > self.maxResults or self.bytes > self.maxBytes:
                _, dropped = self._results.popitem(last=False)
                self.bytes -= sum(len(c) for c in dropped)
        return {"result_id": resultId, "chunks": len(chunks), "data": chunks[0]}

    def fetch(self, resultId, index):
        """
        Chunk C{index} of a kept result; the result is dropped after its last
        chunk was fetched.
        """
        chunks = self._results.get(resultId)
        if chunks is None or not 0 < index < len(chunks):
            raise ControlFailed("Error 3038 - Unknown result or chunk requested")
        if index == len(chunks) - 1:
            del self._results[resultId]
            self.bytes -= sum(len(c) for c in chunks)
        return {"data": chunks[index]}


@inlineCallbacks
def callControl(protocol, request, arguments=None, maxBytes=MAX_RESULT):
    """
    Send a L{ControlRequest} over C{protocol} and gather the whole JSON
    result.

    @return: a Deferred firing with the decoded JSON value.
    """
    answer = yield protocol.callRemote(
        ControlRequest, request=request, arguments=json.dumps(arguments or {})
    )
    chunks = answer["chunks"]
    if not 0 < chunks <= maxBytes // 60000 + 1:
        raise ControlFailed(f"Error 3038 - A result announced in {chunks} chunks")
    parts = [answer["data"]]
    for index in range(1, chunks):
        chunk = yield protocol.callRemote(
            FetchResultChunk, result_id=answer["result_id"], index=index
        )
        parts.append(chunk["data"])
    records = readRecords(parts, maxRecordLength=maxBytes, maxRecords=1)
    if len(records) != 1:
        raise ControlFailed("Error 3038 - A result without its value")
    return decodeJson(records[0], maxDepth=64)
