/* meter.c - usage metering of upstream calls: what the request asks for,
 * what the provider reports, and an estimate when a reply ends without a
 * report. OpenAI-shaped endpoints (PROVIDERS.md §1.1–1.5, DeepSeek too), and
 * the other providers (§2–4) by these rules:
 *
 *   ElevenLabs TTS   characters = the reply's character-cost header (what
 *                    ElevenLabs billed) when present; else the code points of
 *                    "text" × the model's credit rate, rounded up: 0.5 for
 *                    model ids containing "turbo" or "flash", 1 otherwise.
 *                    model = model_id, or "eleven_multilingual_v2" (the API's
 *                    default) when omitted. Estimated only when the request
 *                    had no text and no header came.
 *   Anthropic        input_tokens = input + cache writes + cache reads (the
 *                    whole prompt, like OpenAI's prompt_tokens), cached =
 *                    cache reads. Streams: message_start gives the input
 *                    side, message_delta the cumulative output (last wins).
 *                    Cut before message_delta: the output is estimated from
 *                    the streamed text, thinking and tool input (estimated);
 *                    an error event before message_start means nothing was
 *                    consumed (zero units, not estimated).
 *   Deepgram listen  audio = $.metadata.duration of the reply; without it,
 *                    the uploaded WAV/Ogg duration (estimated), else 0
 *                    (estimated). model = the query's model= or "" (no
 *                    default is assumed: pricing falls back to "*").
 *   Deepgram speak   characters = dg-char-count header, else code points of
 *                    "text". model = query model=, else dg-model-name.
 *   Cartesia         characters = code points of "transcript"; model_id.
 *                    (TTS of every provider: estimated, with 0 characters,
 *                    only when the request carried no text and no header
 *                    reported a count.)
 *   Azure TTS        characters = XML text of the SSML: text outside tags,
 *                    an entity reference (&amp; &#65; ...) counting as one,
 *                    CDATA content counting as written, comments, processing
 *                    instructions and attribute values counting nothing,
 *                    whitespace as written. model = first <voice name>.
 *   Azure STT        audio = duration of the uploaded WAV or Ogg body (the
 *                    reply's Duration is the speech span only and is not
 *                    used); another format gives 0 and estimated.
 *
 * Streamed chunks are the hot path: most chunks carry no usage, so they are
 * only scanned (memmem plus a tiny string scanner for the output text) and
 * handed to jansson only when they can hold a usage object. */
#include "common.h"

#include "meter.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Added to a chat request body whose client did not ask for stream usage. */
#define INCLUDE_USAGE_MEMBER "\"stream_options\":{\"include_usage\":true},"

/* ElevenLabs' model when the request names none (PROVIDERS.md §2.1). */
#define EL_DEFAULT_MODEL "eleven_multilingual_v2"

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

static bool path_is(const char *path, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(path, want, len) == 0;
}

/* If path starts with prefix, sets *rest and *rest_len to what follows. */
static bool path_after(const char *path, size_t len, const char *prefix, const char **rest,
                       size_t *rest_len)
{
    size_t n = strlen(prefix);
    if (len < n || memcmp(path, prefix, n) != 0)
        return false;
    *rest = path + n;
    *rest_len = len - n;
    return true;
}

/* "{voice_id}" plus an optional "/stream", "/with-timestamps" or
 * "/stream/with-timestamps" ("/stream-input" is the WebSocket). */
static enum meter_kind elevenlabs_kind(const char *path, size_t len)
{
    const char *rest;
    size_t n;
    if (!path_after(path, len, "/v1/text-to-speech/", &rest, &n))
        return METER_NONE;
    const char *slash = memchr(rest, '/', n);
    size_t voice_len = slash ? (size_t)(slash - rest) : n;
    if (voice_len == 0)
        return METER_NONE;
    rest += voice_len;
    n -= voice_len;
    if (n == 0 || path_is(rest, n, "/stream") || path_is(rest, n, "/with-timestamps") ||
        path_is(rest, n, "/stream/with-timestamps"))
        return METER_EL_TTS;
    return METER_NONE;
}

