
/*
 * Copyright (C) The nginx-langfuse authors
 */


#ifndef _UNIT_H_INCLUDED_
#define _UNIT_H_INCLUDED_


#include <stdio.h>
#include <string.h>
#include <sys/types.h>


/*
 * A tiny check counter for the unit tests: every check counts, failures
 * are reported on stderr with unit_context (what input and split was
 * running), and UNIT_DONE() prints the one summary line and returns the
 * exit status from main().
 */

static unsigned long   unit_passed;
static unsigned long   unit_failed;
static char            unit_context[256];


#define UNIT_CONTEXT(...)                                                     \
    snprintf(unit_context, sizeof(unit_context), __VA_ARGS__)


#define UNIT_CHECK(cond)                                                      \
    unit_check(!!(cond), __FILE__, __LINE__, #cond)


#define UNIT_CHECK_MEM(a, alen, b, blen)                                      \
    unit_check_mem((const u_char *) (a), (alen), (const u_char *) (b),        \
                   (blen), __FILE__, __LINE__, #a " == " #b)


#define UNIT_DONE()                                                           \
    do {                                                                      \
        printf("%lu passed, %lu failed\n", unit_passed, unit_failed);         \
        return unit_failed ? 1 : 0;                                           \
    } while (0)


static inline int
unit_check(int ok, const char *file, int line, const char *what)
{
    if (ok) {
        unit_passed++;
        return 1;
    }

    unit_failed++;

    /* a broken invariant repeats over every split: keep the log short */
    if (unit_failed <= 50) {
        fprintf(stderr, "%s:%d: FAILED: %s [%s]\n", file, line, what,
                unit_context);
    }

    return 0;
}


static inline void
unit_dump(const char *label, const u_char *p, size_t len)
{
    size_t  i;

    fprintf(stderr, "    %s (%zu bytes): \"", label, len);

    for (i = 0; i < len && i < 200; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') {
            fputc(p[i], stderr);

        } else {
            fprintf(stderr, "\\x%02x", p[i]);
        }
    }

    fprintf(stderr, "\"%s\n", (len > 200) ? "..." : "");
}


static inline int
unit_check_mem(const u_char *a, size_t alen, const u_char *b, size_t blen,
    const char *file, int line, const char *what)
{
    int  ok;

    ok = (alen == blen && (alen == 0 || memcmp(a, b, alen) == 0));

    if (!unit_check(ok, file, line, what) && unit_failed <= 50) {
        unit_dump("got", a, alen);
        unit_dump("expected", b, blen);
    }

    return ok;
}


#endif /* _UNIT_H_INCLUDED_ */
