#!/usr/bin/env bash
# Local stand-ins for the base images the Dockerfile names, for a Docker Engine that cannot pull
# (this project's machines reach Debian's mirror and crates.io but no container registry, and
# their engine starts with no images). With the stand-ins in place, `docker compose up --build`
# runs the repository's Dockerfile unchanged.
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
#                              that cargo reaches crates.io through this machine's TLS-inspecting
#                              egress; the runtime images built FROM debian:bookworm-slim do not get
#                              them.
#
# Idempotent: an image that already exists (a stand-in made earlier, or the real one pulled on a
# machine that can) is left alone, so a second run takes a second. Needs root (debootstrap) and
# a reachable Docker Engine; installs debootstrap with apt-get when it is missing.
#
# The Debian mirror is the one this machine's apt already uses (its sources for $SUITE and
# $SUITE-security, in /etc/apt/sources.list or sources.list.d/), so the script names no host of
# its own; DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR override them.
#
#   bash scripts/docker-base-images.sh            # make whatever is missing
#   bash scripts/docker-base-images.sh --list     # print the base images the Dockerfile names
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

[[ -f $DOCKERFILE ]] || die "no $DOCKERFILE at the repository top"
mapfile -t IMAGES < <(base_images)
((${#IMAGES[@]} > 0)) || die "$DOCKERFILE names no base image"
if [[ ${1:-} == --list ]]; then
  printf '%s\n' "${IMAGES[@]}"
  exit 0
fi

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
  say "all base images present"
  exit 0
fi

((EUID == 0)) || die "making stand-ins needs root (debootstrap); missing: ${missing[*]}"

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
  if ! DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" >"$WORK/rust-build.log" 2>&1; then
    tail -30 "$WORK/rust-build.log" >&2
    die "$image: docker build failed (log above)"
  fi
  rm -rf "$ctx"
  say "$image: built ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
}

for image in "${missing[@]}"; do
  case $image in
    "debian:$SUITE-slim")
      docker image inspect "$image" >/dev/null 2>&1 || make_debian
      ;;
    rust:*-slim-"$SUITE")
      make_rust "$image"
      ;;
    *)
      die "no recipe for a stand-in of $image (the script knows debian:$SUITE-slim and rust:<version>-slim-$SUITE)"
      ;;
  esac
done
say "done: $(printf '%s ' "${IMAGES[@]}")"
