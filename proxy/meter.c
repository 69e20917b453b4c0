/* meter.c - the metering state, the calls the transports make (dispatched
 * to the provider meters of proxy/providers/), and the helpers provider
 * meters share. See meter.h.
 *
 * Streamed chunks are the hot path: most chunks carry no usage, so they are
 * only scanned (memmem plus a tiny string scanner for the output text) and
 * handed to jansson only when they can hold a usage object. */
#include "common.h"
#include "meter.h"
#include "urlenc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void meter_init(struct meter *m, const struct meter_ops *ops)
{
    memset(m, 0, sizeof(*m));
    m->ops = ops;
    m->upload_audio_ms = -1;
    m->header_characters = -1;
}

void meter_request_query(struct meter *m, const char *query, size_t len)
{
    if (m->ops != NULL && m->ops->request_query != NULL && query != NULL)
        m->ops->request_query(m, query, len);
}

int meter_request(struct meter *m, const char *body, size_t len, const char *content_type,
                  size_t content_type_len, char **rewritten, size_t *rewritten_len)
{
    if (rewritten != NULL)
        *rewritten = NULL;
    if (rewritten_len != NULL)
        *rewritten_len = 0;
    if (m->ops == NULL || m->ops->request_body == NULL)
        return 0;
    return m->ops->request_body(m, body, len, content_type, content_type_len, rewritten,
                                rewritten_len);
}

void meter_response_header(struct meter *m, const char *name, size_t name_len, const char *value,
                           size_t value_len)
{
    if (m->ops != NULL && m->ops->response_header != NULL)
        m->ops->response_header(m, name, name_len, value, value_len);
}

void meter_response_json(struct meter *m, const char *body, size_t len)
{
    if (m->ops != NULL && m->ops->response_json != NULL && body != NULL && len > 0)
        m->ops->response_json(m, body, len);
}

bool meter_sse_event(struct meter *m, const char *event, const char *data, size_t data_len)
{
    if (m->ops == NULL || m->ops->sse_event == NULL || data == NULL || data_len == 0)
        return false;
    return m->ops->sse_event(m, event != NULL ? event : "", data, data_len);
}

const char *meter_model(const struct meter *m)
{
    if (m->model[0] != '\0')
        return m->model;
    if (m->ops != NULL && m->ops->default_model != NULL)
        return m->ops->default_model;
    return "";
}

bool meter_finish(struct meter *m)
{
    if (m->model[0] == '\0' && m->ops != NULL && m->ops->default_model != NULL)
        meter_set_model(m->model, m->ops->default_model, strlen(m->ops->default_model));
    if (m->ops == NULL || m->ops->finish == NULL)
        return false;
    return m->ops->finish(m);
}

bool meter_wants_json(const struct meter *m)
{
    return m->ops != NULL && (m->ops->flags & METER_F_JSON_REPLY) != 0;
}

bool meter_wants_sse(const struct meter *m)
{
    return m->ops != NULL && (m->ops->flags & METER_F_SSE) != 0;
}

/* --- WebSocket sessions ------------------------------------------------------ */

int ws_meter_init(struct ws_meter *m, const struct ws_meter_ops *ops, const char *model_query,
                  const char *query, size_t query_len)
{
    memset(m, 0, sizeof(*m));
    m->ops = ops;
    if (ops == NULL)
        return 0;
    char model[MODEL_MAX];
    if (model_query != NULL &&
        urlenc_query_get(query, query_len, model_query, model, sizeof(model)) == 0)
        meter_set_model(m->model, model, strlen(model));
    if (ops->state_size > 0 && (m->state = calloc(1, ops->state_size)) == NULL)
        return -1;
    if (ops->open != NULL)
        ops->open(m, query, query_len);
    if (m->model[0] == '\0' && ops->default_model != NULL)
        meter_set_model(m->model, ops->default_model, strlen(ops->default_model));
    return 0;
}

void ws_meter_free(struct ws_meter *m)
{
    free(m->state);
    m->state = NULL;
}

void ws_meter_text(struct ws_meter *m, bool from_client, const char *data, size_t len,
                   bool complete)
{
    if (m->ops != NULL && m->ops->text != NULL)
        m->ops->text(m, from_client, data, len, complete);
}

void ws_meter_binary(struct ws_meter *m, bool from_client, const uint8_t *data, size_t len,
                     uint64_t off, bool last)
{
    if (m->ops != NULL && m->ops->binary != NULL)
        m->ops->binary(m, from_client, data, len, off, last);
}

void ws_meter_interval(struct ws_meter *m)
{
    if (m->ops != NULL && m->ops->interval != NULL)
        m->ops->interval(m);
}

void ws_meter_finish(struct ws_meter *m, const struct ws_meter_end *end)
{
    if (m->ops != NULL && m->ops->finish != NULL)
        m->ops->finish(m, end);
}

static int64_t grown(int64_t total, int64_t recorded)
{
    return total > recorded ? total - recorded : 0;
}

