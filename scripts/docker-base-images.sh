#!/usr/bin/env bash
# Local stand-ins for the images the repository names, for a Docker Engine that cannot pull (this
# project's machines reach Debian's mirror and the Rust package registry but no container registry, and their
# engine starts with no images): the Dockerfile's base images (its FROM lines) and the images its
# top-level docker-compose*.yml files run by name (their `image:` keys). With the stand-ins in
# place, the Dockerfile and the compose files run unchanged (`docker compose up --build`).
#
#   debian:bookworm-slim       debootstrap --variant=minbase bookworm from Debian's mirror, trimmed
#                              like the official slim image (no docs, man pages or locales; apt
#                              lists cleaned), imported with `docker import`.
#   rust:<version>-slim-bookworm  the image above plus what the official rust slim image adds
#                              (ca-certificates, gcc, libc6-dev; CARGO_HOME=/usr/local/cargo,
#                              RUSTUP_HOME=/usr/local/rustup, cargo on PATH) with this machine's Rust
#                              toolchain (`rustup which cargo`) copied in instead of downloaded. Its
#                              version must be the tag's. The machine's locally added CA certificates
#                              (/usr/local/share/ca-certificates) are trusted in this image only, so
#                              that cargo reaches the Rust package registry through this machine's TLS-inspecting
#                              egress; the runtime images built FROM debian:bookworm-slim do not get
#                              them.
#   postgres:<major>-bookworm  debian:bookworm-slim plus Debian's postgresql-<major> (bookworm has 15
#                              only), laid out like the official image: user postgres with uid/gid
#                              999, PGDATA=/var/lib/postgresql/data (a VOLUME),
#                              /usr/lib/postgresql/<major>/bin on PATH, LANG=en_US.utf8, gosu,
#                              listen_addresses='*' in the sample config, EXPOSE 5432, STOPSIGNAL
#                              SIGINT, CMD ["postgres"]. Its docker-entrypoint.sh is written here,
#                              not copied, and keeps the official one's contract: POSTGRES_PASSWORD
#                              (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER,
#                              POSTGRES_DB (each also as *_FILE), POSTGRES_INITDB_ARGS,
#                              POSTGRES_INITDB_WALDIR and POSTGRES_HOST_AUTH_METHOD on first start,
#                              /docker-entrypoint-initdb.d (*.sh executed or sourced, *.sql,
#                              *.sql.gz, *.sql.xz, *.sql.zst), a step down from root to postgres,
#                              nss_wrapper for a --user without a passwd entry, other commands run as
#                              given. Not the same: PostgreSQL is Debian's build at bookworm's
#                              current 15.x, where the official image has the PGDG build of the
#                              latest minor (so no PG_VERSION variable); gosu is Debian's 1.14; there
#                              is no docker-ensure-initdb.sh.
#   haproxy:2.6-bookworm       debian:bookworm-slim plus Debian's haproxy package (bookworm has
#                              2.6.12; a tag's version must be 2.6 or 2.6.12), laid out like the
#                              official image: /usr/local/sbin/haproxy (a link to Debian's
#                              /usr/sbin/haproxy), /usr/local/etc/haproxy with the error pages in
#                              errors/ and no haproxy.cfg (mount one), user haproxy with uid/gid 99,
#                              USER haproxy (so, as with the official image, ports below 1024 bind
#                              only where the engine allows it: Docker 20.10 and later set
#                              net.ipv4.ip_unprivileged_port_start=0 in containers), WORKDIR
#                              /var/lib/haproxy, STOPSIGNAL SIGUSR1 (graceful stop),
#                              CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"];
#                              its docker-entrypoint.sh (written here) runs haproxy as
#                              `haproxy -W -db ...` (options alone mean haproxy) and anything else as
#                              given. Not the same: Debian's build of 2.6.12 with Debian's security
#                              patches, where the official image builds the latest 2.6 release from
#                              source; Debian's /etc/haproxy (its default haproxy.cfg, unused) is
#                              still there; no HAPROXY_VERSION, HAPROXY_URL or HAPROXY_SHA256.
#                              Both images keep /usr/sbin/policy-rc.d (exit 101) so that package
#                              installs start no service, as in the official Debian images.
#
# Compose `image:` keys are read from services and from top-level x-* blocks; a block that also has
# `build:` (its own or one merged in with `<<: *anchor`) is left out, its image being what the
# build makes. Compose files that name no image at all are fine.
#
# Idempotent: an image that already exists (a stand-in made earlier, or the real one pulled on a
# machine that can) is left alone, so a second run takes a second. Every image to make must have a
# recipe above, checked before anything is built. Needs a reachable Docker Engine, and root when
# debian:bookworm-slim must be made (debootstrap, which is installed with apt-get when missing).
#
# The Debian mirror is the one this machine's apt already uses (its sources for $SUITE and
# $SUITE-security, in /etc/apt/sources.list or sources.list.d/), so the script names no host of
# its own; DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR override them.
#
#   bash scripts/docker-base-images.sh            # make whatever is missing
#   bash scripts/docker-base-images.sh --list     # print the images the Dockerfile and compose files name
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
DOCKERFILE=Dockerfile
STAND_IN_LABEL=org.m2m-entra.stand-in

