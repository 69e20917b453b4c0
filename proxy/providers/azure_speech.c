/* azure_speech.c - Azure AI Speech (PROVIDERS.md §3): routes /azure/tts and
 * /azure/stt, each to its regional host template, the subscription key in a
 * header or the query (the Speech SDK puts it in both), the region
 * allow-list, and the meters:
 *
 *   TTS (REST and socket)  characters = XML text of the SSML (see
 *                          azure_ssml_characters); model = the first
 *                          <voice name>.
 *   STT REST               audio = the real duration of the uploaded WAV or
 *                          Ogg body (audio.h); the reply's Duration is the
 *                          speech span only and is not used. Another format
 *                          is estimated from its size.
 *   STT socket             audio = payload bytes of the client's framed audio
 *                          at the rate of its WAV header (sample rate x sample
 *                          size x channels); without a header, the SDK's
 *                          default 16 kHz 16-bit mono, estimated. */
#include "common.h"
#include "azure_speech.h"
#include "meter.h"
#include "provider.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SDK_DEFAULT_BYTES_PER_SEC   32000 /* 16 kHz, 16-bit, mono */
#define UNKNOWN_AUDIO_BYTES_PER_SEC 4000  /* an upload of unknown format: 32 kbit/s */

/* Short region names (PROVIDERS.md §3). A display name such as "East US"
 * would make the upstream host unresolvable, so it is refused when saved
 * rather than discovered as a DNS failure at the first request. */
static const char *const regions[] = {
    "eastus",        "eastus2",        "westus",           "westus2",         "westus3",
    "centralus",     "northcentralus", "southcentralus",   "westcentralus",   "canadacentral",
    "brazilsouth",   "northeurope",    "westeurope",       "francecentral",   "germanywestcentral",
    "norwayeast",    "swedencentral",  "switzerlandnorth", "switzerlandwest", "uksouth",
    "uaenorth",      "qatarcentral",   "southafricanorth", "eastasia",        "southeastasia",
    "australiaeast", "centralindia",   "japaneast",        "japanwest",       "koreacentral",
};

static bool region_known(const char *r)
{
    for (size_t i = 0; i < ARRAY_SIZE(regions); i++)
        if (strcmp(r, regions[i]) == 0)
            return true;
    return false;
}

/* Printable ASCII of s for a message, capped. */
static const char *shown(const char *s, char *out, size_t out_size)
{
    size_t n = 0;
    for (; *s && n + 4 < out_size; s++)
        out[n++] = (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\') ? *s : '?';
    out[n] = '\0';
    return out;
}

int azure_check_region(const char *region, char *err, size_t err_size)
{
    if (region != NULL && region_known(region))
        return 0;
    char guess[64], show[96];
    size_t n = 0;
    if (region == NULL)
        region = "";
    for (const char *q = region; *q && n + 1 < sizeof(guess); q++)
        if (*q != ' ')
            guess[n++] = (char)tolower((unsigned char)*q);
    guess[n] = '\0';
    shown(region, show, sizeof(show));
    if (region_known(guess))
        snprintf(err, err_size, "\"%s\" is not an Azure short region name; use \"%s\"", show,
                 guess);
    else
        snprintf(err, err_size,
                 "\"%s\" is not a known Azure short region name (lower case, no spaces, "
                 "e.g. \"eastus\", \"westeurope\")",
                 show);
    return -1;
}

/* --- SSML ------------------------------------------------------------------------ */

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
 * attribute becomes *voice. */
static size_t ssml_tag(const char *s, size_t len, size_t i, char *voice)
{
    i++;
    size_t name = i;
    while (i < len && !xml_space(s[i]) && s[i] != '>' && s[i] != '/')
        i++;
    bool is_voice = i - name == 5 && memcmp(s + name, "voice", 5) == 0;
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
        if (is_voice && voice != NULL && voice[0] == '\0' && attr_len == 4 &&
            memcmp(s + attr, "name", 4) == 0)
            meter_set_model(voice, s + val, val_len);
    }
    return len;
}

