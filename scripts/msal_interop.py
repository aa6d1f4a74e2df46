#!/usr/bin/env python3
"""MSAL for Python interop check against a running entra-emulator.

Drives the *unmodified* MSAL Python library (ConfidentialClientApplication +
acquire_token_for_client) against the emulator with a client secret and with
certificate credentials, verifies the returned access token's RS256 signature
against the emulator's published JWKS, and checks its claims.

Usage (MSAL is not in the system Python, use a venv):

    python3 -m venv /tmp/msal-venv && /tmp/msal-venv/bin/pip install msal
    MSAL_INTEROP_CLIENT_SECRET='...' /tmp/msal-venv/bin/python scripts/msal_interop.py \
        --authority-host https://localhost:8443 --ca-file dev-ca.pem \
        --cert-file client-cert.pem --key-file client-key.pem

Output: one `PASS <name>` / `FAIL <name>: <reason>` line per check, then
`N passed, M failed`; the exit status is 1 if anything failed. Access tokens,
client assertions and secrets are never printed.

---------------------------------------------------------------------------
What MSAL Python does, read from the msal 1.39.0 source
(file:line refer to site-packages/msal/ of that version)
---------------------------------------------------------------------------
Instance discovery (authority = https://localhost:PORT/<tenant-guid>,
validate_authority left at True, instance_discovery left ON):

* authority.py:45-51  `_get_instance_discovery_endpoint(instance)` is hard-coded
  to https://login.microsoftonline.com/common/discovery/instance for any host
  that is not in WELL_KNOWN_AUTHORITY_HOSTS (authority.py:19-33).
* authority.py:158-160 that default applies only when instance_discovery is
  None or True. ANY OTHER TRUTHY VALUE IS USED AS-IS AS THE DISCOVERY URL, so
  `instance_discovery="https://localhost:PORT/common/discovery/instance"` is
  supported (the docstring at application.py:633 calls the parameter boolean,
  but the code at authority.py:142-146 documents the URL form). False disables
  discovery; so does validate_authority=False (authority.py:156,161-162).
* authority.py:163-167 + 283-288: one GET to that URL with query parameters
  `authorization_endpoint=https://<host><path>/oauth2/v2.0/authorize` and
  `api-version=1.0` (NOT 1.1). <host> is urlparse().hostname (authority.py:149
  via canonicalize at :262-274), i.e. lower-cased and WITHOUT THE PORT, so the
  emulator receives authorization_endpoint=https://localhost/<tenant>/oauth2/v2.0/authorize.
  The HTTP status is ignored; the body is json-parsed and only two fields are
  read (authority.py:168-176): `error` (== "invalid_instance" -> ValueError)
  and `tenant_discovery_endpoint` (KeyError if absent). `metadata` is NOT read
  on this path.
* authority.py:97-119 + 290-306: GET tenant_discovery_endpoint (exactly the URL
  the emulator returned); must be HTTP 200 JSON. Required keys:
  `authorization_endpoint`, `token_endpoint`; optional: `issuer`,
  `device_authorization_endpoint`. The tenant (token-cache "realm") is the
  first path segment of token_endpoint.
* application.py:1455-1480 + 1689: ONLY WHEN A TOKEN REQUEST RETURNS AN ERROR,
  `_acquire_token_silent_with_error` looks up authority aliases via
  `_get_instance_metadata`, which IGNORES the custom instance_discovery URL and
  always GETs https://login.microsoftonline.com/common/discovery/instance
  ?api-version=1.1&authorization_endpoint=https://login.microsoftonline.com/common/oauth2/authorize,
  then raise_for_status() and reads `metadata[*].aliases`. Offline, that raises
  a ConnectionError out of acquire_token_for_client() and the error response
  is lost. The wrong-secret check below therefore passes MSAL an http_client
  (a requests.Session trusting the CA) that answers exactly that one URL
  locally with the public-cloud alias metadata that login.microsoftonline.com
  itself returns ("localhost" is in no alias group -> no aliases), forwards
  emulator-bound requests unchanged and refuses every other host. Nothing the
  emulator can serve changes this; it is client-side MSAL behaviour.

Token request (oauth2cli/oauth2.py:230-300, application.py:917-996):
* POST <token_endpoint>, form body: client_id, grant_type=client_credentials,
  scope (space-joined), client_info=1 (always sent, application.py:929) and
  either client_secret (IN THE BODY, never HTTP Basic: application.py:996, the
  Basic branch at oauth2.py:278 is unused by MSAL) or client_assertion_type +
  client_assertion. Headers: Accept: application/json, x-client-sku,
  x-client-ver, x-client-os, x-ms-lib-capability, client-request-id,
  x-client-current-telemetry, x-client-last-telemetry.
* Response: json-parsed whatever the status (>=500 raises). On success the
  token cache (token_cache.py:440-464) uses `expires_in` (int or numeric
  string; default 600), `ext_expires_in`, `token_type`, optional `refresh_in`,
  and `scope` if present (oauth2.py:880-887): a `scope` in the response
  REPLACES the requested scope as the cache key, so it must contain
  "<app-id-uri>/.default" or later cache look-ups miss.
* Cache hit rule (application.py:1753-1778): an AT with less than 5 minutes
  left is treated as expired, so expires_in must exceed 300 for the second
  acquire_token_for_client() to be served from cache. Results carry
  `token_source` = "identity_provider" | "cache" (application.py:288-291,
  1770, 1830).

Certificate credential forms (application.py:936-993, oauth2cli/assertion.py):
* {"private_key": PEM, "thumbprint": sha1-hex}: RS256, header x5t, no x5c.
* {"private_key": PEM, "public_certificate": cert-PEM} without "thumbprint"
  (msal >= 1.35): PS256, header x5t#S256, plus x5c. There is NO
  "thumbprint_sha256" key in this version.
* {"private_key_pfx_path": path} (msal >= 1.29): PS256, x5t#S256, no x5c
  (x5c only with "public_certificate": True).
* x5t / x5t#S256 are urlsafe base64 WITH "=" padding (oauth2cli/assertion.py:18-19:
  SHA-1 -> 28 chars ending "=", SHA-256 -> 44 chars ending "=").
* x5c entries are the PEM body lines joined with "\n" (application.py:116-121)
  - base64 with embedded newlines.
* Assertion payload (oauth2cli/assertion.py:110-122): aud = token_endpoint from the
  discovery document, iss = sub = client_id, jti = uuid4, exp = iat + 600,
  no nbf. exp and iat are JSON FLOATS (time.time(), not integers). Header also
  has typ=JWT (PyJWT). Built via PyJWT.

CA trust: `verify=<ca-file>` on the application is copied to the
requests.Session that MSAL creates (application.py:703-720); it is ignored if
you pass your own http_client (then set session.verify yourself).
CAVEAT: requests (sessions.py merge_environment_settings, requests 2.34.2)
lets $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE override Session.verify whenever the
per-request verify is None, which is always the case for MSAL. With either
variable set (as on Nix-based machines) MSAL's verify= is silently ignored and
TLS to the emulator fails with CERTIFICATE_VERIFY_FAILED. This script removes
both variables from its own environment before building any application.
"""