say() { printf 'docker-base-images: %s\n' "$*"; }
die() {
  printf 'docker-base-images: error: %s\n' "$*" >&2
  exit 1
}

# The images named by FROM lines, without the Dockerfile's own stage names.
base_images() {
  awk '
    toupper($1) == "FROM" {
      image = $2
      for (i = 3; i <= NF; i++) if (toupper($i) == "AS") stages[$(i + 1)] = 1
      images[++n] = image
    }
    END { for (i = 1; i <= n; i++) if (!(images[i] in stages) && !seen[images[i]]++) print images[i] }
  ' "$DOCKERFILE"
}

# The images named by `image:` keys in the top-level compose files, one "image<TAB>file" a line:
# those of services and of top-level x-* blocks, without a block that has `build:` of its own or
# through a `<<: *anchor` merge (its image: names what is built). Comment lines are skipped;
# trailing comments and quotes are stripped.
compose_images() {
  local files=()
  mapfile -t files < <(find . -maxdepth 1 -name 'docker-compose*.yml' -type f | sort)
  ((${#files[@]} > 0)) || return 0
  awk '
    function flush() {
      if (block && anchor != "" && build) built[anchor] = 1
      if (block && image != "" && !build) printf "%s\t%s\n", image, substr(file, 3)
      block = 0; image = ""; build = 0; anchor = ""; keys = -1
    }
    function start(line) {
      flush(); block = 1
      if (match(line, /&[A-Za-z0-9_.-]+/)) anchor = substr(line, RSTART + 1, RLENGTH - 1)
    }
    function value(line, v, q, first) {
      v = line; q = "\047"
      sub(/^image:[ \t]*/, "", v); sub(/[ \t]+#.*$/, "", v); sub(/[ \t]+$/, "", v)
      first = substr(v, 1, 1)
      if ((first == "\"" || first == q) && length(v) > 1 && substr(v, length(v)) == first)
        v = substr(v, 2, length(v) - 2)
      return v
    }
    FILENAME != file { flush(); file = FILENAME; section = ""; split("", built) }
    /^[ \t]*(#|$)/ { next }
    { match($0, /^ */); indent = RLENGTH; line = substr($0, indent + 1) }
    indent == 0 {
      flush(); section = ""; services = -1
      if (line ~ /^services:/) section = "services"
      else if (line ~ /^x-[^:]*:/) { section = "x"; start(line) }
      next
    }
    section == "" { next }
    section == "services" && (services < 0 || indent <= services) { services = indent; start(line); next }
    keys < 0 { keys = indent }
    indent != keys { next }
    line ~ /^build:/ { build = 1 }
    line ~ /^image:/ { image = value(line) }
    line ~ /^<<:/ {
      rest = line
      while (match(rest, /\*[A-Za-z0-9_.-]+/)) {
        if (substr(rest, RSTART + 1, RLENGTH - 1) in built) build = 1
        rest = substr(rest, RSTART + RLENGTH)
      }
    }
    END { flush() }
  ' "${files[@]}"
}

[[ -f $DOCKERFILE ]] || die "no $DOCKERFILE at the repository top"
declare -A NAMED_BY=()
IMAGES=()
while read -r image; do
  IMAGES+=("$image")
  NAMED_BY[$image]=$DOCKERFILE
done < <(base_images)
((${#IMAGES[@]} > 0)) || die "$DOCKERFILE names no base image"
while IFS=$'\t' read -r image file; do
  if [[ -z ${NAMED_BY[$image]:-} ]]; then
    IMAGES+=("$image")
    NAMED_BY[$image]=$file
  elif [[ ${NAMED_BY[$image]} != *"$file"* ]]; then
    NAMED_BY[$image]+=", $file"
  fi
done < <(compose_images)
if [[ ${1:-} == --list ]]; then
  printf '%s\n' "${IMAGES[@]}"
  exit 0
fi

PG_MAJOR_IN_SUITE=15     # Debian bookworm's only postgresql-<major>
HAPROXY_IN_SUITE=2.6.12  # Debian bookworm's haproxy

# The PostgreSQL major version of a postgres:<major>[.<minor>]-bookworm tag, or a die.
postgres_major() {
  local image=$1 version
  version=${image#postgres:}
  version=${version%-"$SUITE"}
  [[ $version =~ ^([0-9]+)(\.[0-9]+)?$ ]] || die "$image: cannot read a PostgreSQL version from the tag"
  [[ ${BASH_REMATCH[1]} == "$PG_MAJOR_IN_SUITE" ]] ||
    die "$image: Debian $SUITE has no postgresql-${BASH_REMATCH[1]}, only postgresql-$PG_MAJOR_IN_SUITE (use postgres:$PG_MAJOR_IN_SUITE-$SUITE)"
  printf '%s\n' "${BASH_REMATCH[1]}"
}

# Dies unless the haproxy:<version>-bookworm tag is Debian bookworm's haproxy (2.6 or 2.6.12).
check_haproxy_tag() {
  local image=$1 version
  version=${image#haproxy:}
  version=${version%-"$SUITE"}
  [[ $version =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] || die "$image: cannot read a HAProxy version from the tag"
  [[ $version == "${HAPROXY_IN_SUITE%.*}" || $version == "$HAPROXY_IN_SUITE" ]] ||
    die "$image: Debian $SUITE has haproxy $HAPROXY_IN_SUITE, not $version (use haproxy:${HAPROXY_IN_SUITE%.*}-$SUITE)"
}

# Dies unless there is a recipe for a stand-in of $1 (and its tag is one the recipe can honour).
check_recipe() {
  local image=$1
  case $image in
    "debian:$SUITE-slim" | rust:*-slim-"$SUITE") ;;
    postgres:*-"$SUITE") postgres_major "$image" >/dev/null ;;
    haproxy:*-"$SUITE") check_haproxy_tag "$image" ;;
    *)
      die "no recipe for a stand-in of $image (named by ${NAMED_BY[$image]}); the script knows" \
        "debian:$SUITE-slim, rust:<version>-slim-$SUITE, postgres:$PG_MAJOR_IN_SUITE-$SUITE and" \
        "haproxy:${HAPROXY_IN_SUITE%.*}-$SUITE: load the real image (docker save on a machine that" \
        "can pull, docker load here) or add a recipe to scripts/docker-base-images.sh"
      ;;
  esac
}

docker info >/dev/null 2>&1 || die "no Docker Engine reachable (docker info failed)"

missing=()
for image in "${IMAGES[@]}"; do
  if docker image inspect "$image" >/dev/null 2>&1; then
    what=$(docker image inspect -f "{{index .Config.Labels \"$STAND_IN_LABEL\"}}" "$image")
    say "$image: present${what:+ (stand-in: $what)}, left alone"
  else
    missing+=("$image")
  fi
done
if ((${#missing[@]} == 0)); then
  say "all images present"
  exit 0
fi
for image in "${missing[@]}"; do
  check_recipe "$image"
done

# Every recipe starts from debian:$SUITE-slim, made with debootstrap.
if ! docker image inspect "debian:$SUITE-slim" >/dev/null 2>&1; then
  ((EUID == 0)) || die "making debian:$SUITE-slim needs root (debootstrap); missing: ${missing[*]}"
fi

WORK=$(mktemp -d /var/tmp/docker-base-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The URI of this machine's apt source for suite $1: deb822 stanzas (*.sources) first, then
# one-line entries (sources.list, *.list). Empty when none names the suite.
host_apt_uri() {
  local suite=$1
  {
    awk -v suite="$suite" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uri = ""; named = 0; binary = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, u, /[ \t]+/); uri = u[2] }
          if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) named = 1 }
          if ($i ~ /^Types:/ && $i ~ /[ \t]deb([ \t]|$)/) binary = 1
        }
        if (named && binary && uri != "") print uri
      }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk -v suite="$suite" '
        $1 == "deb" {
          i = 2
          if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) == suite) print $i
        }' || true
  } | head -n 1
}

make_debian() {
  local image=debian:$SUITE-slim root="$WORK/rootfs"
  local mirror=${DEBIAN_MIRROR:-$(host_apt_uri "$SUITE")}
  local security=${DEBIAN_SECURITY_MIRROR:-$(host_apt_uri "$SUITE-security")}
  [[ -n $mirror ]] || die "this machine's apt has no source for $SUITE: set DEBIAN_MIRROR to a Debian mirror URI"
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  say "$image: debootstrap --variant=minbase $SUITE from $mirror (about a minute)"
  if ! debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
    tail -20 "$WORK/debootstrap.log" >&2
    die "debootstrap failed (log above)"
  fi
  # What the official slim image does: apt sources for the suite, its updates and security (the
  # mirrors this machine uses); no documentation, man pages or locales now or from later
  # installs; no apt caches.
  rm -f "$root/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$mirror" "$SUITE" "$SUITE"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [[ -n $security ]]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$security" "$SUITE"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$root/etc/apt/sources.list.d/debian.sources"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'APT::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  find "$root/usr/share/doc" -mindepth 2 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{man,info,groff,lintian,linda}/* "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/tmp/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  # The engine provides these per container.
  rm -f "$root/etc/resolv.conf" "$root/etc/hostname" "$root/etc/hosts"
  : >"$root/etc/machine-id"

  tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --change "LABEL $STAND_IN_LABEL=\"debootstrap $SUITE minbase, scripts/docker-base-images.sh\"" \
    - "$image" >/dev/null
  rm -rf "$root"
  say "$image: imported ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
}

make_rust() {
  local image=$1 tag version cargo toolchain ctx="$WORK/rust-context"
  tag=${image#rust:}
  version=${tag%-slim-"$SUITE"}
  [[ $version =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] || die "$image: cannot read a Rust version from the tag"
  command -v rustup >/dev/null 2>&1 || die "$image: rustup is needed to find this machine's toolchain"
  cargo=$(rustup which cargo) || die "$image: rustup which cargo failed"
  toolchain=$(realpath "$(dirname "$cargo")/..")
  local have
  have=$("$toolchain/bin/rustc" --version | awk '{print $2}')
  [[ $have == "$version" || $have == "$version".* ]] ||
    die "$image: this machine's toolchain is rustc $have, not $version (the tag must match rust-toolchain.toml)"
  docker image inspect "debian:$SUITE-slim" >/dev/null 2>&1 || make_debian

  say "$image: debian:$SUITE-slim + gcc, libc6-dev, ca-certificates + rustc $have from $toolchain"
  mkdir -p "$ctx/toolchain" "$ctx/local-ca"
  # The toolchain without its HTML documentation (rust-docs, ~800 MB).
  tar -C "$toolchain" --exclude=./share/doc -c . | tar -C "$ctx/toolchain" -x
  [[ -x $ctx/toolchain/bin/cargo && -x $ctx/toolchain/bin/rustc ]] || die "$image: copying the toolchain failed"
  local extra=0
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ctx/local-ca/"
    extra=$(find "$ctx/local-ca" -name '*.crt' | wc -l)
  fi
  say "$image: trusting $extra locally added CA certificate(s) for cargo's downloads"
  local name="$version-x86_64-unknown-linux-gnu" tool
  [[ $(uname -m) == x86_64 ]] || die "$image: only x86_64 hosts are handled"
  # CARGO_HOME/bin holds the tools (links into the toolchain, where the official image has
  # rustup's proxies); both homes are writable by any user, as in the official image. Modes are
  # set here because a RUN chmod would copy the whole toolchain into another layer.
  mkdir -p "$ctx/cargo/bin"
  for tool in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
    if [[ -e $ctx/toolchain/bin/$tool ]]; then
      ln -s "/usr/local/rustup/toolchains/$name/bin/$tool" "$ctx/cargo/bin/$tool"
    fi
  done
  chmod -R a+w "$ctx/toolchain" "$ctx/cargo"
  cat >"$ctx/Dockerfile" <<EOF
FROM debian:$SUITE-slim
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$version
COPY local-ca/ /usr/local/share/ca-certificates/
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
 && rm -rf /var/lib/apt/lists/*
COPY toolchain/ /usr/local/rustup/toolchains/$name/
COPY cargo/ /usr/local/cargo/
RUN cargo --version && rustc --version
LABEL $STAND_IN_LABEL="debian:$SUITE-slim + this machine's rustc $have, scripts/docker-base-images.sh"
EOF
  build_stand_in "$image" "$ctx"
}

# docker build of the context $2 as image $1 (classic builder, quiet), then the context is removed.
build_stand_in() {
  local image=$1 ctx=$2 log="$2.log" started=$SECONDS
  if ! DOCKER_BUILDKIT=0 docker build -q --force-rm -t "$image" "$ctx" >"$log" 2>&1; then
    tail -30 "$log" >&2
    die "$image: docker build failed (log above)"
  fi
  rm -rf "$ctx"
  say "$image: built in $((SECONDS - started))s ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
}

# What the official Debian images have and debootstrap leaves out: package installs during a
# build start no service.
POLICY_RC_D='printf '\''#!/bin/sh\nexit 101\n'\'' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d'

make_postgres() {
  local image=$1 major version ctx="$WORK/postgres-context"
  major=$(postgres_major "$image")
  # What `postgres --version` must say: the tag's <major>.<minor>, or any minor of <major>.
  version=${image#postgres:}
  version=${version%-"$SUITE"}
  if [[ $version == *.* ]]; then version+=" "; else version+=.; fi
  docker image inspect "debian:$SUITE-slim" >/dev/null 2>&1 || make_debian
  say "$image: debian:$SUITE-slim + Debian's postgresql-$major, the official image's layout and entrypoint contract"
  mkdir -p "$ctx"
  cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/usr/bin/env bash
# Entrypoint of the postgres stand-in made by scripts/docker-base-images.sh, written for it with the
# official postgres image's contract:
#   postgres [option...] (or options alone)  as root: make PGDATA (mode 0700) and
#       /var/run/postgresql the postgres user's, then run again as postgres. When PGDATA holds no
#       database: initdb (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_INITDB_ARGS,
#       POSTGRES_INITDB_WALDIR), every address allowed in with POSTGRES_HOST_AUTH_METHOD (default
#       scram-sha-256), then, on a server reachable by its unix socket only, POSTGRES_DB created and
#       /docker-entrypoint-initdb.d run. Then postgres in the foreground.
#   anything else  run as given.
# POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB and POSTGRES_INITDB_ARGS may come from files
# (POSTGRES_PASSWORD_FILE, ...). No -u: the sourced *.sh scripts were written for the official one.
set -Eeo pipefail

log() { printf '%s: %s\n' "${0##*/}" "$*"; }
fail() {
  printf '%s: error: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

# $1 from $1 or from the file $1_FILE names (not both), else the default $2; exported, with
# $1_FILE unset (so that the run as postgres, after root read the file, finds the value only).
from_env_or_file() {
  local name=$1 file_name=${1}_FILE fallback=${2:-} value
  if [[ -n ${!name:-} && -n ${!file_name:-} ]]; then
    fail "both $name and $file_name are set; give one"
  fi
  if [[ -n ${!name:-} ]]; then
    value=${!name}
  elif [[ -n ${!file_name:-} ]]; then
    [[ -r ${!file_name} ]] || fail "$file_name names ${!file_name}, which cannot be read"
    value=$(<"${!file_name}")
  else
    value=$fallback
  fi
  export "$name=$value"
  unset "$file_name"
}

# True when an argument only asks postgres to print something (no database is set up for that).
only_prints() {
  local arg
  for arg; do
    case $arg in
      '-?' | --help | --describe-config | -V | --version) return 0 ;;
    esac
  done
  return 1
}

# psql on the unix socket as POSTGRES_USER, in POSTGRES_DB unless a later --dbname says otherwise;
# stops at the first error. Sourced init scripts may use it too.
docker_process_sql() {
  PGHOST='' PGHOSTADDR='' psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" "$@"
}

# Runs initdb, through nss_wrapper when this uid has no passwd entry (docker run --user).
run_initdb() {
  if getent passwd "$(id -u)" >/dev/null; then
    initdb "$@"
    return
  fi
  local lib dir
  lib=$(compgen -G '/usr/lib/*/libnss_wrapper.so' | head -n 1) ||
    fail "uid $(id -u) has no passwd entry and nss_wrapper is missing"
  dir=$(mktemp -d)
  printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$(id -u)" "$(id -g)" "$PGDATA" >"$dir/passwd"
  printf 'postgres:x:%s:\n' "$(id -g)" >"$dir/group"
  LD_PRELOAD=$lib NSS_WRAPPER_PASSWD=$dir/passwd NSS_WRAPPER_GROUP=$dir/group initdb "$@"
  rm -rf "$dir"
}

initialize() {
  local method f
  local -a args=() opts=()
  if [[ -z $POSTGRES_PASSWORD && $POSTGRES_HOST_AUTH_METHOD != trust ]]; then
    fail "database is uninitialized and superuser password is not specified: set POSTGRES_PASSWORD" \
      "(or POSTGRES_PASSWORD_FILE) to a non-empty value, or POSTGRES_HOST_AUTH_METHOD=trust to let" \
      "every connection in without a password (not recommended)"
  fi
  # As the shell would split them, quotes included.
  eval "args=($POSTGRES_INITDB_ARGS)"
  if [[ -n $POSTGRES_INITDB_WALDIR ]]; then
    args=("--waldir=$POSTGRES_INITDB_WALDIR" "${args[@]}")
  fi
  if [[ -n $POSTGRES_PASSWORD ]]; then
    # The password goes to initdb in a file only this user can read, never on a command line.
    PWFILE=$(mktemp)
    trap 'rm -f "$PWFILE"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" >"$PWFILE"
    args=("--pwfile=$PWFILE" "${args[@]}")
  fi
  run_initdb --username="$POSTGRES_USER" "${args[@]}"
  if [[ -n ${PWFILE:-} ]]; then
    rm -f "$PWFILE"
    trap - EXIT
  fi

  # Local (socket) connections stay trusted, as initdb made them; every address gets the method.
  method=$POSTGRES_HOST_AUTH_METHOD
  if [[ -z $method ]]; then
    method=scram-sha-256
    [[ $(postgres -C password_encryption "$@") == md5 ]] && method=md5
  fi
  {
    printf '\n# Added by docker-entrypoint.sh: every address, with %s.\n' "$method"
    printf 'host all all all %s\n' "$method"
  } >>"$PGDATA/pg_hba.conf"
  if [[ $method == trust ]]; then
    log "warning: POSTGRES_HOST_AUTH_METHOD=trust lets every connection in without a password"
  fi

  # A server for the set-up only, on its unix socket (no TCP), with the options postgres will get.
  opts=("$@" -c listen_addresses= -p "${PGPORT:-5432}")
  PGUSER=$POSTGRES_USER pg_ctl -D "$PGDATA" -w -o "$(printf '%q ' "${opts[@]}")" start

  if [[ $POSTGRES_DB != postgres ]]; then
    docker_process_sql --dbname postgres --set db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
SQL
  fi

  for f in /docker-entrypoint-initdb.d/*; do
    [[ -e $f ]] || continue
    case $f in
      *.sh)
        if [[ -x $f ]]; then
          log "running $f"
          "$f"
        else
          log "sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql)
        log "running $f"
        docker_process_sql -f "$f"
        ;;
      *.sql.gz)
        log "running $f"
        gzip -dc "$f" | docker_process_sql
        ;;
      *.sql.xz)
        log "running $f"
        xz -dc "$f" | docker_process_sql
        ;;
      *.sql.zst)
        log "running $f"
        zstd -dc "$f" | docker_process_sql
        ;;
      *) log "ignoring $f" ;;
    esac
  done

  pg_ctl -D "$PGDATA" -m fast -w stop
  log "PostgreSQL init process complete; ready for start up."
}

if [[ ${1:-} == -* ]]; then
  set -- postgres "$@"
fi
if [[ ${1:-} != postgres ]] || only_prints "$@"; then
  exec "$@"
fi

from_env_or_file POSTGRES_PASSWORD
from_env_or_file POSTGRES_USER postgres
from_env_or_file POSTGRES_DB "$POSTGRES_USER"
from_env_or_file POSTGRES_INITDB_ARGS
: "${POSTGRES_HOST_AUTH_METHOD:=}" "${POSTGRES_INITDB_WALDIR:=}"

mkdir -p "$PGDATA"
chmod 0700 "$PGDATA" 2>/dev/null || true
if [[ -n $POSTGRES_INITDB_WALDIR ]]; then
  mkdir -p "$POSTGRES_INITDB_WALDIR"
fi
if ((EUID == 0)); then
  mkdir -p /var/run/postgresql
  chmod 3775 /var/run/postgresql
  find "$PGDATA" /var/run/postgresql ${POSTGRES_INITDB_WALDIR:+"$POSTGRES_INITDB_WALDIR"} \
    \! -user postgres -exec chown postgres:postgres {} +
  exec gosu postgres "${BASH_SOURCE[0]}" "$@"
fi

if [[ -s $PGDATA/PG_VERSION ]]; then
  log "PostgreSQL database directory appears to contain a database; skipping initialization"
else
  initialize "${@:2}"
fi
exec "$@"
EOF
  chmod 0755 "$ctx/docker-entrypoint.sh"
  cat >"$ctx/Dockerfile" <<EOF
FROM debian:$SUITE-slim
# As the official image: postgres is uid/gid 999, made before the packages would make another.
RUN groupadd --system --gid 999 postgres \\
 && useradd --system --gid postgres --uid 999 --home-dir /var/lib/postgresql --shell /bin/bash postgres \\
 && install -d -o postgres -g postgres -m 1777 /var/lib/postgresql
# Debian's packages: the cluster postgresql-$major would make is turned off first, as the official
# image does; en_US.UTF-8 is made so that databases are UTF-8.
RUN $POLICY_RC_D \\
 && apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      gosu less libnss-wrapper locales postgresql-common xz-utils zstd \\
 && sed -ri 's/^#?[[:space:]]*(create_main_cluster)[[:space:]]*=.*/\1 = false/' /etc/postgresql-common/createcluster.conf \\
 && grep -qx 'create_main_cluster = false' /etc/postgresql-common/createcluster.conf \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-$major \\
 && rm -rf /var/lib/apt/lists/* \\
 && localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8 \\
 && sed -ri "s/^#?(listen_addresses)[[:space:]]*=[[:space:]]*[^[:space:]]+.*/\1 = '*'/" /usr/share/postgresql/$major/postgresql.conf.sample \\
 && grep -qF "listen_addresses = '*'" /usr/share/postgresql/$major/postgresql.conf.sample
ENV LANG=en_US.utf8 \\
    PG_MAJOR=$major \\
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/$major/bin \\
    PGDATA=/var/lib/postgresql/data
# PGDATA is 1777 here and 0700 once the entrypoint has it (so that a --user can use it).
RUN install -d -o postgres -g postgres -m 3777 /var/run/postgresql \\
 && install -d -o postgres -g postgres -m 1777 "\$PGDATA" \\
 && install -d /docker-entrypoint-initdb.d
VOLUME /var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/
RUN postgres --version | grep -F "PostgreSQL) $version" && psql --version && pg_isready --version \\
 && gosu postgres true && locale -a | grep -qx en_US.utf8
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
LABEL $STAND_IN_LABEL="debian:$SUITE-slim + Debian's postgresql-$major, scripts/docker-base-images.sh"
EOF
  build_stand_in "$image" "$ctx"
}

make_haproxy() {
  local image=$1 ctx="$WORK/haproxy-context"
  check_haproxy_tag "$image"
  docker image inspect "debian:$SUITE-slim" >/dev/null 2>&1 || make_debian
  say "$image: debian:$SUITE-slim + Debian's haproxy ($HAPROXY_IN_SUITE), the official image's layout and entrypoint contract"
  mkdir -p "$ctx"
  cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# Entrypoint of the haproxy stand-in made by scripts/docker-base-images.sh, written for it with the
# official haproxy image's contract: options alone are options of haproxy; haproxy runs as
# `haproxy -W -db ...` (master-worker, so SIGUSR2 reloads and SIGUSR1 stops gracefully; in the
# foreground); anything else runs as given.
set -e
case ${1:-} in
  -*) set -- haproxy "$@" ;;
esac
if [ "${1:-}" = haproxy ]; then
  shift
  set -- haproxy -W -db "$@"
fi
exec "$@"
EOF
  chmod 0755 "$ctx/docker-entrypoint.sh"
  cat >"$ctx/Dockerfile" <<EOF
FROM debian:$SUITE-slim
# Debian's haproxy, where the official image keeps its own build: the binary in /usr/local/sbin,
# its configuration directory /usr/local/etc/haproxy with the error pages and no haproxy.cfg.
# The user the package makes gets the official image's uid/gid, 99, afterwards (the package's
# adduser refuses an existing haproxy below the system uid range).
RUN $POLICY_RC_D \\
 && apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \\
 && rm -rf /var/lib/apt/lists/* \\
 && uid=\$(id -u haproxy) gid=\$(id -g haproxy) \\
 && groupmod --gid 99 haproxy \\
 && usermod --uid 99 --gid 99 haproxy \\
 && find / -xdev -uid "\$uid" -exec chown -h 99 {} + \\
 && find / -xdev -gid "\$gid" -exec chgrp -h 99 {} + \\
 && install -d -o haproxy -g haproxy /var/lib/haproxy \\
 && ln -s /usr/sbin/haproxy /usr/local/sbin/haproxy \\
 && install -d /usr/local/etc/haproxy \\
 && cp -R /etc/haproxy/errors /usr/local/etc/haproxy/errors \\
 && haproxy -v | grep -qF 'version $HAPROXY_IN_SUITE'
COPY docker-entrypoint.sh /usr/local/bin/
STOPSIGNAL SIGUSR1
ENTRYPOINT ["docker-entrypoint.sh"]
USER haproxy
WORKDIR /var/lib/haproxy
CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
LABEL $STAND_IN_LABEL="debian:$SUITE-slim + Debian's haproxy $HAPROXY_IN_SUITE, scripts/docker-base-images.sh"
EOF
  build_stand_in "$image" "$ctx"
}

for image in "${missing[@]}"; do
  case $image in
    "debian:$SUITE-slim")
      docker image inspect "$image" >/dev/null 2>&1 || make_debian
      ;;
    rust:*-slim-"$SUITE")
      make_rust "$image"
      ;;
    postgres:*-"$SUITE")
      make_postgres "$image"
      ;;
    haproxy:*-"$SUITE")
      make_haproxy "$image"
      ;;
    *)
      check_recipe "$image"
      ;;
  esac
done
say "done: $(printf '%s ' "${IMAGES[@]}")"
