# -*- test-case-name: tests.test_attacks -*-
"""
Attacks on the protocol (issue 10), each reproduced against real nodes in
memory over real TLS, and each failing harmlessly: bounded memory, a
declared error or a closed connection, and one log line that cannot be
forged.

Attacks covered elsewhere, not repeated here: a master named C{.}
(L{tests.test_hello.HelloTests.test_masterNamedDot}), files read through a
symlinked directory (L{tests.test_streams}: C{test_neverThroughSymlinks}),
a malformed forwarded control request
(L{tests.test_session_defects.ControlRequestTests}), 0660 WAL files
(L{tests.test_agentdb_files}), roles and revocation
(L{tests.test_cert_roles}, L{tests.test_revocation}), agents rewritten by
another worker (L{tests.test_agent_ownership}), an emptied client.keys
(L{tests.test_clientkeys_guard}).
"""

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.cluster import KEY, InMemoryCluster
from tests.test_hello import LogCapture
from wazuhcluster import PROTOCOL_VERSION, __version__
from wazuhcluster.chunks import packRecords, readRecords
from wazuhcluster.commands import (
    FileData,
    Hello,
    IntegrityCheck,
    ManifestChunk,
    RequestFiles,
    SendAgentGroups,
    SendAgentInfo,
    StartTransfer,
    SyncAborted,
    SyncRefused,
)
from wazuhcluster.connection import MAX_WAITING_ANSWERS, PRE_HELLO_BYTES
from wazuhcluster.control import CONTROL_LIMITS, ControlFactory
from wazuhcluster.commands import ControlRequest
from wazuhcluster.wazuhlocal.framing import HEADER, buildFrames, commandField
from wazuhcluster.wazuhlocal.handlers import CommandTable
from wazuhcluster.integrity import FileMeta, Snapshot
from wazuhcluster.manifest import encodeManifest
from wazuhcluster.tls import channelBinding, helloProof

INTERVALS = {
    "worker": {"sync_integrity": 1000, "keep_alive": 1000, "sync_agent_info": 1000},
    "master": {"recalculate_integrity": 1000, "agent_group_start_delay": 1000},
}


def call(cluster, connection, command, **arguments):
    """
    Call C{command} on C{connection}, move the bytes, return the outcome.
    """
    outcome = []
    connection.callRemote(command, **arguments).addBoth(outcome.append)
    cluster.network.flush()
    return outcome[0] if outcome else None


class Recorder(amp.AMP):
    """
    A hand-driven peer: records whether its connection was lost.
    """

    lost = None

    def connectionLost(self, reason):
        self.lost = reason
        super().connectionLost(reason)


class RawManifestChunk(amp.Command):
    """
    L{ManifestChunk} with raw bytes where integers and text belong.
    """

    commandName = b"ManifestChunk"
    arguments = [(b"session", amp.String()), (b"index", amp.String())]
    response = [(b"data", amp.String())]


class RawStartTLS(amp.Command):
    """
    AMP's own C{StartTLS}, which a cluster connection never answers.
    """

    commandName = b"StartTLS"
    arguments = []
    response = []


class Forged(amp.Command):
    """
    A command whose name forges a log line.
    """

    commandName = b"Evil\n2026/01/01 00:00:00 ERROR: [Master] [Main] forged line"
    arguments = []
    response = []


class AttackTestsMixin:
    def setUp(self):
        self.logs = LogCapture(self)
        self.cluster = InMemoryCluster(self, intervals=INTERVALS)

    def stranger(self, protocol=None):
        """
        A peer with a worker certificate that never said hello.
        """
        if "stranger" not in self.cluster.workers:
            self.cluster.addWorker("stranger", start=False)
        protocol = protocol or Recorder()
        link = self.cluster.connectBare(protocol, "stranger")
        return protocol, link

    def helloed(self, name="evil"):
        """
        A hand-driven worker C{name} that completed its hello (it holds the
        cluster key and a worker certificate): what a compromised worker
        can do.
        """
        self.cluster.addWorker(name, start=False)
        client = Recorder()
        self.cluster.connectBare(client, name)
        proof = helloProof(KEY, channelBinding(client.transport), "wazuh", name)
        answer = call(self.cluster, client, Hello, cluster_name="wazuh", node_name=name,
                      node_type="worker", version=__version__, protocol=PROTOCOL_VERSION,
                      proof=proof)
        self.assertEqual(answer["master_name"], "master")
        self.cluster.clock.advance(0)
        self.cluster.network.flush()
        self.assertIn(name, self.cluster.master.workers)
        return client

    def assertClosed(self, peer):
        self.cluster.network.flush()
        self.assertIsNotNone(peer.lost)

    def assertLogged(self, text):
        self.assertTrue(self.logs.contains(text), self.logs.lines())


