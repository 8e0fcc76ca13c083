"""
Tests for L{wazuhcluster.wazuhlocal.framing}: Wazuh's 20-byte header, the
C{d} fragments, and the bounds of the decoder.
"""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.wazuhlocal.framing import (
    HEADER_SIZE,
    MAX_DIVIDED_MESSAGES,
    REQUEST_CHUNK,
    FrameDecoder,
    FramingError,
    Message,
    buildFrames,
    commandField,
    parseCommandField,
)


def header(counter, length, field):
    """
    A header built by hand, the way the recordings describe it.
    """
    return struct.pack(">I", counter) + struct.pack(">I", length) + field


class CommandFieldTests(SynchronousTestCase):
    """
    The 12-byte command field.
    """

    def test_padding(self):
        """
        A command is followed by one space and dashes up to 12 bytes.
        """
        self.assertEqual(commandField(b"get_nodes"), b"get_nodes --")
        self.assertEqual(commandField(b"ok"), b"ok ---------")
        self.assertEqual(commandField(b"dapi_res"), b"dapi_res ---")

    def test_elevenCharacters(self):
        """
        An 11-byte command fills the field with one space; divided, the
        space becomes the flag.
        """
        self.assertEqual(commandField(b"syn_i_w_m_p"), b"syn_i_w_m_p ")
        self.assertEqual(commandField(b"syn_i_w_m_p", divided=True), b"syn_i_w_m_pd")

    def test_dividedFlag(self):
        """
        The last byte of a divided frame's field is C{d}.
        """
        self.assertEqual(commandField(b"dapi", divided=True), b"dapi ------d")

    def test_tooLong(self):
        """
        A command over 11 bytes is Wazuh's error 3024.
        """
        error = self.assertRaises(FramingError, commandField, b"twelve_chars")
        self.assertEqual(error.code, 3024)

    def test_invalidCommands(self):
        """
        Empty commands, spaces and non-printable bytes are refused.
        """
        for command in (b"", b"a b", b"ok\x00", "ok"):
            self.assertRaises(FramingError, commandField, command)

    def test_parse(self):
        """
        Parsing gives the command and the flag back.
        """
        self.assertEqual(parseCommandField(b"get_nodes --"), (b"get_nodes", False))
        self.assertEqual(parseCommandField(b"dapi ------d"), (b"dapi", True))
        self.assertEqual(parseCommandField(b"syn_i_w_m_pd"), (b"syn_i_w_m_p", True))

    def test_parseRefusesOtherPadding(self):
        """
        A field not padded as Wazuh pads it is a bad header.
        """
        for field in (b"get_nodes   ", b"ok -------- ", b"            ", b"ok -----x---"):
            self.assertRaises(FramingError, parseCommandField, field)


