/* Strict JSON loading and typed field access over jansson (see json.h). */
#include "util/json.h"

#include <stdio.h>
#include <math.h>

enum mk_status mk_json_load(const char *text, size_t len, const char *what, json_t **out)
{
    json_error_t err;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!v)
        return mk_error(MK_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", what,
                        err.line, err.column, err.text);
    *out = v;
    return MK_OK;
}

enum mk_status mk_json_load_object(const char *text, size_t len, const char *what,
                                   json_t **out)
{
    json_t *v;
    enum mk_status s = mk_json_load(text, len, what, &v);
    if (s != MK_OK) return s;
    if (!json_is_object(v)) {
        s = mk_error(MK_ERR_FORMAT, "%s: expected a JSON object, got %s", what,
                     mk_json_type_name(v));
        json_decref(v);
        return s;
    }
    *out = v;
    return MK_OK;
}

const char *mk_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

/* A short rendering of a JSON value for messages. */
static void show(const json_t *v, char *buf, size_t cap)
{
    if (json_is_integer(v))
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, cap, "%g", json_real_value(v));
    else if (json_is_string(v))
        snprintf(buf, cap, "\"%.40s\"", json_string_value(v));
    else
        snprintf(buf, cap, "%s", mk_json_type_name(v));
}

enum mk_status mk_json_int(const json_t *v, const char *what, const char *field,
                           int64_t lo, int64_t hi, int64_t *out)
{
    int64_t x = 0;
    bool ok = false;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
        ok = true;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        ok = isfinite(d) && d == floor(d) && fabs(d) < 9e15;
        if (ok) x = (int64_t)d;
    }
    if (!ok || x < lo || x > hi) {
        char got[64];
        show(v, got, sizeof got);
        return mk_error(MK_ERR_FORMAT, "%s: %s: expected an integer in [%lld, %lld], got %s",
                        what, field, (long long)lo, (long long)hi, got);
    }
    *out = x;
    return MK_OK;
}

enum mk_status mk_json_number(const json_t *v, const char *what, const char *field,
                              double *out)
{
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        char got[64];
        show(v, got, sizeof got);
        return mk_error(MK_ERR_FORMAT, "%s: %s: expected a number, got %s", what, field, got);
    }
    *out = json_number_value(v);
    return MK_OK;
}

enum mk_status mk_json_bool(const json_t *v, const char *what, const char *field, bool *out)
{
    if (!json_is_boolean(v)) {
        char got[64];
        show(v, got, sizeof got);
        return mk_error(MK_ERR_FORMAT, "%s: %s: expected true or false, got %s", what, field,
                        got);
    }
    *out = json_is_true(v);
    return MK_OK;
}
