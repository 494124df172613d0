#!/usr/bin/env python3
"""Runs the reference job through each contender and prints the table.

The job: GET /stripe/v1/charges?limit=3 -> strip /stripe, add
`Authorization: Bearer sk_test_...` and `Stripe-Version`, forward over
HTTP/1.1 keep-alive to a local nginx origin that *checks both headers*
(401/400 otherwise, so a proxy that fails to inject shows as non-2xx) and
answers a 289-byte JSON. Also a 16 KiB JSON POST. One proxy worker pinned
to CPU 1; wrk and the origin pinned to CPU 0. Contenders are interleaved
within each round; medians over rounds are reported.

Proxy CPU seconds per 1k requests come from /proc/PID/stat (utime+stime)
of the proxy's worker process; peak RSS is VmHWM from /proc/PID/status.
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOKEN = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
VERSION = "2024-06-20"
PORTS = {"origin": 18180, "nginx": 18181, "haproxy": 18182, "keygate": 18183,
         "keygate-auth": 18184, "keygate-admin": 18193, "keygate-auth-admin": 18194}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def body_289():
    base = {"object": "list", "url": "/v1/charges", "has_more": False, "data": [
        {"id": "ch_3MmlLrLkdIwHu7ix0snN0B15", "object": "charge", "amount": 1099,
         "currency": "usd", "status": "succeeded", "paid": True}]}
    s = json.dumps(base, separators=(",", ":"))
    pad = 289 - len(s) - len(',"pad":""')
    base["pad"] = "x" * max(pad, 0)
    s = json.dumps(base, separators=(",", ":"))
    assert len(s) == 289, len(s)
    return s


def write(path, text):
    with open(path, "w") as f:
        f.write(text)



def write_origin_conf(work):
    """The origin: nginx answering 289 bytes only to a request carrying both
    injected headers (401/400 otherwise)."""
    body = body_289()
    write(f"{work}/origin.conf", f"""
worker_processes 1; daemon off; pid {work}/origin.pid; error_log {work}/origin.log;
events {{ worker_connections 8192; }}
http {{
  access_log off; keepalive_requests 10000000; keepalive_timeout 120s;
  client_body_temp_path {work}/o_body; proxy_temp_path {work}/o_proxy;
  fastcgi_temp_path {work}/o_fcgi; uwsgi_temp_path {work}/o_uwsgi; scgi_temp_path {work}/o_scgi;
  server {{
    listen 127.0.0.1:{PORTS['origin']} reuseport;
    location / {{
      if ($http_authorization != "Bearer {TOKEN}") {{ return 401; }}
      if ($http_stripe_version != "{VERSION}") {{ return 400; }}
      default_type application/json;
      return 200 '{body}';
    }}
  }}
}}""")


def write_nginx_conf(work, access_log, single_process=False, name="nginx"):
    """nginx as the contender proxy; `access_log` writes its combined log
    buffered (64 KiB), as a production nginx would; `single_process` runs
    the worker in the master (for valgrind and strace)."""
    log = f"access_log {work}/{name}.access.log combined buffer=64k;" if access_log else "access_log off;"
    master = "master_process off;" if single_process else ""
    write(f"{work}/{name}.conf", f"""
worker_processes 1; daemon off; {master} pid {work}/{name}.pid; error_log {work}/{name}.log;
events {{ worker_connections 8192; }}
http {{
  {log} keepalive_requests 10000000; keepalive_timeout 120s;
  client_body_temp_path {work}/n_body; proxy_temp_path {work}/n_proxy;
  fastcgi_temp_path {work}/n_fcgi; uwsgi_temp_path {work}/n_uwsgi; scgi_temp_path {work}/n_scgi;
  upstream origin {{ server 127.0.0.1:{PORTS['origin']}; keepalive 512; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx']};
    client_body_buffer_size 64k; client_max_body_size 32m;
    location /stripe/ {{
      proxy_pass http://origin/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer {TOKEN}";
      proxy_set_header Stripe-Version "{VERSION}";
    }}
  }}
}}""")
    return f"{work}/{name}.conf"


def write_keygate_conf(work, name, port, admin, auth, digest):
    """keygate doing the same job with one proxy worker. An `auth: none`
    connector is served only on a dedicated loopback port, where the whole
    path goes upstream (no `/stripe` prefix): `port` is then that one."""
    d = f"{work}/{name}"
    os.makedirs(d, exist_ok=True)
    shared, dedicated = (port + 100, f"\n    listen: 127.0.0.1:{port}") if auth == "none" else (port, "")
    write(f"{d}/keygate.yaml", f"""
