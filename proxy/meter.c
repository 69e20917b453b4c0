/* meter.c - usage metering of OpenAI-shaped requests and replies
 * (PROVIDERS.md §1.1–1.5): what the request asks for, what the provider
 * reports, and an estimate when a stream ends without a report.
 *
 * Streamed chunks are the hot path: most chat chunks carry no usage, so they
 * are only scanned (memmem plus a tiny string scanner for the output text)
 * and handed to jansson only when they can hold a usage object. */
#include "common.h"

#include "meter.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Added to a chat request body whose client did not ask for stream usage. */
#define INCLUDE_USAGE_MEMBER "\"stream_options\":{\"include_usage\":true},"

static const struct {
    const char *path;
    enum meter_kind kind;
} meter_paths[] = {
    {"/v1/chat/completions", METER_CHAT},
    {"/v1/responses", METER_RESPONSES},
    {"/v1/embeddings", METER_EMBEDDINGS},
    {"/v1/audio/speech", METER_SPEECH},
    {"/v1/audio/transcriptions", METER_TRANSCRIPTION},
    {"/v1/audio/translations", METER_TRANSCRIPTION},
};

enum meter_kind meter_kind_for_path(const char *path, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(meter_paths); i++) {
        if (strlen(meter_paths[i].path) == len && memcmp(meter_paths[i].path, path, len) == 0)
            return meter_paths[i].kind;
    }
    return METER_NONE;
}

const char *meter_line_name(enum meter_kind k)
{
    switch (k) {
    case METER_EMBEDDINGS:
        return "embeddings";
    case METER_SPEECH:
        return "tts";
    case METER_TRANSCRIPTION:
        return "stt";
    case METER_NONE:
    case METER_CHAT:
    case METER_RESPONSES:
        break;
    }
    return "llm";
}

void meter_init(struct meter *m, enum meter_kind k)
{
    memset(m, 0, sizeof(*m));
    m->kind = k;
    m->upload_audio_ms = -1;
}

/* Unicode code points of UTF-8 text: every byte that is not a continuation
 * byte starts one. */
static int64_t utf8_chars(const char *s, size_t len)
{
    int64_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static int64_t json_chars(const json_t *v)
{
    return json_is_string(v) ? utf8_chars(json_string_value(v), json_string_length(v)) : 0;
}

/* Characters of prompt text: a string, an array of messages / items / parts,
 * or an object whose "text" and "content" hold text. Depth-limited because
 * the body comes from the client. */
static int64_t content_chars(const json_t *v, int depth)
{
    if (depth > 4 || v == NULL)
        return 0;
    if (json_is_string(v))
        return json_chars(v);
    int64_t n = 0;
    if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) n += content_chars(e, depth + 1);
    } else if (json_is_object(v)) {
        n += json_chars(json_object_get(v, "text"));
        n += content_chars(json_object_get(v, "content"), depth + 1);
    }
    return n;
}

/* Copies a model name, cut at a UTF-8 character boundary so the record stays
 * valid JSON. */
static void set_model(struct meter *m, const char *s, size_t len)
{
    if (len >= sizeof(m->model)) {
        len = sizeof(m->model) - 1;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    memcpy(m->model, s, len);
    m->model[len] = '\0';
}

static void take_model(struct meter *m, const json_t *v)
{
    if (m->model[0] == '\0' && json_is_string(v))
        set_model(m, json_string_value(v), json_string_length(v));
}

/* A non-negative count from a reply; anything else is 0. */
static int64_t count_of(const json_t *v)
{
    int64_t n = 0;
    if (json_is_integer(v))
        n = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) < 9.0e18)
        n = (int64_t)json_real_value(v);
    return n > 0 ? n : 0;
}

static int64_t count_at(const json_t *obj, const char *key, const char *sub)
{
    const json_t *v = json_object_get(obj, key);
    if (sub != NULL)
        v = json_object_get(v, sub);
    return count_of(v);
}