import argparse
import base64
import json
import logging
import os
import secrets
import ssl
import sys
import tempfile
import time
import urllib.parse
import urllib.request

try:
    import msal
    import requests
except ImportError as exc:  # pragma: no cover - environment problem
    sys.exit(
        "msal_interop.py needs MSAL for Python (%s). Install it with:\n"
        "  python3 -m venv /tmp/msal-venv && /tmp/msal-venv/bin/pip install msal\n"
        "and run this script with /tmp/msal-venv/bin/python" % exc)

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

SECRET_ENV = "MSAL_INTEROP_CLIENT_SECRET"
AAD_INVALID_CLIENT_SECRET = 7000215

# What https://login.microsoftonline.com/common/discovery/instance returns for
# the public cloud. Used only to stand in for that host in MSAL's error-path
# alias lookup (see module docstring); "localhost" is deliberately not in it.
PUBLIC_CLOUD_INSTANCE_METADATA = {
    "tenant_discovery_endpoint":
        "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
    "api-version": "1.1",
    "metadata": [{
        "preferred_network": "login.microsoftonline.com",
        "preferred_cache": "login.windows.net",
        "aliases": ["login.microsoftonline.com", "login.windows.net",
                    "login.microsoft.com", "sts.windows.net"],
    }],
}
MSAL_HARDCODED_DISCOVERY = "https://login.microsoftonline.com/common/discovery/instance"


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------
class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, name):
        self.passed += 1
        print("PASS %s" % name, flush=True)

    def fail(self, name, reason):
        self.failed += 1
        print("FAIL %s: %s" % (name, reason), flush=True)

    def check(self, name, condition, reason):
        if condition:
            self.ok(name)
        else:
            self.fail(name, reason)
        return condition