/* Malformed XML is answered 400 by Azure and then not charged, so the
 * scanner only has to be safe on it, not exact. */
int64_t azure_ssml_characters(const char *s, size_t len, char voice[MODEL_MAX])
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
            n += meter_utf8_chars(rest + 9, (size_t)(end - rest) - 9);
            i = (size_t)(end - s) + 3;
        } else if (left >= 2 && rest[1] == '?') {
            const char *end = memmem(rest + 2, left - 2, "?>", 2);
            if (end == NULL)
                break;
            i = (size_t)(end - s) + 2;
        } else {
            i = ssml_tag(s, len, i, voice);
        }
    }
    return n;
}

/* --- framed audio ---------------------------------------------------------------- */

/* The start of a message's payload: a WAV header (its bytes are not audio,
 * its format is the rate) or audio. */
static void head_decide(struct azure_frames *f, bool final)
{
    struct audio_wav w;
    const uint8_t *h = f->head;
    size_t n = f->head_len;
    bool maybe_wav = n == 0 || (h[0] == 'R' &&
                                (n < 4 || memcmp(h, "RIFF", 4) == 0 || memcmp(h, "RF64", 4) == 0));
    if (maybe_wav && n >= 12 && audio_wav_header(h, n, &w) == 0 && w.data_offset > 0 &&
        w.data_offset <= n) {
        if (w.bytes_per_sec > 0)
            f->bytes_per_sec = w.bytes_per_sec;
        f->audio_bytes += n - w.data_offset;
    } else if (maybe_wav && !final && n < sizeof(f->head)) {
        return; /* not enough yet */
    } else {
        f->audio_bytes += n;
    }
    f->head_state = 1;
}

void azure_frames_feed(struct azure_frames *f, const uint8_t *data, size_t len, uint64_t off,
                       bool last)
{
    size_t i = 0;
    while (i < len) {
        uint64_t o = off + i;
        if (o == 0) {
            f->hdr_len = data[i++];
            f->head_state = 0;
            f->head_len = 0;
            continue;
        }
        if (o == 1) {
            f->hdr_len = f->hdr_len << 8 | data[i++];
            f->payload_from = 2 + (uint64_t)f->hdr_len;
            continue;
        }
        if (o < f->payload_from) {
            uint64_t skip = MIN((uint64_t)(len - i), f->payload_from - o);
            i += (size_t)skip;
            continue;
        }
        size_t n = len - i;
        if (f->head_state == 0) {
            size_t take = MIN(n, sizeof(f->head) - f->head_len);
            memcpy(f->head + f->head_len, data + i, take);
            f->head_len += take;
            i += take;
            head_decide(f, false);
            continue;
        }
        f->audio_bytes += n;
        i = len;
    }
    if (last && f->head_state == 0 && off + len >= 2)
        head_decide(f, true);
}

/* --- REST meters ------------------------------------------------------------------ */

static int tts_request(struct meter *m, const char *body, size_t len, const char *ct, size_t ct_len,
                       char **rewritten, size_t *rewritten_len)
{
    (void)ct;
    (void)ct_len;
    (void)rewritten;
    (void)rewritten_len;
    if (body != NULL && len > 0) {
        m->prompt_chars = azure_ssml_characters(body, len, m->model);
        m->have_text = true;
    }
    return 0;
}

static bool tts_finish(struct meter *m)
{
    m->units.characters = m->prompt_chars;
    return !m->have_text;
}

static int stt_request(struct meter *m, const char *body, size_t len, const char *ct, size_t ct_len,
                       char **rewritten, size_t *rewritten_len)
{
    (void)ct;
    (void)ct_len;
    (void)rewritten;
    (void)rewritten_len;
    if (body != NULL && len > 0)
        m->upload_audio_ms = audio_duration_ms((const uint8_t *)body, len);
    m->aux[0] = (int64_t)len;
    return 0;
}

