#!/usr/bin/env bash
#
# Installs the Debian/Ubuntu packages this project needs, and nothing when
# they are all present already (so it is cheap to call before every build).
#
#   scripts/deps.sh            everything (same as "test")
#   scripts/deps.sh build      what compiling the module needs
#   scripts/deps.sh run        build + nginx, python3, curl, CA certificates
#                              (make run)
#   scripts/deps.sh test       run + pytest, clang with its sanitizer and
#                              fuzzer runtime, valgrind (make test)
#
# Tested on Debian 12; package names are chosen to exist on Ubuntu 22.04
# and 24.04 as well, with alternatives where the names differ.
#
# Environment: DEPS_DRY_RUN=1 prints what would be installed and stops.

set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

say()  { printf 'deps: %s\n' "$*"; }
warn() { printf 'deps: warning: %s\n' "$*" >&2; }
die()  { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

what=${1:-test}

case "$what" in
    build|run|test|all) ;;
    -h|--help)
        sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        die "unknown argument \"$what\" (expected build, run or test)"
        ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1 \
    || ! command -v apt-get >/dev/null 2>&1
then
    die "this script needs dpkg and apt-get (Debian or Ubuntu)"
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    as_root=()
fi


# Each entry is one need.  "a|b" means either package satisfies it and the
# first one the archive offers is installed.  A trailing "?" marks a need
# whose absence is reported but does not fail the script.

build_needs=(
    build-essential
    "nginx-dev?"
    libyajl-dev
    libcurl4-openssl-dev
    zlib1g-dev
    libbrotli-dev
    libpcre2-dev
    libssl-dev
)

run_needs=(
    "${build_needs[@]}"
    "nginx-core|nginx"
    python3
    curl
    ca-certificates
)

# libclang-rt-dev follows the distribution's default clang (Debian 12: 14,
# Ubuntu 24.04: 18); libclang-rt-14-dev is the versioned name on Debian 12.
# Ubuntu 22.04 has neither: there the runtime comes with clang itself
# (libclang-common-14-dev), hence optional.
test_needs=(
    "${run_needs[@]}"
    python3-pytest
    python3-brotli
    clang
    "libclang-rt-dev|libclang-rt-14-dev?"
    "valgrind?"
)

case "$what" in
    build)    needs=("${build_needs[@]}") ;;
    run)      needs=("${run_needs[@]}") ;;
    test|all) needs=("${test_needs[@]}") ;;
esac


installed() {
    local status

    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [ "$status" = "install ok installed" ]
}

# true when the archive has an installable version of the package
available() {
    local candidate

    candidate=$(apt-cache policy "$1" 2>/dev/null \
                | sed -n 's/^ *Candidate: *//p' | head -n 1)
    [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}


not_offered() {
    case "$1" in
    nginx-dev)
        warn "nginx-dev is not in this distribution's archive; build" \
             "against an nginx source tree instead:" \
             "make NGINX_SRC=/path/to/nginx-1.22-or-later"
        ;;
    *)
        warn "none of \"$1\" is in the archive; skipping (optional)"
        ;;
    esac
}


# Pass 1: which needs are not met by an installed package.

lists=no
if compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    lists=yes
fi

missing=()

for need in "${needs[@]}"; do
    alts=${need%\?}
    met=no

    IFS='|' read -r -a names <<< "$alts"
    for name in "${names[@]}"; do
        if installed "$name"; then
            met=yes
            break
        fi
    done

    if [ "$met" = yes ]; then
        continue
    fi

    # An optional need that the (already fetched) package lists do not
    # offer is skipped here, so that it does not trigger "apt-get update"
    # on every run on a distribution that lacks it.
    if [ "$alts" != "$need" ] && [ "$lists" = yes ]; then
        offered=no
        for name in "${names[@]}"; do
            if available "$name"; then
                offered=yes
                break
            fi
        done

        if [ "$offered" = no ]; then
            not_offered "$alts"
            continue
        fi
    fi

    missing+=("$need")
done

if [ ${#missing[@]} -eq 0 ]; then
    say "all packages for \"$what\" are installed"
    exit 0
fi

say "missing for \"$what\": ${missing[*]}"

if [ "$(id -u)" -ne 0 ] && [ ${#as_root[@]} -eq 0 ]; then
    die "not root and sudo is not installed; install as root:" \
        "${missing[*]}"
fi


# Pass 2: refresh the package lists once, then pick a name for each need.

apt_get() {
    "${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 "$@"
}

if [ "${DEPS_DRY_RUN:-0}" != 1 ]; then
    say "apt-get update"
    apt_get update -q \
        || die "apt-get update failed (network, proxy or sources.list?)"
fi

required=()
optional=()

for need in "${missing[@]}"; do
    alts=${need%\?}
    pick=

    IFS='|' read -r -a names <<< "$alts"
    for name in "${names[@]}"; do
        if available "$name"; then
            pick=$name
            break
        fi
    done

    if [ -z "$pick" ]; then
        if [ "$alts" != "$need" ]; then
            not_offered "$alts"
            continue
        fi

        die "no installable package for \"$alts\" (apt-cache policy" \
            "shows no candidate; check sources.list)"
    fi

    if [ "$alts" != "$need" ]; then
        optional+=("$pick")
    else
        required+=("$pick")
    fi
done

if [ "${DEPS_DRY_RUN:-0}" = 1 ]; then
    say "would install: ${required[*]:-} ${optional[*]:-}"
    exit 0
fi

install_opts=(install -y -q --no-install-recommends)

if [ ${#required[@]} -gt 0 ]; then
    say "apt-get install ${required[*]}"
    apt_get "${install_opts[@]}" "${required[@]}" \
        || die "apt-get install failed for: ${required[*]}"
fi

# optional packages one by one, so that one failure costs only that one
for name in "${optional[@]}"; do
    say "apt-get install $name (optional)"
    apt_get "${install_opts[@]}" "$name" \
        || warn "could not install optional package $name; going on"
done


# nginx older than 1.22 (Ubuntu 22.04 ships 1.18) cannot load the module
# built here; say so now rather than at the first "make run".

if [ -x /usr/sbin/nginx ]; then
    version=$(/usr/sbin/nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
    major=${version%%.*}
    minor=${version#*.}
    minor=${minor%%.*}

    if [ -n "$version" ] && { [ "$major" -lt 1 ] \
        || { [ "$major" -eq 1 ] && [ "$minor" -lt 22 ]; }; }
    then
        warn "/usr/sbin/nginx is $version; the module needs nginx 1.22" \
             "or later"
    fi
fi

say "done"
