# -*- test-case-name: tests.test_fuzz -*-
"""
Fuzzing what a peer can send: every AMP command of
L{wazuhcluster.commands} with missing, extra, oversized and wrong-typed
arguments, huge counts and replays, before and after a successful hello, on
the master's cluster port (in memory, real TLS: L{tests.cluster}); the
local control socket is fuzzed in L{tests.test_fuzz_control}.

After every example: only the hostile connection was affected (it got
answers or declared errors, or it was closed), the master wrote a bounded
number of log lines and nothing at CRITICAL or as an unhandled error, and
an honest worker connected all along still completes a keep-alive and an
integrity round.

The examples are derandomized and bounded (L{FUZZ}), so every run tries the
same cases.  Each test's docstring carries an C{Injected:} and a
C{Checked:} line (C{docs/reliability.py}).
"""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import LogLevel, globalLogPublisher
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from tests.cluster import KEY, InMemoryCluster
from tests.localfuzz import honestControlAnswer
from wazuhcluster import PROTOCOL_VERSION, commands
from wazuhcluster.clientkeys import ClientKey, formatAgentId
from wazuhcluster.commands import Hello, KeepAlive
from wazuhcluster.logs import formatClusterEvent
from wazuhcluster.tls import channelBinding, helloProof

#: Every run tries the same examples, a bounded number of them.
FUZZ = settings(derandomize=True, max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

#: Log lines (INFO and above) one hostile connection may cost, besides
#: L{LINES_PER_BOX} per box: its connection, hello, disconnection.
LINES_PER_CONNECTION = 4

#: Log lines one box may cost (a round's start, end and error, say); of them
#: at most one at WARNING or ERROR.
LINES_PER_BOX = 3


#: Marks where the fuzzer puts the session id the master last opened.
SESSION = b"\x00session"

#: Marks where the fuzzer puts the result id the master last answered.
RESULT = b"\x00result"

#: Marks where the fuzzer puts how many files the session was asked for.
REQUESTED = b"\x00requested"

INTERVALS = {
    "worker": {"sync_integrity": 1000, "keep_alive": 1000, "sync_agent_info": 1000},
    "master": {"recalculate_integrity": 1000, "agent_group_start_delay": 1000,
               "sync_agent_groups": 1000, "check_worker_lastkeepalive": 1000},
}


def clusterCommands():
    """
    Every cluster command class, by wire name.
    """
    found = {}
    for value in vars(commands).values():
        if (isinstance(value, type) and issubclass(value, amp.Command)
                and value is not commands.ClusterCommand and value.__module__ == commands.__name__):
            found[value.commandName] = value
    return dict(sorted(found.items()))


COMMANDS = clusterCommands()

#: Error codes a peer may get: every error some command declares, but the
#: responder's own failure (INTERNAL_ERROR: a bug, never an answer to
#: hostile input).
DECLARED = frozenset(
    code for command in COMMANDS.values()
    for code in list(command.allErrors.values()) + list(command.fatalErrors.values())
) - {commands.InternalError.code}


# ---------------------------------------------------------------------------
# strategies


#: The commands a worker may send the master.
MASTER_SERVES = (b"Hello", b"KeepAlive", b"ControlRequest", b"FetchResultChunk",
                 b"IntegrityCheck", b"ManifestChunk", b"RequestFiles", b"StartTransfer",
                 b"SendAgentInfo", b"RequestFullAgentGroups")

#: Paths of the master's snapshot, and some that are not.
PATHS = ("etc/shared/default/agent.conf", "etc/rules/local_rules.xml", "etc/lists/audit-keys",
         "etc/client.keys", "etc/ossec.conf", "../../etc/passwd", "etc/shared/../../x",
         "/etc/shadow", "etc/shared/default/", "", "etc/rules/" + "a" * 5000)

_texts = st.text(max_size=40)
_hugeDigits = st.integers(min_value=20, max_value=6000).map(lambda n: b"9" * n)

#: Integers of any size AMP parses (up to 4 000 digits), negative too.
integerValues = st.one_of(
    st.integers(min_value=-3, max_value=40),
    st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.sampled_from([2 ** 31, 2 ** 63, 2 ** 64 + 1]),
    st.integers(min_value=20, max_value=4000).map(lambda n: int("9" * n)),
).map(lambda n: str(n).encode())

booleanValues = st.sampled_from([b"True", b"False"])

#: Text, as UTF-8: short, paths, names, digests, the longest value.
unicodeValues = st.one_of(
    _texts.map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"a\x00b", b"../../etc/passwd", b"etc/client.keys", b"worker1", b"evil",
                     b"master", b"{}", b"null", b"0" * 64, b"f" * 64, b"x" * 65535]))