static bool stt_finish(struct meter *m)
{
    /* The uploaded audio is what Azure bills: not an estimate when its
     * format is readable. */
    if (m->upload_audio_ms >= 0) {
        m->units.audio_ms = m->upload_audio_ms;
        return false;
    }
    m->units.audio_ms = audio_bytes_ms((uint64_t)m->aux[0], UNKNOWN_AUDIO_BYTES_PER_SEC);
    return true;
}

static const struct meter_ops meter_tts = {
    .name = "azure_speech.tts",
    .request_body = tts_request,
    .finish = tts_finish,
};

static const struct meter_ops meter_stt = {
    .name = "azure_speech.stt",
    .request_body = stt_request,
    .finish = stt_finish,
};

/* --- socket meters --------------------------------------------------------------- */

/* TTS: the SSML of "Path: ssml" text messages (CRLF headers, blank line,
 * body) is what is billed. */
static void tts_text(struct ws_meter *m, bool from_client, const char *data, size_t len,
                     bool complete)
{
    if (!from_client || !complete)
        return;
    const char *end = memmem(data, len, "\r\n\r\n", 4);
    if (end == NULL)
        return;
    bool ssml = false;
    for (const char *line = data; line < end && !ssml;) {
        const char *eol = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
        size_t n = (size_t)(eol - line);
        if (n > 5 && strncasecmp(line, "path:", 5) == 0) {
            const char *v = line + 5;
            size_t vl = n - 5;
            while (vl > 0 && (*v == ' ' || *v == '\t'))
                v++, vl--;
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            ssml = vl == 4 && strncasecmp(v, "ssml", 4) == 0;
        }
        line = eol + 2;
    }
    if (!ssml)
        return;
    const char *body = end + 4;
    char voice[MODEL_MAX] = "";
    m->total.characters += azure_ssml_characters(body, len - (size_t)(body - data), voice);
    if (m->model[0] == '\0' && voice[0] != '\0') {
        snprintf(m->model, sizeof(m->model), "%s", voice);
        m->model_changed = true;
    }
}

static void stt_update(struct ws_meter *m)
{
    struct azure_frames *f = m->state;
    uint64_t rate = f->bytes_per_sec > 0 ? f->bytes_per_sec : SDK_DEFAULT_BYTES_PER_SEC;
    m->total.audio_ms = audio_bytes_ms(f->audio_bytes, rate);
    m->estimated = f->audio_bytes > 0 && f->bytes_per_sec == 0;
}

static void stt_binary(struct ws_meter *m, bool from_client, const uint8_t *data, size_t len,
                       uint64_t off, bool last)
{
    if (from_client)
        azure_frames_feed(m->state, data, len, off, last);
}

static void stt_finish_ws(struct ws_meter *m, const struct ws_meter_end *end)
{
    (void)end;
    stt_update(m);
}

static const struct ws_meter_ops ws_tts = {
    .name = "azure_speech.tts_socket",
    .text = tts_text,
};

static const struct ws_meter_ops ws_stt = {
    .name = "azure_speech.stt_socket",
    .state_size = sizeof(struct azure_frames),
    .binary = stt_binary,
    .interval = stt_update,
    .finish = stt_finish_ws,
};

/* --- errors ----------------------------------------------------------------------- */

static json_t *error_body(int status, const char *type, const char *code, const char *message)
{
    char st[8];
    (void)type;
    (void)code;
    snprintf(st, sizeof(st), "%d", status);
    return json_pack("{s:{s:s,s:s}}", "error", "code", st, "message", message);
}

