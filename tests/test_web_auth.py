# -*- test-case-name: tests.test_web_auth -*-
"""
Tests for the web service's basic authentication (users file of PBKDF2
hashes, checked in threads), its TLS with the node's certificate, and the
command that makes a users file entry.
"""

import io
import json

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks, maybeDeferred
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.client import ResponseFailed, ResponseNeverReceived
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from tests.cluster import MASTER_HOST, InMemoryCluster
from tests.test_web import startWeb
from tests.webclient import basicAuth, fetch, fetchJson
from wazuhcluster.web import auth
from wazuhcluster.web.auth import (
    HashedPasswordChecker,
    PasswordHash,
    UsersFileError,
    hashPassword,
    parseUsers,
    readUsers,
)
from wazuhcluster.web.passwd import main as passwdMain
from wazuhcluster.web.service import (
    WebService,
    WebSetupError,
    webContextFactory,
    webServiceFor,
)

#: Few iterations: fast tests (the default is for real users files).
FAST = 1000


def usersText(**passwords):
    return "".join(f"{user}:{hashPassword(password, FAST)}\n"
                   for user, password in passwords.items())


class UsersFileTests(SynchronousTestCase):
    """
    Reading the users file.
    """

    def test_parse(self):
        """
        Lines are C{user:hash}; comments and blank lines are skipped.
        """
        users = parseUsers("# operators\n\n" + usersText(alice="s3cret", bob="hunter2"))
        self.assertEqual(sorted(users), [b"alice", b"bob"])
        self.assertTrue(users[b"alice"].verify(b"s3cret"))
        self.assertFalse(users[b"alice"].verify(b"hunter2"))

    def test_malformed(self):
        """
        A malformed line is refused naming the line and what is wrong.
        """
        good = hashPassword("x", FAST)
        cases = {
            "alice\n": "line 1: expected user:hash",
            f"alice:{good}\nalice:{good}\n": "line 2: user 'alice' is listed twice",
            "alice:md5$abc\n": "line 1: the hash must look like",
            "alice:pbkdf2_sha256$10$c2FsdA==$" + "A" * 44 + "\n": "iterations must be between",
            "alice:pbkdf2_sha256$1000$!!$x\n": "do not parse",
            "# nobody\n": "lists no user",
        }
        for text, expected in cases.items():
            error = self.assertRaises(UsersFileError, parseUsers, text, "web-users")
            self.assertIn(expected, str(error))

    def test_readUsers(self):
        """
        A file that cannot be read is one clear line.
        """
        path = FilePath(self.mktemp())
        self.assertIn("Cannot read the web users file", str(
            self.assertRaises(UsersFileError, readUsers, path.path)))
        path.setContent(b"\xff\xfe")
        self.assertIn("not UTF-8", str(self.assertRaises(UsersFileError, readUsers, path.path)))
        path.setContent(usersText(alice="pw").encode())
        self.assertEqual(list(readUsers(path.path)), [b"alice"])

    def test_hashFormat(self):
        """
        A hash is PBKDF2-HMAC-SHA256 with its iterations and salt, and
        another salt gives another hash.
        """
        text = hashPassword("pw", 600_000, salt=b"0123456789abcdef")
        self.assertTrue(text.startswith("pbkdf2_sha256$600000$MDEyMzQ1Njc4OWFiY2RlZg==$"))
        self.assertNotEqual(hashPassword("pw", FAST), hashPassword("pw", FAST))
        self.assertEqual(PasswordHash(text).iterations, 600_000)