server: {{ listen: 127.0.0.1:{shared}, workers: 1 }}
admin: {{ listen: 127.0.0.1:{admin} }}
tokens:
  stripe-secret: {{ value: {{ literal: "{TOKEN}" }}, prefix: Bearer, header: Authorization }}
connectors:
  stripe:
    upstream: http://127.0.0.1:{PORTS['origin']}
    tokens: [stripe-secret]
    headers: {{ Stripe-Version: "{VERSION}" }}
    auth: {auth}{dedicated}
roles: {{ caller: {{ allow: [ {{ connector: stripe }} ] }} }}
clients: {{ bench: {{ roles: [caller], keys: [ {{ name: k, sha256: "{digest}" }} ] }} }}
""")
    return f"{d}/keygate.yaml"

def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    n, unit = float(m.group(1)), m.group(2)
    return {"us": n / 1000, "ms": n, "s": n * 1000, "m": n * 60_000}[unit]


def run_wrk(url, conns, duration, headers, script=None):
    cmd = ["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        total = int(re.search(r"(\d+) requests in", out).group(1))
        p50 = to_ms(re.search(r"50%\s+(\S+)", out).group(1))
        p99 = to_ms(re.search(r"99%\s+(\S+)", out).group(1))
    except (AttributeError, ValueError):
        # A run that completed nothing: keep going, and show what wrk said.
        print(f"wrk output not understood for {url}:\n{out}", file=sys.stderr)
        return {"rps": 0.0, "total": 1, "p50": float("nan"), "p99": float("nan"),
                "non2xx": 0, "socket_errors": "run failed"}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "total": total, "p50": p50, "p99": p99,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else ""}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keygate", required=True)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 3)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 10)))
    ap.add_argument("--conns", default=os.environ.get("CONNS", "32,256"))
    args = ap.parse_args()
    conns_list = [int(c) for c in args.conns.split(",")]
    work = tempfile.mkdtemp(prefix="keygate-load-")
    procs = []

    def start(name, cmd, cpu, **kw):
        p = subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(work, name + ".err"), "w"), **kw)
        procs.append(p)
        return p

    try:
        write_origin_conf(work)
        write_nginx_conf(work, access_log=False)
        write(f"{work}/haproxy.cfg", f"""
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{PORTS['haproxy']}
  http-request set-header Authorization "Bearer {TOKEN}"
  http-request set-header Stripe-Version {VERSION}
  http-request replace-path ^/stripe(/.*) \\1
  default_backend be
backend be
  http-reuse always
  server o 127.0.0.1:{PORTS['origin']} maxconn 2000