static void chat_usage(struct meter *m, const json_t *u)
{
    m->units.input_tokens = count_at(u, "prompt_tokens", NULL);
    m->units.cached_input_tokens = count_at(u, "prompt_tokens_details", "cached_tokens");
    m->units.audio_input_tokens = count_at(u, "prompt_tokens_details", "audio_tokens");
    m->units.output_tokens = count_at(u, "completion_tokens", NULL);
    m->units.audio_output_tokens = count_at(u, "completion_tokens_details", "audio_tokens");
    m->got_usage = true;
}

static void responses_usage(struct meter *m, const json_t *u)
{
    m->units.input_tokens = count_at(u, "input_tokens", NULL);
    m->units.cached_input_tokens = count_at(u, "input_tokens_details", "cached_tokens");
    m->units.output_tokens = count_at(u, "output_tokens", NULL);
    m->got_usage = true;
}

static void transcription_usage(struct meter *m, const json_t *u)
{
    const char *type = json_string_value(json_object_get(u, "type"));
    const json_t *seconds = json_object_get(u, "seconds");
    if ((type != NULL && strcmp(type, "duration") == 0) ||
        (type == NULL && json_is_number(seconds))) {
        double s = json_number_value(seconds);
        /* Seconds may be fractional; milliseconds are the unit priced. */
        m->units.audio_ms = s > 0 && s < 9.0e12 ? (int64_t)(s * 1000.0 + 0.5) : 0;
    } else {
        m->units.input_tokens = count_at(u, "input_tokens", NULL);
        m->units.audio_input_tokens = count_at(u, "input_token_details", "audio_tokens");
        m->units.output_tokens = count_at(u, "output_tokens", NULL);
    }
    m->got_usage = true;
}

/* TTS models that report usage bill audio tokens out; all output tokens are
 * audio, so they are also the audio subset (priced as output when the table
 * has no audio output price). The tokens replace the character count. */
static void speech_usage(struct meter *m, const json_t *u)
{
    m->units.input_tokens = count_at(u, "input_tokens", NULL);
    m->units.output_tokens = count_at(u, "output_tokens", NULL);
    m->units.audio_output_tokens = m->units.output_tokens;
    m->units.characters = 0;
    m->got_usage = true;
}

/* ---- request ---- */

/* Case-insensitive search for a token in a header value. */
static const char *find_ci(const char *s, size_t len, const char *tok)
{
    size_t n = strlen(tok);
    for (size_t i = 0; i + n <= len; i++) {
        if (strncasecmp(s + i, tok, n) == 0)
            return s + i;
    }
    return NULL;
}

/* Value of parameter `name` in a header value "x; a=b; name=\"v\"", copied
 * into out (NUL-terminated). Returns -1 when absent or too long. */
static int header_param(const char *v, size_t len, const char *name, char *out, size_t out_size)
{
    size_t name_len = strlen(name);
    const char *end = v + len;
    const char *p = memchr(v, ';', len);
    while (p != NULL && p < end) {
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *k = p;
        while (p < end && *p != '=' && *p != ';')
            p++;
        size_t k_len = (size_t)(p - k);
        while (k_len > 0 && (k[k_len - 1] == ' ' || k[k_len - 1] == '\t'))
            k_len--;
        if (p == end || *p == ';')
            continue;
        p++; /* '=' */
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *val;
        size_t val_len;
        if (p < end && *p == '"') {
            val = ++p;
            while (p < end && *p != '"')
                p++;
            val_len = (size_t)(p - val);
            if (p < end)
                p++;
        } else {
            val = p;
            while (p < end && *p != ';' && *p != ' ' && *p != '\t')
                p++;
            val_len = (size_t)(p - val);
        }
        if (k_len == name_len && strncasecmp(k, name, name_len) == 0) {
            if (val_len == 0 || val_len >= out_size)
                return -1;
            memcpy(out, val, val_len);
            out[val_len] = '\0';
            return 0;
        }
        p = memchr(p, ';', (size_t)(end - p));
    }
    return -1;
}