class CheckerTests(TestCase):
    """
    Passwords are checked in real threads, a few at a time.
    """

    timeout = 60

    def setUp(self):
        self.users = parseUsers(usersText(alice="s3cret"))
        self.checker = HashedPasswordChecker(self.users, deferToThread, reactor)

    @inlineCallbacks
    def test_rightAndWrong(self):
        """
        The right password gives the user; a wrong one, or an unknown user,
        is refused.
        """
        user = yield self.checker.requestAvatarId(UsernamePassword(b"alice", b"s3cret"))
        self.assertEqual(user, b"alice")
        for name, password in [(b"alice", b"nope"), (b"mallory", b"s3cret")]:
            d = self.checker.requestAvatarId(UsernamePassword(name, password))
            yield self.assertFailure(d, UnauthorizedLogin)

    @inlineCallbacks
    def test_manyAtOnce(self):
        """
        Many checks at once all get their answer; more than the waiting
        bound are refused at once.
        """
        accepted = auth.MAX_CHECKS + auth.MAX_WAITING
        credentials = [UsernamePassword(b"alice", b"s3cret" if n % 2 else b"bad%d" % n)
                       for n in range(accepted + 4)]
        attempts = [self.checker.requestAvatarId(c) for c in credentials]
        refusedAtOnce = [d for d in attempts[accepted:] if d.called]
        self.assertEqual(len(refusedAtOnce), 4)
        outcomes = yield gatherResults([d.addErrback(lambda f: f.trap(UnauthorizedLogin) and None)
                                        for d in attempts])
        self.assertEqual(outcomes[:accepted],
                         [b"alice" if n % 2 else None for n in range(accepted)])
        self.assertEqual(outcomes[accepted:], [None] * 4)

    def test_remembered(self):
        """
        A password that checked out is not derived again for a while
        (the page asks every 2 s), then it is.
        """
        clock = Clock()
        runs = []

        def runInline(function, *args):
            runs.append(function)
            return maybeDeferred(function, *args)

        checker = HashedPasswordChecker(self.users, runInline, clock)
        good = UsernamePassword(b"alice", b"s3cret")
        for _ in range(3):
            self.assertEqual(self.successResultOf(checker.requestAvatarId(good)), b"alice")
        self.assertEqual(len(runs), 1)
        self.failureResultOf(checker.requestAvatarId(UsernamePassword(b"alice", b"x")),
                             UnauthorizedLogin)
        clock.advance(auth.REMEMBER_SECONDS + 1)
        self.successResultOf(checker.requestAvatarId(good))
        self.assertEqual(len(runs), 3)


class AuthenticatedServiceTests(TestCase):
    """
    A master's web service behind basic authentication.
    """

    timeout = 60

    def setUp(self):
        self.cluster = InMemoryCluster(self)
        checker = HashedPasswordChecker(parseUsers(usersText(alice="s3cret")),
                                        deferToThread, reactor)
        self.web = startWeb(self, self.cluster.master, checker=checker)

    @inlineCallbacks
    def test_unauthorized(self):
        """
        Without credentials, with a wrong password or a malformed header,
        every path is 401 JSON asking for basic authentication (unknown
        paths too: nothing is told before the login).
        """
        for path, headers in [("cluster/nodes", None), ("metrics", None), ("", None),
                              ("nosuch", None),
                              ("cluster/nodes", basicAuth("alice", "wrong")),
                              ("cluster/nodes", {b"authorization": [b"Basic !!!"]}),
                              ("cluster/nodes", {b"authorization": [b"Bearer abc"]})]:
            status, headers, body = yield fetch(self.web.url + path, headers=headers)
            self.assertEqual(status, 401, path)
            self.assertEqual(headers.getRawHeaders(b"www-authenticate"),
                             [b'Basic realm="wazuhcluster"'])
            self.assertEqual(json.loads(body)["error"], 401)

    @inlineCallbacks
    def test_authorized(self):
        """
        With the right user and password, the answers come.
        """
        status, body = yield fetchJson(self.web.url + "cluster/local/info",
                                       headers=basicAuth("alice", "s3cret"))
        self.assertEqual(status, 200)
        self.assertEqual(body["data"]["affected_items"][0]["node"], "master")
        status, headers, text = yield fetch(self.web.url + "metrics",
                                            headers=basicAuth("alice", "s3cret"))
        self.assertEqual(status, 200)
        self.assertIn(b"wazuhcluster_connected_workers", text)


@implementer(IPolicyForHTTPS)
class TrustCluster:
    """
    Verify the web service's certificate against the cluster CA and the
    master's name, whatever address is dialled.
    """

    def __init__(self, authority, hostname):
        self.authority = authority
        self.hostname = hostname

    def creatorForNetloc(self, hostname, port):
        return optionsForClientTLS(self.hostname, trustRoot=self.authority)


