#!/usr/bin/env bash
# Regenerates RESILIENCE.md (issue 6, "Proof of resilience") from what the checks measure, in one
# command:
#
#   bash scripts/resilience.sh                  # about 5 minutes on a warm target/
#   DURATION=20 bash scripts/resilience.sh      # a shorter load run (default 60 s)
#   FUZZ_SECS=60 bash scripts/resilience.sh     # also run scripts/fuzz.sh 60 (every target)
#
# Runs, each with `cargo test --locked ... -- --nocapture`: the attack corpus (which rewrites
# api-service/ATTACK-CORPUS.md when ATTACK_CORPUS_MD is set), the identity-provider storm tests, the
# end-to-end fault tests, the JWKS-outage, PostgreSQL-outage and kill -9 tests (SQLite and
# PostgreSQL; REQUIRE_POSTGRES=1, so a missing server fails them), the fuzz regression inputs and the
# trace-level secrets test; then `scripts/load-api.sh sustained` for $DURATION; and, when
# FUZZ_SECS is set, `scripts/fuzz.sh $FUZZ_SECS` (otherwise the runs recorded in fuzz/README.md
# are cited). Every check prints its figures as `resilience: <case>: <figure>` lines; this script
# collects them with each test's pass/fail into one table, with the date, commit and machine.
#
# Every step runs even when an earlier one fails, so the file shows everything; the exit status is
# 1 when any check failed (the file is still written, with FAIL in the result column). Logs stay
# in target/resilience/. Each step runs in its own process group, which is killed on exit or
# interrupt, so nothing is left running.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DURATION=${DURATION:-60}
FUZZ_SECS=${FUZZ_SECS:-}
out=${RESILIENCE_MD:-RESILIENCE.md}
logs=target/resilience
rm -rf "$logs"
mkdir -p "$logs"

