"""The upstream and token endpoint of the schemathesis run: every request,
any method and path, answers 200 with an OAuth2-style token, so the
`http_request` token of the run's config is fetched and refreshed for real
and `/readyz` turns ready. Binds 127.0.0.1:0 and writes its port to the
file named by its argument (nothing else to coordinate on)."""

import http.server
import json
import sys

BODY = json.dumps({"access_token": "conformance-oauth-token", "expires_in": 3600}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
