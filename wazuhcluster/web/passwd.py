# -*- test-case-name: tests.test_web_auth -*-
"""
Make a line of the status service's users file::

    python -m wazuhcluster.web.passwd USER >> /var/ossec/etc/web-users

It asks for the password twice on the terminal (or reads one line from
standard input when it is not a terminal) and prints C{USER:HASH}.
"""

import argparse
import getpass
import sys

from wazuhcluster.web.auth import (
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    MAX_NAME_LENGTH,
    MAX_PASSWORD_LENGTH,
    MIN_ITERATIONS,
    hashPassword,
)


def readPassword(stdin, stderr):
    """
    The new password: asked twice on a terminal, else the first line of
    C{stdin}.

    @raise ValueError: when it is empty, too long, or the two differ.
    """
    if stdin.isatty():
        password = getpass.getpass("Password: ", stream=stderr)
        if getpass.getpass("Again: ", stream=stderr) != password:
            raise ValueError("the passwords differ")
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        raise ValueError("the password is empty")
    if len(password.encode("utf-8")) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"the password is longer than {MAX_PASSWORD_LENGTH} bytes")
    return password


def main(argv=None, stdin=None, stdout=None, stderr=None):
    """
    @return: the exit status.
    """
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    parser = argparse.ArgumentParser(
        prog="python -m wazuhcluster.web.passwd",
        description="Print a line for the --web-users file of wazuh-master/wazuh-worker.")
    parser.add_argument("user")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help=f"PBKDF2 iterations (default {DEFAULT_ITERATIONS})")
    arguments = parser.parse_args(argv)
    user = arguments.user
    problem = None
    if ":" in user or not user or len(user) > MAX_NAME_LENGTH or not user.isprintable():
        problem = f"the user name must be 1 to {MAX_NAME_LENGTH} printable characters, no ':'"
    elif not MIN_ITERATIONS <= arguments.iterations <= MAX_ITERATIONS:
        problem = f"--iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
    if problem is None:
        try:
            password = readPassword(stdin, stderr)
        except (ValueError, EOFError) as e:
            problem = str(e) or "no password given"
    if problem is not None:
        stderr.write(f"wazuhcluster.web.passwd: {problem}\n")
        return 1
    stdout.write(f"{user}:{hashPassword(password, arguments.iterations)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