/* {"error":{"code","message"}}, on some endpoints a string. */
static const char *error_message(json_t *root)
{
    json_t *e = json_object_get(root, "error");
    if (json_is_string(e))
        return json_string_value(e);
    json_t *v = json_object_get(e, "message");
    if (v == NULL)
        v = json_object_get(root, "message");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* --- the declaration -------------------------------------------------------------- */

enum { HOST_TTS = 0, HOST_STT = 1 };

static const struct provider_host hosts[] = {
    {"azure_speech_tts", "https://{region}.tts.speech.microsoft.com", true, "tts"},
    {"azure_speech_stt", "https://{region}.stt.speech.microsoft.com", true, "stt"},
};

static const struct provider_route routes[] = {
    {"/azure/tts", 10, HOST_TTS},
    {"/azure/stt", 10, HOST_STT},
};

static const struct provider_endpoint endpoints[] = {
    {"POST", "/cognitiveservices/v1", HOST_TTS, "tts", &meter_tts, NULL, 0, NULL, NULL},
    {"GET", "/cognitiveservices/voices/list", HOST_TTS, "tts", NULL, NULL, 0, NULL, NULL},
    {"GET", "/tts/cognitiveservices/websocket/v1", HOST_TTS, "tts", NULL, &ws_tts, PROVIDER_EP_WS,
     NULL, NULL},
    {"GET", "/cognitiveservices/websocket/v1", HOST_TTS, "tts", NULL, &ws_tts, PROVIDER_EP_WS, NULL,
     NULL},
    {"POST", "/speech/recognition/conversation/cognitiveservices/v1", HOST_STT, "stt", &meter_stt,
     NULL, 0, NULL, NULL},
    {"POST", "/speech/recognition/interactive/cognitiveservices/v1", HOST_STT, "stt", &meter_stt,
     NULL, 0, NULL, NULL},
    {"POST", "/speech/recognition/dictation/cognitiveservices/v1", HOST_STT, "stt", &meter_stt,
     NULL, 0, NULL, NULL},
    {"GET", "/speech/recognition/conversation/cognitiveservices/v1", HOST_STT, "stt", NULL, &ws_stt,
     PROVIDER_EP_WS, NULL, NULL},
    {"GET", "/speech/recognition/interactive/cognitiveservices/v1", HOST_STT, "stt", NULL, &ws_stt,
     PROVIDER_EP_WS, NULL, NULL},
    {"GET", "/speech/recognition/dictation/cognitiveservices/v1", HOST_STT, "stt", NULL, &ws_stt,
     PROVIDER_EP_WS, NULL, NULL},
    {"GET", "/stt/speech/universal/v2", HOST_STT, "stt", NULL, &ws_stt, PROVIDER_EP_WS, NULL, NULL},
};

static const struct provider_cred creds[] = {
    {PROVIDER_CRED_HEADER, "ocp-apim-subscription-key", NULL},
    {PROVIDER_CRED_QUERY, "ocp-apim-subscription-key", NULL},
};

/* The SDK's token form: "?Authorization=Bearer%20<token>". */
static const char *const extra_query[] = {"authorization", NULL};
static const char *const request_ids[] = {"x-requestid", "apim-request-id", "x-request-id", NULL};
static const char *const ws_forward[] = {"user-agent", NULL};

static const struct provider_check check = {
    "GET", "/cognitiveservices/voices/list", NULL, NULL, "the voices list",
};

const struct provider azure_speech_provider = {
    .name = "azure_speech",
    .display = "Azure Speech",
    .slot = true,
    .hosts = hosts,
    .n_hosts = ARRAY_SIZE(hosts),
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .endpoints = endpoints,
    .n_endpoints = ARRAY_SIZE(endpoints),
    .creds = creds,
    .n_creds = ARRAY_SIZE(creds),
    .extra_cred_query = extra_query,
    .inject_header = "Ocp-Apim-Subscription-Key",
    .request_id_headers = request_ids,
    .ws_forward_headers = ws_forward,
    .region = true,
    .check_region = azure_check_region,
    .region_example = "eastus",
    .key_env_example = "AZURE_SPEECH_KEY",
    .error_body = error_body,
    .error_message = error_message,
    .check = &check,
    .price_fields =
        PROVIDER_PRICE_CHARACTERS | PROVIDER_PRICE_AUDIO_MINUTE | PROVIDER_PRICE_SESSION_MINUTE,
};