static enum meter_kind azure_stt_kind(const char *path, size_t len)
{
    static const char *const modes[] = {"conversation/", "interactive/", "dictation/"};
    const char *rest;
    size_t n;
    if (!path_after(path, len, "/speech/recognition/", &rest, &n))
        return METER_NONE;
    for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
        const char *tail;
        size_t tail_len;
        if (path_after(rest, n, modes[i], &tail, &tail_len) &&
            path_is(tail, tail_len, "cognitiveservices/v1"))
            return METER_AZURE_STT;
    }
    return METER_NONE;
}

enum meter_kind meter_kind_for(enum provider_id p, bool azure_stt, const char *path, size_t len)
{
    if (path == NULL)
        return METER_NONE;
    switch (p) {
    case PROVIDER_OPENAI:
        return meter_kind_for_path(path, len);
    case PROVIDER_DEEPSEEK:
        if (len >= 4 && memcmp(path, "/v1/", 4) == 0)
            return meter_kind_for_path(path, len);
        /* DeepSeek serves the OpenAI paths without /v1 too. */
        if (len >= 1 && path[0] == '/') {
            for (size_t i = 0; i < ARRAY_SIZE(meter_paths); i++) {
                const char *pp = meter_paths[i].path + 3; /* every entry starts "/v1" */
                if (path_is(path, len, pp))
                    return meter_paths[i].kind;
            }
        }
        return METER_NONE;
    case PROVIDER_ELEVENLABS:
        return elevenlabs_kind(path, len);
    case PROVIDER_ANTHROPIC:
        return path_is(path, len, "/v1/messages") ? METER_ANTHROPIC : METER_NONE;
    case PROVIDER_DEEPGRAM:
        if (path_is(path, len, "/v1/listen"))
            return METER_DG_LISTEN;
        return path_is(path, len, "/v1/speak") ? METER_DG_SPEAK : METER_NONE;
    case PROVIDER_CARTESIA:
        return path_is(path, len, "/tts/bytes") || path_is(path, len, "/tts/sse")
                   ? METER_CARTESIA_TTS
                   : METER_NONE;
    case PROVIDER_AZURE_SPEECH:
        if (azure_stt)
            return azure_stt_kind(path, len);
        return path_is(path, len, "/cognitiveservices/v1") ? METER_AZURE_TTS : METER_NONE;
    case PROVIDER__COUNT:
        break;
    }
    return METER_NONE;
}

const char *meter_line_name(enum meter_kind k)
{
    switch (k) {
    case METER_EMBEDDINGS:
        return "embeddings";
    case METER_SPEECH:
    case METER_EL_TTS:
    case METER_DG_SPEAK:
    case METER_CARTESIA_TTS:
    case METER_AZURE_TTS:
        return "tts";
    case METER_TRANSCRIPTION:
    case METER_DG_LISTEN:
    case METER_AZURE_STT:
        return "stt";
    case METER_NONE:
    case METER_CHAT:
    case METER_RESPONSES:
    case METER_ANTHROPIC:
        break;
    }
    return "llm";
}

static int64_t ssml_chars(struct meter *m, const char *s, size_t len);

int64_t meter_ssml_characters(const char *ssml, size_t len)
{
    struct meter m;
    meter_init(&m, METER_AZURE_TTS);
    return ssml_chars(&m, ssml, len);
}

int64_t meter_el_characters(const char *model, int64_t code_points)
{
    /* Turbo and Flash models bill half a credit per character. */
    if (strstr(model, "turbo") != NULL || strstr(model, "flash") != NULL)
        return code_points / 2 + (code_points & 1);
    return code_points;
}