/* One multipart part: the form field name from Content-Disposition. */
static void multipart_part(struct meter *m, const char *head, size_t head_len, const char *body,
                           size_t body_len)
{
    char name[32] = "";
    const char *end = head + head_len;
    const char *line = head;
    while (line < end) {
        const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
        size_t n = eol ? (size_t)(eol - line) : (size_t)(end - line);
        static const char cd[] = "content-disposition:";
        if (n > sizeof(cd) - 1 && strncasecmp(line, cd, sizeof(cd) - 1) == 0) {
            if (header_param(line, n, "name", name, sizeof(name)) == -1)
                name[0] = '\0';
        }
        line += n + 2;
    }
    if (strcmp(name, "model") == 0) {
        while (body_len > 0 && (body[body_len - 1] == ' ' || body[body_len - 1] == '\r' ||
                                body[body_len - 1] == '\n'))
            body_len--;
        set_model(m, body, body_len);
    } else if (strcmp(name, "stream") == 0) {
        m->stream = body_len >= 4 && strncasecmp(body, "true", 4) == 0;
    } else if (strcmp(name, "file") == 0) {
        m->upload_audio_ms = meter_wav_duration_ms((const unsigned char *)body, body_len);
    }
}

/* multipart/form-data (RFC 7578): walks the parts between boundaries. */
static int meter_multipart(struct meter *m, const char *body, size_t len, const char *ct,
                           size_t ct_len)
{
    char boundary[200 + 1]; /* RFC 2046 allows 70; be lenient */
    char delim[4 + sizeof(boundary)] = "\r\n--";
    if (ct == NULL || find_ci(ct, ct_len, "multipart/form-data") == NULL ||
        header_param(ct, ct_len, "boundary", boundary, sizeof(boundary)) == -1)
        return -1;
    size_t b_len = strlen(boundary);
    memcpy(delim + 4, boundary, b_len);
    size_t d_len = 4 + b_len; /* "\r\n--" boundary */

    /* The first delimiter may open the body without the leading CRLF. */
    size_t pos;
    if (len >= d_len - 2 && memcmp(body, delim + 2, d_len - 2) == 0) {
        pos = d_len - 2;
    } else {
        const char *f = memmem(body, len, delim, d_len);
        if (f == NULL)
            return -1;
        pos = (size_t)(f - body) + d_len;
    }
    for (;;) {
        /* After a delimiter: "--" closes, else optional padding and CRLF. */
        if (len - pos >= 2 && memcmp(body + pos, "--", 2) == 0)
            break;
        while (pos < len && (body[pos] == ' ' || body[pos] == '\t'))
            pos++;
        if (len - pos < 2 || memcmp(body + pos, "\r\n", 2) != 0)
            break;
        pos += 2;
        const char *head_end = memmem(body + pos, len - pos, "\r\n\r\n", 4);
        size_t head_len;
        size_t content;
        if (head_end != NULL) {
            head_len = (size_t)(head_end - (body + pos));
            content = pos + head_len + 4;
        } else if (len - pos >= 2 && memcmp(body + pos, "\r\n", 2) == 0) {
            head_len = 0; /* a part without headers */
            content = pos + 2;
        } else {
            break;
        }
        const char *next = memmem(body + content, len - content, delim, d_len);
        if (next == NULL)
            break; /* truncated body: the last part is not metered */
        multipart_part(m, body + pos, head_len, body + content, (size_t)(next - (body + content)));
        pos = (size_t)(next - body) + d_len;
    }
    return 0;
}

/* Adds stream_options.include_usage = true. Without stream_options the
 * member is inserted as text after the opening brace, so every other byte
 * reaches the provider exactly as the client sent it; otherwise the body is
 * re-serialised (member order kept). Returns -1 when it cannot be done. */