""")
        key, digest = subprocess.run([args.keygate, "keygen"], capture_output=True, text=True,
                                     check=True).stdout.split("\n")[:2]
        digest = digest.split(": ")[1]

        def kg_conf(name, port, admin, auth):
            return write_keygate_conf(work, name, port, admin, auth, digest)

        start("origin", ["nginx", "-c", f"{work}/origin.conf", "-p", work], 0)
        wait_port(PORTS["origin"])
        nginx = start("nginx", ["nginx", "-c", f"{work}/nginx.conf", "-p", work], 1)
        haproxy = start("haproxy", ["haproxy", "-f", f"{work}/haproxy.cfg"], 1)
        # Access log off (RUST_LOG=warn), as nginx and haproxy run without logs.
        env = dict(os.environ, RUST_LOG="warn")
        kg = start("keygate", [args.keygate, "run", "-c", kg_conf("kg", PORTS["keygate"], PORTS["keygate-admin"], "none")], 1, env=env)
        kga = start("keygate-auth", [args.keygate, "run", "-c", kg_conf("kga", PORTS["keygate-auth"], PORTS["keygate-auth-admin"], "api_key")], 1, env=env)
        for p in ["nginx", "haproxy", "keygate", "keygate-auth"]:
            wait_port(PORTS[p])
        time.sleep(0.5)
        nginx_workers = children(nginx.pid) or [nginx.pid]
        pids = {"nginx": nginx_workers[0], "haproxy": haproxy.pid, "keygate": kg.pid,
                "keygate+key": kga.pid, "direct": None}
        urls = {"direct": f"http://127.0.0.1:{PORTS['origin']}/v1/charges?limit=3",
                "nginx": f"http://127.0.0.1:{PORTS['nginx']}/stripe/v1/charges?limit=3",
                "haproxy": f"http://127.0.0.1:{PORTS['haproxy']}/stripe/v1/charges?limit=3",
                # `auth: none` is served on its own port, path as is.
                "keygate": f"http://127.0.0.1:{PORTS['keygate']}/v1/charges?limit=3",
                "keygate+key": f"http://127.0.0.1:{PORTS['keygate-auth']}/stripe/v1/charges?limit=3"}
        post_lua = f"{work}/post.lua"
        write(post_lua, 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
              'wrk.body = \'{"data":"\' .. string.rep("a", 16384 - 11) .. \'"}\'\n')
        scenarios = [("GET", c, None) for c in conns_list] + [("POST16K", conns_list[0], post_lua)]
        contenders = ["direct", "nginx", "haproxy", "keygate", "keygate+key"]
        results = {}
        for rnd in range(args.rounds):
            order = contenders[rnd % len(contenders):] + contenders[:rnd % len(contenders)]
            for method, conns, script in scenarios:
                for name in order:
                    headers = []
                    if name == "direct":
                        headers = [f"Authorization: Bearer {TOKEN}", f"Stripe-Version: {VERSION}"]
                    if name == "keygate+key":
                        headers = [f"Authorization: Bearer {key}"]
                    pid = pids[name]
                    before = cpu_ticks(pid) if pid else 0
                    r = run_wrk(urls[name], conns, args.duration, headers, script)
                    r["cpu_per_1k"] = ((cpu_ticks(pid) - before) / CLK_TCK) / r["total"] * 1000 if pid else None
                    results.setdefault((name, method, conns), []).append(r)
                    print(f"round {rnd + 1} {method}@{conns} {name:12} {r['rps']:>10.0f} req/s  p99 {r['p99']:.2f} ms"
                          + (f"  cpu/1k {r['cpu_per_1k']:.4f}" if r['cpu_per_1k'] else "")
                          + (f"  non-2xx {r['non2xx']}" if r['non2xx'] else ""), file=sys.stderr, flush=True)
        rss = {n: (peak_rss_kib(p) / 1024 if p else None) for n, p in pids.items()}

        def med(name, method, conns, k):
            vals = [r[k] for r in results[(name, method, conns)] if r[k] is not None]
            return statistics.median(vals) if vals else None

        print(f"\n{args.rounds} interleaved rounds x {args.duration} s, medians. "
              f"Proxies pinned to CPU 1, wrk (1 thread) and the origin to CPU 0.\n")
        print("| contender | scenario | req/s | p50 ms | p99 ms | non-2xx | proxy CPU s/1k req | peak RSS MiB | req/s vs nginx | CPU vs nginx |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for method, conns, _ in scenarios:
            base_rps = med("nginx", method, conns, "rps")
            base_cpu = med("nginx", method, conns, "cpu_per_1k")
            for name in contenders:
                rps = med(name, method, conns, "rps")
                cpu = med(name, method, conns, "cpu_per_1k")
                non2xx = sum(r["non2xx"] for r in results[(name, method, conns)])
                print(f"| {name} | {method} @{conns} | {rps:,.0f} | {med(name, method, conns, 'p50'):.2f} | "
                      f"{med(name, method, conns, 'p99'):.2f} | {non2xx} | "
                      f"{'-' if cpu is None else f'{cpu:.4f}'} | {'-' if rss[name] is None else f'{rss[name]:.1f}'} | "
                      f"{rps / base_rps:.2f} | {'-' if cpu is None else f'{cpu / base_cpu:.2f}'} |")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