void meter_init(struct meter *m, enum meter_kind k)
{
    memset(m, 0, sizeof(*m));
    m->kind = k;
    m->upload_audio_ms = -1;
    m->header_characters = -1;
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

/* Anthropic usage (non-stream reply, message_start's message.usage or
 * message_delta's usage). Only the counts present as numbers are taken:
 * message_delta always has the cumulative output_tokens, and some API
 * versions repeat the input side there (possibly as null). Cache reads and
 * writes come on top of input_tokens; the record's input_tokens is the
 * whole prompt. */
static void anthropic_usage(struct meter *m, const json_t *u)
{
    const json_t *v;
    if (json_is_number(v = json_object_get(u, "input_tokens")))
        m->anth_input_tokens = count_of(v);
    if (json_is_number(v = json_object_get(u, "cache_creation_input_tokens")))
        m->anth_cache_write = count_of(v);
    if (json_is_number(v = json_object_get(u, "cache_read_input_tokens")))
        m->units.cached_input_tokens = count_of(v);
    if (json_is_number(v = json_object_get(u, "output_tokens")))
        m->units.output_tokens = count_of(v);
    m->units.input_tokens =
        m->anth_input_tokens + m->anth_cache_write + m->units.cached_input_tokens;
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

/* Length of the XML entity reference at s[0] == '&' ("&amp;", "&#65;",
 * "&#x41;"), or 0 when it is not one (a stray '&' then counts as written). */
static size_t xml_entity_len(const char *s, size_t len)
{
    static const char *const named[] = {"amp;", "lt;", "gt;", "quot;", "apos;"};
    size_t i = 1;
    if (i < len && s[i] == '#') {
        i++;
        bool hex = i < len && (s[i] == 'x' || s[i] == 'X');
        i += hex;
        size_t digits = 0;
        while (i < len && digits < 8 &&
               (hex ? (s[i] >= '0' && s[i] <= '9') || ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'f')
                    : s[i] >= '0' && s[i] <= '9')) {
            i++;
            digits++;
        }
        return digits > 0 && i < len && s[i] == ';' ? i + 1 : 0;
    }
    for (size_t k = 0; k < ARRAY_SIZE(named); k++) {
        size_t n = strlen(named[k]);
        if (len - 1 >= n && memcmp(s + 1, named[k], n) == 0)
            return 1 + n;
    }
    return 0;
}

static bool xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* One markup construct starting at s[i] == '<' (start, end or empty-element
 * tag, or a declaration): returns the index after its '>', or len when it is
 * not closed. Quoted attribute values may hold '>'. The first <voice>'s name
 * attribute becomes the model. */
static size_t ssml_tag(struct meter *m, const char *s, size_t len, size_t i)
{
    i++;
    size_t name = i;
    while (i < len && !xml_space(s[i]) && s[i] != '>' && s[i] != '/')
        i++;
    bool voice = i - name == 5 && memcmp(s + name, "voice", 5) == 0;
    while (i < len) {
        if (s[i] == '>')
            return i + 1;
        if (xml_space(s[i]) || s[i] == '/') {
            i++;
            continue;
        }
        if (s[i] == '"' || s[i] == '\'') {
            /* A quoted value not after '=' (a declaration's literal). */
            const char *q = memchr(s + i + 1, s[i], len - i - 1);
            if (q == NULL)
                return len;
            i = (size_t)(q - s) + 1;
            continue;
        }
        size_t attr = i;
        while (i < len && !xml_space(s[i]) && s[i] != '=' && s[i] != '>' && s[i] != '/')
            i++;
        size_t attr_len = i - attr;
        while (i < len && xml_space(s[i]))
            i++;
        if (i >= len || s[i] != '=')
            continue;
        i++;
        while (i < len && xml_space(s[i]))
            i++;
        if (i >= len)
            return len;
        size_t val, val_len;
        if (s[i] == '"' || s[i] == '\'') {
            const char *q = memchr(s + i + 1, s[i], len - i - 1);
            if (q == NULL)
                return len;
            val = i + 1;
            val_len = (size_t)(q - s) - val;
            i = (size_t)(q - s) + 1;
        } else {
            val = i;
            while (i < len && !xml_space(s[i]) && s[i] != '>')
                i++;
            val_len = i - val;
        }
        if (voice && m->model[0] == '\0' && attr_len == 4 && memcmp(s + attr, "name", 4) == 0)
            set_model(m, s + val, val_len);
    }
    return len;
}

/* Billable characters of an SSML document (Azure TTS, see the top of the
 * file). Malformed XML is answered 400 by Azure and then not charged, so the
 * scanner only has to be safe on it, not exact. */
static int64_t ssml_chars(struct meter *m, const char *s, size_t len)
{
    int64_t n = 0;
    size_t i = 0;
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        i = 3; /* byte order mark */
    while (i < len) {
        const char *rest = s + i;
        size_t left = len - i;
        if (*rest == '&') {
            size_t e = xml_entity_len(rest, left);
            n++;
            i += e > 0 ? e : 1;
        } else if (*rest != '<') {
            n += ((unsigned char)*rest & 0xC0) != 0x80;
            i++;
        } else if (left >= 4 && memcmp(rest, "<!--", 4) == 0) {
            const char *end = memmem(rest + 4, left - 4, "-->", 3);
            if (end == NULL)
                break;
            i = (size_t)(end - s) + 3;
        } else if (left >= 9 && memcmp(rest, "<![CDATA[", 9) == 0) {
            const char *end = memmem(rest + 9, left - 9, "]]>", 3);
            if (end == NULL)
                break;
            n += utf8_chars(rest + 9, (size_t)(end - rest) - 9);
            i = (size_t)(end - s) + 3;
        } else if (left >= 2 && rest[1] == '?') {
            const char *end = memmem(rest + 2, left - 2, "?>", 2);
            if (end == NULL)
                break;
            i = (size_t)(end - s) + 2;
        } else {
            i = ssml_tag(m, s, len, i);
        }
    }
    return n;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static int64_t le64s(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return (int64_t)v;
}

/* Duration of an Ogg Opus or Ogg Vorbis file in ms: the last complete page's
 * granule position of the first stream (minus Opus pre-skip) over the
 * sample rate. -1 when it is not one. */
static int64_t ogg_duration_ms(const unsigned char *d, size_t len)
{
    if (d == NULL || len < 27 || memcmp(d, "OggS", 4) != 0)
        return -1;
    uint32_t serial = 0;
    uint64_t rate = 0;
    int64_t pre_skip = 0, granule = -1;
    size_t pos = 0;
    bool first = true;
    while (len - pos >= 27 && memcmp(d + pos, "OggS", 4) == 0) {
        size_t segs = d[pos + 26];
        if (len - pos - 27 < segs)
            break;
        size_t body = 0;
        for (size_t i = 0; i < segs; i++)
            body += d[pos + 27 + i];
        size_t start = pos + 27 + segs;
        if (len - start < body)
            break; /* a truncated last page: its granule is not reached */
        if (first) {
            serial = le32(d + pos + 14);
            if (body >= 19 && memcmp(d + start, "OpusHead", 8) == 0) {
                rate = 48000; /* Opus granules always count 48 kHz samples */
                pre_skip = le16(d + start + 10);
            } else if (body >= 16 && memcmp(d + start, "\x01vorbis", 7) == 0) {
                rate = le32(d + start + 12);
            } else {
                return -1;
            }
            first = false;
        } else if (le32(d + pos + 14) == serial) {
            int64_t g = le64s(d + pos + 6);
            if (g >= 0) /* -1: no packet ends on this page */
                granule = g;
        }
        pos = start + body;
    }
    if (rate == 0 || granule < 0)
        return -1;
    int64_t samples = granule > pre_skip ? granule - pre_skip : 0;
    return (int64_t)((uint64_t)samples * 1000u / rate);
}

/* Duration of an uploaded audio body (WAV or Ogg), -1 unknown. */
static int64_t audio_duration_ms(const char *body, size_t len)
{
    const unsigned char *d = (const unsigned char *)body;
    int64_t ms = meter_wav_duration_ms(d, len);
    return ms >= 0 ? ms : ogg_duration_ms(d, len);
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

void meter_request_query(struct meter *m, const char *query, size_t len)
{
    if ((m->kind != METER_DG_LISTEN && m->kind != METER_DG_SPEAK) || query == NULL)
        return;
    size_t pos = 0;
    while (pos < len) {
        const char *amp = memchr(query + pos, '&', len - pos);
        size_t end = amp ? (size_t)(amp - query) : len;
        if (end - pos > 6 && memcmp(query + pos, "model=", 6) == 0) {
            /* application/x-www-form-urlencoded: '+' is a space, %XX a
             * byte; a bad escape is kept as written. */
            char buf[MODEL_MAX];
            size_t n = 0;
            for (size_t i = pos + 6; i < end && n < sizeof(buf); i++) {
                char c = query[i];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && end - i > 2 && hex_val(query[i + 1]) >= 0 &&
                           hex_val(query[i + 2]) >= 0) {
                    c = (char)(hex_val(query[i + 1]) << 4 | hex_val(query[i + 2]));
                    i += 2;
                }
                buf[n++] = c;
            }
            set_model(m, buf, n);
            return;
        }
        pos = end + 1;
    }
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

/* Text of a TTS request: its code points become prompt_chars. */
static void take_text(struct meter *m, const json_t *v)
{
    if (json_is_string(v)) {
        m->prompt_chars = json_chars(v);
        m->have_text = true;
    }
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

    switch (m->kind) {
    case METER_NONE:
        return 0;
    case METER_TRANSCRIPTION:
        return meter_multipart(m, body, len, content_type, content_type_len);
    case METER_AZURE_TTS:
        if (body != NULL && len > 0) {
            m->prompt_chars = ssml_chars(m, body, len);
            m->have_text = true;
        }
        return 0;
    case METER_DG_LISTEN:
    case METER_AZURE_STT:
        /* Audio, or for Deepgram {"url":...} (then only the reply knows). */
        if (body != NULL && len > 0)
            m->upload_audio_ms = audio_duration_ms(body, len);
        return 0;
    default:
        break;
    }
    if (body == NULL || len == 0)
        goto done;
    root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root))
        goto done;

    switch (m->kind) {
    case METER_CHAT:
    case METER_RESPONSES:
    case METER_EMBEDDINGS:
    case METER_SPEECH:
    case METER_ANTHROPIC:
        take_model(m, json_object_get(root, "model"));
        m->stream = json_is_true(json_object_get(root, "stream"));
        break;
    default:
        break;
    }
    switch (m->kind) {
    case METER_CHAT:
        m->client_include_usage =
            json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
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
    case METER_ANTHROPIC:
        m->prompt_chars = content_chars(json_object_get(root, "system"), 0) +
                          content_chars(json_object_get(root, "messages"), 0);
        break;
    case METER_EL_TTS: {
        take_text(m, json_object_get(root, "text"));
        const json_t *id = json_object_get(root, "model_id");
        if (json_is_string(id) && json_string_length(id) > 0)
            set_model(m, json_string_value(id), json_string_length(id));
        break;
    }
    case METER_DG_SPEAK:
        take_text(m, json_object_get(root, "text"));
        break;
    case METER_CARTESIA_TTS:
        take_text(m, json_object_get(root, "transcript"));
        take_model(m, json_object_get(root, "model_id"));
        break;
    default:
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
    if (m->kind == METER_EL_TTS && m->model[0] == '\0')
        set_model(m, EL_DEFAULT_MODEL, strlen(EL_DEFAULT_MODEL));
    return rc;
}

/* ---- replies ---- */

/* The object value of the first or last `"key":` in a JSON text, or NULL.
 * The raw bytes `"key"` followed by a colon can only be a key: inside a
 * string value the quotes would be escaped. OpenAI puts the top-level usage
 * after the payload (the last one is it), Deepgram its metadata before the
 * results (the first). Caller owns the result. */
static json_t *key_object(const char *body, size_t len, const char *key, bool last)
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
    if (q >= end || *q != '{')
        return NULL;
    json_t *u = json_loadb(q, (size_t)(end - q), JSON_DISABLE_EOF_CHECK, NULL);
    if (!json_is_object(u)) {
        json_decref(u);
        return NULL;
    }
    return u;
}

static int64_t seconds_ms(const json_t *v)
{
    double s = json_number_value(v);
    /* Seconds may be fractional; milliseconds are the unit priced. */
    return s > 0 && s < 9.0e12 ? (int64_t)(s * 1000.0 + 0.5) : 0;
}

/* Anthropic's whole reply is parsed: tool_use inputs are JSON objects that
 * may hold a raw "usage" key, so the last-key shortcut is not safe here,
 * and replies without embeddings are small. */
static void anthropic_reply(struct meter *m, const char *body, size_t len)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root))
        goto done;
    take_model(m, json_object_get(root, "model"));
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u)) {
        anthropic_usage(m, u);
        m->usage_final = true;
    }
