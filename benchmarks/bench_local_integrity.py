"""
Local integrity benchmark (DESIGN.md, "Targets").

Two measurements, each against a baseline taken in the same run:

 - cold: L{wazuhcluster.integrity.scanFiles} without a previous snapshot
   (every file hashed) against a plain single-core loop of C{hashlib.md5}
   over the same files, both with the files already in the page cache (they
   are read once before either is timed). Target: scan throughput at least
   80% of the baseline's.
 - warm: a rescan of unchanged small files with the previous snapshot (no
   file read). Target: 50 000 files in under 1 s.

Files are created in a temporary node home laid out like Wazuh's (group
directories, rules, decoders, lists, multigroups). The script sleeps out the
racy window (L{wazuhcluster.integrity.RACY_WINDOW_NS}) after creating files,
as files written just before a scan are deliberately hashed again.

Usage (from the repository root, installed or with PYTHONPATH=.):
python benchmarks/bench_local_integrity.py [--cold-files 2000]
[--cold-mb 400] [--warm-files 50000] [--rounds 3] [--dir DIR]
"""

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time

from twisted.python.filepath import FilePath

from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.integrity import RACY_WINDOW_NS, READ_SIZE, scanFiles

COLD_TARGET = 0.80
WARM_TARGET_SECONDS = 1.0
WARM_TARGET_FILES = 50000


def parseArguments(argv):
    """
    Parse the command line.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold-files", type=int, default=2000)
    parser.add_argument("--cold-mb", type=float, default=400.0)
    parser.add_argument("--warm-files", type=int, default=WARM_TARGET_FILES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to create homes")
    return parser.parse_args(argv)


def layoutPath(index):
    """
    A synced path for file number C{index}, spread over every item.
    """
    kind = index % 10
    if kind == 0:
        return f"etc/rules/r{index // 10 % 50}/rule{index}.xml"
    if kind == 1:
        return f"etc/decoders/decoder{index}.xml"
    if kind == 2:
        return f"etc/lists/list{index}"
    if kind == 3:
        return f"var/multigroups/{index:08x}/merged.mg"
    return f"etc/shared/group{index % 500}/file{index}.conf"


def createHome(base, count, totalBytes):
    """
    Create a node home holding C{count} synced files of C{totalBytes} in all.

    @return: C{(root FilePath, list of absolute paths)}.
    """
    root = FilePath(tempfile.mkdtemp(prefix="home-", dir=base))
    block = os.urandom(1024 * 1024)
    size = max(1, totalBytes // count)
    paths = []
    for index in range(count):
        path = os.path.join(root.path, layoutPath(index))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as stream:
            stream.write(b"%d\n" % index)
            remaining = size
            offset = index % len(block)
            while remaining > 0:
                piece = block[offset : offset + remaining]
                stream.write(piece)
                remaining -= len(piece)
                offset = 0
        paths.append(path)
    root.child("etc").child("client.keys").setContent(b"001 agent any key\n")
    paths.append(root.descendant(["etc", "client.keys"]).path)
    return root, paths


def readAll(paths):
    """
    Read every file once (fills the page cache).
    """
    for path in paths:
        with open(path, "rb") as stream:
            while stream.read(READ_SIZE):
                pass


def plainMd5(paths):
    """
    The baseline: hash every file with hashlib.md5 in one thread.
    """
    digests = []
    for path in paths:
        md5 = hashlib.md5()
        with open(path, "rb") as stream:
            while True:
                chunk = stream.read(READ_SIZE)
                if not chunk:
                    break
                md5.update(chunk)
        digests.append(md5.hexdigest())
    return digests


def timed(function, *args):
    """
    Call C{function(*args)} and return C{(seconds, result)}.
    """
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def waitRacyWindow():
    """
    Sleep until files just written are outside the racy window.
    """
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.2)


def benchCold(base, fileset, count, megabytes, rounds):
    """
    Cold scan throughput against plain md5 over the same files.
    """
    totalBytes = int(megabytes * 1024 * 1024)
    root, paths = createHome(base, count, totalBytes)
    size = sum(os.path.getsize(p) for p in paths)
    readAll(paths)
    baselines, scans = [], []
    for _ in range(rounds):
        elapsed, _ = timed(plainMd5, paths)
        baselines.append(elapsed)
        elapsed, result = timed(scanFiles, root, fileset)
        scans.append(elapsed)
        if len(result.snapshot.files) != len(paths) or result.rehashed != len(paths):
            raise SystemExit(f"cold scan found {len(result.snapshot.files)} files")
    shutil.rmtree(root.path)
    mb = size / 1e6
    baseline, scan = min(baselines), min(scans)
    print(f"cold: {len(paths)} files, {mb:.1f} MB, best of {rounds} rounds")
    print(f"  plain hashlib.md5 : {baseline:.3f} s  {mb / baseline:8.1f} MB/s")
    print(f"  scanFiles (cold)  : {scan:.3f} s  {mb / scan:8.1f} MB/s")
    print(
        f"  ratio scan/baseline throughput: {baseline / scan:.2f} "
        f"(median {statistics.median(baselines) / statistics.median(scans):.2f}; "
        f"target >= {COLD_TARGET:.2f})"
    )


def benchWarm(base, fileset, count, rounds):
    """
    Warm rescan time of unchanged small files.
    """
    root, paths = createHome(base, count, count * 200)
    waitRacyWindow()
    coldTime, first = timed(scanFiles, root, fileset)
    warmTimes = []
    previous = first.snapshot
    for _ in range(rounds):
        elapsed, result = timed(scanFiles, root, fileset, previous)
        warmTimes.append(elapsed)
        if result.rehashed or result.snapshot.digest != previous.digest:
            raise SystemExit(f"warm rescan re-hashed {result.rehashed} files")
        previous = result.snapshot
    walkTime, _ = timed(lambda: sum(len(files) for _, _, files in os.walk(root.path)))
    shutil.rmtree(root.path)
    print(f"warm: {len(paths)} small files, {rounds} rescans")
    print(f"  first scan (hash all)  : {coldTime:.3f} s")
    print(
        f"  warm rescan            : best {min(warmTimes):.3f} s, "
        f"median {statistics.median(warmTimes):.3f} s, re-hashed 0 "
        f"(target < {WARM_TARGET_SECONDS:.1f} s for {WARM_TARGET_FILES})"
    )
    print(f"  reference os.walk only : {walkTime:.3f} s")


def main(argv=None):
    """
    Run both benchmarks and print their figures.
    """
    options = parseArguments(sys.argv[1:] if argv is None else argv)
    fileset = loadClusterItems().fileset
    base = tempfile.mkdtemp(prefix="bench-integrity-", dir=options.dir)
    try:
        version = sys.version.split()[0]
        print(f"python {version}, {os.cpu_count()} CPUs, files under {base}")
        benchCold(base, fileset, options.cold_files, options.cold_mb, options.rounds)
        benchWarm(base, fileset, options.warm_files, options.rounds)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
