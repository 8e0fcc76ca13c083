# -*- test-case-name: tests.test_web_auth -*-
"""
HTTP basic authentication of the status service (C{--web-users FILE}).

The file has one C{user:hash} line per user (blank lines and lines starting
with C{#} are skipped).  A hash is PBKDF2-HMAC-SHA256 from the standard
library, with its iterations and salt::

    pbkdf2_sha256$600000$<salt, base64>$<derived key, base64>

Make an entry with C{python -m wazuhcluster.web.passwd USER} (it asks for
the password and prints the line to append).

Checking a password costs a PBKDF2 derivation (a fraction of a second by
design), so it runs in a thread, at most L{MAX_CHECKS} at once; a client
that waits behind L{MAX_WAITING} others is refused at once.  A password
that checked out is remembered, as a keyed hash in memory, for
L{REMEMBER_SECONDS} (the status page asks every 2 s).
"""

import base64
import hashlib
import hmac
import os
import secrets

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import DeferredSemaphore, fail, succeed
from zope.interface import implementer

SCHEME = "pbkdf2_sha256"

#: Iterations of new hashes (OWASP's 2023 figure for PBKDF2-HMAC-SHA256).
DEFAULT_ITERATIONS = 600_000

#: Iterations a hash of the file may have.
MIN_ITERATIONS, MAX_ITERATIONS = 1_000, 10_000_000

#: The largest users file read, its longest user name and password.
MAX_FILE_BYTES = 1024 * 1024
MAX_NAME_LENGTH = 255
MAX_PASSWORD_LENGTH = 1024

#: Password checks running at once, and waiting at most.
MAX_CHECKS = 2
MAX_WAITING = 16

#: Seconds a password that checked out is not checked again.
REMEMBER_SECONDS = 300.0

#: Entries remembered at most.
MAX_REMEMBERED = 256


class UsersFileError(Exception):
    """
    The users file cannot be used; C{str()} says why in one line.
    """


def hashPassword(password, iterations=DEFAULT_ITERATIONS, salt=None):
    """
    The stored form of C{password} (L{str}).
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    derived = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "$".join([SCHEME, str(iterations), base64.b64encode(salt).decode("ascii"),
                     base64.b64encode(derived).decode("ascii")])


class PasswordHash:
    """
    One parsed hash of the users file.
    """

    def __init__(self, text):
        """
        @raise ValueError: saying what is wrong with C{text}.
        """
        parts = text.split("$")
        if len(parts) != 4 or parts[0] != SCHEME:
            raise ValueError(f"the hash must look like {SCHEME}$ITERATIONS$SALT$KEY")
        try:
            self.iterations = int(parts[1])
            self.salt = base64.b64decode(parts[2], validate=True)
            self.derived = base64.b64decode(parts[3], validate=True)
        except ValueError:
            raise ValueError("the iterations, salt or key of the hash do not parse") from None
        if not MIN_ITERATIONS <= self.iterations <= MAX_ITERATIONS:
            raise ValueError(f"the iterations must be between {MIN_ITERATIONS} and "
                             f"{MAX_ITERATIONS}")
        if not self.salt or len(self.derived) != 32:
            raise ValueError("the salt is empty or the key is not 32 bytes")

    def verify(self, password):
        """
        Whether C{password} (bytes) is the one hashed.  Blocking: run it in
        a thread.
        """
        derived = hashlib.pbkdf2_hmac("sha256", password, self.salt, self.iterations)
        return hmac.compare_digest(derived, self.derived)


def parseUsers(text, origin="the users file"):
    """
    The users of a users file.

    @return: C{{user name (bytes): L{PasswordHash}}}.
    @raise UsersFileError: naming the line and what is wrong with it.
    """
    users = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, hashText = line.partition(":")
        where = f"{origin} line {number}"
        if not colon or not name:
            raise UsersFileError(f"{where}: expected user:hash")
        if len(name) > MAX_NAME_LENGTH or not name.isprintable():
            raise UsersFileError(f"{where}: the user name is too long or not printable")
        if name.encode("utf-8") in users:
            raise UsersFileError(f"{where}: user {name!r} is listed twice")
        try:
            users[name.encode("utf-8")] = PasswordHash(hashText)
        except ValueError as e:
            raise UsersFileError(f"{where}: {e}") from None
    if not users:
        raise UsersFileError(f"{origin} lists no user")
    return users


def readUsers(path):
    """
    Read the users file at C{path} (small: read once at start).

    @raise UsersFileError: when it cannot be read or is malformed.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise UsersFileError(f"Cannot read the web users file {path}: {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsersFileError(f"The web users file {path} is larger than 1 MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsersFileError(f"The web users file {path} is not UTF-8") from None
    return parseUsers(text, origin=os.path.basename(path))


@implementer(ICredentialsChecker)
class HashedPasswordChecker:
    """
    Checks user names and passwords against the users file's hashes, in a
    thread, a few at a time.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, users, runInThread, clock):
        """
        @param users: what L{parseUsers} returns.
        @param runInThread: C{deferToThread}-like.
        @param clock: for how long a good password is remembered.
        """
        self.users = users
        self.runInThread = runInThread
        self.clock = clock
        self._semaphore = DeferredSemaphore(MAX_CHECKS)
        self._key = secrets.token_bytes(32)
        self._remembered = {}
        # An unknown user costs as much as a known one.
        self._decoy = PasswordHash(hashPassword(secrets.token_hex(8), next(
            iter(users.values())).iterations))

    def _fingerprint(self, username, password):
        return hmac.new(self._key, username + b"\0" + password, hashlib.sha256).digest()

    def requestAvatarId(self, credentials):
        """
        @return: a Deferred firing with the user name, or failing with
            L{UnauthorizedLogin}.
        """
        username, password = credentials.username, credentials.password
        if len(username) > MAX_NAME_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
            return fail(UnauthorizedLogin())
        fingerprint = self._fingerprint(username, password)
        now = self.clock.seconds()
        if self._remembered.get(fingerprint, -1.0) > now:
            return succeed(username)
        if len(self._semaphore.waiting) >= MAX_WAITING:
            return fail(UnauthorizedLogin("Too many password checks waiting"))
        stored = self.users.get(username)
        d = self._semaphore.run(self.runInThread, (stored or self._decoy).verify, password)
        d.addCallback(self._checked, stored is not None, username, fingerprint)
        return d

    def _checked(self, matches, known, username, fingerprint):
        if not (matches and known):
            raise UnauthorizedLogin()
        if len(self._remembered) >= MAX_REMEMBERED:
            now = self.clock.seconds()
            self._remembered = {k: v for k, v in self._remembered.items() if v > now}
            if len(self._remembered) >= MAX_REMEMBERED:
                self._remembered.clear()
        self._remembered[fingerprint] = self.clock.seconds() + REMEMBER_SECONDS
        return username