done:
    json_decref(root);
}

/* $.metadata.duration; the metadata object opens the reply, so only it is
 * parsed when it has the duration (transcripts of long audio are large). */
static void deepgram_reply(struct meter *m, const char *body, size_t len)
{
    json_t *root = NULL;
    json_t *meta = key_object(body, len, "\"metadata\"", false);
    if (!json_is_number(json_object_get(meta, "duration"))) {
        json_decref(meta);
        meta = NULL;
        root = json_loadb(body, len, 0, NULL);
    }
    const json_t *d = json_object_get(meta ? meta : json_object_get(root, "metadata"), "duration");
    if (json_is_number(d)) {
        m->units.audio_ms = seconds_ms(d);
        m->got_usage = true;
    }
    json_decref(meta);
    json_decref(root);
}

void meter_response_json(struct meter *m, const char *body, size_t len)
{
    if (body == NULL || len == 0)
        return;
    switch (m->kind) {
    case METER_ANTHROPIC:
        anthropic_reply(m, body, len);
        return;
    case METER_DG_LISTEN:
        deepgram_reply(m, body, len);
        return;
    case METER_NONE:
    case METER_EL_TTS: /* with-timestamps JSON: alignment, no usage */
    case METER_DG_SPEAK:
    case METER_CARTESIA_TTS:
    case METER_AZURE_TTS:
    case METER_AZURE_STT: /* its Duration is the speech span, not what is billed */
        return;
    case METER_CHAT:
    case METER_RESPONSES:
    case METER_EMBEDDINGS:
    case METER_SPEECH:
    case METER_TRANSCRIPTION:
        break;
    }
    json_t *root = NULL, *u = NULL, *fast = NULL;
    /* Fast path: when the model is known from the request, parse only the
     * usage object instead of the whole reply (embeddings replies carry
     * kilobytes of vectors before it). */
    if (m->model[0] != '\0')
        fast = u = key_object(body, len, "\"usage\"", true);
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
            m->units.audio_ms = seconds_ms(json_object_get(root, "duration"));
            m->got_usage = true;
        }
        break;
    case METER_SPEECH:
        if (json_is_object(u))
            speech_usage(m, u);
        break;
    default: /* the other providers returned above */
        break;
    }
