# -*- test-case-name: tests.test_wazuhlocal_framing -*-
"""
Wazuh's local framing, as cluster_control, the Wazuh API and the C daemons
speak it on C{queue/cluster/c-internal.sock} (WAZUH.md section 3.1,
C{wazuh-peers/README.md}).

A frame is a 20-byte header C{!2I12s} and a payload::

    counter     u32, big-endian (a reply reuses the request's counter)
    length      u32, big-endian: the payload bytes of this frame
    command     12 bytes: C{cmd + b" " + b"-" * (11 - len(cmd))}; the last
                byte is C{d} on every frame but the last of a message split
                in parts

A message whose payload exceeds L{REQUEST_CHUNK} (5 MiB) travels in frames
of at most L{REQUEST_CHUNK} bytes, header included, all with the same
counter. No encryption on the local socket.

This module is pure: L{buildFrames} turns a message into frames and
L{FrameDecoder} turns received bytes into complete L{Message}s, with strict
bounds. Any L{FramingError} means the peer (or the caller) broke the
protocol: the connection is to be closed.
"""

import re
import struct

from attrs import frozen

from wazuhcluster.errors import ClusterError

#: The header: counter, payload length, command field.
HEADER = struct.Struct("!2I12s")

#: Bytes of a header.
HEADER_SIZE = HEADER.size

#: Bytes of the command field.
COMMAND_SIZE = 12

#: Longest command: the last byte of the field is the division flag.
MAX_COMMAND_LENGTH = COMMAND_SIZE - 1

#: The last byte of the command field of every frame of a split message but
#: the last one.
DIVIDED_FLAG = b"d"

#: Largest payload sent in one frame; larger messages are split in frames
#: of at most this many bytes, header included (Wazuh's C{request_chunk}).
REQUEST_CHUNK = 5 * 1024 * 1024

#: Largest payload accepted in one frame (Wazuh's C{MAX_CHUNK_SIZE}).
MAX_FRAME_PAYLOAD = 10 * 1024 * 1024

#: Largest message, all frames together (Wazuh's C{MAX_TOTAL_SIZE}).
MAX_MESSAGE_SIZE = 256 * 1024 * 1024

#: Split messages a peer may have in progress at once (Wazuh's
#: C{MAX_CONCURRENT_DIVIDED_MSGS}).
MAX_DIVIDED_MESSAGES = 10

#: Counters wrap modulo this.
COUNTER_MODULUS = 2**32

#: Error codes: Wazuh's 3024 (command too long) and those of its DoS limits.
COMMAND_ERROR = 3024
TOO_LARGE_ERROR = 3050
TOO_MANY_DIVIDED_ERROR = 3051

_COMMAND = re.compile(rb"[\x21-\x7e]{1,11}\Z")


class FramingError(ClusterError):
    """
    A frame or message breaks Wazuh's framing or its bounds; the connection
    it came from (or was meant for) must be closed.
    """

    code = 3000


@frozen
class Message:
    """
    One complete message.

    @ivar counter: the counter of its frames.
    @ivar command: the command, without padding (C{b"get_nodes"}).
    @ivar payload: every frame's payload joined.
    """

    counter: int
    command: bytes
    payload: bytes


def commandField(command, divided=False):
    """
    The 12-byte command field of C{command}.

    @type command: L{bytes}
    @param divided: mark a frame that more frames of the message follow.
    @raise FramingError: C{command} is empty, longer than 11 bytes, or holds
        a space or a byte that is not printable ASCII.
    """
    if not isinstance(command, bytes) or not _COMMAND.match(command):
        raise FramingError(
            "Length of command exceeds limit defined in "
            f"wazuh.cluster.common.Handler.cmd_len.: {command!r}",
            COMMAND_ERROR,
        )
    field = command + b" " + b"-" * (MAX_COMMAND_LENGTH - len(command))
    if divided:
        field = field[:-1] + DIVIDED_FLAG
    return field


def parseCommandField(field):
    """
    Read a command field.

    @return: C{(command, divided)}.
    @raise FramingError: the field is not what L{commandField} makes.
    """
    command = field[:MAX_COMMAND_LENGTH].split(b" ", 1)[0]
    try:
        plain = commandField(command)
    except FramingError:
        raise FramingError(f"Invalid command field {field!r}") from None
    if field == plain:
        return command, False
    if field == plain[:-1] + DIVIDED_FLAG:
        return command, True
    raise FramingError(f"Invalid command field {field!r}")


