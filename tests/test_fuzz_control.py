# -*- test-case-name: tests.test_fuzz_control -*-
"""
Fuzzing the master's local control socket (C{c-internal.sock}, Wazuh's
local framing): frames of every command it serves and of others, with
payloads of any shape, bad headers, counters reused, split messages left
unfinished, raw bytes.

After every example: only that local client was affected (it got replies,
or it was closed), nothing was logged at CRITICAL or as an unhandled error,
no reply was Wazuh's internal error 1000 (what an unexpected exception
becomes), a bounded number of log lines was written, and an honest local
client still gets the node list while the honest worker completes a
keep-alive and an integrity round (L{tests.test_fuzz.FuzzTestsMixin}).

Each test's docstring carries an C{Injected:} and a C{Checked:} line
(C{docs/reliability.py}).
"""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from tests.localfuzz import HostileLocalPeer, connectControl
from tests.test_fuzz import FUZZ, LINES_PER_BOX, LINES_PER_CONNECTION, FuzzTestsMixin, jsonValues
from wazuhcluster.control import CONTROL_LIMITS
from wazuhcluster.logs import formatClusterEvent
from wazuhcluster.wazuhlocal.framing import COMMAND_SIZE, HEADER, commandField
from wazuhcluster.wazuhlocal.wazuhjson import decodeError

#: What the socket serves, what peers push, and some it never heard of.
LOCAL_COMMANDS = (
    b"get_nodes", b"get_health", b"get_config", b"get_hash", b"echo", b"echo-c", b"dapi",
    b"dapi_fwd", b"get_agents", b"refresh_grp", b"master_role", b"switchover", b"sync_ainfo",
    b"sendsync", b"sendasync", b"new_str", b"str_upd", b"err_str", b"ok", b"err", b"dapi_res",
    b"control_res", b"dapi_err", b"unknown", b"x")

_payloads = st.one_of(
    jsonValues.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=300),
    st.sampled_from([b"", b"null", b"{}", b"[]", b"all", b"worker1", b"master 123",
                     b'{"filter_node": ["' + b"n" * 300 + b'"]}',
                     b'{"offset": -1}', b'{"limit": 99999999999999999999}',
                     b'{"to": "master"}', b"\xff\xfe", b"[" * 2000 + b"]" * 2000,
                     b"x" * 70000]),
)

_fields = st.one_of(
    st.sampled_from(LOCAL_COMMANDS).map(commandField),
    st.sampled_from(LOCAL_COMMANDS).map(lambda c: commandField(c, divided=True)),
    st.binary(min_size=COMMAND_SIZE, max_size=COMMAND_SIZE),
)

#: One frame: counter, command field, payload.
frames = st.tuples(st.sampled_from([0, 1, 7, 2 ** 32 - 1]) | st.integers(0, 2 ** 32 - 1),
                   _fields, _payloads)


class LocalFuzzMixin(FuzzTestsMixin):
    """
    A hostile local client beside the honest peers, and the checks after
    each example.
    """

    def connectLocal(self):
        peer = HostileLocalPeer()
        self.pumps.append(connectControl(self.cluster, peer))
        return peer

    def finishLocal(self, peer, mark, sent):
        """
        End one example of C{sent} frames: close the client, then check
        its replies, the log and the honest peers.
        """
        self.flush()
        for counter, command, payload in peer.replies:
            if command == b"err":
                self.assertNotEqual(decodeError(payload).code, 1000, payload[:300])
        if not peer.closed:
            peer.close()
        self.flush()
        self.assertTrue(peer.closed)
        self.assertHonestServed()
        events = self.logs.since(mark)
        lines = [formatClusterEvent(event) for event in events
                 if event.get("log_namespace", "").startswith("wazuhcluster")
                 and event["log_level"] >= LogLevel.info]
        self.assertLessEqual(len(lines), LINES_PER_CONNECTION + LINES_PER_BOX * sent, lines)
        for event in events:
            line = formatClusterEvent(event) or ""
            self.assertLess(event["log_level"], LogLevel.critical, line)
            self.assertNotIn("log_failure", event, line)
            for bad in ("Traceback", "Unhandled", "Unknown Error"):
                self.assertNotIn(bad, line)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.pumps = []


