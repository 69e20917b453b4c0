/* config_json.h - reading and checking the config file's JSON values, with
 * errors that name the key's full path ("limits.max_body_bytes: ..."): the
 * primitives config.c and its sections (config_simulate.c) share. */
#ifndef BYOK_CONFIG_JSON_H
#define BYOK_CONFIG_JSON_H

#include "common.h"

#include <jansson.h>

/* Longest key path named in a message. */
#define KEYPATH_MAX 320

struct config;

/* Parse state: the config being filled (may be NULL for a section parsed
 * on its own) and the first error (caller frees with free()). */
struct config_json {
    struct config *cfg;
    char *err;
};

/* Records the first error only (later ones are usually consequences) and
 * returns -1. */
int config_json_fail(struct config_json *p, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Copies a value from the file into out for an error message: printable
 * ASCII only (no quotes, no control bytes), capped so a huge value cannot
 * flood the terminal. Returns out. */
const char *config_json_shown(const char *s, char *out, size_t out_size);
/* "an object", "a string", ... for "expected X, got Y". */
const char *config_json_type(const json_t *v);
/* parent.key (key shown safely), or key alone when parent is NULL or "". */
void config_json_path(char *out, size_t out_size, const char *parent, const char *key);
bool config_json_in_list(const char *s, const char *const *list, size_t n);

/* Fails on the first key of obj that is not in allowed, naming its full path
 * and the keys that are accepted there. */
MUST_CHECK int config_json_keys(struct config_json *p, json_t *obj, const char *path,
                                const char *const *allowed, size_t n);
/* Looks key up in obj; JSON null counts as absent so a file can spell out
 * "use the default" (e.g. "upstream_ca_file": null). obj may be NULL. */
json_t *config_json_get(json_t *obj, const char *key);
MUST_CHECK int config_json_object(struct config_json *p, json_t *v, const char *path);
/* An optional string: *out is a copy of the value, or of def (may be NULL)
 * when absent (the previous *out is freed). Empty strings are refused: they
 * are always a mistake. */
MUST_CHECK int config_json_string(struct config_json *p, json_t *obj, const char *parent,
                                  const char *key, const char *def, char **out);
/* An optional integer in min..max, def when absent. */
MUST_CHECK int config_json_int(struct config_json *p, json_t *obj, const char *parent,
                               const char *key, int64_t def, int64_t min, int64_t max,
                               int64_t *out);
/* An optional number (integer or fraction) in min..max, as an integer count
 * of millionths (0.25 -> 250000, rounded to the nearest); def_ppm when
 * absent. For rates and ratios, never for money. */
MUST_CHECK int config_json_ppm(struct config_json *p, json_t *obj, const char *parent,
                               const char *key, int64_t def_ppm, int64_t min_ppm, int64_t max_ppm,
                               int64_t *out_ppm);
/* An optional boolean, def when absent. */
MUST_CHECK int config_json_bool(struct config_json *p, json_t *obj, const char *parent,
                                const char *key, bool def, bool *out);

#endif
