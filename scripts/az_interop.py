#!/usr/bin/env python3
"""The real az CLI (azure-cli from PyPI, unmodified) against a running entra-emulator.

Run by scripts/az-interop.sh, which starts the emulator and installs az into .venv/az; run with
that venv's python, whose PyJWT (an az dependency) checks the tokens' signatures:

    .venv/az/bin/python scripts/az_interop.py --az .venv/az/bin/az --pin 2.91.0 \\
        --authority https://localhost:PORT --ca-file CA.pem --work TMPDIR

It registers the emulator as a cloud, signs in as the demo directory's service principals
(secret and certificate), takes tokens for Azure Resource Manager and the tasks API, decodes them
and checks their claims and signatures; then shows, one at a time, that each thing az needs is
needed (without it az fails, or tries a host off this machine). Output: one `ok <check>` / `FAIL <check>: <reason>` line per
check and `az interop: N/M`; exit status 1 if anything failed. Secrets and tokens are never
printed: every line is checked for them before it is.

What az needs, besides the emulator's authority and CA (README, "The az CLI"):
* `az config set core.instance_discovery=false`: otherwise MSAL inside az asks
  login.microsoftonline.com/common/discovery/instance which hosts to trust (az has no setting
  for another instance-discovery URL).
* `az login ... --skip-subscription-discovery`: otherwise az lists subscriptions from the cloud's
  resource manager (GET {resource_manager}/subscriptions), which is Azure Resource Manager itself
  and not emulated; `--allow-no-subscriptions` only lets an empty list through, it does not skip
  the call.
* `az cloud register ... --skip-endpoint-discovery`: otherwise az fetches
  {resource_manager}/metadata/endpoints to fill in the cloud's endpoints.
* `REQUESTS_CA_BUNDLE=ca.pem`: az's HTTP (MSAL's requests, and the tenant-name lookup) trusts
  certifi's bundle otherwise.
* `AZURE_CORE_COLLECT_TELEMETRY=false` (or `az config set core.collect_telemetry=false` before
  anything else): otherwise each command sends telemetry to dc.services.visualstudio.com.
* For an offline run to try nothing at all: a new config directory's first command asks
  azcliprod.blob.core.windows.net for az's latest version; this script writes the config
  directory's versionCheck.json first, which is what that command would have left.

Every az run here has a sitecustomize on PYTHONPATH that refuses to resolve any host but loopback
and writes down each one it refused: the positive checks must have none, and each "needs" check
must name exactly the host that its missing piece sends az to. So nothing leaves the machine even
when az tries.
"""

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import jwt
import requests

CLOUD = "EntraEmulator"
ARM = "https://management.azure.com/"
ARM_CLASSIC = "https://management.core.windows.net/"
DIRECTORY = Path(__file__).resolve().parent.parent / "entra-emulator/demo/directory.toml"
DEMO_CERT = DIRECTORY.parent / "certs"

# Loaded before az by every az run (PYTHONPATH): name resolution for loopback only, every other
# host refused and written to $AZ_INTEROP_GUARD_LOG.
GUARD = '''\
import os, socket

_log = os.environ.get("AZ_INTEROP_GUARD_LOG")
_resolve = socket.getaddrinfo
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _loopback_only(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None and str(name).lower() not in _LOOPBACK:
        if _log:
            with open(_log, "a") as f:
                f.write(f"{name}\\n")
        raise socket.gaierror(socket.EAI_NONAME, f"az-interop: {name} is not on this machine")
    return _resolve(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only
'''


