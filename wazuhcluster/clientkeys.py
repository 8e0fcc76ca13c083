# -*- test-case-name: tests.test_clientkeys -*-
"""
C{etc/client.keys}: one agent per line, C{ID NAME IP KEY}.

The master is the only writer; workers receive the file through integrity
sync and reconcile it into their agent database
(L{wazuhcluster.agentdb.AgentDatabase.reconcileClientKeys}).

Reading never raises for the file's content: a malformed line is reported
with its line number (never with its key) and skipped. Lines of agents that
Wazuh marked as removed (name starting with C{!}, or id starting with C{#})
are skipped silently. Lines end at C{\n} only, as Wazuh's C{fgets} reads them.

The agent commands change the file in place (L{appendClientKey},
L{removeClientKey}): every line they do not own is kept byte for byte,
removed and malformed lines included, and an ID found anywhere in the file
is never handed out again (L{usedAgentIds}). Writing replaces the file
atomically with mode 0640.
"""

import fcntl
import ipaddress
import os
import re
from contextlib import contextmanager

from attrs import frozen

from wazuhcluster.fsutil import atomicWrite

#: The mode of C{etc/client.keys} (WAZUH.md section 2.4).
CLIENT_KEYS_MODE = 0o640

#: Longest agent name Wazuh accepts.
MAX_NAME_LENGTH = 128

_NAME = re.compile(r"[\w.-]+\Z", re.ASCII)
_ID = re.compile(r"[0-9]+\Z", re.ASCII)


@frozen
class ClientKey:
    """
    One agent of C{client.keys}.

    @ivar id: the agent ID as Wazuh prints it: at least three digits,
        zero-padded (C{"001"}, C{"1000"}).
    @ivar name: the agent name.
    @ivar ip: C{"any"}, an address or a network in CIDR notation.
    @ivar key: the agent's pre-shared key.
    """

    id: str
    name: str
    ip: str
    key: str

    def toLine(self):
        """
        The line of C{client.keys} for this agent, without its newline.
        """
        return f"{self.id} {self.name} {self.ip} {self.key}"


def formatAgentId(number):
    """
    Format an agent number the way Wazuh does: zero-padded to three digits.

    @type number: L{int}
    @rtype: L{str}
    """
    return f"{number:03d}"


