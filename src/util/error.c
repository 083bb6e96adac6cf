/* Per-thread error messages and the always-on assertion. */
#include "mk/mk.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MK_ERRMSG_CAP = 2048 };

static _Thread_local char errmsg[MK_ERRMSG_CAP];

const char *mk_status_name(enum mk_status s)
{
    switch (s) {
    case MK_OK: return "MK_OK";
    case MK_ERR_ARG: return "MK_ERR_ARG";
    case MK_ERR_IO: return "MK_ERR_IO";
    case MK_ERR_FORMAT: return "MK_ERR_FORMAT";
    case MK_ERR_UNSUPPORTED: return "MK_ERR_UNSUPPORTED";
    case MK_ERR_NOMEM: return "MK_ERR_NOMEM";
    case MK_ERR_NO_DEVICE: return "MK_ERR_NO_DEVICE";
    case MK_ERR_CUDA: return "MK_ERR_CUDA";
    case MK_ERR_TIMEOUT: return "MK_ERR_TIMEOUT";
    case MK_ERR_LIMIT: return "MK_ERR_LIMIT";
    case MK_ERR_INTERNAL: return "MK_ERR_INTERNAL";
    }
    return "MK_ERR_UNKNOWN";
}

const char *mk_errmsg(void) { return errmsg; }

void mk_error_clear(void) { errmsg[0] = '\0'; }

enum mk_status mk_error(enum mk_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return s;
}

enum mk_status mk_error_prefix(enum mk_status s, const char *fmt, ...)
{
    char old[MK_ERRMSG_CAP];
    memcpy(old, errmsg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof errmsg)
        snprintf(errmsg + n, sizeof errmsg - (size_t)n, "%s", old);
    return s;
}

void mk_assert_fail(const char *file, int line, const char *expr, const char *msg)
{
    fprintf(stderr, "%s:%d: MK_ASSERT(%s) failed%s%s\n", file, line, expr,
            msg ? ": " : "", msg ? msg : "");
    fflush(stderr);
    abort();
}

const char *mk_version(void) { return "0.1.0"; }