running=""
cleanup() {
  if [[ -n $running ]]; then
    kill -TERM -- "-$running" 2>/dev/null || true
    wait "$running" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'echo "resilience: interrupted" >&2; exit 130' INT TERM

# step NAME COMMAND...: runs COMMAND in a process group of its own, output to $logs/NAME.{out,err},
# "exit-status seconds" to $logs/NAME.status.
step() {
  local name=$1 started status=0
  shift
  echo "resilience: $name: $*" >&2
  started=$(date +%s)
  setsid --wait "$@" >"$logs/$name.out" 2>"$logs/$name.err" </dev/null &
  running=$!
  wait "$running" || status=$?
  running=""
  echo "$status $(($(date +%s) - started))" >"$logs/$name.status"
  if [[ $status != 0 ]]; then
    echo "resilience: $name: FAILED (exit $status); the end of its output:" >&2
    tail -n 30 "$logs/$name.out" "$logs/$name.err" >&2 || true
  fi
}

date -u +%Y-%m-%dT%H:%M:%SZ >"$logs/started"
cut -d" " -f1-3 /proc/loadavg >"$logs/load-before"

step attack-corpus env ATTACK_CORPUS_MD=write \
  cargo test --locked -p mesh-tests --test api attack_corpus -- --nocapture
step storms cargo test --locked -p mesh-tests --test caller storms -- --nocapture
step sidecar env REQUIRE_PYTHON=1 cargo test --locked -p mesh-tests --test caller \
  sidecar::a_python_client_rides_an_identity_provider_outage_until_the_safety_margin -- --nocapture
step workload-identity cargo test --locked -p mesh-tests --test caller workload_identity:: -- --nocapture
step e2e-faults env REQUIRE_PYTHON=1 cargo test --locked -p mesh-tests --test e2e -- --nocapture \
  faults rotation_load
step api-faults env REQUIRE_POSTGRES=1 cargo test --locked -p mesh-tests --test api -- --nocapture \
  keys::an_outage_keeps_the_last_good_keys_for_24_hours_then_fails_closed fuzz_regressions \
  operations::with_postgres_down_tasks_answer_503_the_rest_works_and_it_recovers_by_itself
step durability env REQUIRE_POSTGRES=1 cargo test --locked -p api-service --test durability -- --nocapture
step emulator-fuzz-regressions cargo test --locked -p mesh-tests --test emulator fuzz_regressions -- --nocapture
step secrets cargo test --locked -p mesh --test secrets -- --nocapture
step load env DURATION="$DURATION" bash scripts/load-api.sh sustained
# The replicas in containers under faults: needs a Docker Engine (and, where nothing can be pulled,
# the stand-in base images: scripts/docker-base-images.sh). Without one, its rows are left out.
if docker info >/dev/null 2>&1; then
  step replicas bash scripts/replicas-faults.sh
else
  echo "resilience: replicas: skipped, no Docker Engine reachable" >&2
fi
if [[ -n $FUZZ_SECS ]]; then
  step fuzz bash scripts/fuzz.sh "$FUZZ_SECS"
fi

cut -d" " -f1-3 /proc/loadavg >"$logs/load-after"
git rev-parse HEAD >"$logs/commit"
# What else the working tree held (the file being written aside).
git status --porcelain --untracked-files=no | cut -c4- | { grep -vxF "$out" || true; } >"$logs/dirty"
git status --porcelain | { grep '^??' || true; } | cut -c4- | { grep -cvxF "$out" || true; } >"$logs/untracked"
rustc -V >"$logs/rustc"

python3 - "$logs" "$out" "$DURATION" "$FUZZ_SECS" <<'PY'
import os, re, subprocess, sys

logs, out, duration, fuzz_secs = sys.argv[1:5]


def read(name, default=""):
    path = os.path.join(logs, name)
    return open(path, encoding="utf-8", errors="replace").read() if os.path.exists(path) else default


def status(step):
    text = read(f"{step}.status").split()
    return (int(text[0]), int(text[1])) if text else (None, 0)


# Test outcomes (`test <path> ... ok`) and `resilience: <case>: <figure>` lines, per step.
outcomes, figures = {}, []
steps = ["attack-corpus", "storms", "sidecar", "workload-identity", "e2e-faults", "api-faults", "durability",
         "emulator-fuzz-regressions", "secrets", "load"] + (["fuzz"] if fuzz_secs else []) + \
    (["replicas"] if os.path.exists(os.path.join(logs, "replicas.status")) else [])
for step in steps:
    text = read(f"{step}.out") + "\n" + read(f"{step}.err")
    for name, result in re.findall(r"test (\S+) \.\.\. (ok|FAILED|ignored)", text):
        outcomes[name] = result
    for line in text.splitlines():
        at = line.find("resilience: ")
        if at < 0:
            continue
        m = re.match(r"resilience: (.+?): (.+)$", line[at:])
        # The script's own progress lines ("resilience: <step>: ...") are not figures.
        if m and m.group(1) not in steps:
            figures.append([m.group(1), m.group(2).strip(), False])


def cases(*names):
    found = []
    for figure in figures:
        if figure[0] in names:
            figure[2] = True
            # A row fed by several cases names each.
            found.append(f"{figure[0]}: {figure[1]}" if len(names) > 1 else figure[1])
    return found


corpus = read(os.path.abspath("api-service/ATTACK-CORPUS.md"))
corpus_summary = re.search(
    r"\*\*(\d+) token attacks, (\d+) accepted; (\d+) key-store attacks, (\d+) let in\.\*\*", corpus)
corpus_marked = sum(1 for l in corpus.splitlines() if l.startswith("|") and "✗" in l)

rows = []
failures = []
failed_steps = set()


def row(tried, how, expected, step, tests, seen, extra_ok=True, why=""):
    code, _ = status(step)
    problems = []
    # A row with tests is judged by its tests (a test that did not build or run shows as "did
    # not run"); a row without, by its step's exit status. Steps that fail for a reason no row
    # names are reported in the verdict below.
    if code is None:
        problems.append("did not run")
    elif code != 0 and not tests:
        problems.append(f"exit status {code}")
    for test in tests:
        got = outcomes.get(test)
        if got != "ok":
            problems.append(f"`{test}` {got or 'did not run'}")
    if not seen:
        problems.append("no figures printed")
    if not extra_ok:
        problems.append(why)
    result = "pass" if not problems else "**FAIL**: " + "; ".join(problems)
    if problems:
        failures.append(tried)
        failed_steps.add(step)
    rows.append((tried, how, expected, "<br>".join(seen) or "—", result))


# Attack corpus.
seen = []
if corpus_summary:
    seen.append(f"{corpus_summary.group(1)} token attacks, {corpus_summary.group(2)} accepted; "
                f"{corpus_summary.group(3)} key-store attacks (one tenant's empty JWKS, a clear-text "
                f"jwks_uri, a key vouching for another tenant, oversized JWKS), "
                f"{corpus_summary.group(4)} let in; {corpus_marked} rows differing from their expectation; the control accepted. "
                "Row by row: [api-service/ATTACK-CORPUS.md](api-service/ATTACK-CORPUS.md)")
row("Attack corpus: forged, malformed, misdirected and replayed tokens; hostile key-store answers",
    "`tests/api/attack_corpus.rs`: one request per row over HTTP to the real API; "
    "a second wiremock as the attacker's key server",
    "every attack refused with its row's status and reason, 0 accepted; the attacker's key server "
    "never asked; a valid control token accepted",
    "attack-corpus", ["attack_corpus::the_attack_corpus_is_refused_row_by_row"], seen,
    bool(corpus_summary) and corpus_summary.group(2) == "0" and corpus_summary.group(4) == "0"
    and corpus_marked == 0,
    "ATTACK-CORPUS.md missing, or an attack accepted or differing")

storm_how = ("`tests/caller/storms.rs`: the whole daemon (refresher, a job a minute) "
             "against wiremock for 2 simulated hours on a manual clock, stepped ≤ 1 s and exactly "
             "to each planned attempt")
row("Token endpoint answers 503 to everything, daemon has no token",
    storm_how,
    "every gap ≤ min(1 s × 2^(n-1), 60 s); ≤ 320 requests in 2 h and ≤ 15 in any minute "
    "(broken with probability < 1e-7, see the test's comment); ≥ 120 (never gives up); each job "
    "run reports an error, none panics",
    "storms", ["storms::a_503_storm_without_a_token_stays_within_the_backoff_bounds"],
    cases("idp 503 storm, no token"))
row("Token endpoint answers 503 to everything from the refresh point on",
    storm_how,
    "as above, counted from the refresh point; 0 failed job runs until the token's safety margin "
    "(expiry − 60 s), errors (not panics) after it",
    "storms", ["storms::a_503_storm_past_the_refresh_point_fails_no_job_until_the_safety_margin"],
    cases("idp 503 storm, token held past its refresh point"))
row("Token endpoint answers 429 with `Retry-After: 30` to everything, no token",
    storm_how,
    "every gap ≥ 30 s and ≤ max(backoff ceiling, 30 s): ≤ 2 requests in any minute, ≤ 241 in 2 h, "
    "≥ 120; each job run reports an error",
    "storms", ["storms::a_429_storm_without_a_token_honours_retry_after"],
    cases("idp 429 storm (Retry-After 30 s), no token"))
row("Token endpoint answers 429 with `Retry-After: 30` from the refresh point on",
    storm_how,
    "as above from the refresh point; 0 failed job runs until the safety margin",
    "storms", ["storms::a_429_storm_past_the_refresh_point_honours_retry_after_and_fails_no_job"],
    cases("idp 429 storm (Retry-After 30 s), token held past its refresh point"))

row("Token endpoint down past the refresh point, an app calling through the token sidecar",
    "`tests/caller/sidecar.rs`: the daemon's sidecar forwarding to wiremock, the identity provider "
    "(wiremock) answering 503 from the refresh point on, a manual clock; the app is Python (urllib, "
    "no token code)",
    "every call answered 200 until the token's safety margin (expiry − 60 s), refresh attempts "
    "made and refused; after it 503 `no_token`, never a stale token",
    "sidecar", ["sidecar::a_python_client_rides_an_identity_provider_outage_until_the_safety_margin"],
    cases("sidecar through an idp outage"))

row("Workload identity: the projected token file rotated, the first token dead",
    "`tests/caller/workload_identity.rs`: the whole daemon with the `workload_identity` credential "
    "(the unmodified `azure_identity`) against the real emulator's federation, the token file "
    "written by the emulator's stand-in cluster issuer; both on manual clocks",
    "the refresh after the rotation exchanges the new file's token (the old one would be refused "
    "with AADSTS700024): a new app token, 0 failures",
    "workload-identity",
    ["workload_identity::a_rotating_token_file_is_read_at_each_refresh_and_a_removed_credential_is_named"],
    cases("workload identity token file rotated"))
row("Workload identity: the federated credential removed while the daemon runs",
    "as above; the credential deleted through the emulator's admin API (as `az ad app "
    "federated-credential delete`)",
    "the next refresh refused with AADSTS70021, permanent, logged with its fix; the valid token "
    "still served; no token or projected token in the log",
    "workload-identity",
    ["workload_identity::a_rotating_token_file_is_read_at_each_refresh_and_a_removed_credential_is_named"],
    cases("workload identity credential removed"))

e2e_how = ("`tests/e2e/{}`: the real emulator, API and four caller daemons (one on workload "
           "identity) in one process, callers on a manual clock")
row("Signing key rotated mid-run",
    e2e_how.format("faults.rs"),
    "0 failed job runs; every caller moves to the new kid at its refresh; the API fetches the JWKS "
    "once more (2 in all)",
    "e2e-faults", ["faults::keys_rotated_mid_run_fail_no_call"],
    cases("signing key rotated mid-run"))
row("Signing key rotated under load",
    e2e_how.format("rotation_load.rs") + "; 8 clients calling as fast as they can",
    "0 failed requests; 2 JWKS fetches (start-up and the new kid)",
    "e2e-faults", ["rotation_load::keys_rotated_under_load_fail_no_request"],
    cases("key rotation under load"))
row("Token endpoint down (503) past every refresh point",
    e2e_how.format("faults.rs") + "; the emulator's fault injection",
    "0 failed job runs while the callers serve their tokens; refresh attempts made and refused; "
    "after recovery one refresh each and no stale token served",
    "e2e-faults", ["faults::a_token_endpoint_outage_past_the_refresh_point_fails_no_job"],
    cases("token endpoint down (503) past every refresh point",
          "token endpoint back after the outage"))
row("Token endpoint down (503), an app calling through the reader's token sidecar",
    e2e_how.format("faults.rs") + "; the emulator's fault injection; the app is Python (urllib, "
    "no token code) calling the API through the reader's sidecar",
    "every call answered 200 while the reader serves its token; 503 `no_token` once the token "
    "is past its end, never a stale token",
    "e2e-faults", ["faults::an_app_behind_the_sidecar_rides_the_token_endpoint_outage"],
    cases("sidecar through the emulator's token outage"))
row("Identity provider (emulator) restarted",
    e2e_how.format("faults.rs"),
    "cached tokens keep working; new tokens carry the same kid; the API needs no new fetch",
    "e2e-faults", ["faults::the_emulator_restarted_leaves_every_token_valid"],
    cases("emulator restarted"))
row("JWKS endpoint down for a day",
    "`tests/api/keys.rs`: the API's key store against wiremock answering 503, "
    "manual clock",
    "last good keys served up to 24 h (`keys.max_stale_secs`), then every lookup refused "
    "(fail closed) and `/readyz` stale",
    "api-faults", ["keys::an_outage_keeps_the_last_good_keys_for_24_hours_then_fails_closed"],
    cases("JWKS outage"))
row("`kill -9` of the API under write load",
    "`api-service/tests/durability.rs`: the built binary, 8 writers creating tasks, SIGKILL "
    "after 300 acknowledgements, restart on the same SQLite file; the same on PostgreSQL (a real "
    "server the harness starts)",
    "every acknowledged (201) task found after the restart, on both; SIGTERM then exits 0",
    "durability",
    ["kill_9_under_write_load_loses_no_acknowledged_task_and_sigterm_exits_0_on_sqlite",
     "kill_9_under_write_load_loses_no_acknowledged_task_and_sigterm_exits_0_on_postgres"],
    cases("kill -9 under write load on sqlite", "SIGTERM after the restart on sqlite",
          "kill -9 under write load on postgres", "SIGTERM after the restart on postgres"))
row("PostgreSQL down under the API",
    "`tests/api/operations.rs`: the API's own PostgreSQL stopped before the API starts, started, "
    "stopped again mid-run (`pg_ctl stop -m immediate`), started again",
    "task routes 503 `database_unavailable` with `Retry-After` while it is down, nothing "
    "acknowledged; whoami and validation unaffected; `/readyz` names the database; recovery "
    "without restarting the API",
    "api-faults",
    ["operations::with_postgres_down_tasks_answer_503_the_rest_works_and_it_recovers_by_itself"],
    cases("PostgreSQL outage"))

# Fuzz regression inputs and the secrets test print no figures of their own: what they check is
# the figure.
regressions = [t for t in outcomes if "fuzz_regressions::" in t]
row("Fuzzers' regression inputs replayed",
    "`tests/api/fuzz_regressions.rs`, `tests/emulator/fuzz_regressions.rs`: "
    "every file of `fuzz/seeds/` and `fuzz/regressions/` through the fuzz harnesses",
    "no panic, every oracle holds",
    "api-faults",
    ["fuzz_regressions::preparse_inputs_replay", "fuzz_regressions::validator_inputs_replay",
     "fuzz_regressions::token_form_inputs_replay"],
    [f"{len(regressions)} replay tests passed: " + ", ".join(f"`{t}`" for t in sorted(regressions))]
    if regressions and all(outcomes[t] == "ok" for t in regressions) else [],
    status("emulator-fuzz-regressions")[0] == 0, "entra-emulator replay failed")
row("Secrets in logs at trace level",
    "`mesh/tests/secrets.rs`: the whole mesh (`mesh` binary) with `RUST_LOG=trace`, every job run "
    "twice, a PKCE sign-in",
    "no client secret, PEM private key, signing-key material or JWT in stdout or stderr",
    "secrets", ["the_mesh_at_trace_level_prints_no_secret_key_or_token"],
    ["none found in over 1,000 trace lines of real traffic (asserted: tasks created, refusals seen)"]
    if outcomes.get("the_mesh_at_trace_level_prints_no_secret_key_or_token") == "ok" else [])
row(f"Sustained authenticated load ({duration if not duration.isdigit() else duration + ' s'})",
    "`scripts/load-api.sh sustained`: release build, wrk (1 thread, 64 connections) over loopback "
    "against `GET /api/whoami` with a real emulator token; wrk and the API share the 2 cores",
    "0 errors (wrk non-2xx/3xx and socket errors; the API's non-200 answers and refused tokens); "
    "resident memory after ≤ before + 8 MiB (`RSS_GROWTH_MIB`)",
    "load", [], cases("sustained load"))

if "replicas" in steps:
    replicas_how = ("`scripts/replicas-faults.sh`: `docker-compose.replicas.yml` (three API replicas on "
                    "one PostgreSQL behind HAProxy, the emulator, a reader and a writer job calling "
                    "every second through HAProxy) plus a probe from the host (whoami and a create "
                    "with its own external_id, 5 of each a second, one repeat after no answer or a "
                    "502/503/504)")
    replicas_out = read("replicas.out")

    def replicas_ok(*prefixes):
        return not any(re.search(r"^FAIL: " + re.escape(p), replicas_out, re.M) for p in prefixes)

    why = "a check of this scenario failed (target/resilience/replicas.out)"
    row("`kill -9` of one API replica's process under load", replicas_how,
        "0 job runs and 0 probe calls failed beyond their one repeat; a burst of whoami from 16 "
        "threads across the kill: every call 200; Docker restarts it and HAProxy sends to it again",
        "replicas", [], cases("replicas, kill -9"), replicas_ok("kill -9"), why)
    row("One API replica cut off from the identity provider past its key refresh",
        replicas_how + "; `docker network disconnect` of the replica from the emulator's network; "
        "keys refreshed every 60 s, trusted 90 s without a refresh (`deploy/replicas/api.env`)",
        "it serves on its last good keys and stays ready until their age passes the bound, then "
        "readiness says stale and HAProxy takes it out; reconnected, back in rotation; 0 failed "
        "runs or calls beyond their repeat",
        "replicas", [], cases("replicas, cut off from the IdP"), replicas_ok("cut off"), why)
    row("The shared PostgreSQL cut off from the replicas",
        replicas_how + "; `docker network disconnect` of PostgreSQL for 20 s",
        "task routes 503 with `Retry-After`, whoami 200, through HAProxy; after the heal every "
        "acknowledged create is stored, and none twice",
        "replicas", [], cases("replicas, database cut off"),
        replicas_ok("database cut off", "every acknowledged"), why)
    row("Rolling restart of the three replicas under load",
        replicas_how + "; `restart` of each replica in turn (SIGTERM: `/readyz` 503 for "
        "`server.drain_secs` = 5 s while serving, then close), the next once HAProxy has it UP",
        "0 failed job runs and 0 failed probe calls, not even before a repeat",
        "replicas", [], cases("replicas, rolling restart"), replicas_ok("rolling restart"), why)
    row("The balancer's own view across all of the above",
        replicas_how + "; HAProxy's log: every request with the replica it went to, and every "
        "replica's DOWN and UP, in order",
        "no request sent to a replica while HAProxy had it out",
        "replicas", [], cases("replicas, the balancer's view"), replicas_ok("the balancer"), why)

fuzz_section = []
if fuzz_secs:
    lines = [l for l in read("fuzz.out").splitlines() if l.startswith("fuzz target=")]
    row(f"Fuzzing, {fuzz_secs} s per target",
        "`scripts/fuzz.sh`: cargo-fuzz (libFuzzer, AddressSanitizer), one process per target",
        "no crash, leak, timeout or OOM",
        "fuzz", [], [f"`{l}`" for l in lines])
else:
    readme = read(os.path.abspath("fuzz/README.md"))
    # The recorded runs: the table of a "## … runs" section (not "## Running"), else any summary
    # lines of scripts/fuzz.sh quoted there.
    section, heading = [], None
    for line in readme.splitlines():
        if line.startswith("## "):
            if heading:
                break
            if re.search(r"\bruns\b", line, re.I):
                heading = line[3:].strip()
            continue
        if heading:
            section.append(line)
    table = [l for l in section if l.startswith("|")]
    recorded = [l.strip().strip("`") for l in readme.splitlines()
                if "fuzz target=" in l and "crashes=" in l and "execs=…" not in l]
    fuzz_section.append("## Fuzzing\n")
    intro = ("Not run by this generation (set `FUZZ_SECS` to run `scripts/fuzz.sh` here). "
             "The 10-minute runs are recorded in ")
    if table:
        anchor = re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        fuzz_section.append(intro + f"[fuzz/README.md, {heading}](fuzz/README.md#{anchor}), "
                            "quoted:\n")
        fuzz_section.append("\n".join(table) + "\n")
    elif recorded:
        fuzz_section.append(intro + "[fuzz/README.md](fuzz/README.md):\n")
        fuzz_section.append("```\n" + "\n".join(recorded) + "\n```\n")
    else:
        fuzz_section.append(intro + "[fuzz/README.md](fuzz/README.md); no table of runs or "
                            "`fuzz target=… crashes=…` line was found there to quote.\n")
    fuzz_section.append("Its regression inputs are replayed above on every generation.\n")

unmatched = [f for f in figures if not f[2]]

cpu = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
mem = ""
for line in open("/proc/meminfo"):
    if line.startswith("MemTotal"):
        mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
commit = read("commit").strip()
dirty = read("dirty").split()
untracked = int(read("untracked", "0").strip() or 0)
subject = subprocess.run(["git", "log", "-1", "--format=%s", commit], capture_output=True,
                         text=True).stdout.strip()
durations = ", ".join(f"{s} {status(s)[1]} s" for s in steps if status(s)[0] is not None)

for step in steps:
    code, _ = status(step)
    if code not in (0, None) and step not in failed_steps:
        failures.append(f"step `{step}` exited with status {code} (see target/resilience/{step}.out)")

cell = lambda s: s.replace("|", "\\|").replace("\n", " ")
md = []
md.append("# Resilience\n")
md.append("Generated by `bash scripts/resilience.sh`; do not edit by hand. Each row is a check that "
          "ran for this file: the figures in *seen* are printed by the check itself "
          "(`resilience: …` lines) and the result is the test's or script's own verdict.\n")
verdict = ("**All {} checks passed.**".format(len(rows)) if not failures else
           "**{} of {} checks FAILED:** {}.".format(len(failures), len(rows), "; ".join(failures)))
md.append(verdict + "\n")
md.append(f"- date: {read('started').strip()} (UTC)")
md.append(f"- commit: `{commit[:12]}` ({subject})"
          + ("; the working tree (shared with other engineers) also had uncommitted changes to "
             + ", ".join(f"`{f}`" for f in dirty) if dirty else "")
          + (f"{' and' if dirty else '; the working tree also had'} {untracked} untracked file(s)"
             if untracked else ""))
md.append(f"- machine: {os.cpu_count()} cores ({cpu}), {mem} RAM, {os.uname().sysname} "
          f"{os.uname().release}; shared with other builds, so timings and throughput are noisy "
          f"(load average {read('load-before').strip()} before, {read('load-after').strip()} after)")
md.append(f"- toolchain: {read('rustc').strip()}")
md.append(f"- step durations: {durations}\n")
md.append("| what was tried | how | expected | seen (figures) | result |")
md.append("|---|---|---|---|---|")
for r in rows:
    md.append("| " + " | ".join(cell(c) for c in r) + " |")
md.append("")
if unmatched:
    md.append("## Other figures\n")
    md.append("Printed by the checks above but not placed in a row:\n")
    for case, figure in ((f[0], f[1]) for f in unmatched):
        md.append(f"- {case}: {figure}")
    md.append("")
md.extend(fuzz_section)
md.append("## Notes\n")
md.append("- The storm bounds come from the token manager's backoff (`caller-service/src/token_manager.rs`: "
          "full jitter, 1 s initial, 60 s cap, `Retry-After` honoured); the derivation is the comment "
          "at the top of `tests/caller/storms.rs`.")
md.append("- Simulated time: the storm and end-to-end tests move the callers' clock by hand, so two hours "
          "take seconds; requests to wiremock, the emulator and the API are real.")
md.append("- Load figures are from one run on the shared machine; see BENCHMARKS.md for the comparison "
          "with `/healthz` and the targets.")
open(out, "w", encoding="utf-8").write("\n".join(md) + "\n")
print(verdict.replace("**", ""))
sys.exit(1 if failures else 0)
PY