void ws_meter_take(struct ws_meter *m, struct usage_units *out)
{
    struct usage_units *t = &m->total, *r = &m->recorded;
    out->input_tokens = grown(t->input_tokens, r->input_tokens);
    out->cached_input_tokens = grown(t->cached_input_tokens, r->cached_input_tokens);
    out->output_tokens = grown(t->output_tokens, r->output_tokens);
    out->audio_input_tokens = grown(t->audio_input_tokens, r->audio_input_tokens);
    out->audio_output_tokens = grown(t->audio_output_tokens, r->audio_output_tokens);
    out->characters = grown(t->characters, r->characters);
    out->audio_ms = grown(t->audio_ms, r->audio_ms);
    /* A total never goes back below what was recorded (a later exact count
     * smaller than the estimates already charged): the rest is 0. */
    r->input_tokens = MAX(r->input_tokens, t->input_tokens);
    r->cached_input_tokens = MAX(r->cached_input_tokens, t->cached_input_tokens);
    r->output_tokens = MAX(r->output_tokens, t->output_tokens);
    r->audio_input_tokens = MAX(r->audio_input_tokens, t->audio_input_tokens);
    r->audio_output_tokens = MAX(r->audio_output_tokens, t->audio_output_tokens);
    r->characters = MAX(r->characters, t->characters);
    r->audio_ms = MAX(r->audio_ms, t->audio_ms);
}

void ws_meter_unit(struct ws_meter *m)
{
    if (m->unit != NULL)
        m->unit(m->unit_arg);
}

/* --- helpers ------------------------------------------------------------------ */

int64_t meter_utf8_chars(const char *s, size_t len)
{
    int64_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

int64_t meter_json_chars(const json_t *v)
{
    return json_is_string(v) ? meter_utf8_chars(json_string_value(v), json_string_length(v)) : 0;
}

int64_t meter_content_chars(const json_t *v, int depth)
{
    if (depth > 4 || v == NULL)
        return 0;
    if (json_is_string(v))
        return meter_json_chars(v);
    int64_t n = 0;
    if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) n += meter_content_chars(e, depth + 1);
    } else if (json_is_object(v)) {
        n += meter_json_chars(json_object_get(v, "text"));
        n += meter_content_chars(json_object_get(v, "content"), depth + 1);
    }
    return n;
}

void meter_set_model(char model[MODEL_MAX], const char *s, size_t len)
{
    if (len >= MODEL_MAX) {
        len = MODEL_MAX - 1;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    memcpy(model, s, len);
    model[len] = '\0';
}

void meter_take_model(struct meter *m, const json_t *v)
{
    if (m->model[0] == '\0' && json_is_string(v))
        meter_set_model(m->model, json_string_value(v), json_string_length(v));
}

int64_t meter_count(const json_t *v)
{
    int64_t n = 0;
    if (json_is_integer(v))
        n = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) > 0 && json_real_value(v) < 9.0e18)
        n = (int64_t)json_real_value(v);
    return n > 0 ? n : 0;
}

int64_t meter_count_at(const json_t *obj, const char *key, const char *sub)
{
    const json_t *v = json_object_get(obj, key);
    if (sub != NULL)
        v = json_object_get(v, sub);
    return meter_count(v);
}

int64_t meter_seconds_ms(const json_t *v)
{
    double s = json_number_value(v);
    /* Seconds may be fractional; milliseconds are the unit priced. */
    return s > 0 && s < 9.0e12 ? (int64_t)(s * 1000.0 + 0.5) : 0;
}

const char *meter_key_object_at(const char *body, size_t len, const char *key, bool last)
{
    size_t key_len = strlen(key);
    const char *found = NULL;
    const char *p = body;
    size_t left = len;
    const char *hit;
    while ((hit = memmem(p, left, key, key_len)) != NULL) {
        found = hit;
        if (!last)
            break;
        left -= (size_t)(hit + key_len - p);
        p = hit + key_len;
    }
    if (found == NULL)
        return NULL;
    const char *q = found + key_len, *end = body + len;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
        q++;
    if (q >= end || *q != ':')
        return NULL;
    q++;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
        q++;
    return q < end && *q == '{' ? q : NULL;
}

json_t *meter_object_at(const char *at, size_t len)
{
    json_t *u = json_loadb(at, len, JSON_DISABLE_EOF_CHECK, NULL);
    if (!json_is_object(u)) {
        json_decref(u);
        return NULL;
    }
    return u;
}

json_t *meter_key_object(const char *body, size_t len, const char *key, bool last)
{
    const char *q = meter_key_object_at(body, len, key, last);
    return q != NULL ? meter_object_at(q, (size_t)(body + len - q)) : NULL;
}

int64_t meter_span_count(struct jspan v)
{
    bool is_int;
    int64_t i = 0;
    double d = 0;
    int64_t n = 0;
    if (jscan_number(v, &is_int, &i, &d))
        n = is_int ? i : d > 0 && d < 9.0e18 ? (int64_t)d : 0;
    return n > 0 ? n : 0;
}

