/* The error channel: messages are per call, prefixed context survives, names exist. */
#include "check.h"
#include "mk/mk.h"

static enum mk_status fail_deep(void)
{
    return mk_error(MK_ERR_FORMAT, "tensor %s: expected %s, got %s", "w", "bf16 [4, 4]",
                    "f16 [4, 4]");
}

static void test_message_and_prefix(void)
{
    mk_error_clear();
    CHECK(!strcmp(mk_errmsg(), ""));
    enum mk_status s = fail_deep();
    CHECK(s == MK_ERR_FORMAT);
    CHECK(!strcmp(mk_errmsg(), "tensor w: expected bf16 [4, 4], got f16 [4, 4]"));
    s = mk_error_prefix(s, "%s: ", "model.safetensors");
    CHECK(s == MK_ERR_FORMAT);
    CHECKF(!strcmp(mk_errmsg(), "model.safetensors: tensor w: expected bf16 [4, 4], got f16 [4, 4]"),
           "got '%s'", mk_errmsg());
}

static void test_long_message_truncates(void)
{
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    mk_error(MK_ERR_IO, "%s", big);
    CHECK(strlen(mk_errmsg()) > 1000 && strlen(mk_errmsg()) < sizeof big);
    mk_error_prefix(MK_ERR_IO, "%s", big);
    CHECK(strlen(mk_errmsg()) < sizeof big);
}

static void test_status_names(void)
{
    CHECK(!strcmp(mk_status_name(MK_OK), "MK_OK"));
    CHECK(!strcmp(mk_status_name(MK_ERR_TIMEOUT), "MK_ERR_TIMEOUT"));
    CHECK(!strcmp(mk_status_name((enum mk_status)999), "MK_ERR_UNKNOWN"));
}

int main(void)
{
    RUN(test_message_and_prefix);
    RUN(test_long_message_truncates);
    RUN(test_status_names);
    CHECK_EXIT();
}