def describe_error(result):
    """Error fields of an MSAL result dict; never includes tokens."""
    if not isinstance(result, dict):
        return "no result (%r)" % type(result).__name__
    return "error=%r error_description=%r error_codes=%r" % (
        result.get("error"), result.get("error_description"),
        result.get("error_codes"))


# --------------------------------------------------------------------------
# Observing MSAL's HTTP traffic (without touching MSAL): urllib3 logs every
# request it sends at DEBUG level; we capture those records silently.
# --------------------------------------------------------------------------
class RequestLog(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.requests = []  # (scheme, host, port, method, path_and_query, status)

    def emit(self, record):
        args = record.args
        if isinstance(args, tuple) and len(args) == 8 and record.msg.startswith("%s://"):
            scheme, host, port, method, url, _ver, status, _len = args
            self.requests.append((scheme, str(host), str(port), method, url, status))

    def reset(self):
        self.requests = []


def install_request_log():
    handler = RequestLog()
    logger = logging.getLogger("urllib3.connectionpool")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # keep it quiet
    logger.addHandler(handler)
    return handler


# --------------------------------------------------------------------------
# JWT helpers
# --------------------------------------------------------------------------
def b64url_decode(part):
    part = part.strip()
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def split_jwt(token):
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("access token is not a compact JWS (%d parts)" % len(parts))
    header = json.loads(b64url_decode(parts[0]))
    payload = json.loads(b64url_decode(parts[1]))
    signing_input = (parts[0] + "." + parts[1]).encode("ascii")
    signature = b64url_decode(parts[2])
    return header, payload, signing_input, signature


def b64url_uint(value):
    return int.from_bytes(b64url_decode(value), "big")


class Emulator:
    """Plain (non-MSAL) access to the emulator's discovery document and JWKS."""

    def __init__(self, host, tenant, ca_file):
        self.host = host
        self.tenant = tenant
        self.ssl = ssl.create_default_context(cafile=ca_file)
        self._jwks = None

    def get_json(self, url):
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, context=self.ssl, timeout=30) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def jwks(self, refresh=False):
        if self._jwks is None or refresh:
            conf = self.get_json("%s/%s/v2.0/.well-known/openid-configuration"
                                 % (self.host, self.tenant))
            jwks_uri = conf.get("jwks_uri")
            if not jwks_uri:
                raise ValueError("openid-configuration has no jwks_uri")
            self._jwks = self.get_json(jwks_uri)
        return self._jwks

    def verify_signature(self, token):
        """Returns (header, payload) if the RS256 signature verifies, else raises."""
        header, payload, signing_input, signature = split_jwt(token)
        if header.get("alg") != "RS256":
            raise ValueError("header alg is %r, expected 'RS256'" % header.get("alg"))
        kid = header.get("kid")
        if not kid:
            raise ValueError("header has no kid")
        key = None
        for refresh in (False, True):  # refetch once in case keys rolled
            keys = self.jwks(refresh=refresh).get("keys", [])
            key = next((k for k in keys if k.get("kid") == kid), None)
            if key:
                break
        if key is None:
            raise ValueError("kid %r not found in JWKS" % kid)
        if key.get("kty") != "RSA":
            raise ValueError("JWKS key %r has kty %r" % (kid, key.get("kty")))
        public_key = rsa.RSAPublicNumbers(
            b64url_uint(key["e"]), b64url_uint(key["n"])).public_key()
        try:
            public_key.verify(signature, signing_input,
                              padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise ValueError("RS256 signature does not verify with JWKS key %r" % kid)
        return header, payload


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------
def check_discovery_traffic(report, name, log, host_netloc):
    """MSAL's instance discovery must have gone to the emulator, and nothing
    may have gone anywhere else."""
    host, _, port = host_netloc.rpartition(":")
    if not host:
        host, port = host_netloc, "443"
    foreign = sorted({"%s:%s" % (h, p) for _s, h, p, _m, _u, _st in log.requests
                      if (h.lower(), p) != (host.lower(), port)})
    discovery = [(m, u, st) for _s, h, p, m, u, st in log.requests
                 if (h.lower(), p) == (host.lower(), port)
                 and u.split("?")[0] == "/common/discovery/instance"]
    if not log.requests:
        report.fail(name, "could not observe MSAL's HTTP requests (urllib3 debug log empty)")
    elif foreign:
        report.fail(name, "MSAL contacted hosts other than the emulator: %s" % ", ".join(foreign))
    elif not discovery:
        report.fail(name, "MSAL made no GET /common/discovery/instance to the emulator")
    elif any(st != 200 for _m, _u, st in discovery):
        report.fail(name, "emulator answered instance discovery with HTTP %s"
                    % ",".join(str(st) for _m, _u, st in discovery))
    else:
        report.ok(name)


def check_claims(report, name, payload, args, client_id, azpacr, roles):
    host = args.authority_host
    now = time.time()

    def claim(label, condition, reason):
        report.check("%s: claim %s" % (name, label), condition, reason)

    def got(key):
        return "got %r" % (payload.get(key, "<absent>"),)

    claim("aud", payload.get("aud") == args.api_client_id,
          "%s, expected %r (v2 token: aud is the API's client id)" % (got("aud"), args.api_client_id))
    expected_iss = "%s/%s/v2.0" % (host, args.tenant)
    claim("iss", payload.get("iss") == expected_iss, "%s, expected %r" % (got("iss"), expected_iss))
    claim("tid", payload.get("tid") == args.tenant, "%s, expected %r" % (got("tid"), args.tenant))
    claim("azp", payload.get("azp") == client_id, "%s, expected %r" % (got("azp"), client_id))
    claim("azpacr", payload.get("azpacr") == azpacr, "%s, expected %r" % (got("azpacr"), azpacr))
    claim("ver", payload.get("ver") == "2.0", "%s, expected '2.0'" % got("ver"))
    claim("idtyp", payload.get("idtyp") == "app", "%s, expected 'app'" % got("idtyp"))
    claim("oid==sub", bool(payload.get("oid")) and payload.get("oid") == payload.get("sub"),
          "oid=%r sub=%r" % (payload.get("oid"), payload.get("sub")))
    claim("no scp", "scp" not in payload, "app-only token carries scp=%r" % (payload.get("scp"),))
    got_roles = payload.get("roles")
    claim("roles", isinstance(got_roles, list) and sorted(got_roles) == sorted(roles),
          "%s, expected %r" % (got("roles"), roles))
    exp, iat = payload.get("exp"), payload.get("iat")
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (exp, iat))
    claim("exp", numeric and exp > now,
          "exp=%r iat=%r now=%d" % (exp, iat, now) if not numeric
          else "exp=%r is not in the future (now=%d)" % (exp, now))
    claim("lifetime", numeric and 300 <= exp - iat <= 6000,
          "exp=%r iat=%r" % (exp, iat) if not numeric
          else "exp-iat=%r, expected 300..6000" % (exp - iat))


