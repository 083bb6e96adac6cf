/* libFuzzer target: plan files (mk_plan_parse). The harness rewrites the trailing
 * checksum so that mutations reach the structural checks instead of stopping at it.
 * On MK_OK the plan must survive what its users do with it: dumps, rescheduling and the
 * checker again. */
#include "mk/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 16 || size > (1 << 22)) return 0;
    unsigned char *buf = malloc(size);
    memcpy(buf, data, size);
    uint64_t h = 1469598103934665603ull; /* FNV-1a, as the writer */
    for (size_t i = 0; i + 8 < size; i++) h = (h ^ buf[i]) * 1099511628211ull;
    memcpy(buf + size - 8, &h, 8);
    struct mk_plan *p = NULL;
    if (mk_plan_parse(buf, size, "fuzz/plan", &p) != MK_OK) {
        MK_ASSERT(mk_errmsg()[0] != '\0' && p == NULL);
        free(buf);
        return 0;
    }
    FILE *null = fopen("/dev/null", "w");
    MK_ASSERT(mk_plan_dump_json(p, null) == MK_OK && mk_plan_dump_dot(p, null) == MK_OK);
    fclose(null);
    MK_ASSERT(mk_plan_schedule(p, NULL) == MK_OK);
    MK_ASSERT(mk_plan_check(p) == MK_OK);
    mk_plan_free(p);
    free(buf);
    return 0;
}