class BuildFramesTests(SynchronousTestCase):
    """
    L{buildFrames} makes the frames Wazuh's C{msg_build} makes.
    """

    def test_header(self):
        """
        Counter and length are big-endian 32-bit integers before the field.
        """
        payload = b'{"filter_node":null}'
        [frame] = buildFrames(0x01020304, b"get_nodes", payload)
        self.assertEqual(
            frame, b"\x01\x02\x03\x04\x00\x00\x00\x14get_nodes --" + payload
        )
        self.assertEqual(len(frame), HEADER_SIZE + len(payload))

    def test_chunkIsOneFrame(self):
        """
        A payload of exactly 5 MiB still travels in one frame.
        """
        frames = buildFrames(7, b"ok", b"x" * REQUEST_CHUNK)
        self.assertEqual(len(frames), 1)
        self.assertEqual(frames[0][:HEADER_SIZE], header(7, REQUEST_CHUNK, b"ok ---------"))

    def test_split(self):
        """
        A larger payload goes in frames of 5 MiB, header included, flagged
        C{d} but for the last, all with the request's counter.
        """
        payload = bytes(range(256)) * (REQUEST_CHUNK // 256) + b"tail!"
        frames = buildFrames(42, b"dapi_res", payload)
        self.assertEqual(len(frames), 2)
        first, last = frames
        self.assertEqual(len(first), REQUEST_CHUNK)
        self.assertEqual(first[:HEADER_SIZE],
                         header(42, REQUEST_CHUNK - HEADER_SIZE, b"dapi_res --d"))
        rest = len(payload) - (REQUEST_CHUNK - HEADER_SIZE)
        self.assertEqual(last[:HEADER_SIZE], header(42, rest, b"dapi_res ---"))
        self.assertEqual(first[HEADER_SIZE:] + last[HEADER_SIZE:], payload)

    def test_splitSmallChunk(self):
        """
        With a smaller chunk, every frame but the last carries chunk - 20
        bytes.
        """
        frames = buildFrames(1, b"str_upd", b"a" * 100, chunk=50)
        self.assertEqual([len(f) - HEADER_SIZE for f in frames], [30, 30, 30, 10])
        self.assertEqual([f[HEADER_SIZE - 1:HEADER_SIZE] for f in frames],
                         [b"d", b"d", b"d", b"-"])

    def test_remainderEqualToPiece(self):
        """
        When the rest fits exactly in a frame, that frame is the last one.
        """
        frames = buildFrames(1, b"ok", b"a" * 60, chunk=50)
        self.assertEqual([len(f) - HEADER_SIZE for f in frames], [30, 30])
        self.assertEqual(frames[-1][HEADER_SIZE - 1:HEADER_SIZE], b"-")

    def test_counterRange(self):
        """
        Counters are 32-bit.
        """
        self.assertRaises(FramingError, buildFrames, 2**32, b"ok", b"")
        self.assertRaises(FramingError, buildFrames, -1, b"ok", b"")


class FrameDecoderTests(SynchronousTestCase):
    """
    L{FrameDecoder} yields complete messages and enforces the bounds.
    """

    def test_byteByByte(self):
        """
        A message fed one byte at a time comes out once, complete.
        """
        decoder = FrameDecoder()
        data = b"".join(buildFrames(9, b"get_health", b"null"))
        messages = []
        for i in range(len(data)):
            messages.extend(decoder.feed(data[i:i + 1]))
            if i < len(data) - 1:
                self.assertTrue(decoder.frameStarted)
        self.assertEqual(messages, [Message(9, b"get_health", b"null")])
        self.assertFalse(decoder.frameStarted)

    def test_severalInOneRead(self):
        """
        Several messages in one read come out in order.
        """
        data = b"".join(buildFrames(1, b"ok", b"a") + buildFrames(2, b"err", b"b"))
        self.assertEqual(FrameDecoder().feed(data),
                         [Message(1, b"ok", b"a"), Message(2, b"err", b"b")])

    def test_interleavedDivided(self):
        """
        Frames of two split messages may interleave; each is joined by
        counter.
        """
        a = buildFrames(1, b"dapi", b"A" * 70, chunk=50)
        b = buildFrames(2, b"dapi", b"B" * 70, chunk=50)
        decoder = FrameDecoder()
        out = []
        for frame in [a[0], b[0], a[1], b[1], a[2], b[2]]:
            out.extend(decoder.feed(frame))
        self.assertEqual(out, [Message(1, b"dapi", b"A" * 70), Message(2, b"dapi", b"B" * 70)])
        self.assertEqual(decoder.dividedInProgress, 0)

    def test_emptyPayload(self):
        """
        A frame without payload is a message with an empty payload.
        """
        self.assertEqual(FrameDecoder().feed(header(5, 0, b"echo-c -----")),
                         [Message(5, b"echo-c", b"")])

    def test_frameTooLarge(self):
        """
        A header announcing more than the frame bound is refused at once
        (before any payload is read).
        """
        decoder = FrameDecoder(maxFramePayload=100)
        error = self.assertRaises(FramingError, decoder.feed, header(1, 101, b"ok ---------"))
        self.assertEqual(error.code, 3050)

    def test_messageTooLarge(self):
        """
        A split message over the message bound is refused.
        """
        decoder = FrameDecoder(maxMessage=100)
        frames = buildFrames(1, b"dapi", b"x" * 150, chunk=70)
        error = self.assertRaises(FramingError, decoder.feed, b"".join(frames))
        self.assertEqual(error.code, 3050)

    def test_bufferedTooLarge(self):
        """
        Split messages in progress together may not hold more than the
        buffered bound.
        """
        decoder = FrameDecoder(maxBuffered=100)
        decoder.feed(buildFrames(1, b"dapi", b"x" * 200, chunk=80)[0])
        error = self.assertRaises(
            FramingError, decoder.feed, buildFrames(2, b"dapi", b"y" * 200, chunk=80)[0])
        self.assertEqual(error.code, 3050)

    def test_tooManyDivided(self):
        """
        At most 10 split messages may be in progress (Wazuh's 3051).
        """
        decoder = FrameDecoder()
        for counter in range(MAX_DIVIDED_MESSAGES):
            decoder.feed(buildFrames(counter, b"dapi", b"x" * 70, chunk=50)[0])
        error = self.assertRaises(
            FramingError, decoder.feed, buildFrames(99, b"dapi", b"x" * 70, chunk=50)[0])
        self.assertEqual(error.code, 3051)

    def test_badHeader(self):
        """
        A header whose command field is not Wazuh's padding is refused.
        """
        self.assertRaises(FramingError, FrameDecoder().feed, header(1, 0, b"\x00" * 12))

    @settings(max_examples=60, deadline=None)
    @given(
        payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=5),
        chunk=st.integers(min_value=21, max_value=120),
        cut=st.integers(min_value=1, max_value=97),
    )
    def test_roundTrip(self, payloads, chunk, cut):
        """
        Whatever the payloads, chunk size and read sizes, decoding the
        frames gives the messages back.
        """
        data = b"".join(
            b"".join(buildFrames(i, b"str_upd", p, chunk=chunk)) for i, p in enumerate(payloads)
        )
        decoder = FrameDecoder()
        out = []
        for start in range(0, len(data), cut):
            out.extend(decoder.feed(data[start:start + cut]))
        self.assertEqual(out, [Message(i, b"str_upd", p) for i, p in enumerate(payloads)])