def run_success_case(report, args, emulator, log, name, client_id, credential,
                     azpacr, roles):
    """Build the app exactly as an ordinary MSAL user would, get a token, and
    check discovery traffic, the response, the signature, claims and cache."""
    scope = "%s/.default" % args.api_app_id_uri
    discovery_url = "%s/common/discovery/instance" % args.authority_host
    log.reset()
    try:
        app = msal.ConfidentialClientApplication(
            client_id,
            authority="%s/%s" % (args.authority_host, args.tenant),
            client_credential=credential,
            verify=args.ca_file,
            instance_discovery=discovery_url,
        )
        result = app.acquire_token_for_client(scopes=[scope])
    except Exception as exc:  # MSAL raises on discovery / transport failures
        report.fail("%s: acquire token" % name,
                    "MSAL raised %s: %s" % (type(exc).__name__, exc))
        return
    check_discovery_traffic(report, "%s: instance discovery via emulator" % name,
                            log, urllib.parse.urlsplit(args.authority_host).netloc)

    if not (isinstance(result, dict) and result.get("access_token")):
        report.fail("%s: acquire token" % name, describe_error(result))
        return
    report.ok("%s: acquire token" % name)
    token = result["access_token"]

    report.check("%s: token_type Bearer" % name, result.get("token_type") == "Bearer",
                 "token_type=%r" % (result.get("token_type"),))
    expires_in = result.get("expires_in")
    report.check("%s: expires_in > 0" % name,
                 isinstance(expires_in, int) and expires_in > 0,
                 "expires_in=%r" % (expires_in,))
    report.check("%s: token_source identity_provider" % name,
                 result.get("token_source") == "identity_provider",
                 "token_source=%r" % (result.get("token_source"),))

    try:
        _header, payload = emulator.verify_signature(token)
    except Exception as exc:
        report.fail("%s: signature (JWKS, RS256)" % name, "%s: %s" % (type(exc).__name__, exc))
        try:  # still report claims, clearly marked as from an unverified token
            _h, payload, _s, _sig = split_jwt(token)
        except Exception:
            return
        name = name + " (UNVERIFIED)"
    else:
        report.ok("%s: signature (JWKS, RS256)" % name)
    check_claims(report, name, payload, args, client_id, azpacr, roles)

    try:
        second = app.acquire_token_for_client(scopes=[scope])
    except Exception as exc:
        report.fail("%s: second call served from MSAL cache" % name,
                    "MSAL raised %s: %s" % (type(exc).__name__, exc))
        return
    if not (isinstance(second, dict) and second.get("access_token")):
        report.fail("%s: second call served from MSAL cache" % name, describe_error(second))
    elif second.get("token_source") != "cache":
        report.fail("%s: second call served from MSAL cache" % name,
                    "token_source=%r; first response had expires_in=%r scope=%r "
                    "(MSAL treats tokens with < 300 s left as expired, and a 'scope' "
                    "in the token response replaces the cache key, so it must contain %r)"
                    % (second.get("token_source"), result.get("expires_in"),
                       result.get("scope", "<absent>"), scope))
    else:
        report.check("%s: second call served from MSAL cache" % name,
                     second["access_token"] == token,
                     "cache returned a different access token")