class TLSTests(TestCase):
    """
    The web service over TLS with the node's own certificate.
    """

    timeout = 60

    def setUp(self):
        self.cluster = InMemoryCluster(self)
        master = self.cluster.master
        self.web = startWeb(self, master, tlsOptions=webContextFactory(master.identity))

    @inlineCallbacks
    def test_https(self):
        """
        A client trusting the cluster CA gets the answers over HTTPS, the
        certificate naming the master.
        """
        self.assertTrue(self.web.url.startswith("https://127.0.0.1:"))
        agent = Agent(reactor, TrustCluster(self.cluster.master.identity.authority, MASTER_HOST),
                      pool=HTTPConnectionPool(reactor, persistent=False))
        status, body = yield fetchJson(self.web.url + "cluster/status", agent=agent)
        self.assertEqual(body["data"], {"enabled": "yes", "running": "yes"})

    @inlineCallbacks
    def test_wrongNameRefused(self):
        """
        A client expecting another name refuses the certificate.
        """
        agent = Agent(reactor, TrustCluster(self.cluster.master.identity.authority,
                                            "someone.else"),
                      pool=HTTPConnectionPool(reactor, persistent=False))
        d = fetch(self.web.url + "cluster/status", agent=agent)
        yield self.assertFailure(d, ResponseNeverReceived)

    @inlineCallbacks
    def test_plainHttpGetsNothing(self):
        """
        Plain HTTP to the TLS port gets no answer.
        """
        d = fetch(self.web.url.replace("https:", "http:") + "cluster/status")
        yield self.assertFailure(d, ResponseNeverReceived, ResponseFailed)


class SetupTests(SynchronousTestCase):
    """
    L{webServiceFor}: the options' web service or one clear line.
    """

    def setUp(self):
        self.cluster = InMemoryCluster(self)

    def test_built(self):
        """
        With a users file and TLS, the service asks for logins and speaks
        TLS.
        """
        path = FilePath(self.mktemp())
        path.setContent(usersText(alice="pw").encode())
        service = webServiceFor(self.cluster.master, "127.0.0.1:0", path.path, True)
        self.assertEqual(service.scheme, "https")
        self.assertIsInstance(service.site.resource.checker, HashedPasswordChecker)

    def test_refusals(self):
        """
        A bad address, a missing users file or a taken port are one line.
        """
        import socket

        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        cases = [("localhost:x", None, "--web 'localhost:x': the port must be"),
                 ("0", "/nonexistent/users", "Cannot read the web users file"),
                 (f"127.0.0.1:{port}", None, f"on 127.0.0.1:{port}: Address already in use")]
        for spec, users, expected in cases:
            error = self.assertRaises(WebSetupError, webServiceFor, self.cluster.master,
                                      spec, users)
            self.assertIn(expected, str(error))


class PasswdTests(SynchronousTestCase):
    """
    C{python -m wazuhcluster.web.passwd USER}.
    """

    def test_line(self):
        """
        The printed line is a users file entry that checks out.
        """
        out, err = io.StringIO(), io.StringIO()
        status = passwdMain(["alice", "--iterations", str(FAST)], io.StringIO("s3cret\n"), out,
                            err)
        self.assertEqual((status, err.getvalue()), (0, ""))
        users = parseUsers(out.getvalue())
        self.assertTrue(users[b"alice"].verify(b"s3cret"))

    def test_refused(self):
        """
        A user name with a colon, an empty password or absurd iterations
        are one line and status 1.
        """
        for argv, stdin, expected in [(["a:b"], "pw\n", "no ':'"),
                                      (["alice"], "\n", "the password is empty"),
                                      (["alice", "--iterations", "5"], "pw\n", "--iterations")]:
            out, err = io.StringIO(), io.StringIO()
            self.assertEqual(passwdMain(argv, io.StringIO(stdin), out, err), 1)
            self.assertIn(expected, err.getvalue())
            self.assertEqual(len(err.getvalue().splitlines()), 1)
            self.assertEqual(out.getvalue(), "")


class ExposureWarningTests(TestCase):
    """
    A service reachable beyond loopback says so when it is unprotected.
    """

    timeout = 30

    def logged(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    def warnings(self, events):
        return [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]

    def test_openToAnyone(self):
        """
        On all addresses without users, a warning says anyone can read it.
        """
        events = self.logged()
        cluster = InMemoryCluster(self)
        web = WebService(cluster.master, "0.0.0.0", 0, reactor=reactor)
        web.startService()
        self.addCleanup(web.stopService)
        [warning] = self.warnings(events)
        self.assertIn("answers anyone who can reach it: add --web-users", warning)

    def test_passwordsInClear(self):
        """
        With users but no TLS beyond loopback, a warning says passwords
        travel in clear; on loopback nothing is said.
        """
        events = self.logged()
        cluster = InMemoryCluster(self)
        checker = HashedPasswordChecker(parseUsers(usersText(alice="pw")), deferToThread, reactor)
        for host in ("0.0.0.0", "127.0.0.1"):
            web = WebService(cluster.master, host, 0, checker=checker, reactor=reactor)
            web.startService()
            self.addCleanup(web.stopService)
        [warning] = self.warnings(events)
        self.assertIn("asks for passwords over plain HTTP", warning)