def buildFrames(counter, command, payload, chunk=REQUEST_CHUNK):
    """
    The frames of one message, as Wazuh's C{Handler.msg_build} makes them:
    one frame when the payload is at most C{chunk} bytes, else frames of
    C{chunk} bytes (header included) flagged C{d} but for the last.

    @param counter: the message counter (0 to 2**32 - 1).
    @type command: L{bytes}
    @type payload: L{bytes}
    @return: a L{list} of L{bytes}, one per frame.
    @raise FramingError: the command is invalid, or the payload is larger
        than L{MAX_MESSAGE_SIZE}.
    """
    if not 0 <= counter < COUNTER_MODULUS:
        raise FramingError(f"Invalid counter {counter!r}")
    if len(payload) > MAX_MESSAGE_SIZE:
        raise FramingError(
            f"Payload too large: {len(payload)} bytes", TOO_LARGE_ERROR
        )
    if len(payload) <= chunk:
        return [HEADER.pack(counter, len(payload), commandField(command)) + payload]
    piece = chunk - HEADER_SIZE
    divided, last = commandField(command, divided=True), commandField(command)
    frames = []
    view = memoryview(payload)
    for start in range(0, len(payload), piece):
        part = view[start : start + piece]
        field = last if start + piece >= len(payload) else divided
        frames.append(HEADER.pack(counter, len(part), field) + part)
    return frames


class FrameDecoder:
    """
    Turn received bytes into complete messages, joining split ones.

    Bounds (each breach is a L{FramingError}, after which the decoder must
    not be fed again): a frame's payload at most C{maxFramePayload}; a
    message at most C{maxMessage}; at most C{maxDivided} split messages in
    progress; at most C{maxBuffered} bytes held in split messages in
    progress, all together.

    @ivar framesCompleted: frames read so far.
    """

    def __init__(
        self,
        maxFramePayload=MAX_FRAME_PAYLOAD,
        maxMessage=MAX_MESSAGE_SIZE,
        maxDivided=MAX_DIVIDED_MESSAGES,
        maxBuffered=MAX_MESSAGE_SIZE,
    ):
        self._maxFramePayload = maxFramePayload
        self._maxMessage = maxMessage
        self._maxDivided = maxDivided
        self._maxBuffered = maxBuffered
        self._buffer = bytearray()
        self._header = None
        self._divided = {}
        self._buffered = 0
        self.framesCompleted = 0

    @property
    def frameStarted(self):
        """
        Whether bytes of an unfinished frame are held (a header without its
        payload, or part of a header).
        """
        return bool(self._buffer) or self._header is not None

    @property
    def dividedInProgress(self):
        """
        The number of split messages of which some frames arrived.
        """
        return len(self._divided)

    def feed(self, data):
        """
        Take received bytes.

        @type data: L{bytes}
        @return: the L{Message}s completed by them, in order.
        @raise FramingError: the peer broke the framing or a bound.
        """
        self._buffer += data
        messages = []
        while True:
            if self._header is None:
                if len(self._buffer) < HEADER_SIZE:
                    return messages
                self._header = self._parseHeader(bytes(self._buffer[:HEADER_SIZE]))
                del self._buffer[:HEADER_SIZE]
            counter, length, command, divided = self._header
            if len(self._buffer) < length:
                return messages
            payload = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._header = None
            self.framesCompleted += 1
            message = self._frameReceived(counter, command, divided, payload)
            if message is not None:
                messages.append(message)

    def _parseHeader(self, header):
        counter, length, field = HEADER.unpack(header)
        command, divided = parseCommandField(field)
        if length > self._maxFramePayload:
            raise FramingError(
                f"Payload too large: a frame of {length} bytes. "
                "Possible DoS attempt.",
                TOO_LARGE_ERROR,
            )
        return counter, length, command, divided

    def _frameReceived(self, counter, command, divided, payload):
        parts = self._divided.get(counter)
        if parts is None and not divided:
            if len(payload) > self._maxMessage:
                raise FramingError(
                    f"Payload too large: {len(payload)} bytes", TOO_LARGE_ERROR
                )
            return Message(counter, command, payload)
        if parts is None:
            if len(self._divided) >= self._maxDivided:
                raise FramingError(
                    f"Too many divided messages in progress (over {self._maxDivided})",
                    TOO_MANY_DIVIDED_ERROR,
                )
            parts = self._divided[counter] = [0]
        parts[0] += len(payload)
        self._buffered += len(payload)
        if parts[0] > self._maxMessage or self._buffered > self._maxBuffered:
            raise FramingError(
                f"Payload too large: a divided message of over {parts[0]} bytes. "
                "Possible DoS attempt.",
                TOO_LARGE_ERROR,
            )
        parts.append(payload)
        if divided:
            return None
        del self._divided[counter]
        self._buffered -= parts[0]
        return Message(counter, command, b"".join(parts[1:]))