class EmulatorOnlySession(requests.Session):
    """requests.Session for MSAL's http_client in the wrong-secret check.

    Forwards requests to the emulator unchanged, answers MSAL's hard-coded
    error-path alias lookup (application.py:1455-1467) with the public-cloud
    metadata login.microsoftonline.com would return, and refuses any other
    host, so nothing leaves the machine.
    """

    def __init__(self, emulator_netloc, ca_file):
        super().__init__()
        self.verify = ca_file
        adapter = requests.adapters.HTTPAdapter(max_retries=1)  # as MSAL does
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self._emulator_netloc = emulator_netloc.lower()
        self.alias_lookups = 0

    def request(self, method, url, *args, **kwargs):
        parts = urllib.parse.urlsplit(url)
        if parts.netloc.lower() == self._emulator_netloc:
            return super().request(method, url, *args, **kwargs)
        if method.upper() == "GET" and url.split("?")[0] == MSAL_HARDCODED_DISCOVERY:
            self.alias_lookups += 1
            resp = requests.models.Response()
            resp.status_code = 200
            resp.url = url
            resp.headers["Content-Type"] = "application/json"
            resp._content = json.dumps(PUBLIC_CLOUD_INSTANCE_METADATA).encode("utf-8")
            resp.encoding = "utf-8"
            return resp
        raise requests.exceptions.ConnectionError(
            "msal_interop: refusing non-emulator request %s %s://%s%s"
            % (method, parts.scheme, parts.netloc, parts.path))