static int rewrite_include_usage(json_t *root, const char *body, size_t len, char **out,
                                 size_t *out_len)
{
    json_t *so = json_object_get(root, "stream_options");
    if (so == NULL) {
        const char *brace = memchr(body, '{', len);
        if (brace == NULL)
            return -1;
        size_t at = (size_t)(brace - body) + 1;
        size_t add = sizeof(INCLUDE_USAGE_MEMBER) - 1;
        char *nb = malloc(len + add + 1);
        if (nb == NULL)
            return -1;
        memcpy(nb, body, at);
        memcpy(nb + at, INCLUDE_USAGE_MEMBER, add);
        memcpy(nb + at + add, body + at, len - at);
        nb[len + add] = '\0';
        *out = nb;
        *out_len = len + add;
        return 0;
    }
    if (json_is_null(so)) {
        json_t *obj = json_pack("{s:b}", "include_usage", 1);
        if (obj == NULL || json_object_set_new(root, "stream_options", obj) == -1)
            return -1;
    } else if (json_is_object(so)) {
        if (json_object_set_new(so, "include_usage", json_true()) == -1)
            return -1;
    } else {
        return -1; /* not ours to fix: the provider answers with its error */
    }
    char *nb = json_dumps(root, JSON_COMPACT);
    if (nb == NULL)
        return -1;
    *out = nb;
    *out_len = strlen(nb);
    return 0;
}

