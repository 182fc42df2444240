#!/usr/bin/env python3
"""Paired runs of one shell line under two subjects: the README's "What remains, per workload".

    bench/paired.py PAIRS WORKSPACE 'shell line' A B

Each pair runs the line under A and under B, back to back, in random order; the answer is the
median of the differences (B - A, in ms) with its bootstrap 95% interval. The line runs in
WORKSPACE with `bash -c`. A subject is one of:

    bare                                  the line itself
    bwrap                                 bubblewrap with the launch bench's binds and
                                          offline-tool's seccomp programs, as exported by
                                          $CORDON (default: cordon in PATH; see
                                          xtask/src/bench/launch.rs), and read-only binds of
                                          $PAIRED_RO (':'-separated)
    CORDON[:PROFILE[:VAR=VALUE,...]]      `CORDON run --no-daemon --quiet --profile PROFILE
                                          --workspace WORKSPACE`, with those variables set
                                          (CORDON_ABLATE=landlock with a build patched by
                                          bench/ablation.patch)

Run as root, on a machine left otherwise idle.
"""
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

# What must live as long as the harness (the seccomp programs bwrap loads).
KEPT = []


def subject(spec, line, ws):
    if spec == "bare":
        return ["/bin/bash", "-c", line], None, []
    if spec == "bwrap":
        # Removed when the harness exits; bwrap reads the programs at each run.
        out = tempfile.TemporaryDirectory(prefix="paired-seccomp-")
        KEPT.append(out)
        out = out.name
        listed = subprocess.run(
            [os.environ.get("CORDON", "cordon"), "profile", "seccomp", "offline-tool",
             "--out", out],
            check=True, capture_output=True, text=True,
        ).stdout.split()
        # bwrap reads each program to its end: a descriptor of its own for each run.
        argv = ["bwrap"]
        fds = [(path, 100 + i) for i, path in enumerate(listed)]
        for _, fd in fds:
            argv += ["--add-seccomp-fd", str(fd)]
        argv += ("--unshare-all --die-with-parent --ro-bind /usr /usr --symlink usr/bin /bin "
                 "--symlink usr/lib /lib --symlink usr/lib64 /lib64 --ro-bind /etc /etc "
                 "--ro-bind /sys/devices/system/cpu /sys/devices/system/cpu --proc /proc "
                 "--dev /dev --tmpfs /tmp").split()
        for path in filter(None, os.environ.get("PAIRED_RO", "").split(":")):
            argv += ["--ro-bind", path, path]
        argv += ["--bind", ws, ws, "--chdir", ws, "/bin/bash", "-c", line]
        return argv, None, fds
    program, _, rest = spec.partition(":")
    profile, _, variables = rest.partition(":")
    env = dict(os.environ)
    env.update(kv.split("=", 1) for kv in variables.split(",") if kv)
    argv = [program, "run", "--no-daemon", "--quiet", "--profile", profile or "offline-tool",
            "--workspace", ws, "--", "/bin/bash", "-c", line]
    return argv, env, []


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    pairs, ws, line = int(sys.argv[1]), os.path.realpath(sys.argv[2]), sys.argv[3]
    runs = []
    for spec in sys.argv[4:6]:
        argv, env, fds = subject(spec, line, ws)

        def run(argv=argv, env=env, fds=fds, spec=spec):
            opened = []
            for path, number in fds:
                fd = os.open(path, os.O_RDONLY)
                os.dup2(fd, number, inheritable=True)
                os.close(fd)
                opened.append(number)
            start = time.perf_counter()
            done = subprocess.run(argv, cwd=ws, env=env, pass_fds=opened,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for number in opened:
                os.close(number)
            if done.returncode != 0:
                sys.exit(f"{spec}: the line failed ({done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
            return (time.perf_counter() - start) * 1000
        run()  # a warm-up each
        runs.append(run)
    a, b = runs
    differences, times_a, times_b = [], [], []
    for _ in range(pairs):
        if random.random() < 0.5:
            ta = a()
            tb = b()
        else:
            tb = b()
            ta = a()
        differences.append(tb - ta)
        times_a.append(ta)
        times_b.append(tb)
    medians = sorted(statistics.median(random.choices(differences, k=len(differences)))
                     for _ in range(2000))
    print(f"B - A: {statistics.median(differences):+.1f} ms "
          f"[{medians[50]:+.1f}, {medians[1949]:+.1f}] "
          f"(A {statistics.median(times_a):.1f} ms, B {statistics.median(times_b):.1f} ms, "
          f"{pairs} pairs)")


if __name__ == "__main__":
    main()