#: Values that do not parse as the type they are sent for.
malformedValues = st.sampled_from([
    b"1e9", b"0x10", b" 1", b"1.5", b"", b"true", b"1", b"\xff", b"\xff\xfe", b"\xed\xa0\x80",
    b"9" * 6000, b"-"])


def _jsonScalars():
    return st.one_of(st.none(), st.booleans(),
                     st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                     st.floats(allow_nan=False), _texts)


jsonValues = st.recursive(_jsonScalars(), lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_texts, inner, max_size=4)), max_leaves=12)

_agentIds = st.one_of(st.sampled_from(["001", "002", "000", "999", "1", "-1", "abc", "0001"]),
                      _texts, st.integers(min_value=-5, max_value=2 ** 65))

agentRows = st.fixed_dictionaries(
    {"id": _agentIds},
    optional={"connection_status": st.one_of(st.sampled_from(["active", "disconnected",
                                                              "never_connected"]), _texts),
              "os_name": st.one_of(_texts, st.integers(), st.just("x" * 5000)),
              "version": _texts,
              "last_keepalive": st.one_of(st.integers(min_value=-1, max_value=2 ** 65), _texts),
              "labels": st.one_of(st.dictionaries(_texts, _texts, max_size=3), jsonValues),
              "unknown_key": jsonValues})


def _lines(records):
    return b"".join(record + b"\n" for record in records)


#: Agent-info chunks: rows of JSON (valid or not), or anything.
agentInfoData = st.one_of(
    st.lists(agentRows.map(lambda row: json.dumps(row).encode()), max_size=5).map(_lines),
    st.lists(jsonValues.map(lambda v: json.dumps(v).encode()), max_size=3).map(_lines),
    st.binary(max_size=100),
    st.sampled_from([b"\n" * 5000, b"{" * 5000 + b"\n", b'{"id": "001"}' * 3000]))

#: File requests: records of paths (the master's or not), or anything.
pathRecords = st.one_of(
    st.lists(st.sampled_from(PATHS), max_size=6).map(
        lambda paths: _lines(p.encode() for p in paths)),
    st.binary(max_size=100),
    st.just(b"etc/lists/audit-keys\n" * 3000))

#: Bytes values: random, records, JSON, the biggest AMP allows.
stringValues = st.one_of(
    st.binary(max_size=200),
    st.lists(st.binary(max_size=30), max_size=8).map(_lines),
    agentInfoData,
    jsonValues.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"\n" * 1000, b"x" * 65535]))

_byType = {amp.Integer: integerValues, amp.Boolean: booleanValues,
           amp.Unicode: unicodeValues, amp.String: stringValues}

#: Values of any type: what a peer sends for a wrong-typed argument.
anyValue = st.one_of(integerValues, booleanValues, unicodeValues, stringValues,
                     malformedValues)

#: Control request arguments: JSON objects with the keys the requests read.
controlArguments = st.one_of(
    st.fixed_dictionaries({}, optional={
        "node_names": st.one_of(st.lists(st.sampled_from(["master", "worker1", "evil", "x"]),
                                         max_size=3), jsonValues),
        "statuses": st.one_of(st.lists(st.sampled_from(["active", "disconnected", "x"]),
                                       max_size=2), jsonValues),
        "extra": jsonValues}).map(lambda v: json.dumps(v).encode()),
    jsonValues.map(lambda v: json.dumps(v).encode()),
    unicodeValues)

