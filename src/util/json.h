/* Strict JSON loading over jansson, shared by every parser of untrusted files.
 *
 * Strict means: the text must be valid UTF-8, hold exactly one JSON value (trailing
 * whitespace allowed), and no object may repeat a key (JSON_REJECT_DUPLICATES), so that
 * "which of the two values wins" never depends on the parser. */
#ifndef MK_UTIL_JSON_H
#define MK_UTIL_JSON_H

#include "mk/mk.h"

#include <jansson.h>
#include <stdbool.h>

/* Parse `len` bytes of `text`. On success *out is a new reference (json_decref it).
 * On failure: MK_ERR_FORMAT, "WHAT: invalid JSON at line L, column C: REASON". */
enum mk_status mk_json_load(const char *text, size_t len, const char *what, json_t **out);

/* Like mk_json_load, but the value must be an object ("WHAT: expected a JSON object,
 * got array"). */
enum mk_status mk_json_load_object(const char *text, size_t len, const char *what,
                                   json_t **out);

/* "object", "array", "string", "integer", "real", "true", "false", "null". */
const char *mk_json_type_name(const json_t *v);

/* An integer in [lo, hi]; a real with an exact integer value is accepted too (some
 * exporters write 1e-06 style numbers everywhere). Message: "WHAT: FIELD: expected an
 * integer in [lo, hi], got X". */
enum mk_status mk_json_int(const json_t *v, const char *what, const char *field,
                           int64_t lo, int64_t hi, int64_t *out);

/* A finite number (integer or real). */
enum mk_status mk_json_number(const json_t *v, const char *what, const char *field,
                              double *out);

/* A JSON true/false. */
enum mk_status mk_json_bool(const json_t *v, const char *what, const char *field, bool *out);

#endif
