#!/usr/bin/env python3
"""Unmodified Python clients against the caller's token sidecar (run by scripts/sidecar-interop.sh).

The apps here hold no token code: `requests` calls the tasks API through the sidecar's egress
listener, and azure-identity's ManagedIdentityCredential / DefaultAzureCredential find the
sidecar's managed-identity endpoint through IDENTITY_ENDPOINT and IDENTITY_HEADER alone, exactly
as on App Service.

Output: one `PASS <name>` / `FAIL <name>: <reason>` line per check, then `N passed, M failed`;
exit status 1 if anything failed. Tokens and the identity header are never printed.
"""

import argparse
import logging
import os
import re
import socket
import threading
import time
import urllib.parse

import requests

RESULTS = []


def check(name):
    def wrap(fn):
        def run(*args):
            try:
                fn(*args)
                RESULTS.append(True)
                print(f"PASS {name}", flush=True)
            except Exception as error:  # noqa: BLE001 - every failure is reported, none raised
                RESULTS.append(False)
                print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)

        return run

    return wrap


def wait_for_port(url, seconds=30):
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"sidecar-interop: nothing listens on {url}")


def idp_requests(operator):
    text = requests.get(f"{operator}/metrics", timeout=10).text
    return sum(
        int(float(value))
        for value in re.findall(r"^caller_idp_requests_total\{[^}]*\} (\S+)$", text, re.M)
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sidecar", required=True)
    parser.add_argument("--operator", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--imds-host", required=True)
    parser.add_argument("--authority", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--imds-client-id", required=True)
    args = parser.parse_args()
    header = os.environ["SIDECAR_IDENTITY_HEADER"]
    # Two checks expect a refusal; the SDK would log each as a warning besides raising it.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    whoami = f"{args.sidecar}/tasks/api/whoami"
    wait_for_port(args.sidecar)

    @check("50 concurrent clients (requests) from a cold start: all 200, 1 identity-provider request")
    def concurrent():
        barrier = threading.Barrier(50)
        statuses = []

        def one():
            session = requests.Session()
            barrier.wait()
            statuses.append(session.get(whoami, timeout=30).status_code)

        threads = [threading.Thread(target=one) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * 50, f"statuses {sorted(set(statuses))}"
        assert idp_requests(args.operator) == 1, f"{idp_requests(args.operator)} IdP requests"

    concurrent()

    @check("requests, no token code: the API sees the sidecar's client id")
    def plain():
        response = requests.get(whoami, timeout=10)
        assert response.status_code == 200, response.status_code
        body = response.json()
        assert body["client_app_id"] == args.client_id, body["client_app_id"]
        assert "Tasks.Read.All" in body["roles"], body["roles"]

    plain()

    @check("an app's own Authorization header is replaced, not trusted")
    def replaced():
        response = requests.get(
            whoami, headers={"Authorization": "Bearer not-a-token"}, timeout=10
        )
        assert response.status_code == 200, response.status_code
        metrics = requests.get(f"{args.operator}/metrics", timeout=10).text
        assert 'caller_sidecar_authorization_replaced_total{upstream="tasks"} 1' in metrics

    replaced()

    @check("a refusal by the API comes back as the API's problem (reader may not create)")
    def refused():
        response = requests.post(
            f"{args.sidecar}/tasks/api/tasks", json={"title": "from python"}, timeout=10
        )
        assert response.status_code == 403, response.status_code
        assert response.json()["reason"] == "missing_role", response.text

    refused()

    def credential(identity_header):
        os.environ["IDENTITY_ENDPOINT"] = f"{args.sidecar}/msi/token"
        os.environ["IDENTITY_HEADER"] = identity_header
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential()

    @check("azure-identity ManagedIdentityCredential: a token the API accepts")
    def managed():
        token = credential(header).get_token("api://tasks-api/.default")
        assert token.expires_on > time.time() + 1800, token.expires_on - time.time()
        response = requests.get(
            f"{args.api}/api/whoami",
            headers={"Authorization": f"Bearer {token.token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.status_code
        assert response.json()["client_app_id"] == args.client_id

    managed()

    @check("azure-identity DefaultAzureCredential picks the sidecar up from the environment")
    def default():
        os.environ["IDENTITY_ENDPOINT"] = f"{args.sidecar}/msi/token"
        os.environ["IDENTITY_HEADER"] = header
        from azure.identity import DefaultAzureCredential

        token = DefaultAzureCredential().get_token("api://tasks-api/.default")
        response = requests.get(
            f"{args.api}/api/whoami",
            headers={"Authorization": f"Bearer {token.token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.status_code

    default()

    @check("a wrong IDENTITY_HEADER is refused, and the SDK says why")
    def wrong_header():
        from azure.core.exceptions import ClientAuthenticationError

        try:
            credential(header + "x").get_token("api://tasks-api/.default")
        except ClientAuthenticationError as error:
            assert "X-IDENTITY-HEADER" in str(error), str(error)
        else:
            raise AssertionError("a token was issued")

    wrong_header()

    @check("an unconfigured resource is refused, and the SDK shows the reason")
    def unknown_resource():
        from azure.core.exceptions import ClientAuthenticationError

        try:
            credential(header).get_token("https://vault.azure.net/.default")
        except ClientAuthenticationError as error:
            text = str(error)
            assert "https://vault.azure.net is not served" in text, text
            assert header not in text
        else:
            raise AssertionError("a token was issued")

    unknown_resource()

    @check("azure-identity ManagedIdentityCredential on IMDS (the emulator's, by AZURE_POD_IDENTITY_AUTHORITY_HOST)")
    def imds():
        import base64
        import json

        for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
            os.environ.pop(name, None)
        os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = args.imds_host
        from azure.identity import ManagedIdentityCredential

        token = ManagedIdentityCredential(client_id=args.imds_client_id).get_token(
            "api://tasks-api/.default"
        )
        payload = token.token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["azp"] == args.imds_client_id, claims["azp"]
        assert claims["xms_mirid"].endswith("/userAssignedIdentities/nightly-mi"), claims
        assert claims["roles"] == ["Tasks.Read.All"], claims["roles"]
        assert token.expires_on > time.time() + 1800

    imds()

    @check("azure-identity ClientSecretCredential against the emulator: authority, CA and disable_instance_discovery")
    def client_secret():
        from azure.identity import ClientSecretCredential

        # The demo reader's, as the emulator's directory holds it (a DEMO secret).
        credential = ClientSecretCredential(
            args.tenant,
            args.client_id,
            os.environ["SIDECAR_INTEROP_CLIENT_SECRET"],
            authority=args.authority,
            connection_verify=args.ca_file,
            # Without it MSAL asks login.microsoftonline.com first (README: "Pointing real clients
            # at it"); never tried here, since nothing may leave the machine.
            disable_instance_discovery=True,
        )
        token = credential.get_token("api://tasks-api/.default")
        response = requests.get(
            f"{args.api}/api/whoami",
            headers={"Authorization": f"Bearer {token.token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.status_code
        assert response.json()["client_app_id"] == args.client_id

    client_secret()

    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    raise SystemExit(0 if all(RESULTS) else 1)


if __name__ == "__main__":
    main()