_special = {
    b"session": st.one_of(st.just(SESSION), st.just(SESSION), unicodeValues),
    b"result_id": st.one_of(st.just(RESULT), st.just(RESULT), unicodeValues),
    b"request": st.one_of(st.sampled_from([b"get_nodes", b"get_health", b"get_agents",
                                           b"refresh_agent_groups", b"sync_agent_info"]),
                          unicodeValues),
    b"arguments": controlArguments,
    b"paths": pathRecords,
    b"index": st.one_of(st.integers(min_value=-1, max_value=5).map(lambda n: str(n).encode()),
                        integerValues),
    b"base": st.one_of(st.just(None), unicodeValues),
    b"missing": st.one_of(st.just(REQUESTED), integerValues),
    b"shared": st.one_of(st.just(b"0"), integerValues),
    b"extra": st.one_of(st.just(b"0"), integerValues),
}


def valueFor(command, argName, argument):
    """
    A well-typed (if not sensible) value of argument C{argName}.
    """
    if argName == b"data" and command is commands.SendAgentInfo:
        return agentInfoData
    if argName in _special:
        return _special[argName]
    for kind, strategy in _byType.items():
        if isinstance(argument, kind):
            return strategy
    return anyValue


@st.composite
def boxes(draw, names=tuple(COMMANDS), mutate=True):
    """
    One command box: a cluster command (with C{mutate}, also an unknown or
    AMP's own) whose arguments are well-typed, and with C{mutate} also
    wrong-typed, missing or extra.
    """
    if mutate:
        names = tuple(names) * 4 + (b"StartTLS", b"Nope", b"")
    name = draw(st.sampled_from(names))
    box = {}
    command = COMMANDS.get(name)
    for argName, argument in (command.arguments if command is not None else []):
        choice = "typed"
        if mutate:
            choice = draw(st.sampled_from(["typed"] * 6 + ["wrong", "missing"]))
        if choice == "missing":
            continue
        if choice == "wrong":
            box[argName] = draw(anyValue)
        else:
            value = draw(valueFor(command, argName, argument))
            if value is not None:
                box[argName] = value
    if mutate:
        for _ in range(draw(st.integers(min_value=0, max_value=2)) // 2):
            key = draw(st.one_of(st.sampled_from([b"extra", b"data2", b"_ask", b"_command",
                                                  b"_answer", b"_error", b"_error_code",
                                                  b"x" * 255]),
                                 st.binary(min_size=1, max_size=20)))
            box[key] = draw(anyValue)
    return name, box


@st.composite
def sequences(draw, names=tuple(COMMANDS), mutate=True, size=4):
    """
    One to C{size} boxes; a box may be a replay of the one before it.
    """
    sent = []
    for _ in range(draw(st.integers(min_value=1, max_value=size))):
        if sent and draw(st.integers(min_value=0, max_value=3)) == 0:
            sent.append(sent[-1])
        else:
            sent.append(draw(boxes(names, mutate)))
    return sent


@st.composite
def integrityRounds(draw):
    """
    A round of integrity against a real session of the master: a check of a
    digest the master does not hold, file requests, a start of the transfer
    (mostly with the right counts), then anything of a round again.
    """
    digest = draw(st.sampled_from([b"0" * 64, b"stale", b""]))
    sent = [(b"IntegrityCheck", {b"digest": digest})]
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        sent.append((b"RequestFiles", {b"session": SESSION, b"paths": draw(pathRecords)}))
    if draw(st.integers(min_value=0, max_value=3)):
        sent.append((b"StartTransfer", {b"session": SESSION, b"missing": REQUESTED,
                                        b"shared": b"0", b"extra": b"0"}))
    sent += draw(sequences((b"ManifestChunk", b"RequestFiles", b"StartTransfer",
                            b"IntegrityCheck"), mutate=False, size=3))
    return sent


# ---------------------------------------------------------------------------
# the hostile peer


class HostilePeer(amp.AMP):
    """
    A peer that sends the boxes it is given, as they are, and answers what
    the master asks a worker as an ordinary worker would (so that only its
    fuzzed boxes differ from an honest worker).

    @ivar answers: the answer or error box of each box sent, by tag.
    @ivar closed: whether the connection is gone.
    """

    def __init__(self):
        super().__init__()
        self.answers = {}
        self.played = []
        self.helloArguments = None
        self.closed = False
        self.closedByMaster = False
        self._closing = False
        self._tags = 0

    def close(self):
        self._closing = True
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.closed = True
        self.closedByMaster = not self._closing
        super().connectionLost(reason)

    def sendRaw(self, name, arguments):
        """
        Send a command box built from C{name} and C{arguments} (bytes to
        bytes), unchecked; return its tag.
        """
        self._tags += 1
        tag = b"fz%d" % self._tags
        box = amp.AmpBox(arguments)
        box[amp.COMMAND] = name
        box[amp.ASK] = tag
        self.played.append((name, dict(arguments)))
        if self.transport is not None and not self.closed:
            self.transport.write(box.serialize())
        return tag

    def ampBoxReceived(self, box):
        tag = box.get(amp.ANSWER, box.get(amp.ERROR))
        if tag is not None and tag.startswith(b"fz"):
            self.answers[tag] = box
            return
        super().ampBoxReceived(box)

    # What the master asks a worker, answered like a worker in sync.

    @commands.Ping.responder
    def ping(self):
        return {}

    @commands.IntegrityChanged.responder
    def integrityChanged(self, digest):
        return {}

    @commands.SendAgentGroups.responder
    def sendAgentGroups(self, data, version, hash, full, final):
        return {"hash_matches": True}

    @commands.FileData.responder
    def fileData(self, session, data, **more):
        return {}

    @commands.TransferDone.responder
    def transferDone(self, session):
        return {"created": 0, "updated": 0, "deleted": 0, "failed": 0}

    @commands.TransferAborted.responder
    def transferAborted(self, session, reason):
        return {}


class LogLines:
    """
    The cluster-log lines written while it listens.
    """

    def __init__(self, testCase):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        testCase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def mark(self):
        return len(self.events)

    def since(self, mark):
        return self.events[mark:]


# ---------------------------------------------------------------------------
# the tests


class FuzzTestsMixin:
    """
    A master with files to serve, an honest worker, and the checks after
    every example.

    @cvar declared: the error codes the hostile peer may be answered.
    """

    declared = DECLARED

    def setUp(self):
        self.cluster = InMemoryCluster(self, intervals=INTERVALS)
        for relpath, data in {"etc/shared/default/agent.conf": b"<agent_config/>\n",
                              "etc/rules/local_rules.xml": b"<group name='x'/>\n",
                              "etc/lists/audit-keys": b"key:value\n" * 100}.items():
            path = self.cluster.masterHome.child(relpath)
            path.parent().makedirs(ignoreExistingDirectory=True)
            path.setContent(data)
        self.cluster.master.integrity.local.rescanNow()
        # Enough agents for a get_agents answer in several chunks.
        self.cluster.masterStore.reconcileClientKeys(
            [ClientKey(formatAgentId(n), f"agent{n}", "any", f"{n:064x}")
             for n in range(1, 401)])
        self.honest = self.cluster.addWorker("worker1")
        self.cluster.network.flush()
        self.honestConnection = self.cluster.master.workers["worker1"]
        self.cluster.addWorker("evil", start=False)
        self.logs = LogLines(self)
        self.pumps = []

    def connectHostile(self, hello):
        """
        Connect a L{HostilePeer} with worker C{evil}'s certificate; with
        C{hello}, authenticate it first (it has the cluster key).
        """
        peer = HostilePeer()
        self.cluster.connectBare(peer, "evil")
        proof = helloProof(KEY, channelBinding(peer.transport), "wazuh", "evil")
        peer.helloArguments = dict(Hello.makeArguments(dict(
            cluster_name="wazuh", node_name="evil", node_type="worker", version="4.14.7",
            protocol=PROTOCOL_VERSION, proof=proof), peer))
        if hello:
            tag = peer.sendRaw(b"Hello", peer.helloArguments)
            peer.played = []
            self.flush()
            self.assertIn(amp.ANSWER, peer.answers.pop(tag))
        return peer

    def flush(self):
        """
        Move every byte, and what the master does at once with them.
        """
        for _ in range(2):
            self.cluster.network.flush()
            for pump in self.pumps:
                pump.flush()
            self.cluster.clock.advance(0)
        self.cluster.network.flush()

    def play(self, peer, sequence):
        """
        Send each box of C{sequence}, in order, the markers replaced by the
        session and result ids the master gave, and by the number of files
        the current session was asked for.
        """
        requested = {}
        for name, arguments in sequence:
            values = {}
            for key, value in arguments.items():
                if value == SESSION:
                    value = self._lastValue(peer, b"session")
                elif value == RESULT:
                    value = self._lastValue(peer, b"result_id")
                values[key] = value
            session = values.get(b"session")
            if values.get(b"missing") == REQUESTED:
                values[b"missing"] = b"%d" % len(requested.get(session, ()))
            tag = peer.sendRaw(name, values)
            self.flush()
            if name == b"RequestFiles" and amp.ANSWER in peer.answers.get(tag, {}):
                requested.setdefault(session, set()).update(
                    values.get(b"paths", b"").splitlines())

    def _lastValue(self, peer, key):
        for tag in sorted(peer.answers, key=lambda t: int(t[2:]), reverse=True):
            value = peer.answers[tag].get(key)
            if value:
                return value
        return b"no-such-id"

    def finish(self, peer, mark, sent, rounds=1):
        """
        End one example (C{sent} boxes, in at most C{rounds} rounds of a
        feature: a round that ended with refused chunks says so once):
        close the hostile connection, then check what happened to it, to the
        log and to the honest worker.
        """
        self.cluster.network.advance(1)
        self.flush()
        for tag, box in peer.answers.items():
            if amp.ERROR in box:
                self.assertIn(box[amp.ERROR_CODE], self.declared, box)
        if not peer.closed:
            peer.close()
        self.flush()
        self.assertTrue(peer.closed)
        self.assertNotIn("evil", self.cluster.master.workers)
        hostile = self.logs.since(mark)
        self.assertHonestServed()
        lines = [formatClusterEvent(event) for event in hostile
                 if event.get("log_namespace", "").startswith("wazuhcluster")
                 and event["log_level"] >= LogLevel.info]
        self.assertLessEqual(len(lines), LINES_PER_CONNECTION + LINES_PER_BOX * sent, lines)
        problems = [line for line in lines if " ERROR: " in line or " WARNING: " in line]
        self.assertLessEqual(len(problems), sent + rounds, lines)
        for event in self.logs.since(mark):
            line = formatClusterEvent(event) or ""
            self.assertLess(event["log_level"], LogLevel.critical, line)
            self.assertNotIn("log_failure", event, line)
            for bad in ("Traceback", "Unhandled", "Unknown Error"):
                self.assertNotIn(bad, line)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.pumps = []

    def assertHonestServed(self):
        """
        The honest worker's connection is the one it had, a keep-alive and
        an integrity round of it complete.
        """
        self.assertIs(self.cluster.master.workers.get("worker1"), self.honestConnection)
        answer = []
        self.honest.connection.callRemote(KeepAlive).addBoth(answer.append)
        self.cluster.network.flush()
        self.assertEqual(answer, [{"answer": "keepalive"}])
        rounds = self.honest.integrity.rounds
        self.honest.integrity.check()
        self.cluster.network.flush()
        self.cluster.clock.advance(1)
        self.cluster.network.flush()
        self.assertGreater(self.honest.integrity.rounds, rounds)
        nodes = honestControlAnswer(self.cluster)
        self.assertEqual([node["name"] for node in nodes["nodes"]], ["master", "worker1"])


class ClusterPortFuzzTests(FuzzTestsMixin, SynchronousTestCase):
    """
    The master's cluster port, in memory over real TLS.
    """

    def fuzz(self, sequence, hello, rounds=1):
        mark = self.logs.mark()
        peer = self.connectHostile(hello)
        self.play(peer, sequence)
        self.finish(peer, mark, len(sequence), rounds)
        return peer

    @FUZZ
    @given(sequences())
    def test_beforeHello(self, sequence):
        """
        Any command box before a successful hello closes that connection
        only.

        Injected: one to four boxes of any command (hello included) with
        typed, wrong-typed, missing and extra arguments, replays, on a TLS
        connection with a valid worker certificate that has not said hello.
        Checked: no answer but declared errors, the connection closed, a
        bounded number of log lines, nothing CRITICAL or unhandled, the
        honest worker's keep-alive and integrity round complete.
        """
        self.fuzz(sequence, hello=False)

    @FUZZ
    @given(sequences())
    def test_afterHello(self, sequence):
        """
        Any command box from an authenticated worker is answered, refused
        with a declared error, or closes that connection only.

        Injected: one to four boxes of any command (the master's, the
        worker's, unknown ones, AMP's StartTLS) with typed, wrong-typed,
        missing and extra arguments, answers to no question, replays, after
        a successful hello.
        Checked: answers or declared errors only (never INTERNAL_ERROR or
        UNKNOWN), at most one WARNING/ERROR line per box, nothing CRITICAL
        or unhandled, the honest worker's keep-alive and integrity round
        complete.
        """
        self.fuzz(sequence, hello=True)

    @FUZZ
    @given(sequences(MASTER_SERVES, mutate=False, size=6))
    def test_wellTypedAfterHello(self, sequence):
        """
        Well-typed but senseless requests of an authenticated worker get
        answers or declared errors.

        Injected: one to six boxes of the commands the master serves, every
        argument of its type but of any value: huge and negative counts and
        indexes, unknown and real session and result ids, paths outside the
        snapshot, JSON of any shape, replays.
        Checked: answers or declared errors only, at most one WARNING/ERROR
        line per box, nothing CRITICAL or unhandled, the honest worker
        served.
        """
        self.fuzz(sequence, hello=True)

    @FUZZ
    @given(integrityRounds())
    def test_integrityRounds(self, sequence):
        """
        An integrity round driven out of order, with bad counts and paths,
        against a real session of the master.

        Injected: an integrity check opening a session, file requests of
        the master's paths and others, a start of the transfer (mostly with
        the right counts: the master streams the files), then up to three
        manifest-chunk, file-request, start-transfer and check boxes with
        any index, count and path, replays.
        Checked: answers (the master streams what was asked) or declared
        errors only, at most one WARNING/ERROR line per box, nothing
        CRITICAL or unhandled, the honest worker served.
        """
        self.fuzz(sequence, hello=True)

    @FUZZ
    @given(sequences((b"SendAgentInfo",), mutate=False, size=8))
    def test_agentInfo(self, sequence):
        """
        Agent-info chunks of any content are stored when valid and refused
        with a declared error when not; the connection stays.

        Injected: up to eight agent-info chunks: rows of known and unknown
        agents with fields of any type and size, unknown keys, JSON that is
        not a row, bytes that are not JSON, final or not.
        Checked: answers or SYNC_ABORTED only, the connection kept, at most
        one WARNING/ERROR line per chunk plus one per round with refused
        chunks, nothing CRITICAL or unhandled, the honest worker served.
        """
        finals = sum(1 for _, box in sequence if box.get(b"final") == b"True")
        peer = self.fuzz(sequence, hello=True, rounds=finals + 1)
        self.assertFalse(peer.closedByMaster)

    @FUZZ
    @given(st.binary(min_size=1, max_size=3000), st.booleans())
    def test_rawBytes(self, data, hello):
        """
        Bytes that are not AMP boxes close that connection only.

        Injected: up to 3 000 random bytes on the TLS connection, before or
        after a successful hello.
        Checked: answers or declared errors only, a bounded number of log
        lines, nothing CRITICAL or unhandled, the honest worker served.
        """
        mark = self.logs.mark()
        peer = self.connectHostile(hello)
        peer.transport.write(data)
        self.cluster.network.flush()
        self.finish(peer, mark, 1)

    @FUZZ
    @given(st.integers(min_value=1, max_value=12), st.booleans(),
           st.sampled_from(sorted(MASTER_SERVES)))
    def test_oversized(self, values, hello, name):
        """
        A box larger than the connection accepts closes it, before the
        master buffers it all.

        Injected: one box of up to twelve 65 535-byte values (up to 786 kB),
        before or after a successful hello.
        Checked: the connection closed when the box exceeds 16 KiB before
        the hello or 512 KiB after, a bounded number of log lines, nothing
        CRITICAL or unhandled, the honest worker served.
        """
        mark = self.logs.mark()
        peer = self.connectHostile(hello)
        arguments = {b"v%d" % n: b"x" * 65535 for n in range(values)}
        peer.sendRaw(name, arguments)
        self.cluster.network.flush()
        big = values * 65535 > (512 * 1024 if hello else 16 * 1024)
        if big:
            self.assertTrue(peer.closedByMaster)
        self.finish(peer, mark, 1)

    @FUZZ
    @given(sequences(MASTER_SERVES, mutate=False, size=4), st.booleans())
    def test_replayedConnection(self, sequence, hello):
        """
        What an authenticated connection sent, its hello included, replayed
        on another connection is worth nothing there.

        Injected: a hello and up to four well-typed boxes recorded on one
        connection (with the session and result ids it got), sent again as
        they were on a new connection, with or without a hello of its own.
        Checked: the replayed hello is refused (its proof is bound to the
        other TLS channel) and closes that connection; ids of the other
        connection are refused with declared errors; a bounded number of log
        lines, nothing CRITICAL or unhandled, the honest worker served.
        """
        first = self.connectHostile(hello=True)
        self.play(first, sequence)
        recorded = [(b"Hello", first.helloArguments)] + first.played
        if not first.closed:
            first.close()
        self.flush()
        mark = self.logs.mark()
        peer = self.connectHostile(hello)
        for name, arguments in recorded[0 if not hello else 1:]:
            peer.sendRaw(name, arguments)
            self.cluster.network.flush()
        if not hello:
            self.assertTrue(peer.closedByMaster)
        self.finish(peer, mark, len(recorded))


class FuzzFindingsTests(FuzzTestsMixin, SynchronousTestCase):
    """
    The defects the fuzzer found, each as the example that showed it.
    """

    def test_answerToNoQuestion(self):
        """
        An answer or error box whose tag no question carries closes that
        connection with one WARNING (AMP itself raised a KeyError, logged
        as an unhandled error with a traceback).

        Injected: an _answer box and an _error box with a tag the master
        never used, after a successful hello.
        Checked: the connection closed, one "Protocol violation ... an
        answer to no question" WARNING, nothing unhandled, the honest
        worker served.
        """
        for box in ({b"_answer": b"0"}, {b"_error": b"77", b"_error_code": b"X",
                                         b"_error_description": b"x"}):
            mark = self.logs.mark()
            peer = self.connectHostile(hello=True)
            peer.transport.write(amp.AmpBox(box).serialize())
            self.flush()
            self.assertTrue(peer.closedByMaster)
            lines = [formatClusterEvent(event) for event in self.logs.since(mark)]
            self.assertEqual(len([line for line in lines if line and "WARNING" in line]), 1,
                             lines)
            self.assertTrue(any("an answer to no question" in line for line in lines if line))
            self.finish(peer, mark, 1)
