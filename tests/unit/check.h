/* A minimal test harness. Each test binary runs its cases with RUN(case); every case
 * prints one line "PASS name" or "FAIL name" (after the failed checks, one per line),
 * which tests/run.sh counts. main() returns non-zero if any case failed. */
#ifndef MK_TEST_CHECK_H
#define MK_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_case_failures;
static int check_total_failures;

#define CHECK(cond) do { \
    if (!(cond)) { \
        printf("    %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        check_case_failures++; \
    } } while (0)

#define CHECKF(cond, ...) do { \
    if (!(cond)) { \
        printf("    %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
        printf(__VA_ARGS__); printf("\n"); \
        check_case_failures++; \
    } } while (0)

/* A call returning enum mk_status must give MK_OK; on failure print its message. */
#define CHECK_OK(call) do { \
    enum mk_status check_s_ = (call); \
    if (check_s_ != MK_OK) { \
        printf("    %s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #call, \
               mk_status_name(check_s_), mk_errmsg()); \
        check_case_failures++; \
    } } while (0)

#define CHECK_NEAR(a, b, tol) do { \
    double check_a_ = (a), check_b_ = (b); \
    if (!(fabs(check_a_ - check_b_) <= (tol))) { \
        printf("    %s:%d: %s = %.9g, %s = %.9g, |diff| > %g\n", __FILE__, __LINE__, \
               #a, check_a_, #b, check_b_, (double)(tol)); \
        check_case_failures++; \
    } } while (0)

static inline void check_run(const char *name, void (*fn)(void))
{
    check_case_failures = 0;
    fn();
    printf("%s %s\n", check_case_failures ? "FAIL" : "PASS", name);
    fflush(stdout);
    if (check_case_failures) check_total_failures++;
}
#define RUN(fn) check_run(#fn, fn)
#define CHECK_EXIT() return check_total_failures ? 1 : 0

#endif
