#!/usr/bin/env bash
# Builds objs/ngx_http_langfuse_module.so as a dynamic module.
#
# NGINX_SRC empty: Debian/Ubuntu's nginx-dev tree, configured with the
# flags the distribution's nginx was built with, so that the module
# loads into /usr/sbin/nginx.  NGINX_SRC set: that source tree,
# configured --with-compat.

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
case "${BUILD:-build}" in
    /*) build="$BUILD" ;;
    *)  build="$top/${BUILD:-build}" ;;
esac
out="$top/${OUT:-objs}"
cc_opt="${CC_OPT:--g -O2}"
ld_opt="${LD_OPT:-}"

if [ -z "${NGINX_SRC:-}" ]; then
    dist=/usr/share/nginx/src
    if [ ! -f "$dist/conf_flags" ]; then
        echo "build: $dist not found; install nginx-dev" \
             "(make deps) or set NGINX_SRC" >&2
        exit 1
    fi
    src="$build/nginx-dist"
    rm -rf "$src"
    mkdir -p "$build"
    cp -a "$dist" "$src"
    # shellcheck disable=SC1091
    . "$src/conf_flags"
    flags=("${NGX_CONF_FLAGS[@]}")
    nginx_bin="${NGINX_BIN:-/usr/sbin/nginx}"
    dist_cc=$("$nginx_bin" -V 2>&1 \
              | sed -n "s/.*--with-cc-opt='\([^']*\)'.*/\1/p")
    dist_ld=$("$nginx_bin" -V 2>&1 \
              | sed -n "s/.*--with-ld-opt='\([^']*\)'.*/\1/p")
    cc_opt="$dist_cc $cc_opt"
    ld_opt="$dist_ld $ld_opt"
else
    src=$(cd "$NGINX_SRC" && pwd)
    flags=(--with-compat --with-http_ssl_module --with-threads)
fi

cd "$src"
mkdir -p "$build"
./configure "${flags[@]}" --with-cc-opt="$cc_opt" --with-ld-opt="$ld_opt" \
    --add-dynamic-module="$top" > "$build/configure.log" 2>&1 || {
    tail -n 30 "$build/configure.log" >&2
    echo "build: configure failed, see $build/configure.log" >&2
    exit 1
}
make -f objs/Makefile modules > "$build/make.log" 2>&1 || {
    grep -E 'error|warning' "$build/make.log" | head -n 40 >&2
    echo "build: compile failed, see $build/make.log" >&2
    exit 1
}

# a new file, not new bytes in the old one: a running nginx that has the
# module loaded keeps its copy
mkdir -p "$out"
cp objs/ngx_http_langfuse_module.so "$out/.ngx_http_langfuse_module.so.new"
mv -f "$out/.ngx_http_langfuse_module.so.new" \
      "$out/ngx_http_langfuse_module.so"
echo "build: $out/ngx_http_langfuse_module.so"
