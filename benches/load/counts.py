#!/usr/bin/env python3
"""Instructions and syscalls per request, keygate vs nginx (issue 15).

Wall-clock CPU on shared machines drifts 13-30 % between rounds; these
counts do not. Each contender serves the reference job of compare.py
(GET /stripe/v1/charges?limit=3, inject Authorization + Stripe-Version,
keep-alive to a local nginx origin that checks both):

- keygate, access log on (its default: RUST_LOG=info, stdout to a file)
- keygate, access log off (RUST_LOG=warn)
- nginx, `access_log ... buffer=64k` to a file
- nginx, `access_log off`

Instructions: the contender runs under `valgrind --tool=callgrind`
(keygate built with the `profiling` profile, so functions keep their
names; nginx in one process, `master_process off`). After a warm-up,
`callgrind_control -z` zeroes the counters, wrk drives a fixed run, and
`callgrind_control -d` dumps; Ir (all threads) / requests served.

Syscalls: the contender runs natively; after a warm-up `strace -f -c`
attaches to every thread, wrk drives a fixed run, strace detaches; calls /
requests served.

Binds only 127.0.0.1; stops only the PIDs it started.
"""
import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from compare import (PORTS, TOKEN, VERSION, run_wrk, wait_port, write_keygate_conf,
                     write_nginx_conf, write_origin_conf)

URL = "/stripe/v1/charges?limit=3"


def contenders(work, keygate, key, digest):
    """name -> (command, env, port, wrk headers)."""
    kg = write_keygate_conf(work, "kg", PORTS["keygate-auth"], PORTS["keygate-auth-admin"],
                            "api_key", digest)
    headers = [f"Authorization: Bearer {key}"]
    on = dict(os.environ, RUST_LOG="info")
    off = dict(os.environ, RUST_LOG="warn")
    return {
        "keygate (log on)": ([keygate, "run", "-c", kg], on, PORTS["keygate-auth"], headers),
        "keygate (log off)": ([keygate, "run", "-c", kg], off, PORTS["keygate-auth"], headers),
        "nginx (log on, buffer=64k)": (
            ["nginx", "-c", write_nginx_conf(work, True, True, "nginx-log"), "-p", work],
            None, PORTS["nginx"], []),
        "nginx (log off)": (
            ["nginx", "-c", write_nginx_conf(work, False, True), "-p", work],
            None, PORTS["nginx"], []),
    }


def launch(cmd, env, work, name, wrapper=()):
    out = open(os.path.join(work, re.sub(r"\W+", "_", name) + ".out"), "w")
    return subprocess.Popen(["taskset", "-c", "1", *wrapper, *cmd], env=env, stdout=out,
                            stderr=subprocess.STDOUT, cwd=work)


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def drive(port, headers, seconds, conns):
    r = run_wrk(f"http://127.0.0.1:{port}{URL}", conns, seconds, headers)
    if r["non2xx"] or r["socket_errors"]:
        raise SystemExit(f"port {port}: {r['non2xx']} non-2xx, errors {r['socket_errors']!r}")
    return r["total"]


def instructions(name, spec, work, args):
    cmd, env, port, headers = spec
    out = os.path.join(work, "cg." + re.sub(r"\W+", "_", name))
    p = launch(cmd, env, work, name, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"])
    try:
        wait_port(port, timeout=180)
        drive(port, headers, args.warmup, args.conns)
        subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True, capture_output=True)
        served = drive(port, headers, args.duration, args.conns)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, capture_output=True)
        time.sleep(1)
        dumps = sorted(glob.glob(f"{out}.{p.pid}.*"), key=os.path.getmtime)
        if not dumps:
            raise SystemExit(f"{name}: no callgrind dump")
        total = 0
        with open(dumps[-1]) as f:
            for line in f:
                m = re.match(r"(?:totals|summary):\s+(\d+)", line)
                if m:
                    total = int(m.group(1))
        return total / served, served, dumps[-1]
    finally:
        stop(p)