class MasterSideTests(AttackTestsMixin, SynchronousTestCase):
    """
    A stranger or a compromised worker attacks the master.
    """

    def writeManifestFiles(self, count=1200):
        """
        Enough files for a manifest of several chunks.
        """
        shared = self.cluster.masterHome.child("etc").child("shared").child("big")
        shared.makedirs(ignoreExistingDirectory=True)
        for n in range(count):
            shared.child(f"file-{n:05d}-" + "x" * 60).setContent(b"x")
        self.cluster.master.integrity.local.rescanNow()

    def test_pipelinedManifestChunks(self):
        """
        The attack: a worker asks for manifest chunks again and again
        without reading the answers.  Answers wait for the transport, at
        most L{MAX_WAITING_ANSWERS} of them; one more is a protocol
        violation that closes that connection only.

        Injected: an authenticated worker pipelines manifest-chunk
        requests without reading one answer.
        Checked: answers wait for the transport, at most
        MAX_WAITING_ANSWERS of them; the next request closes that
        connection only, logged as a protocol violation.
        """
        self.writeManifestFiles()
        honest = self.cluster.addWorker("worker1")
        evil = self.helloed()
        answer = call(self.cluster, evil, IntegrityCheck, digest="0" * 64)
        self.assertGreater(answer["chunks"], 1)
        # The worker stopped reading: the master's transport is full.
        self.cluster.master.workers["evil"].pauseProducing()
        outcomes = []
        for _ in range(100):
            evil.callRemote(ManifestChunk, session=answer["session"], index=1).addBoth(
                outcomes.append)
        self.assertClosed(evil)
        self.assertLess(MAX_WAITING_ANSWERS, 100)
        self.assertLogged(f"Protocol violation from evil: more than {MAX_WAITING_ANSWERS} "
                          "requests while not reading the answers. Closing connection.")
        self.assertNotIn("evil", self.cluster.master.workers)
        self.assertIn("worker1", self.cluster.master.workers)
        self.assertIsNotNone(honest.connection)

    def test_unterminatedBoxBeforeHello(self):
        """
        The attack: a stranger sends an AMP box that never ends.  The master
        buffers at most L{PRE_HELLO_BYTES} before a hello, then closes the
        connection with a (rate-limited) line saying why.

        Injected: a client with a CA-signed certificate and no hello
        sends one AMP box that never ends.
        Checked: the master holds at most PRE_HELLO_BYTES, then closes
        the connection with one rate-limited line giving the reason.
        """
        stranger, link = self.stranger(Protocol())
        stranger.lost = None
        stranger.connectionLost = lambda reason: setattr(stranger, "lost", reason)
        pair = b"\x00\x03key\x0f\xa0" + b"v" * 4000
        for _ in range(PRE_HELLO_BYTES // len(pair) + 4):
            stranger.transport.write(pair)
            self.cluster.network.flush()
        self.assertIsNotNone(stranger.lost)
        self.assertLogged("WARNING: [Worker] [Main] Refused a connection from 10.0.0.2: "
                          f"protocol violation: more than {PRE_HELLO_BYTES} bytes before a "
                          "successful hello.")

    def test_malformedArguments(self):
        """
        The attack: arguments that do not parse (an index C{abc}, a
        5000-digit integer, a session that is not UTF-8).  Each is answered
        with the declared (fatal) C{BAD_REQUEST} error saying why, logged in
        one line, and closes that connection.

        Injected: arguments that do not parse: an index `abc`, a 5
        000-digit integer, a session that is not UTF-8.
        Checked: each answered with the declared BAD_REQUEST saying why,
        one log line, that connection closed.
        """
        for session, index in ((b"s", b"abc"), (b"s", b"9" * 5000), (b"\xff\xfe", b"1")):
            evil = self.helloed(f"evil{len(self.cluster.master.workers)}")
            outcome = call(self.cluster, evil, RawManifestChunk, session=session, index=index)
            self.assertTrue(outcome.check(amp.RemoteAmpError), outcome)
            self.assertIn("malformed arguments of b'ManifestChunk'", str(outcome.value))
            self.assertClosed(evil)
        self.assertLogged("Refused a command from evil0: malformed arguments of "
                          "b'ManifestChunk': ValueError. Closing connection.")
        self.assertLogged("malformed arguments of b'ManifestChunk': UnicodeDecodeError")

    def test_deeplyNestedJson(self):
        """
        The attack: an agent-info record nested 5000 deep.  It is refused
        with the declared L{SyncAborted} before it is parsed; the connection
        stays.

        Injected: an agent-info record nested 5 000 deep.
        Checked: refused with the declared SyncAborted before it is
        parsed; the connection stays; no RecursionError.
        """
        evil = self.helloed()
        [(_, data)] = packRecords([b"[" * 5000 + b"]" * 5000])
        outcome = call(self.cluster, evil, SendAgentInfo, data=data, final=True)
        self.assertTrue(outcome.check(SyncAborted), outcome)
        self.assertIn("malformed agent-info chunk", str(outcome.value))
        self.assertIsNone(evil.lost)
        self.assertIn("evil", self.cluster.master.workers)

    def test_forgedLineInCommandName(self):
        """
        The attack: before its hello, a stranger sends a command whose name
        holds a newline and a forged log line.  The refusal is one line,
        the name escaped: no line of the log starts with the forgery.

        Injected: before its hello, a command name holding a newline and
        a forged log line.
        Checked: one refusal line with the name escaped; no line of
        cluster.log starts with the forgery.
        """
        stranger, _ = self.stranger()
        stranger.callRemote(Forged).addErrback(lambda _: None)
        self.assertClosed(stranger)
        lines = self.logs.lines()
        self.assertFalse(any(line.startswith("2026/01/01 00:00:00 ERROR: [Master] [Main] "
                                             "forged") for line in lines), lines)
        self.assertFalse(any("\n" in line[:-1] for line in lines), lines)
        self.assertLogged("protocol violation: command b'Evil\\n2026/01/01 00:00:00 ERROR:")

    def test_wrongDirectionCommand(self):
        """
        The attack: a worker sends the master a command of the master's
        direction (L{FileData}).  It is refused, logged and the connection
        closed.

        Injected: a worker sends the master a master-to-worker command
        (FileData).
        Checked: refused, logged, the connection closed.
        """
        evil = self.helloed()
        call(self.cluster, evil, FileData, session="x", data=b"x")
        self.assertClosed(evil)
        self.assertLogged("Protocol violation from evil: unknown or wrong-direction command "
                          "b'FileData'. Closing connection.")

    def test_secondHello(self):
        """
        The attack: a second hello on an authenticated connection (to
        become another node).  It is not answered: logged, and the
        connection closed; the name it claimed is not registered.

        Injected: a second hello on an authenticated connection,
        claiming another node.
        Checked: not answered, logged, the connection closed, the
        claimed name not registered.
        """
        evil = self.helloed()
        proof = helloProof(KEY, channelBinding(evil.transport), "wazuh", "other")
        outcome = call(self.cluster, evil, Hello, cluster_name="wazuh", node_name="other",
                       node_type="worker", version=__version__, protocol=PROTOCOL_VERSION,
                       proof=proof)
        self.assertIsInstance(outcome, Failure)
        self.assertNotIn("other", self.cluster.master.workers)
        self.assertClosed(evil)
        self.assertLogged("Protocol violation from evil: a second hello. Closing connection.")

    def test_startTLSUnreachable(self):
        """
        The attack: AMP's own C{StartTLS}, before and after the hello.  It
        is never answered: a violation both times.

        Injected: AMP's built-in StartTLS, before and after the hello.
        Checked: never answered: a logged protocol violation both times.
        """
        stranger, _ = self.stranger()
        stranger.callRemote(RawStartTLS).addErrback(lambda _: None)
        self.assertClosed(stranger)
        self.assertLogged("protocol violation: command b'StartTLS' before hello")
        evil = self.helloed()
        evil.callRemote(RawStartTLS).addErrback(lambda _: None)
        self.assertClosed(evil)
        self.assertLogged("Protocol violation from evil: unknown or wrong-direction command "
                          "b'StartTLS'. Closing connection.")

    def test_startTransferBadCounts(self):
        """
        The attack: C{StartTransfer} with counts that cannot be (C{missing}
        -5, C{shared} 2**62, C{extra} 10**8).  Each is refused with the
        declared L{SyncRefused}; nothing is sent.

        Injected: StartTransfer with missing -5, shared 2**62, extra
        10**8.
        Checked: each refused with the declared SyncRefused; no file
        sent; nothing reaches control -i.
        """
        self.writeManifestFiles(count=3)
        evil = self.helloed()
        answer = call(self.cluster, evil, IntegrityCheck, digest="0" * 64)
        for missing, shared, extra in ((-5, 2**62, 0), (0, 0, 10**8)):
            outcome = call(self.cluster, evil, StartTransfer, session=answer["session"],
                           missing=missing, shared=shared, extra=extra)
            self.assertTrue(outcome.check(SyncRefused), outcome)
            self.assertIn("do not match", str(outcome.value))
        self.assertIsNone(evil.lost)

    def test_refusalsRateLimited(self):
        """
        The attack: strangers from one address break the protocol over and
        over.  Each refusal has its reason, one line a minute per address;
        the next line says how many were not logged.

        Injected: strangers from one address break the protocol over and
        over.
        Checked: each refusal logged with its reason, at most one line a
        minute per address, the next line counting those not logged.
        """
        for _ in range(5):
            stranger, _ = self.stranger()
            stranger.callRemote(RawStartTLS).addErrback(lambda _: None)
            self.assertClosed(stranger)
        refusals = [line for line in self.logs.lines() if "Refused a connection from" in line]
        self.assertEqual(len(refusals), 1, refusals)
        self.cluster.clock.advance(61)
        stranger, _ = self.stranger()
        stranger.callRemote(RawStartTLS).addErrback(lambda _: None)
        self.assertClosed(stranger)
        self.assertLogged("Refused a connection from 10.0.0.2: protocol violation: command "
                          "b'StartTLS' before hello (4 more refused since the last line "
                          "about this address).")


class ControlSocketTests(SynchronousTestCase):
    """
    A local client attacks the control socket (Wazuh's local framing).
    """

    def connect(self):
        clock = Clock()
        factory = ControlFactory(lambda: CommandTable({}), clock=clock)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return clock, protocol, transport

    def test_hugeMessageAnnounced(self):
        """
        The attack: a local client announces a message larger than any
        request may be.  The server closes that connection before buffering
        anything of it.

        Injected: a local client's frame header announcing 4 GiB on the
        control socket.
        Checked: that connection closed at once, before anything of it
        is buffered.
        """
        clock, protocol, transport = self.connect()
        header = HEADER.pack(1, 2 ** 32 - 1, commandField(b"get_nodes"))
        protocol.dataReceived(header + b"x" * 4096)
        self.assertTrue(transport.disconnecting)

    def test_unterminatedMessage(self):
        """
        The attack: a local client starts a message and never ends it.  The
        server drops it at the payload deadline, so nothing it sent stays
        buffered.

        Injected: a local client starts a message on the control socket
        and never ends it.
        Checked: the connection dropped at the payload deadline: nothing
        it sent stays buffered.
        """
        clock, protocol, transport = self.connect()
        frame = b"".join(buildFrames(1, b"get_nodes", b"x" * 60000))
        protocol.dataReceived(frame[:30000])
        self.assertFalse(transport.disconnecting)
        clock.advance(CONTROL_LIMITS.payloadDeadline + 1)
        self.assertTrue(transport.disconnecting)


class HostileMaster(amp.AMP):
    """
    A master holding the cluster key and the master's certificate, that
    answers the worker's hello properly and then what a test makes it say.
    """

    def __init__(self, record):
        super().__init__()
        self.record = record

    @Hello.responder
    def hello(self, cluster_name, node_name, node_type, version, protocol, proof):
        return {"master_name": "master", "version": __version__, "protocol": PROTOCOL_VERSION,
                "proof": helloProof(KEY, channelBinding(self.transport), "wazuh", "master",
                                    role="master")}

    def locateResponder(self, name):
        self.record.setdefault(name, 0)
        self.record[name] += 1
        return super().locateResponder(name)


class WorkerSideTests(AttackTestsMixin, SynchronousTestCase):
    """
    A master (it has the master's certificate and the cluster key) attacks
    its workers.
    """

    def hostile(self, protocolClass):
        """
        Make the in-memory master answer with C{protocolClass}; return the
        record of the commands it received by name.
        """
        record = {}
        self.cluster.network.masterFactory = Factory.forProtocol(
            lambda: protocolClass(record))
        return record

    def test_hugeManifestAnnounced(self):
        """
        The attack: the master announces a manifest of 5e7 chunks (or of a
        million chunks, more than C{communication.max_zip_size} holds).  The
        worker refuses it before allocating or asking for anything.

        Injected: a hostile master announces a manifest of 5e7 chunks,
        or a million (more than communication.max_zip_size holds).
        Checked: the worker refuses it before allocating or asking for
        anything.
        """
        for chunks in (50_000_000, 1_000_000):
            class Announcer(HostileMaster):
                @IntegrityCheck.responder
                def integrityCheck(self, digest, base=None, chunks=chunks):
                    return {"in_sync": False, "master_digest": "1" * 64, "session": "s",
                            "full": True, "chunks": chunks, "entries": chunks, "data": b""}

            record = self.hostile(Announcer)
            name = f"worker{chunks}"
            self.cluster.addWorker(name)
            self.cluster.network.advance(1)
            self.assertEqual(record.get(b"ManifestChunk", 0), 0)
            self.assertLogged(f"Error 3036 - The master announced {chunks} entries in "
                              f"{chunks} chunks")

    def test_manyNonFinalAgentGroupChunks(self):
        """
        The attack: the master sends non-final agent-groups chunks without
        end.  The worker refuses the batch once it passes its bounds (rows,
        chunks), forgets it, and the connection stays.

        Injected: a hostile master sends non-final agent-groups chunks
        without end.
        Checked: the worker refuses the batch once past its row and
        chunk bounds, forgets it, and keeps the connection.
        """
        from wazuhcluster.worker import agent_groups_recv

        worker = self.cluster.addWorker("worker1")
        connection = self.cluster.master.workers["worker1"]
        [(_, data)] = packRecords([f'["{n:03d}",["g"],1]'.encode() for n in range(1, 3001)])
        refused = None
        for sent in range(600):
            outcome = call(self.cluster, connection, SendAgentGroups, data=data, version=1,
                           hash=None, full=True, final=False)
            if not isinstance(outcome, dict):
                refused = sent
                break
        self.assertIsNotNone(refused)
        self.assertLessEqual(refused * 3000, agent_groups_recv.MAX_BATCH_ROWS)
        self.assertTrue(outcome.check(SyncAborted), outcome)
        self.assertIsNotNone(worker.connection)
        self.assertIs(self.cluster.master.workers["worker1"], connection)
        # The refused batch is forgotten: the next one is taken.
        [(_, small)] = packRecords([b'["001",["g"],2]'])
        outcome = call(self.cluster, connection, SendAgentGroups, data=small, version=2,
                       hash=None, full=True, final=True)
        self.assertIsInstance(outcome, dict)

    def test_hugeFileAnnounced(self):
        """
        The attack: the master announces a file of 10**15 bytes.  The worker
        does not ask for it (one WARNING, Wazuh's "File too large to be
        synced") and asks for the other files.

        Injected: a hostile master announces a synced file of 10**15
        bytes.
        Checked: the worker does not ask for it (one WARNING "File too
        large to be synced") and fetches the other files.
        """
        meta = {"etc/rules/huge.xml": FileMeta("0" * 32, 0.0, 10**15, "etc/rules/"),
                "etc/rules/small.xml": FileMeta("1" * 32, 0.0, 10, "etc/rules/")}
        chunks = list(encodeManifest(Snapshot(meta)))
        requested = []

        class Announcer(HostileMaster):
            @IntegrityCheck.responder
            def integrityCheck(self, digest, base=None):
                return {"in_sync": False, "master_digest": "1" * 64, "session": "s",
                        "full": True, "chunks": len(chunks), "entries": 2, "data": chunks[0]}

            @RequestFiles.responder
            def requestFiles(self, session, paths):
                requested.append(paths)
                return {}

        self.hostile(Announcer)
        self.cluster.addWorker("worker1")
        self.cluster.network.advance(1)
        self.assertEqual(readRecords(requested), [b"etc/rules/small.xml"])
        self.assertLogged("File too large to be synced: etc/rules/huge.xml "
                          "(1000000000000000 bytes, more than communication.max_zip_size")

    def test_hugeResultChunkCount(self):
        """
        The attack: the master answers a forwarded control request with a
        result of 10**9 chunks.  The worker refuses it with a declared error
        before fetching (or allocating) anything.

        Injected: a hostile master answers a forwarded control request
        with a result of 10**9 chunks.
        Checked: refused with a declared error before any chunk is
        fetched or allocated.
        """
        from wazuhcluster.commands import ControlFailed
        from wazuhcluster.control import WorkerControlHandler

        class Announcer(HostileMaster):
            @ControlRequest.responder
            def controlRequest(self, request, arguments):
                return {"result_id": "r", "chunks": 10**9, "data": b""}

        record = self.hostile(Announcer)
        worker = self.cluster.addWorker("worker1")
        self.assertIsNotNone(worker.connection)
        outcomes = []
        WorkerControlHandler(worker).answer("get_nodes", {}).addBoth(outcomes.append)
        self.cluster.network.flush()
        self.assertTrue(outcomes[0].check(ControlFailed), outcomes)
        self.assertIn("A result announced in 1000000000 chunks", str(outcomes[0].value))
        self.assertEqual(record.get(b"FetchResultChunk", 0), 0)
