# Build, run and test entry points; see README.md.

NGINX_SRC   ?=
NGINX_BIN   ?= /usr/sbin/nginx
PYTHON      ?= /usr/bin/python3
BUILD       := build
MODULE      := objs/ngx_http_langfuse_module.so
MODULE_ASAN := objs/asan/ngx_http_langfuse_module.so
CC_OPT      ?= -g -O2 -Wall -Wextra -Wno-unused-parameter -Werror

LF_SRCS     := config $(wildcard ngx_lf_module/*.[ch])

.PHONY: all module run test unit integration memcheck fuzz fuzz-smoke \
        bench deps deps-run clean

all: module

module: $(MODULE)

# Against Debian's nginx-dev (/usr/share/nginx/src) unless NGINX_SRC
# names an nginx source tree; both are configured --with-compat.
$(MODULE): $(LF_SRCS)
	NGINX_SRC="$(NGINX_SRC)" BUILD="$(BUILD)" CC_OPT="$(CC_OPT)" \
	    bash scripts/build.sh

# the same module instrumented for AddressSanitizer
$(MODULE_ASAN): $(LF_SRCS)
	NGINX_SRC="$(NGINX_SRC)" BUILD="$(BUILD)/asan" OUT=objs/asan \
	    CC_OPT="-g -O1 -fsanitize=address -fno-omit-frame-pointer" \
	    LD_OPT="-fsanitize=address" bash scripts/build.sh

deps:
	bash scripts/deps.sh test

deps-run:
	bash scripts/deps.sh run

run: deps-run
	$(MAKE) module
	NGINX_BIN="$(NGINX_BIN)" bash scripts/run.sh

test: deps
	$(MAKE) module
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) memcheck
	$(MAKE) fuzz-smoke

unit:
	$(MAKE) -C t/unit check

integration: $(MODULE)
	$(PYTHON) -m pytest -q -p no:cacheprovider t

# the integration suite again with AddressSanitizer inside nginx
memcheck: $(MODULE_ASAN)
	LF_MEMCHECK=asan LF_MODULE=$(CURDIR)/$(MODULE_ASAN) \
	    $(PYTHON) -m pytest -q -p no:cacheprovider t

fuzz-smoke:
	$(MAKE) -C fuzz smoke

fuzz:
	$(MAKE) -C fuzz fuzz

bench: $(MODULE)
	bash bench/run.sh

clean:
	rm -rf $(BUILD) objs run-demo
	$(MAKE) -C t/unit clean
	$(MAKE) -C fuzz clean