def syscalls(name, spec, work, args):
    cmd, env, port, headers = spec
    p = launch(cmd, env, work, name)
    try:
        wait_port(port, timeout=30)
        drive(port, headers, args.warmup, args.conns)
        tids = os.listdir(f"/proc/{p.pid}/task")
        out = os.path.join(work, "strace." + re.sub(r"\W+", "_", name))
        tracer = subprocess.Popen(["strace", "-f", "-c", "-o", out]
                                  + [a for t in tids for a in ("-p", t)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        served = drive(port, headers, args.duration, args.conns)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        calls = 0
        by_name = {}
        with open(out) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[0][0].isdigit():
                    by_name[parts[-1]] = int(parts[3])
                if parts and parts[-1] == "total":
                    calls = int(parts[3])
        by_name.pop("total", None)
        return calls / served, served, by_name
    finally:
        stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keygate", required=True, help="the release build, as shipped")
    ap.add_argument("--profiled", help="keygate built with --profile profiling, for --top")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 5)))
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--conns", type=int, default=int(os.environ.get("CONNS", 8)))
    ap.add_argument("--top", type=int, default=int(os.environ.get("TOP", 0)),
                    help="also print keygate's top N functions by self Ir")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="keygate-counts-")
    key, digest = subprocess.run([args.keygate, "keygen"], capture_output=True, text=True,
                                 check=True).stdout.split("\n")[:2]
    digest = digest.split(": ")[1]
    write_origin_conf(work)
    origin = subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", f"{work}/origin.conf", "-p", work],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = {}
    try:
        wait_port(PORTS["origin"])
        for name, spec in contenders(work, args.keygate, key, digest).items():
            ir, n1, dump = instructions(name, spec, work, args)
            sc, n2, by_name = syscalls(name, spec, work, args)
            rows[name] = (ir, sc, n1, n2, by_name, dump)
            print(f"{name:28} {ir:>10,.0f} Ir/req ({n1} req)  {sc:6.2f} syscalls/req ({n2} req)",
                  file=sys.stderr, flush=True)
    finally:
        stop(origin)

    def ratio(a, b, i):
        return rows[a][i] / rows[b][i]

    print(f"\nwrk -c{args.conns} -d{args.duration}s after a {args.warmup} s warm-up; "
          f"proxy on CPU 1, wrk and origin on CPU 0.\n")
    print("| contender | instructions / request | syscalls / request | vs nginx (same log setting) |")
    print("| --- | --- | --- | --- |")
    pairs = {"keygate (log on)": "nginx (log on, buffer=64k)", "keygate (log off)": "nginx (log off)"}
    for name, (ir, sc, *_rest) in rows.items():
        vs = pairs.get(name)
        cmp_ = f"{ratio(name, vs, 0):.2f}x Ir, {ratio(name, vs, 1):.2f}x syscalls" if vs else "-"
        print(f"| {name} | {ir:,.0f} | {sc:.2f} | {cmp_} |")
    for name in pairs:
        top = sorted(rows[name][4].items(), key=lambda kv: -kv[1])[:6]
        print(f"\n{name} syscalls per request: "
              + ", ".join(f"{k} {v / rows[name][3]:.2f}" for k, v in top))
    if args.top and args.profiled:
        # Release code inlines across crates (LTO); the profiling build keeps
        # function boundaries, so its counts are higher but attributable.
        origin = subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", f"{work}/origin.conf", "-p", work],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(PORTS["origin"])
            spec = contenders(work, args.profiled, key, digest)["keygate (log on)"]
            ir, _, dump = instructions("profiled keygate (log on)", spec, work, args)
        finally:
            stop(origin)
        print(f"\nkeygate (log on), profiling build ({ir:,.0f} Ir/req), top {args.top} functions by self Ir:\n")
        ann = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", dump],
                             capture_output=True, text=True).stdout
        # Self cost only: drop the totals and the start-up frames that
        # callgrind_annotate lists with the whole program under them.
        lines = [l for l in ann.splitlines()
                 if (m := re.match(r"\s*[\d,]+ \(\s*([\d.]+)%\)", l)) and float(m.group(1)) < 50]
        print("\n".join(lines[:args.top]))


if __name__ == "__main__":
    main()
