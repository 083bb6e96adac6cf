/* megakernel — public umbrella header: status codes, error messages, assertions.
 *
 * Three error channels (see ../shared/STYLE.md):
 *   - bad input  -> a function returns an `enum mk_status` other than MK_OK and leaves a
 *                   message (what, where, expected vs got) readable with mk_errmsg();
 *   - a broken internal invariant -> MK_ASSERT aborts with file:line, always on;
 *   - CUDA/cuBLAS calls -> MK_CUDA_CHECK / MK_CUBLAS_CHECK (src/runtime/cuda_check.h),
 *                   which turn a failure into MK_ERR_CUDA with the call text and file:line.
 */
#ifndef MK_MK_H
#define MK_MK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum mk_status {
    MK_OK = 0,
    MK_ERR_ARG,         /* a caller passed a bad argument (CLI flag, API parameter)   */
    MK_ERR_IO,          /* a file could not be opened, read, mapped or written        */
    MK_ERR_FORMAT,      /* a file or request is malformed (safetensors, JSON, ...)    */
    MK_ERR_UNSUPPORTED, /* well-formed but not supported (model_type, dtype, ...)     */
    MK_ERR_NOMEM,       /* host or device allocation failed                           */
    MK_ERR_NO_DEVICE,   /* no usable CUDA device, or built without CUDA               */
    MK_ERR_CUDA,        /* a CUDA / cuBLAS call failed                                 */
    MK_ERR_TIMEOUT,     /* a bounded wait expired (the GPU reported a stuck event)    */
    MK_ERR_LIMIT,       /* a size or count exceeds a documented limit                 */
    MK_ERR_INTERNAL,    /* an internal check failed without aborting (should not be)  */
};

/* Short stable name of a status, e.g. "MK_ERR_FORMAT". Never NULL. */
const char *mk_status_name(enum mk_status s);

/* The message left by the last call on this thread that returned an error status.
 * Never NULL; "" when none. The buffer stays valid until the next failing call on
 * this thread. */
const char *mk_errmsg(void);

/* Record a formatted error message for this thread and return `s` unchanged, so that
 * `return mk_error(MK_ERR_FORMAT, "%s: tensor %s: expected ...", path, name);` works. */
enum mk_status mk_error(enum mk_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix the current message with more context ("loading DIR: " + old message) and
 * return `s`. Use when passing an error up a level that knows more about where. */
enum mk_status mk_error_prefix(enum mk_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clear this thread's message. */
void mk_error_clear(void);

/* Always-on assertion for internal invariants (never for input validation). */
void mk_assert_fail(const char *file, int line, const char *expr, const char *msg)
    __attribute__((noreturn));
#define MK_ASSERT(cond) \
    ((cond) ? (void)0 : mk_assert_fail(__FILE__, __LINE__, #cond, NULL))
#define MK_ASSERTF(cond, msg) \
    ((cond) ? (void)0 : mk_assert_fail(__FILE__, __LINE__, #cond, (msg)))

/* Version of the library ("0.1.0"). */
const char *mk_version(void);

#ifdef __cplusplus
}
#endif
#endif /* MK_MK_H */