class ControlSocketFuzzTests(LocalFuzzMixin, SynchronousTestCase):
    """
    The master's local control socket, in memory.
    """

    @FUZZ
    @given(st.lists(frames, min_size=1, max_size=5))
    def test_controlFrames(self, sequence):
        """
        Any frame from a local client is answered, refused with Wazuh's
        declared errors, or closes that client's connection only.

        Injected: one to five frames of the commands the socket serves, of
        those peers push (ok, err, new_str, str_upd...) and of unknown or
        malformed command fields, divided or not, counters reused, with
        JSON of any shape, bytes that are not JSON, long names, huge
        offsets and deeply nested arrays.
        Checked: never Wazuh's internal error 1000, a bounded number of log
        lines, nothing CRITICAL or unhandled, an honest local client still
        gets the node list and the honest worker is served.
        """
        mark = self.logs.mark()
        peer = self.connectLocal()
        for counter, field, payload in sequence:
            peer.sendFrame(counter, field, payload)
            self.flush()
        self.finishLocal(peer, mark, len(sequence))

    @FUZZ
    @given(st.binary(min_size=1, max_size=3000))
    def test_controlRawBytes(self, data):
        """
        Bytes that are not frames close that local client only.

        Injected: up to 3 000 random bytes on a control-socket connection.
        Checked: a bounded number of log lines, nothing CRITICAL or
        unhandled, an honest local client and the honest worker served.
        """
        mark = self.logs.mark()
        peer = self.connectLocal()
        peer.transport.write(data)
        self.flush()
        self.finishLocal(peer, mark, 1)

    @FUZZ
    @given(st.integers(min_value=CONTROL_LIMITS.maxMessage + 1, max_value=2 ** 32 - 1))
    def test_controlOversized(self, length):
        """
        A frame announcing more bytes than a request may have closes that
        client before anything of it is buffered.

        Injected: a get_nodes header announcing any length above the
        socket's bound (16 MiB), followed by 4 KiB of payload.
        Checked: the connection closed by the server at once, a bounded
        number of log lines, nothing CRITICAL or unhandled, an honest local
        client and the honest worker served.
        """
        mark = self.logs.mark()
        peer = self.connectLocal()
        peer.transport.write(HEADER.pack(1, length, commandField(b"get_nodes")) + b"x" * 4096)
        self.flush()
        self.assertTrue(peer.closedByServer)
        self.finishLocal(peer, mark, 1)

    @settings(FUZZ, max_examples=20)
    @given(st.integers(min_value=1, max_value=12), st.booleans())
    def test_unfinishedDividedMessages(self, count, distinct):
        """
        Split messages started and never finished are dropped with their
        client: nothing they sent stays held.

        Injected: up to twelve first frames of divided get_nodes messages
        (with distinct counters, or all the same), never followed by their
        last frame, then silence past the payload deadline (twenty
        examples: each lets half a minute pass).
        Checked: the client closed by the server (too many split messages,
        or the deadline), a bounded number of log lines, nothing CRITICAL or
        unhandled, an honest local client and the honest worker served.
        """
        mark = self.logs.mark()
        peer = self.connectLocal()
        for index in range(count):
            peer.sendFrame(index if distinct else 5,
                           commandField(b"get_nodes", divided=True), b"{" * 100)
            self.flush()
        self.cluster.clock.advance(CONTROL_LIMITS.payloadDeadline + 1)
        self.flush()
        self.assertTrue(peer.closedByServer)
        self.finishLocal(peer, mark, count)


class ControlFindingsTests(LocalFuzzMixin, SynchronousTestCase):
    """
    Local clients that behave like the server's own peers.
    """

    def test_repliesToNoQuestion(self):
        """
        A local client sending replies (ok, err, dapi_res) to questions
        the socket never asked is answered or dropped, without a traceback.

        Injected: ok, err and dapi_res frames with counters the server
        never used, then an honest get_nodes on the same connection.
        Checked: nothing logged as unhandled, never error 1000, an honest
        local client and the honest worker served.
        """
        mark = self.logs.mark()
        peer = self.connectLocal()
        for command in (b"ok", b"err", b"dapi_res"):
            peer.sendFrame(4242, commandField(command), b'{"x": 1}')
            self.flush()
        peer.sendFrame(1, commandField(b"get_nodes"), b"{}")
        self.flush()
        self.finishLocal(peer, mark, 4)