int meter_request(struct meter *m, const char *body, size_t len, const char *content_type,
                  size_t content_type_len, char **rewritten, size_t *rewritten_len)
{
    int rc = -1;
    json_t *root = NULL;
    if (rewritten != NULL)
        *rewritten = NULL;
    if (rewritten_len != NULL)
        *rewritten_len = 0;

    if (m->kind == METER_NONE)
        return 0;
    if (m->kind == METER_TRANSCRIPTION)
        return meter_multipart(m, body, len, content_type, content_type_len);
    if (body == NULL || len == 0)
        goto done;
    root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root))
        goto done;

    take_model(m, json_object_get(root, "model"));
    m->stream = json_is_true(json_object_get(root, "stream"));
    m->client_include_usage =
        json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
    switch (m->kind) {
    case METER_CHAT:
        m->prompt_chars = content_chars(json_object_get(root, "messages"), 0);
        break;
    case METER_RESPONSES:
        m->prompt_chars = content_chars(json_object_get(root, "input"), 0) +
                          json_chars(json_object_get(root, "instructions"));
        break;
    case METER_SPEECH:
        /* Kept in prompt_chars too: a usage report replaces the character
         * count and meter_finish() restores it when none came. */
        m->prompt_chars = json_chars(json_object_get(root, "input"));
        m->units.characters = m->prompt_chars;
        break;
    case METER_NONE:
    case METER_EMBEDDINGS:
    case METER_TRANSCRIPTION:
        break;
    }
    if (m->kind == METER_CHAT && m->stream && !m->client_include_usage && rewritten != NULL &&
        rewritten_len != NULL) {
        if (rewrite_include_usage(root, body, len, rewritten, rewritten_len) == -1)
            log_debug("meter: stream_options left as sent; usage will be estimated");
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* ---- replies ---- */

/* The object value of the last `"usage":` key in a JSON text, or NULL. The
 * raw bytes `"usage"` followed by a colon can only be a key: inside a
 * string value the quotes would be escaped. OpenAI puts the top-level usage
 * after the payload, so the last one is it. Caller owns the result. */
static json_t *last_usage_object(const char *body, size_t len)
{
    const char *key = "\"usage\"";
    const char *last = NULL;
    const char *p = body;
    size_t left = len;
    const char *hit;
    while ((hit = memmem(p, left, key, 7)) != NULL) {
        last = hit;
        left -= (size_t)(hit + 7 - p);
        p = hit + 7;
    }
    if (last == NULL)
        return NULL;
    const char *q = last + 7, *end = body + len;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
        q++;
    if (q >= end || *q != ':')
        return NULL;
    q++;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
        q++;
    if (q >= end || *q != '{')
        return NULL;
    json_t *u = json_loadb(q, (size_t)(end - q), JSON_DISABLE_EOF_CHECK, NULL);
    if (!json_is_object(u)) {
        json_decref(u);
        return NULL;
    }
    return u;
}

void meter_response_json(struct meter *m, const char *body, size_t len)
{
    if (body == NULL || len == 0 || m->kind == METER_NONE)
        return;
    json_t *root = NULL, *u = NULL, *fast = NULL;
    /* Fast path: when the model is known from the request, parse only the
     * usage object instead of the whole reply (embeddings replies carry
     * kilobytes of vectors before it). */
    if (m->model[0] != '\0')
        fast = u = last_usage_object(body, len);
    if (u == NULL) {
        root = json_loadb(body, len, 0, NULL);
        if (!json_is_object(root))
            goto done;
        take_model(m, json_object_get(root, "model"));
        u = json_object_get(root, "usage");
    }
    switch (m->kind) {
    case METER_CHAT:
        if (json_is_object(u))
            chat_usage(m, u);
        break;
    case METER_RESPONSES:
        if (json_is_object(u))
            responses_usage(m, u);
        break;
    case METER_EMBEDDINGS:
        if (json_is_object(u)) {
            m->units.input_tokens = count_at(u, "prompt_tokens", NULL);
            m->got_usage = true;
        }
        break;
    case METER_TRANSCRIPTION:
        if (json_is_object(u)) {
            transcription_usage(m, u);
        } else if (json_is_number(json_object_get(root, "duration"))) {
            /* verbose_json of models that report no usage object. */
            double s = json_number_value(json_object_get(root, "duration"));
            m->units.audio_ms = s > 0 && s < 9.0e12 ? (int64_t)(s * 1000.0 + 0.5) : 0;
            m->got_usage = true;
        }
        break;
    case METER_SPEECH:
        if (json_is_object(u))
            speech_usage(m, u);
        break;
    case METER_NONE:
        break;
    }
done:
    json_decref(root);
    json_decref(fast);
}

/* True when the text holds a "usage" key whose value is an object (chunks
 * without usage say "usage":null or nothing). */
static bool has_usage_object(const char *d, size_t len)
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

/* Sum of the characters of every string value of `"key":` in a JSON text,
 * without building a tree (escapes count as one character). Used for the
 * estimate only, so a value the scanner misreads costs accuracy, not
 * safety. */
static int64_t scan_string_chars(const char *d, size_t len, const char *key)
{
    char pat[32];
    int pl = snprintf(pat, sizeof(pat), "\"%s\"", key);
    if (pl < 0 || (size_t)pl >= sizeof(pat))
        return 0;
    int64_t n = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *f = memmem(d + pos, len - pos, pat, (size_t)pl);
        if (f == NULL)
            break;
        size_t i = (size_t)(f - d) + (size_t)pl;
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

static bool is_terminal_response(const char *type)
{
    return type != NULL &&
           (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0 ||
            strcmp(type, "response.failed") == 0);
}

static bool chat_event(struct meter *m, const char *data, size_t len)
{
    bool drop = false;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return false;
    m->output_chars += scan_string_chars(data, len, "content");
    bool want_model = m->model[0] == '\0' && memmem(data, len, "\"model\"", 7) != NULL;
    if (!has_usage_object(data, len) && !want_model)
        return false;
    json_t *root = json_loadb(data, len, 0, NULL);
    if (!json_is_object(root))
        goto done;
    take_model(m, json_object_get(root, "model"));
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u)) {
        chat_usage(m, u);
        json_t *choices = json_object_get(root, "choices");
        /* The chunk we asked for on the client's behalf. */
        drop = json_is_array(choices) && json_array_size(choices) == 0 && !m->client_include_usage;
    }
done:
    json_decref(root);
    return drop;
}

static void responses_event(struct meter *m, const char *event, const char *data, size_t len)
{
    static const char delta_type[] = "response.output_text.delta";
    bool named = event[0] != '\0';
    if (named ? strcmp(event, delta_type) == 0
              : memmem(data, len,
                       "\""
                       "response.output_text.delta"
                       "\"",
                       sizeof(delta_type) + 1) != NULL) {
        m->output_chars += scan_string_chars(data, len, "delta");
        return;
    }
    if (named ? !is_terminal_response(event) : !has_usage_object(data, len))
        return;
    json_t *root = json_loadb(data, len, 0, NULL);
    if (!json_is_object(root))
        goto done;
    if (!named && !is_terminal_response(json_string_value(json_object_get(root, "type"))))
        goto done;
    json_t *resp = json_object_get(root, "response");
    take_model(m, json_object_get(resp, "model"));
    json_t *u = json_object_get(resp, "usage");
    if (json_is_object(u))
        responses_usage(m, u);
done:
    json_decref(root);
}