def parseAgentId(text):
    """
    Parse an agent ID given by a user or a peer (C{"1"}, C{"001"}, C{1}).

    @return: the agent number.
    @rtype: L{int}
    @raise ValueError: C{text} is not a non-negative decimal number.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"invalid agent ID {text!r}")
        return text
    if not isinstance(text, str) or not _ID.match(text):
        raise ValueError(f"invalid agent ID {text!r}")
    return int(text)


def isValidAgentName(name):
    """
    Whether C{name} is an acceptable agent name: letters, digits, C{_}, C{.}
    and C{-}, 1 to L{MAX_NAME_LENGTH} characters.
    """
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_LENGTH
        and _NAME.match(name) is not None
    )


def isValidAgentIp(ip):
    """
    Whether C{ip} is C{"any"}, an IPv4/IPv6 address or a network in CIDR
    notation.
    """
    if ip == "any":
        return True
    try:
        ipaddress.ip_network(ip, strict=False)
    except (ValueError, TypeError):
        return False
    return True


def _isRemoved(fields):
    """
    Whether a line's fields describe an agent Wazuh marked as removed.
    """
    return fields[0].startswith("#") or (len(fields) > 1 and fields[1].startswith("!"))


def _parseLine(fields):
    """
    Turn the fields of one non-blank, non-removed line into a L{ClientKey}.

    @return: the entry, or an explanation of what is wrong with the line.
    @rtype: L{ClientKey} or L{str}
    """
    if len(fields) != 4:
        return f"expected 4 fields 'ID NAME IP KEY', found {len(fields)}"
    rawId, name, ip, key = fields
    if not _ID.match(rawId):
        return f"invalid agent ID {rawId!r}"
    number = int(rawId)
    if number == 0:
        return "agent ID 000 is reserved for the manager"
    if not isValidAgentName(name):
        return f"invalid agent name {name!r}"
    if not isValidAgentIp(ip):
        return f"invalid IP {ip!r}"
    return ClientKey(formatAgentId(number), name, ip, key)


def _lines(text):
    """
    The lines of C{text} (L{str} or L{bytes}), split at C{\n} only: bytes
    lines keep every other byte, so that they can be written back as read.
    """
    return text.split(b"\n" if isinstance(text, bytes) else "\n")


def _fieldsOf(line):
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    return line.split()


def _parsedLines(text):
    """
    Parse every line of C{text}.

    @return: C{(index, entry)} per valid line (0-based line index) and one
        message per skipped line, as L{parseClientKeys} describes.
    """
    parsed, problems = [], []
    ids, names = set(), set()
    for index, line in enumerate(_lines(text)):
        number = index + 1
        fields = _fieldsOf(line)
        if not fields or _isRemoved(fields):
            continue
        entry = _parseLine(fields)
        if isinstance(entry, str):
            problems.append(f"line {number}: {entry}")
        elif entry.id in ids:
            problems.append(f"line {number}: duplicate agent ID {entry.id}")
        elif entry.name in names:
            problems.append(f"line {number}: duplicate agent name {entry.name!r}")
        else:
            ids.add(entry.id)
            names.add(entry.name)
            parsed.append((index, entry))
    return parsed, problems


def parseClientKeys(text):
    """
    Parse the content of a C{client.keys} file.

    @param text: the file's content (L{bytes} that are not UTF-8 are
        replaced, so the lines holding them are reported).
    @type text: L{str} or L{bytes}

    @return: the valid entries in file order, and one message per skipped
        line (C{"line N: ..."}; keys are never quoted). A line repeating an
        ID or a name seen earlier is reported and skipped.
    @rtype: L{tuple} of (L{list} of L{ClientKey}, L{list} of L{str})
    """
    parsed, problems = _parsedLines(text)
    return [entry for _, entry in parsed], problems


def usedAgentIds(text):
    """
    Every agent number that appears as the first field of a line of
    C{text}, on valid, removed (C{!NAME}, C{#ID}) and malformed lines alike:
    none of them may be given to a new agent.

    @type text: L{str} or L{bytes}
    @rtype: L{set} of L{int}
    """
    used = set()
    for line in _lines(text):
        fields = _fieldsOf(line)
        if fields:
            first = fields[0].lstrip("#!")
            if _ID.match(first):
                used.add(int(first))
    return used


def readClientKeys(path):
    """
    Read and parse a C{client.keys} file; a missing file is empty.

    Bytes that are not UTF-8 are replaced, so the lines holding them are
    reported rather than stopping the read.

    @type path: L{twisted.python.filepath.FilePath}
    @return: see L{parseClientKeys}.
    """
    return parseClientKeys(readClientKeysBytes(path))


def readClientKeysBytes(path):
    """
    The content of a C{client.keys} file as it is on disk; a missing file is
    empty.

    @type path: L{twisted.python.filepath.FilePath}
    @rtype: L{bytes}
    """
    try:
        return path.getContent()
    except FileNotFoundError:
        return b""


def formatClientKeys(entries):
    """
    The content of a C{client.keys} file holding C{entries}.

    @rtype: L{bytes}
    """
    return "".join(entry.toLine() + "\n" for entry in entries).encode("utf-8")


def writeClientKeys(path, entries):
    """
    Replace C{path} atomically with C{entries}, mode 0640
    (L{wazuhcluster.fsutil.atomicWrite}: a crash leaves the old or the new
    file).

    @type path: L{twisted.python.filepath.FilePath}
    @type entries: iterable of L{ClientKey}
    """
    atomicWrite(path, formatClientKeys(entries), CLIENT_KEYS_MODE)


def appendClientKey(path, content, entry):
    """
    Replace C{path} atomically with C{content} (the file as just read, kept
    byte for byte) followed by C{entry}'s line.

    @type path: L{twisted.python.filepath.FilePath}
    @param content: the current content (L{readClientKeysBytes}), read while
        holding L{lockClientKeys}.
    @type entry: L{ClientKey}
    """
    if content and not content.endswith(b"\n"):
        content += b"\n"
    atomicWrite(path, content + entry.toLine().encode("utf-8") + b"\n",
                CLIENT_KEYS_MODE)


def removeClientKey(path, content, agentId):
    """
    Replace C{path} atomically with C{content} without the line of agent
    C{agentId}; every other line is kept byte for byte.

    @param content: the current content, read while holding
        L{lockClientKeys}.
    @param agentId: a 3-digit ID as L{formatAgentId} makes it.
    @return: whether the agent had a line (nothing is written otherwise).
    @rtype: L{bool}
    """
    parsed, _ = _parsedLines(content)
    drop = {index for index, entry in parsed if entry.id == agentId}
    if not drop:
        return False
    kept = [line for index, line in enumerate(_lines(content)) if index not in drop]
    atomicWrite(path, b"\n".join(kept), CLIENT_KEYS_MODE)
    return True


@contextmanager
def lockClientKeys(path):
    """
    Hold an exclusive lock for a read-modify-write of C{path}, so two
    concurrent C{agent add} cannot hand out the same ID.

    The lock is taken on C{<path>.lock} (a name integrity sync ignores).

    @type path: L{twisted.python.filepath.FilePath}
    """
    fd = os.open(path.path + ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def nextAgentId(entries, used=()):
    """
    The ID for a new agent: one more than the highest ID in C{entries} and
    in C{used}, and never C{000} (the manager). IDs grow past 999 naturally
    (C{"1000"}).

    @type entries: iterable of L{ClientKey}
    @param used: more agent numbers already taken (L{usedAgentIds}).
    @rtype: L{str}
    """
    highest = max([int(entry.id) for entry in entries] + list(used), default=0)
    return formatAgentId(highest + 1)


def sameAgentIp(first, second):
    """
    Whether two agent IPs name the same address or network (C{any} never
    clashes).
    """
    if "any" in (first, second):
        return False
    try:
        return ipaddress.ip_network(first, strict=False) == ipaddress.ip_network(
            second, strict=False)
    except ValueError:
        return first == second