int64_t meter_obj_count_at(const struct meter_obj *o, const char *key, const char *sub)
{
    if (o->json != NULL)
        return meter_count_at(o->json, key, sub);
    struct jspan v = jscan_get(o->span, key);
    if (sub != NULL)
        v = jscan_get(v, sub);
    return meter_span_count(v);
}

bool meter_obj_number(const struct meter_obj *o, const char *key, int64_t *n)
{
    if (o->json != NULL) {
        const json_t *v = json_object_get(o->json, key);
        *n = meter_count(v);
        return json_is_number(v);
    }
    struct jspan v = jscan_get(o->span, key);
    *n = meter_span_count(v);
    return jscan_type(v) == JSCAN_NUMBER;
}

int64_t meter_span_content_chars(struct jspan v, int depth)
{
    if (depth > 4)
        return 0;
    int64_t n = 0;
    switch (jscan_type(v)) {
    case JSCAN_STRING:
        return jscan_string_chars(v);
    case JSCAN_ARRAY: {
        size_t pos = 0;
        struct jspan e;
        while (jscan_next(v, &pos, &e))
            n += meter_span_content_chars(e, depth + 1);
        return n;
    }
    case JSCAN_OBJECT:
        return jscan_string_chars(jscan_get(v, "text")) +
               meter_span_content_chars(jscan_get(v, "content"), depth + 1);
    default:
        return 0;
    }
}

void meter_span_take_model(struct meter *m, struct jspan v)
{
    if (m->model[0] != '\0' || jscan_type(v) != JSCAN_STRING)
        return;
    char buf[MODEL_MAX + 4]; /* meter_set_model reads up to model[MODEL_MAX - 1] */
    size_t n = jscan_string(v, buf, sizeof(buf));
    meter_set_model(m->model, buf, MIN(n, sizeof(buf)));
}

bool meter_has_usage_object(const char *d, size_t len)
{
    static const char key[] = "\"usage\"";
    size_t pos = 0;
    while (pos < len) {
        const char *f = memmem(d + pos, len - pos, key, sizeof(key) - 1);
        if (f == NULL)
            return false;
        size_t i = (size_t)(f - d) + sizeof(key) - 1;
        while (i < len && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n'))
            i++;
        if (i < len && d[i] == ':') {
            i++;
            while (i < len && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n'))
                i++;
            if (i < len && d[i] == '{')
                return true;
        }
        pos = i;
    }
    return false;
}

int64_t meter_scan_string_chars(const char *d, size_t len, const char *key)
{
    /* "key", built without printf: this runs for every streamed event. */
    char pat[32];
    size_t key_len = strlen(key);
    if (key_len + 2 >= sizeof(pat))
        return 0;
    pat[0] = '"';
    memcpy(pat + 1, key, key_len);
    pat[key_len + 1] = '"';
    size_t pl = key_len + 2;
    int64_t n = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *f = memmem(d + pos, len - pos, pat, pl);
        if (f == NULL)
            break;
        size_t i = (size_t)(f - d) + pl;
        while (i < len && (d[i] == ' ' || d[i] == '\t'))
            i++;
        if (i >= len || d[i] != ':') {
            pos = i;
            continue;
        }
        i++;
        while (i < len && (d[i] == ' ' || d[i] == '\t'))
            i++;
        if (i >= len || d[i] != '"') {
            pos = i;
            continue;
        }
        i++;
        while (i < len && d[i] != '"') {
            if (d[i] == '\\') {
                i += (i + 1 < len && d[i + 1] == 'u') ? 6 : 2;
                n++;
            } else {
                n += ((unsigned char)d[i] & 0xC0) != 0x80;
                i++;
            }
        }
        pos = i + 1;
    }
    return n;
}

int64_t meter_header_count(const char *v, size_t len)
{
    size_t i = 0;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    while (len > i && (v[len - 1] == ' ' || v[len - 1] == '\t' || v[len - 1] == '\r'))
        len--;
    int64_t n = 0;
    size_t digits = 0;
    for (; i < len && v[i] >= '0' && v[i] <= '9'; i++, digits++) {
        if (n > (INT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (v[i] - '0');
    }
    if (digits == 0)
        return -1;
    if (i < len && v[i] == '.') {
        bool frac = false;
        size_t fd = 0;
        for (i++; i < len && v[i] >= '0' && v[i] <= '9'; i++, fd++)
            frac |= v[i] != '0';
        if (fd == 0)
            return -1;
        n += frac;
    }
    return i == len ? n : -1;
}

int64_t meter_chars_tokens(int64_t n)
{
    return n > 0 ? n / 4 + (n % 4 != 0) : 0;
}

int64_t meter_message_chars(const char *data, size_t len, const char *field)
{
    json_t *root = json_loadb(data, len, 0, NULL);
    int64_t n = meter_json_chars(json_object_get(root, field));
    json_decref(root);
    return n;
}