def run_wrong_secret_case(report, args):
    name = "secret-wrong: invalid_client"
    session = EmulatorOnlySession(
        urllib.parse.urlsplit(args.authority_host).netloc, args.ca_file)
    try:
        app = msal.ConfidentialClientApplication(
            args.secret_client_id,
            authority="%s/%s" % (args.authority_host, args.tenant),
            client_credential="wrong-" + secrets.token_urlsafe(24),
            http_client=session,  # verify= is ignored with an http_client
            instance_discovery="%s/common/discovery/instance" % args.authority_host,
        )
        result = app.acquire_token_for_client(scopes=["%s/.default" % args.api_app_id_uri])
    except Exception as exc:
        report.fail(name, "MSAL raised %s: %s" % (type(exc).__name__, exc))
        return
    if not isinstance(result, dict):
        report.fail(name, "no result")
    elif result.get("access_token"):
        report.fail(name, "a wrong client secret was accepted (got an access token)")
    else:
        codes = result.get("error_codes") or []
        report.check(name,
                     result.get("error") == "invalid_client"
                     and AAD_INVALID_CLIENT_SECRET in codes,
                     "expected error='invalid_client' with %d in error_codes; %s"
                     % (AAD_INVALID_CLIENT_SECRET, describe_error(result)))


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Check that unmodified MSAL for Python (ConfidentialClientApplication"
                    ".acquire_token_for_client) works against entra-emulator. The client "
                    "secret is read from $%s." % SECRET_ENV)
    p.add_argument("--authority-host", required=True,
                   help="emulator base URL, e.g. https://localhost:8443")
    p.add_argument("--ca-file", required=True,
                   help="PEM file of the emulator's development CA")
    p.add_argument("--tenant", default="72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f")
    p.add_argument("--api-app-id-uri", default="api://tasks-api")
    p.add_argument("--api-client-id", default="6e1f4a8b-2c3d-4e5f-8a9b-0c1d2e3f4a5b")
    p.add_argument("--secret-client-id", default="1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                   help="client id of the app that authenticates with $%s" % SECRET_ENV)
    p.add_argument("--cert-client-id", default="2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a",
                   help="client id of the app that authenticates with a certificate")
    p.add_argument("--cert-file", required=True,
                   help="PEM certificate registered for --cert-client-id")
    p.add_argument("--key-file", required=True,
                   help="PEM (PKCS#8) RSA private key of --cert-file")
    args = p.parse_args(argv)
    args.authority_host = args.authority_host.rstrip("/")
    parts = urllib.parse.urlsplit(args.authority_host)
    if parts.scheme != "https" or not parts.hostname:
        p.error("--authority-host must be an https:// URL")
    return args


def main(argv=None):
    args = parse_args(argv)
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.pop(var, None) is not None:
            print("note: unset $%s for this process so that MSAL's verify=%s "
                  "takes effect (requests lets it override Session.verify)"
                  % (var, args.ca_file), file=sys.stderr)
    print("note: msal %s" % msal.__version__, file=sys.stderr)
    report = Report()
    log = install_request_log()
    emulator = Emulator(args.authority_host, args.tenant, args.ca_file)

    # --- client secret ---------------------------------------------------
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        report.fail("secret: acquire token", "$%s is not set" % SECRET_ENV)
    else:
        run_success_case(report, args, emulator, log, "secret",
                         args.secret_client_id, secret, "1", ["Tasks.ReadWrite.All"])
    run_wrong_secret_case(report, args)

    # --- certificate -----------------------------------------------------
    try:
        with open(args.cert_file, "rb") as f:
            cert_pem_bytes = f.read()
        with open(args.key_file, "rb") as f:
            key_pem_bytes = f.read()
        cert = x509.load_pem_x509_certificate(cert_pem_bytes)
        key = serialization.load_pem_private_key(key_pem_bytes, password=None)
    except Exception as exc:
        report.fail("certificate: load --cert-file/--key-file",
                    "%s: %s" % (type(exc).__name__, exc))
    else:
        cert_pem = cert_pem_bytes.decode("ascii")
        key_pem = key_pem_bytes.decode("ascii")
        roles = ["Tasks.Read.All"]
        # SHA-1 form: RS256 + x5t (no x5c)
        run_success_case(
            report, args, emulator, log, "cert-sha1",
            args.cert_client_id,
            {"private_key": key_pem, "thumbprint": cert.fingerprint(hashes.SHA1()).hex()},
            "2", roles)
        # SHA-256 form (msal >= 1.35): public_certificate without thumbprint
        # -> PS256 + x5t#S256 + x5c
        run_success_case(
            report, args, emulator, log, "cert-sha256",
            args.cert_client_id,
            {"private_key": key_pem, "public_certificate": cert_pem},
            "2", roles)
        # PFX form (msal >= 1.29, Microsoft's recommended one):
        # PS256 + x5t#S256 and no x5c
        with tempfile.TemporaryDirectory(prefix="msal-interop-") as tmp:
            pfx_path = os.path.join(tmp, "client.pfx")
            with open(pfx_path, "wb") as f:
                f.write(pkcs12.serialize_key_and_certificates(
                    b"msal-interop", key, cert, None, serialization.NoEncryption()))
            run_success_case(
                report, args, emulator, log, "cert-pfx-sha256",
                args.cert_client_id, {"private_key_pfx_path": pfx_path},
                "2", roles)

    print("%d passed, %d failed" % (report.passed, report.failed), flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
