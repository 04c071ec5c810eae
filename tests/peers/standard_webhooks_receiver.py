"""A webhook receiver that verifies every request with the Standard Webhooks
reference library (PyPI `standardwebhooks`), as an application would: 204 when
the signature verifies, 401 when it does not. Prints one JSON line per request
(what it got and whether it verified) for the test that started it.

Usage: standard_webhooks_receiver.py PORT, with the secret (whsec_...) in
STANDARD_WEBHOOKS_SECRET.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

WEBHOOK = Webhook(os.environ["STANDARD_WEBHOOKS_SECRET"])


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k: v for k, v in self.headers.items()}
        try:
            event = WEBHOOK.verify(body, headers)
            verified, reason = True, None
        except WebhookVerificationError as error:
            event, verified, reason = None, False, str(error)
        print(
            json.dumps(
                {
                    "verified": verified,
                    "reason": reason,
                    "id": headers.get("webhook-id") or headers.get("Webhook-Id"),
                    "event": event,
                }
            ),
            flush=True,
        )
        self.send_response(204 if verified else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
