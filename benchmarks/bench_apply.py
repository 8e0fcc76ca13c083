"""
Worker staged-apply benchmark (L{wazuhcluster.staging.StagedSync.apply}).

Stages C{--files} small files (1-8 KiB) spread over about 6 200 directories
of a temporary node home laid out like Wazuh's (multigroups, groups, rules,
decoders, lists), then times C{apply()} with C{durable=True}:

 - new: every file is created (fresh worker: directories made too);
 - update: every file replaces an existing one (same paths, new bytes).

Staging (open, write, close: size and MD5 checked) is timed apart, as it
runs while the files arrive. Each round uses a fresh home; the best round
is reported, with files/s.

Usage (from the repository root, installed or with PYTHONPATH=.):
python benchmarks/bench_apply.py [--files 20000] [--rounds 3]
[--dir /dev/shm] [--dir /tmp]
"""

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time

from twisted.python.filepath import FilePath

from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.staging import StagedSync

TARGET_SECONDS = 1.0


def parseArguments(argv):
    """
    Parse the command line.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--dir",
        action="append",
        default=None,
        help="where to create homes (repeatable; default /dev/shm and /tmp)",
    )
    return parser.parse_args(argv)


def layoutPath(index):
    """
    A synced path for file number C{index}: 30% in their own multigroup
    directory, the rest spread over groups, rules, decoders and lists.
    """
    kind = index % 10
    if kind < 3:
        return f"var/multigroups/{index:08x}/merged.mg"
    if kind == 3:
        return f"etc/rules/r{index // 10 % 50}/rule{index}.xml"
    if kind == 4:
        return f"etc/decoders/decoder{index}.xml"
    if kind == 5:
        return f"etc/lists/list{index}"
    return f"etc/shared/group{index % 150}/file{index}.conf"


def contents(count, salt):
    """
    C{count} (path, bytes) pairs of 1-8 KiB each.
    """
    block = os.urandom(8192 + 1024)
    files = {}
    for index in range(count):
        size = 1024 + (index * 2654435761) % (7 * 1024)
        offset = index % 1024
        files[layoutPath(index)] = salt + block[offset : offset + size - len(salt)]
    files["etc/client.keys"] = salt + b"001 agent any key\n"
    return files


def stage(root, fileset, files):
    """
    Stage C{files} into a new L{StagedSync} (one write per file).

    @return: C{(sync, seconds)}.
    """
    sync = StagedSync(
        root, root.descendant(["queue", "cluster", "master"]), fileset, durable=True
    )
    started = time.perf_counter()
    for relpath, data in files.items():
        staged = sync.open(relpath, hashlib.md5(data).hexdigest(), len(data))
        staged.write(data)
        staged.close()
    return sync, time.perf_counter() - started


def timedApply(sync, expected):
    """
    Apply C{sync}; return the seconds taken.
    """
    started = time.perf_counter()
    sync.apply([], expected=expected)
    return time.perf_counter() - started


def oneRound(base, fileset, count):
    """
    One fresh home: stage and apply every file new, then again as updates.

    @return: C{{"new": (stage, apply), "update": (stage, apply)}}.
    """
    root = FilePath(tempfile.mkdtemp(prefix="apply-home-", dir=base))
    try:
        root.child("etc").makedirs()
        results = {}
        for phase, salt in (("new", b"1\n"), ("update", b"2\n")):
            files = contents(count, salt)
            sync, staging = stage(root, fileset, files)
            applying = timedApply(sync, files)
            check = root.preauthChild(next(iter(files))).getContent()
            assert check == next(iter(files.values())), "apply lost bytes"
            results[phase] = (staging, applying)
        return results
    finally:
        shutil.rmtree(root.path, ignore_errors=True)


def main(argv=None):
    """
    Run the rounds on every directory and print the figures.
    """
    arguments = parseArguments(sys.argv[1:] if argv is None else argv)
    fileset = loadClusterItems().fileset
    count = arguments.files + 1
    dirs = len({os.path.dirname(p) for p in contents(count - 1, b"")})
    print(
        f"{count} files of 1-8 KiB in {dirs} directories, durable=True, "
        f"best of {arguments.rounds} rounds"
    )
    for base in arguments.dir or ["/dev/shm", "/tmp"]:
        rounds = [
            oneRound(base, fileset, arguments.files)
            for _ in range(arguments.rounds)
        ]
        for phase in ("new", "update"):
            staging = min(r[phase][0] for r in rounds)
            applying = min(r[phase][1] for r in rounds)
            verdict = "meets" if applying < TARGET_SECONDS else "misses"
            print(
                f"{base:>9} {phase:>6}: apply {applying:6.3f} s "
                f"({count / applying:8.0f} files/s; {verdict} < "
                f"{TARGET_SECONDS:.0f} s), staging {staging:6.3f} s "
                f"({count / staging:8.0f} files/s)"
            )


if __name__ == "__main__":
    main()