/* transcript.text.done and speech.audio.done carry a top-level usage. */
static void audio_event(struct meter *m, const char *data, size_t len)
{
    if (!has_usage_object(data, len))
        return;
    json_t *root = json_loadb(data, len, 0, NULL);
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u)) {
        if (m->kind == METER_SPEECH)
            speech_usage(m, u);
        else
            transcription_usage(m, u);
    }
    json_decref(root);
}

bool meter_sse_event(struct meter *m, const char *event, const char *data, size_t data_len)
{
    if (data == NULL || data_len == 0)
        return false;
    if (event == NULL)
        event = "";
    switch (m->kind) {
    case METER_CHAT:
        return chat_event(m, data, data_len);
    case METER_RESPONSES:
        responses_event(m, event, data, data_len);
        break;
    case METER_SPEECH:
    case METER_TRANSCRIPTION:
        audio_event(m, data, data_len);
        break;
    case METER_NONE:
    case METER_EMBEDDINGS:
        break;
    }
    return false;
}

static int64_t ceil_div4(int64_t n)
{
    return n > 0 ? n / 4 + (n % 4 != 0) : 0;
}

bool meter_finish(struct meter *m)
{
    switch (m->kind) {
    case METER_SPEECH:
        if (!m->got_usage)
            m->units.characters = m->prompt_chars;
        return false;
    case METER_TRANSCRIPTION:
        if (!m->got_usage && m->upload_audio_ms >= 0)
            m->units.audio_ms = m->upload_audio_ms;
        return false;
    case METER_CHAT:
    case METER_RESPONSES:
        if (m->got_usage)
            return false;
        m->units.input_tokens = ceil_div4(m->prompt_chars);
        m->units.output_tokens = ceil_div4(m->output_chars);
        return true;
    case METER_NONE:
    case METER_EMBEDDINGS:
        break;
    }
    return false;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

int64_t meter_wav_duration_ms(const unsigned char *data, size_t len)
{
    if (data == NULL || len < 12 ||
        (memcmp(data, "RIFF", 4) != 0 && memcmp(data, "RF64", 4) != 0) ||
        memcmp(data + 8, "WAVE", 4) != 0)
        return -1;
    uint64_t byte_rate = 0;
    bool have_fmt = false;
    int64_t data_bytes = -1;
    size_t pos = 12;
    while (len - pos >= 8) {
        const unsigned char *id = data + pos;
        uint32_t size = le32(data + pos + 4);
        size_t body = pos + 8;
        size_t remaining = len - body;
        if (memcmp(id, "fmt ", 4) == 0 && size >= 16 && remaining >= 16) {
            uint32_t sample_rate = le32(data + body + 4);
            byte_rate = le32(data + body + 8);
            if (byte_rate == 0)
                byte_rate = (uint64_t)sample_rate * le16(data + body + 12);
            have_fmt = true;
        } else if (memcmp(id, "data", 4) == 0) {
            /* Streaming writers leave the size open (0xFFFFFFFF, or RF64's
             * real size in ds64): what was uploaded is what is there. */
            bool open = size == 0xFFFFFFFFu || size > remaining;
            data_bytes = open ? (int64_t)remaining : (int64_t)size;
            if (have_fmt || open)
                break;
        }
        if (size > remaining)
            break;
        pos = body + size;
        if ((size & 1) && pos < len)
            pos++; /* chunks are padded to even sizes */
    }
    if (!have_fmt || data_bytes < 0 || byte_rate == 0)
        return -1;
    return (int64_t)((uint64_t)data_bytes * 1000u / byte_rate);
}
