# -*- test-case-name: tests.test_control -*-
"""
Results larger than one AMP value: kept by the answering side and fetched in
chunks of at most L{MAX_CHUNK} bytes by the asking side.
"""

import json
import uuid
from collections import OrderedDict

from twisted.internet.defer import inlineCallbacks

from wazuhcluster.commands import (
    MAX_CHUNK,
    ControlFailed,
    ControlRequest,
    FetchResultChunk,
)


def splitChunks(payload, size=MAX_CHUNK):
    """
    Cut C{payload} (bytes) into chunks of at most C{size} bytes; an empty
    payload is one empty chunk.
    """
    return [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]


class ResultStore:
    """
    The results one connection is serving, oldest dropped first.

    @ivar maxResults: how many pending results are kept at most.
    """

    def __init__(self, maxResults=16):
        self.maxResults = maxResults
        self._results = OrderedDict()

    def put(self, payload):
        """
        Keep C{payload} for fetching; return the L{ControlRequest} answer.
        """
        chunks = splitChunks(payload)
        resultId = uuid.uuid4().hex
        if len(chunks) > 1:
            self._results[resultId] = chunks
            while len(self._results) > self.maxResults:
                self._results.popitem(last=False)
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
        return {"data": chunks[index]}


@inlineCallbacks
def callControl(protocol, request, arguments=None):
    """
    Send a L{ControlRequest} over C{protocol} and gather the whole JSON
    result.

    @return: a Deferred firing with the decoded JSON value.
    """
    answer = yield protocol.callRemote(
        ControlRequest, request=request, arguments=json.dumps(arguments or {})
    )
    parts = [answer["data"]]
    for index in range(1, answer["chunks"]):
        chunk = yield protocol.callRemote(
            FetchResultChunk, result_id=answer["result_id"], index=index
        )
        parts.append(chunk["data"])
    return json.loads(b"".join(parts))
