/* config_json.c - the config file's JSON values read and checked, errors
 * naming the key's full path (config_json.h). */
#include "common.h"
#include "config_json.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Records the first error only: later ones are usually consequences. */
int config_json_fail(struct config_json *p, const char *fmt, ...)
{
    if (p->err == NULL) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&p->err, fmt, ap) == -1)
            p->err = NULL;
        va_end(ap);
        if (p->err == NULL)
            p->err = strdup("config: out of memory");
    }
    return -1;
}

/* Copies a value from the file into out for an error message: printable
 * ASCII only (no quotes, no control bytes), capped so a huge value cannot
 * flood the terminal. */
const char *config_json_shown(const char *s, char *out, size_t out_size)
{
    size_t n = 0, len = strlen(s);
    for (size_t i = 0; i < len && n + 4 < out_size; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[n++] = (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') ? (char)ch : '?';
    }
    if (len > n && n + 3 < out_size) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

const char *config_json_type(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

void config_json_path(char *out, size_t out_size, const char *parent, const char *key)
{
    char k[80];
    config_json_shown(key, k, sizeof(k));
    int n;
    if (parent == NULL || parent[0] == '\0')
        n = snprintf(out, out_size, "%s", k);
    else
        n = snprintf(out, out_size, "%s.%s", parent, k);
    if (n < 0 || (size_t)n >= out_size)
        out[out_size - 1] = '\0'; /* a key path this long is cut, still named */
}

bool config_json_in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* Fails on the first key of obj that is not in allowed, naming its full path
 * and the keys that are accepted there. */
int config_json_keys(struct config_json *p, json_t *obj, const char *path,
                     const char *const *allowed, size_t n)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (config_json_in_list(key, allowed, n))
            continue;
        char full[KEYPATH_MAX], expected[512];
        size_t used = 0;
        expected[0] = '\0';
        for (size_t i = 0; i < n && used < sizeof(expected); i++)
            used += (size_t)snprintf(expected + used, sizeof(expected) - used, "%s%s",
                                     i ? ", " : "", allowed[i]);
        config_json_path(full, sizeof(full), path, key);
        return config_json_fail(p, "unknown key \"%s\" (expected one of: %s)", full, expected);
    }
    return 0;
}

/* Looks key up in obj; JSON null counts as absent so a file can spell out
 * "use the default" (e.g. "upstream_ca_file": null). */
json_t *config_json_get(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

int config_json_object(struct config_json *p, json_t *v, const char *path)
{
    if (!json_is_object(v))
        return config_json_fail(p, "%s: expected an object, got %s", path, config_json_type(v));
    return 0;
}

/* Reads an optional string: *out is a copy of the value, or of def (may be
 * NULL) when absent. Empty strings are refused: they are always a mistake. */
int config_json_string(struct config_json *p, json_t *obj, const char *parent, const char *key,
                       const char *def, char **out)
{
    char path[KEYPATH_MAX];
    config_json_path(path, sizeof(path), parent, key);
    json_t *v = obj ? config_json_get(obj, key) : NULL;
    const char *s = def;
    if (v != NULL) {
        if (!json_is_string(v))
            return config_json_fail(p, "%s: expected a string, got %s", path, config_json_type(v));
        s = json_string_value(v);
        if (s[0] == '\0' || strlen(s) != json_string_length(v))
            return config_json_fail(p, "%s: must be a non-empty string without NUL bytes", path);
    }
    free(*out);
    *out = NULL;
    if (s != NULL && (*out = strdup(s)) == NULL)
        return config_json_fail(p, "%s: out of memory", path);
    return 0;
}

int config_json_int(struct config_json *p, json_t *obj, const char *parent, const char *key,
                    int64_t def, int64_t min, int64_t max, int64_t *out)
{
    char path[KEYPATH_MAX];
    config_json_path(path, sizeof(path), parent, key);
    json_t *v = obj ? config_json_get(obj, key) : NULL;
    *out = def;
    if (v == NULL)
        return 0;
    if (!json_is_integer(v))
        return config_json_fail(p, "%s: expected an integer, got %s", path, config_json_type(v));
    int64_t n = json_integer_value(v);
    if (n < min || n > max)
        return config_json_fail(p, "%s: %" PRId64 " is out of range (%" PRId64 "..%" PRId64 ")",
                                path, n, min, max);
    *out = n;
    return 0;
}

int config_json_ppm(struct config_json *p, json_t *obj, const char *parent, const char *key,
                    int64_t def_ppm, int64_t min_ppm, int64_t max_ppm, int64_t *out_ppm)
{
    char path[KEYPATH_MAX];
    config_json_path(path, sizeof(path), parent, key);
    json_t *v = obj ? config_json_get(obj, key) : NULL;
    *out_ppm = def_ppm;
    if (v == NULL)
        return 0;
    if (!json_is_number(v))
        return config_json_fail(p, "%s: expected a number, got %s", path, config_json_type(v));
    double d = json_number_value(v);
    double ppm = d * 1e6;
    if (!isfinite(ppm) || ppm < (double)min_ppm - 0.5 || ppm > (double)max_ppm + 0.5)
        return config_json_fail(p, "%s: %g is out of range (%g..%g)", path, d,
                                (double)min_ppm / 1e6, (double)max_ppm / 1e6);
    *out_ppm = MAX(min_ppm, MIN(max_ppm, (int64_t)llround(ppm)));
    return 0;
}

int config_json_bool(struct config_json *p, json_t *obj, const char *parent, const char *key,
                     bool def, bool *out)
{
    char path[KEYPATH_MAX];
    config_json_path(path, sizeof(path), parent, key);
    json_t *v = obj ? config_json_get(obj, key) : NULL;
    *out = def;
    if (v == NULL)
        return 0;
    if (!json_is_boolean(v))
        return config_json_fail(p, "%s: expected true or false, got %s", path, config_json_type(v));
    *out = json_is_true(v);
    return 0;
}
