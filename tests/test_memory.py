# -*- test-case-name: tests.test_memory -*-
"""
Tests for L{wazuhcluster.memory}.
"""

import os
import subprocess
import sys
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.memory import M_ARENA_MAX, limitMallocArenas


class FakeLibc:
    def __init__(self, answer=1):
        self.calls = []
        self.answer = answer

    def mallopt(self, parameter, value):
        self.calls.append((parameter, value))
        return self.answer


class LimitMallocArenasTests(SynchronousTestCase):
    """
    L{limitMallocArenas} sets glibc's arena limit unless the environment
    does.
    """

    def test_setsTheLimit(self):
        """
        C{mallopt(M_ARENA_MAX, n)} is called, and its success reported.
        """
        libc = FakeLibc()
        self.assertTrue(limitMallocArenas(3, environ={}, loadLibrary=lambda: libc))
        self.assertEqual(libc.calls, [(M_ARENA_MAX, 3)])
        self.assertFalse(limitMallocArenas(3, environ={}, loadLibrary=lambda: FakeLibc(0)))

    def test_environmentWins(self):
        """
        With C{MALLOC_ARENA_MAX} in the environment nothing is changed.
        """
        libc = FakeLibc()
        self.assertTrue(limitMallocArenas(2, environ={"MALLOC_ARENA_MAX": "8"},
                                          loadLibrary=lambda: libc))
        self.assertEqual(libc.calls, [])

    def test_noGlibc(self):
        """
        Without a C library offering C{mallopt}, nothing happens.
        """
        def missing():
            raise OSError("no C library")

        self.assertFalse(limitMallocArenas(2, environ={}, loadLibrary=missing))
        self.assertFalse(limitMallocArenas(2, environ={}, loadLibrary=object))

    def test_realGlibcKeepsTransientMemoryLow(self):
        """
        With the real C library: eight threads each allocate and free 64
        MiB of small blocks; with the limit set, far less stays resident
        than without it (measured in two fresh processes).
        """
        script = textwrap.dedent("""
            import sys, threading
            from wazuhcluster.memory import limitMallocArenas
            if sys.argv[1] == "limit":
                assert limitMallocArenas(1)
            def work():
                blocks = [bytearray(600) for _ in range(100000)]
                keep.append(blocks[-1])
                del blocks
            keep = []
            threads = [threading.Thread(target=work) for _ in range(8)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    print(int(line.split()[1]))
        """)
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
        rss = {}
        for mode in ("limit", "default"):
            rss[mode] = int(subprocess.run(
                [sys.executable, "-c", script, mode], capture_output=True, text=True,
                env=env, check=True).stdout)
        self.assertLess(rss["limit"], rss["default"], rss)
