"""A webhook receiver written from the Bellwether webhook documentation alone.

It verifies X-Bellwether-Signature with the documentation's own Python function, parses the
payload and checks it against the documentation's payload structure and examples. It answers
200 when both hold, 401 for a bad signature, 422 for a payload it could not use, and prints one
JSON line per request on stdout (the test reads them).

Usage: python3 bellwether_receiver.py <secret>   (prints "listening <port>" first)
"""
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


# From the documentation, "Verifying in Python", unchanged.
def verify_webhook_signature(payload: bytes, signature: str, secret: str) -> bool:
    expected = 'sha256=' + hmac.new(
        secret.encode('utf-8'),
        payload,
        hashlib.sha256
    ).hexdigest()

    return hmac.compare_digest(signature, expected)


# The documentation's payloads: every field of its examples, with the example's JSON type.
DOCUMENTED = {
    'baseline.uploaded': {'version': int, 'hash': str, 'toolCount': int, 'serverName': str, 'cliVersion': str},
    'baseline.drift_detected': {'fromVersion': int, 'toVersion': int, 'severity': str, 'changes': dict},
    'baseline.security_finding': {'version': int, 'findings': list},
}
CHANGES = {'toolsAdded': list, 'toolsRemoved': list, 'toolsModified': list, 'breakingCount': int, 'warningCount': int}
FINDING = {'severity': str, 'category': str, 'tool': str, 'description': str}


def problems_of(envelope):
    problems = []
    for key, kind in (('event', str), ('timestamp', str), ('project', dict), ('data', dict)):
        if not isinstance(envelope.get(key), kind):
            problems.append(f'{key} missing or not {kind.__name__}')
    if problems:
        return problems
    project = envelope['project']
    if not isinstance(project.get('id'), str) or not isinstance(project.get('name'), str):
        problems.append('project.id / project.name missing')
    fields = DOCUMENTED.get(envelope['event'])
    data = envelope['data']
    if fields is None:
        return problems  # a type the documentation does not describe: the envelope is all we know
    for key, kind in fields.items():
        value = data.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append(f'data.{key} missing or not {kind.__name__}')
    if envelope['event'] == 'baseline.drift_detected' and isinstance(data.get('changes'), dict):
        for key, kind in CHANGES.items():
            if not isinstance(data['changes'].get(key), kind):
                problems.append(f'data.changes.{key} missing or not {kind.__name__}')
    if envelope['event'] == 'baseline.security_finding' and isinstance(data.get('findings'), list):
        for i, finding in enumerate(data['findings']):
            for key, kind in FINDING.items():
                if not isinstance(finding, dict) or not isinstance(finding.get(key), kind):
                    problems.append(f'data.findings[{i}].{key} missing or not {kind.__name__}')
    return problems


class Handler(BaseHTTPRequestHandler):
    secret = ''

    def do_POST(self):
        payload = self.rfile.read(int(self.headers.get('Content-Length', '0')))
        signature = self.headers.get('X-Bellwether-Signature', '')
        record = {'path': self.path, 'event': self.headers.get('X-Bellwether-Event'), 'delivery': self.headers.get('X-Bellwether-Delivery')}
        if not verify_webhook_signature(payload, signature, self.secret):
            status, record['result'] = 401, 'invalid signature'
        else:
            try:
                envelope = json.loads(payload)
                problems = problems_of(envelope) if isinstance(envelope, dict) else ['not a JSON object']
            except ValueError as error:
                problems = [f'not JSON: {error}']
            status, record['result'] = (422, '; '.join(problems)) if problems else (200, 'ok')
        self.send_response(status)
        self.send_header('Content-Type', 'text/plain')
        self.end_headers()
        self.wfile.write(record['result'].encode('utf-8'))
        print(json.dumps(record), flush=True)

    def log_message(self, *args):
        pass


if __name__ == '__main__':
    Handler.secret = sys.argv[1]
    server = HTTPServer(('127.0.0.1', 0), Handler)
    print(f'listening {server.server_address[1]}', flush=True)
    server.serve_forever()
