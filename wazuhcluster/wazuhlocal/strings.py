# -*- test-case-name: tests.test_wazuhlocal_protocol -*-
"""
The big strings a peer sends on Wazuh's local socket (WAZUH.md section
3.4): C{new_str <length>} announces one and is answered with its id (a
random 32-bit number in decimal), C{str_upd <id> <part>} appends to it,
C{err_str <length>} drops an empty one; a later request names the id
(C{dapi_res <id>}) and its handler takes the string.

Unlike Wazuh, nothing is allocated from what the peer announces: parts are
kept as they come, and the announced lengths are bounded (one string, all
strings of a connection, how many at once).
"""

import random

from wazuhcluster.errors import ClusterError


def _length(payload):
    if not payload.isdigit() or len(payload) > 10:
        raise ClusterError(f"Invalid string length {payload[:20]!r}", 3036)
    return int(payload)


class InStrings:
    """
    The strings of one connection being received.
    """

    def __init__(self, maxString, maxStrings, maxBytes, rng=None):
        self._maxString = maxString
        self._maxStrings = maxStrings
        self._maxBytes = maxBytes
        self._random = random.SystemRandom() if rng is None else rng
        self._strings = {}
        self._announced = 0

    def __len__(self):
        return len(self._strings)

    def clear(self):
        self._strings.clear()
        self._announced = 0

    def newString(self, payload):
        """
        C{new_str <length>}: the reply to send.
        """
        total = _length(payload)
        if total > self._maxString:
            raise ClusterError(f"Payload too large: a string of {total} bytes", 3050)
        if len(self._strings) >= self._maxStrings or self._announced + total > self._maxBytes:
            raise ClusterError("Too many strings in progress", 3051)
        while True:
            stringId = str(self._random.randrange(2**32)).encode("ascii")
            if stringId not in self._strings:
                break
        self._strings[stringId] = [total, 0, []]
        self._announced += total
        return b"ok", stringId

    def update(self, payload):
        """
        C{str_upd <id> <part>}: the reply to send.
        """
        stringId, _, part = payload.partition(b" ")
        entry = self._strings.get(stringId)
        if entry is None:
            raise ClusterError(f"String couldn't be found: {stringId[:20]!r}", 3035)
        if entry[1] + len(part) > entry[0]:
            self._drop(stringId)
            raise ClusterError(f"String {stringId!r} longer than announced", 3050)
        entry[2].append(part)
        entry[1] += len(part)
        return b"ok", b"String updated"

    def dropEmpty(self, payload):
        """
        C{err_str <length>}: drop an empty string of that length; the
        reply (its id, or C{None}).
        """
        total = _length(payload)
        for stringId, (length, received, _) in list(self._strings.items()):
            if length == total and received == 0:
                self._drop(stringId)
                return b"ok", stringId
        return b"ok", b"None"

    def take(self, stringId):
        """
        Take (and forget) a string received completely.

        @raise ClusterError: 3035 for an unknown or incomplete string.
        """
        entry = self._strings.get(stringId)
        if entry is None or entry[1] != entry[0]:
            raise ClusterError(f"String couldn't be found: {stringId[:20]!r}", 3035)
        self._drop(stringId)
        return b"".join(entry[2])

    def _drop(self, stringId):
        self._announced -= self._strings.pop(stringId)[0]