done:
    json_decref(root);
    json_decref(fast);
}

/* A count in a reply header: digits, optionally with a fraction (rounded
 * up), surrounded by blanks. -1 when it is anything else. */
static int64_t header_count(const char *v, size_t len)
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

void meter_response_header(struct meter *m, const char *name, size_t name_len, const char *value,
                           size_t value_len)
{
    /* Called for every header of every reply: decide on the kind and the
     * length before comparing any text. */
    static const char el_cost[] = "character-cost";
    static const char dg_count[] = "dg-char-count";
    static const char dg_model[] = "dg-model-name";
    if (m->kind == METER_EL_TTS) {
        if (name_len != sizeof(el_cost) - 1 || strncasecmp(name, el_cost, name_len) != 0)
            return;
    } else if (m->kind == METER_DG_SPEAK) {
        if (name_len != sizeof(dg_count) - 1)
            return;
        if (strncasecmp(name, dg_model, name_len) == 0) {
            /* The model actually used, when the query named none. */
            while (value_len > 0 && (value[value_len - 1] == ' ' || value[value_len - 1] == '\r'))
                value_len--;
            if (m->model[0] == '\0' && value_len > 0)
                set_model(m, value, value_len);
            return;
        }
        if (strncasecmp(name, dg_count, name_len) != 0)
            return;
    } else {
        return;
    }
    int64_t n = header_count(value, value_len);
    if (n >= 0)
        m->header_characters = n;
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

/* Anthropic's named events (PROVIDERS.md §4.4). Deltas are only scanned
 * (text, thinking and tool-input JSON are all output); the few events that
 * carry usage are parsed. Unnamed events are not Anthropic's wire format but
 * are classified by their "type" after a parse. */
static void anthropic_event(struct meter *m, const char *event, const char *data, size_t len)
{
    json_t *root = NULL;
    const char *type = event;
    if (type[0] == '\0') {
        root = json_loadb(data, len, 0, NULL);
        type = json_string_value(json_object_get(root, "type"));
        if (type == NULL)
            goto done;
    }
    if (strcmp(type, "content_block_delta") == 0) {
        m->output_chars += scan_string_chars(data, len, "text") +
                           scan_string_chars(data, len, "thinking") +
                           scan_string_chars(data, len, "partial_json");
        goto done;
    }
    if (strcmp(type, "error") == 0) {
        m->stream_error = true;
        goto done;
    }
    bool start = strcmp(type, "message_start") == 0;
    if (!start && strcmp(type, "message_delta") != 0)
        goto done;
    if (root == NULL)
        root = json_loadb(data, len, 0, NULL);
    json_t *u;
    if (start) {
        json_t *msg = json_object_get(root, "message");
        take_model(m, json_object_get(msg, "model"));
        u = json_object_get(msg, "usage");
    } else {
        u = json_object_get(root, "usage");
    }
    if (json_is_object(u)) {
        anthropic_usage(m, u);
        m->usage_final |= !start;
    }
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
    case METER_ANTHROPIC:
        anthropic_event(m, event, data, data_len);
        break;
    case METER_NONE:
    case METER_EMBEDDINGS:
    case METER_EL_TTS:
    case METER_DG_LISTEN:
    case METER_DG_SPEAK:
    case METER_CARTESIA_TTS: /* /tts/sse: audio chunks; the request has the characters */
    case METER_AZURE_TTS:
    case METER_AZURE_STT:
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
    case METER_ANTHROPIC:
        if (m->usage_final)
            return false;
        if (m->got_usage) {
            /* message_start only: the input side is known, the output is
             * at least what was streamed. */
            m->units.output_tokens = MAX(m->units.output_tokens, ceil_div4(m->output_chars));
            return true;
        }
        if (m->stream_error)
            return false; /* failed before message_start: nothing consumed */
        m->units.input_tokens = ceil_div4(m->prompt_chars);
        m->units.output_tokens = ceil_div4(m->output_chars);
        return true;
    case METER_EL_TTS:
        if (m->model[0] == '\0')
            set_model(m, EL_DEFAULT_MODEL, strlen(EL_DEFAULT_MODEL));
        if (m->header_characters >= 0) {
            m->units.characters = m->header_characters;
            return false;
        }
        m->units.characters = meter_el_characters(m->model, m->prompt_chars);
        return !m->have_text;
    case METER_DG_SPEAK:
        if (m->header_characters >= 0) {
            m->units.characters = m->header_characters;
            return false;
        }
        m->units.characters = m->prompt_chars;
        return !m->have_text;
    case METER_CARTESIA_TTS:
    case METER_AZURE_TTS:
        m->units.characters = m->prompt_chars;
        return !m->have_text;
    case METER_DG_LISTEN:
        if (m->got_usage)
            return false;
        m->units.audio_ms = MAX(m->upload_audio_ms, 0);
        return true;
    case METER_AZURE_STT:
        /* The uploaded audio is what Azure bills, so it is not an estimate. */
        m->units.audio_ms = MAX(m->upload_audio_ms, 0);
        return m->upload_audio_ms < 0;
    case METER_NONE:
    case METER_EMBEDDINGS:
        break;
    }
    return false;
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