class Report:
    """`ok`/`FAIL` lines, none of which may show a secret or a token."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.hidden = set()

    def hide(self, value):
        if value:
            self.hidden.add(value)

    def say(self, line):
        leaked = [h for h in self.hidden if h in line]
        for h in leaked:
            line = line.replace(h, "[hidden]")
        print(line, flush=True)
        if leaked:
            self.failed += 1
            print("FAIL the line above would have shown a secret or a token", flush=True)

    def check(self, name, fn):
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - any failure is this check's, reported in one line
            self.failed += 1
            self.say(f"FAIL {name}: {type(e).__name__}: {e}"[:600])
            return False
        self.passed += 1
        self.say(f"ok {name}" + (f": {detail}" if detail else ""))
        return True


class Az:
    """az in a config directory of its own, with the emulator's CA and the loopback guard."""

    def __init__(self, az, work, name, ca_file, versions, telemetry_off=True, version_seen=True):
        self.az = az
        self.dir = work / name
        self.dir.mkdir(parents=True)
        self.config = self.dir / "config"
        self.config.mkdir()
        self.guard_log = self.dir / "refused-hosts.log"
        # What a config directory's first command would leave after asking for the latest version.
        if version_seen:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S.000000")
            (self.config / "versionCheck.json").write_text(
                json.dumps({"versions": versions, "update_time": stamp})
            )
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AZURE_", "ARM_", "MSAL_", "IDENTITY_"))
            and k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "PYTHONPATH")
        }
        env.update(
            AZURE_CONFIG_DIR=str(self.config),
            AZURE_CORE_NO_COLOR="true",
            PYTHONPATH=str(work / "guard"),
            AZ_INTEROP_GUARD_LOG=str(self.guard_log),
        )
        if telemetry_off:
            env["AZURE_CORE_COLLECT_TELEMETRY"] = "false"
        if ca_file:
            env["REQUESTS_CA_BUNDLE"] = str(ca_file)
        self.env = env

    def run(self, *args):
        done = subprocess.run(
            [self.az, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        return done.returncode, done.stdout, done.stderr

    def ok(self, *args):
        """az's JSON answer; an AssertionError with the last line of its error otherwise."""
        code, out, err = self.run(*args)
        assert code == 0, f"az {args[0]} {args[1] if len(args) > 1 else ''} exited {code}: {last_line(err)}"
        return json.loads(out) if out.strip() else None

    def refused_hosts(self, wait_for=None):
        """The hosts az was refused; with `wait_for`, up to 10 s for that one to be among them
        (az's telemetry is sent by a process az leaves behind when it exits)."""
        deadline = time.monotonic() + (10 if wait_for else 0)
        while True:
            seen = sorted(set(self.guard_log.read_text().split())) if self.guard_log.exists() else []
            if wait_for is None or wait_for in seen or time.monotonic() > deadline:
                return seen
            time.sleep(0.2)


def last_line(text):
    """az's own error line, else the last line that is not --debug noise or az's issues hint."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [
        line for line in lines if line.startswith("ERROR:") and "unexpected error" not in line
    ]
    rest = [
        line
        for line in lines
        if not line.startswith(("DEBUG:", "INFO:", "To check existing issues"))
    ]
    return (errors or rest or ["(nothing)"])[0 if errors else -1][:300]


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def directory():
    """The demo directory's tenant and identities (DEMO secrets, committed on purpose)."""
    tenant = tomllib.loads(DIRECTORY.read_text())["tenants"][0]
    apps = {a["name"]: a for a in tenant["applications"]}
    return tenant, apps


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--az", required=True, help="the az executable")
    p.add_argument("--pin", required=True, help="the azure-cli version expected")
    p.add_argument("--authority", required=True, help="the emulator's public URL")
    p.add_argument("--ca-file", required=True, type=Path, help="the emulator's CA certificate")
    p.add_argument("--work", required=True, type=Path, help="a private temporary directory")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    report = Report()
    tenant, apps = directory()
    tid, domain = tenant["id"], tenant["domain"]
    reader, writer, cert_job, tasks = (
        apps["reader-job"],
        apps["writer-job"],
        apps["cert-job"],
        apps["tasks-api"],
    )
    reader_secret = reader["client_secrets"][0]["value"]
    writer_secret = writer["client_secrets"][0]["value"]
    for secret in (reader_secret, writer_secret):
        report.hide(secret)
    (args.work / "guard").mkdir(parents=True)
    (args.work / "guard" / "sitecustomize.py").write_text(GUARD)
    # az --certificate takes one PEM file with the key and the certificate.
    cert_pem = args.work / "cert-job.pem"
    cert_pem.write_text(
        (DEMO_CERT / "cert-job.key").read_text() + (DEMO_CERT / "cert-job.crt").read_text()
    )
    cert_pem.chmod(0o600)

    versions = {
        "azure-cli": {"local": metadata.version("azure-cli")},
        "core": {"local": metadata.version("azure-cli-core")},
        "telemetry": {"local": metadata.version("azure-cli-telemetry")},
    }
    keys = {}

    def published_keys():
        answer = requests.get(
            f"{args.authority}/{tid}/discovery/v2.0/keys", verify=str(args.ca_file), timeout=10
        )
        assert answer.status_code == 200, answer.status_code
        keys.update({k["kid"]: jwt.PyJWK(k, algorithm="RS256") for k in answer.json()["keys"]})
        return f"{len(keys)} keys, to check az's tokens with"

    report.check("the emulator's JWKS", published_keys)

    # The three endpoints az requires of a cloud; the emulator is its active directory.
    endpoints = [
        "--endpoint-active-directory", args.authority,
        "--endpoint-active-directory-resource-id", ARM_CLASSIC,
        "--endpoint-resource-manager", ARM,
    ]

    def register(az):
        az.ok("cloud", "register", "-n", CLOUD, "--skip-endpoint-discovery", *endpoints)
        az.ok("cloud", "set", "-n", CLOUD)

    def login_secret(az, client, secret, tenant_arg, *extra):
        return az.run(
            "login", "--service-principal", "-u", client["client_id"], "-p", secret,
            "--tenant", tenant_arg, *extra,
        )

    def token(az, *how):
        answer = az.ok("account", "get-access-token", *how)
        report.hide(answer["accessToken"])
        return answer, claims(answer["accessToken"])

    def verified(access_token, audience, issuer):
        header = jwt.get_unverified_header(access_token)
        assert header["alg"] == "RS256", header
        key = keys[header["kid"]]
        jwt.decode(access_token, key.key, algorithms=["RS256"], audience=audience, issuer=issuer)
        return header["kid"][:8]

    # --- the sequence, in one config directory -------------------------------------------------
    az = Az(args.az, args.work, "az", args.ca_file, versions)

    def version():
        got = versions["azure-cli"]["local"]
        assert got == args.pin, f"azure-cli {got} in the venv, {args.pin} pinned"
        return f"azure-cli {got}, azure-cli-core {versions['core']['local']}, msal {metadata.version('msal')}"

    report.check("az is the pinned version", version)

    def cloud_register():
        az.ok("cloud", "register", "-n", CLOUD, "--skip-endpoint-discovery", *endpoints)
        cloud = az.ok("cloud", "show", "-n", CLOUD)
        got = cloud["endpoints"]
        assert got["activeDirectory"] == args.authority, got["activeDirectory"]
        assert got["activeDirectoryResourceId"] == ARM_CLASSIC, got
        assert got["resourceManager"] == ARM, got
        return f"active directory {args.authority}, resource {ARM_CLASSIC}"

    report.check(f"az cloud register -n {CLOUD} --skip-endpoint-discovery", cloud_register)

    def cloud_set():
        az.ok("cloud", "set", "-n", CLOUD)
        cloud = az.ok("cloud", "show")
        assert cloud["name"] == CLOUD and cloud["isActive"], cloud["name"]
        return "the active cloud"

    report.check(f"az cloud set -n {CLOUD}", cloud_set)

    def instance_discovery_off():
        az.ok("config", "set", "core.instance_discovery=false")
        value = az.ok("config", "get", "core.instance_discovery")
        assert str(value["value"]).lower() == "false", value
        return "MSAL inside az asks no instance discovery"

    report.check("az config set core.instance_discovery=false", instance_discovery_off)

    def login_reader():
        code, out, err = login_secret(
            az, reader, reader_secret, tid, "--skip-subscription-discovery", "--debug"
        )
        assert code == 0, f"exited {code}: {last_line(err)}"
        accounts = json.loads(out)
        assert len(accounts) == 1, accounts
        account = accounts[0]
        assert account["tenantId"] == tid and account["id"] == tid, account
        assert account["user"] == {"name": reader["client_id"], "type": "servicePrincipal"}, account["user"]
        assert account["cloudName"] == CLOUD, account["cloudName"]
        asked = [
            f"{m[1]} {m[2].replace(tid, '{tid}')} {m[3]}"
            for m in re.finditer(r'urllib3\.connectionpool: \S+ "(\w+) (\S+) HTTP/[\d.]+" (\d+)', err)
        ]
        assert asked, "az --debug showed no request"
        return f"a tenant-level account, no subscription; az asked: {', '.join(asked)}"

    logged_in = report.check(
        "az login --service-principal -p SECRET --tenant GUID --skip-subscription-discovery",
        login_reader,
    )

    def arm_token(resource):
        def check():
            answer, c = token(az, "--resource", resource)
            assert answer["tokenType"] == "Bearer" and answer["tenant"] == tid, answer.keys()
            assert answer["expires_on"] > time.time() + 1800, answer["expires_on"]
            assert c["aud"] == resource, c["aud"]
            assert c["appid"] == reader["client_id"], c.get("appid")
            assert c["appidacr"] == "1", c.get("appidacr")
            assert c["tid"] == tid, c["tid"]
            assert c["ver"] == "1.0", c["ver"]
            assert c["idtyp"] == "app", c.get("idtyp")
            assert c["oid"] == c["sub"] == reader["service_principal_id"], c["oid"]
            assert c["iss"] == f"{args.authority}/{tid}/", c["iss"]
            kid = verified(answer["accessToken"], resource, c["iss"])
            return f"aud {c['aud']}, appid reader-job, tid, ver 1.0, signature by {kid}…"

        return check

    def tasks_token(*how, client, roles, acr):
        def check():
            answer, c = token(az, *how)
            assert c["aud"] == tasks["client_id"], c["aud"]
            assert c["azp"] == client["client_id"], c.get("azp")
            assert c["azpacr"] == acr, c.get("azpacr")
            assert c["tid"] == tid, c["tid"]
            assert c["ver"] == "2.0", c["ver"]
            assert c["roles"] == roles, c.get("roles")
            assert c["iss"] == f"{args.authority}/{tid}/v2.0", c["iss"]
            kid = verified(answer["accessToken"], tasks["client_id"], c["iss"])
            return (
                f"aud tasks-api's client ID, azp {client['name']}, azpacr {acr}, roles "
                f"{','.join(roles)}, ver 2.0, signature by {kid}…"
            )

        return check

    if logged_in:
        report.check(f"az account get-access-token --resource {ARM}", arm_token(ARM))
        report.check(
            f"az account get-access-token --resource {ARM_CLASSIC}", arm_token(ARM_CLASSIC)
        )
        report.check(
            "az account get-access-token --resource api://tasks-api",
            tasks_token(
                "--resource", "api://tasks-api", client=reader, roles=["Tasks.Read.All"], acr="1"
            ),
        )
        report.check(
            "az account get-access-token --scope api://tasks-api/.default",
            tasks_token(
                "--scope", "api://tasks-api/.default", client=reader, roles=["Tasks.Read.All"],
                acr="1",
            ),
        )

    def login_by_domain():
        code, _, err = login_secret(az, writer, writer_secret, domain, "--skip-subscription-discovery")
        assert code == 0, f"exited {code}: {last_line(err)}"
        account = az.ok("account", "show")
        assert account["tenantId"] == tid, account["tenantId"]
        assert account["user"]["name"] == writer["client_id"], account["user"]
        tasks_token(
            "--resource", "api://tasks-api", client=writer, roles=["Tasks.ReadWrite.All"], acr="1"
        )()
        return f"az resolved {domain} to {tid} from the v2 discovery issuer; writer-job's token has Tasks.ReadWrite.All"

    report.check("az login --tenant DOMAIN (the writer)", login_by_domain)

    def login_certificate():
        code, _, err = az.run(
            "login", "--service-principal", "-u", cert_job["client_id"],
            "--certificate", str(cert_pem), "--tenant", tid, "--skip-subscription-discovery",
        )
        assert code == 0, f"exited {code}: {last_line(err)}"
        return tasks_token(
            "--resource", "api://tasks-api", client=cert_job, roles=["Tasks.Read.All"], acr="2"
        )()

    report.check("az login --service-principal --certificate PEM (cert-job)", login_certificate)

    def clear():
        az.ok("account", "clear")
        accounts = az.ok("account", "list")
        assert accounts == [], accounts
        cache = az.config / "msal_token_cache.json"
        held = json.loads(cache.read_text()).get("AccessToken", {}) if cache.exists() else {}
        assert not held, f"{len(held)} access tokens still in az's MSAL cache"
        secrets = az.config / "service_principal_entries.json"
        kept = json.loads(secrets.read_text()) if secrets.exists() else []
        assert not kept, f"{len(kept)} service principal entries still in az's config"
        return "no account, no cached token and no stored secret left"

    report.check("az account clear", clear)

    def wrong_secret():
        code, out, err = login_secret(
            az, reader, "not-the-secret", tid, "--skip-subscription-discovery"
        )
        # After `az account clear`: while az holds a token for this client, MSAL answers
        # `az login` from its cache without asking the authority, whatever the secret.
        assert code != 0, "az login succeeded with a wrong secret"
        assert "AADSTS7000215" in err, last_line(err)
        return "refused: AADSTS7000215, Entra's error as az prints it"

    report.check("az login with a wrong secret", wrong_secret)

    def unknown_tenant():
        code, _, err = login_secret(
            az, reader, reader_secret, "no-such-tenant.example", "--skip-subscription-discovery"
        )
        assert code != 0, "az login succeeded for an unknown tenant"
        assert "AADSTS90002" in err, last_line(err)
        return "refused: az's tenant lookup got AADSTS90002 from discovery"

    report.check("az login --tenant UNKNOWN-DOMAIN", unknown_tenant)


    def stayed_here():
        refused = az.refused_hosts()
        assert not refused, f"az tried to reach {', '.join(refused)}"
        return "az resolved no host but loopback in any command above"

    report.check("nothing left this machine", stayed_here)

    # --- each thing az needs, left out in turn: az fails, and tries where it says -----------------
    def needed(name, expect_host, expect_text, ca=True, instance_discovery=True, skip=True):
        def check():
            other = Az(args.az, args.work, name, args.ca_file if ca else None, versions)
            register(other)
            if instance_discovery:
                other.ok("config", "set", "core.instance_discovery=false")
            extra = ["--skip-subscription-discovery"] if skip else ["--allow-no-subscriptions"]
            code, _, err = login_secret(other, reader, reader_secret, tid, *extra)
            assert code != 0, "az login succeeded without it"
            assert expect_text in err, last_line(err)
            refused = other.refused_hosts()
            assert refused == ([expect_host] if expect_host else []), refused
            where = f"az tried {expect_host} (refused here)" if expect_host else "no host tried"
            return f"without it az login fails ({expect_text}); {where}"

        return check

    report.check(
        "needs core.instance_discovery=false",
        needed(
            "no-instance-discovery-off", "login.microsoftonline.com", "login.microsoftonline.com",
            instance_discovery=False,
        ),
    )
    report.check(
        "needs --skip-subscription-discovery (--allow-no-subscriptions is not enough)",
        needed("no-skip", "management.azure.com", "management.azure.com", skip=False),
    )
    report.check(
        "needs REQUESTS_CA_BUNDLE=ca.pem",
        needed("no-ca", None, "CERTIFICATE_VERIFY_FAILED", ca=False),
    )

    def needed_for_register():
        other = Az(args.az, args.work, "no-skip-endpoint-discovery", args.ca_file, versions)
        code, _, err = other.run("cloud", "register", "-n", CLOUD, *endpoints)
        assert code != 0, "az cloud register succeeded without it"
        assert "Unable to get endpoints from the cloud" in err, last_line(err)
        refused = other.refused_hosts()
        assert refused == ["management.azure.com"], refused
        return "without it az cloud register fails: az tried management.azure.com/metadata/endpoints (refused here)"

    report.check("needs --skip-endpoint-discovery on az cloud register", needed_for_register)

    def quiet(name, host, **how):
        def check():
            other = Az(args.az, args.work, name, args.ca_file, versions, **how)
            other.ok("cloud", "list")
            refused = other.refused_hosts(wait_for=host)
            assert refused == [host], refused
            return f"without it one az command tries {host} (refused here)"

        return check

    report.check(
        "needs AZURE_CORE_COLLECT_TELEMETRY=false offline",
        quiet("telemetry-on", "dc.services.visualstudio.com", telemetry_off=False),
    )
    report.check(
        "needs a versionCheck.json in a new config directory offline",
        quiet("version-unseen", "azcliprod.blob.core.windows.net", version_seen=False),
    )

    total = report.passed + report.failed
    report.say(f"az interop: {report.passed}/{total}")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
