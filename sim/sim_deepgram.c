/* sim_deepgram.c - simulated Deepgram (PROVIDERS.md §4.1), upstream
 * "deepgram":
 *
 *   POST /v1/listen   audio body (WAV or Ogg Opus: their real length; raw
 *                     audio with encoding= and sample_rate=; anything else
 *                     at 32 kbit/s, the proxy's own estimate), or
 *                     {"url": ...} (not fetched: it holds reply_tokens words
 *                     of speech) -> {metadata{request_id, sha256, created,
 *                     duration, channels, models, model_info}, results{
 *                     channels[{alternatives[{transcript, confidence,
 *                     words}]}]}} after audio x audio_rtf
 *   POST /v1/speak    {"text"} -> audio (mp3 by default; linear16, mulaw,
 *                     alaw with container wav|none) of sim_speech_ms() of
 *                     its code points, chunked, paced at audio_rtf;
 *                     dg-char-count, dg-model-name, dg-model-uuid
 *   WS   /v1/listen   live: sim_deepgram_live.c
 *   GET  /v1/models   a few
 *
 * metadata.duration is the audio's length as the proxy meters it; the
 * transcript is the generated text, a word per 400 ms, lower case without
 * punctuation unless punctuate or smart_format is true. Keys:
 * "Authorization: Token <key>" or "Bearer <token>", on sockets also the
 * subprotocol pair "token, <key>" / "bearer, <token>"; any value. Errors
 * {"err_code", "err_msg", "request_id"}; request ids in dg-request-id. */
#include "common.h"
#include "audio.h"
#include "meter.h"
#include "sim_deepgram.h"
#include "urlenc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#define UNKNOWN_BYTES_PER_SEC 4000 /* 32 kbit/s: the proxy's estimate for an unknown format */
#define SPEAK_MAX_CHARS       2000
#define CONFIDENCE            0.98

/* ---- shared with the live socket ---------------------------------------- */

void sim_deepgram_query(struct sim_request *r, const char *name, char *out, size_t out_size)
{
    const struct httpparse_request *h = sim_head(r);
    if (h->query == NULL || urlenc_query_get(h->query, h->query_len, name, out, out_size) == -1)
        out[0] = '\0';
}

bool sim_deepgram_query_has(struct sim_request *r, const char *name)
{
    const struct httpparse_request *h = sim_head(r);
    struct urlenc_query it;
    struct urlenc_pair pair;
    urlenc_query_init(&it, h->query, h->query != NULL ? h->query_len : 0);
    while (urlenc_query_next(&it, &pair))
        if (urlenc_name_is(&pair, name))
            return true;
    return false;
}

bool sim_deepgram_query_true(struct sim_request *r, const char *name)
{
    char v[8];
    sim_deepgram_query(r, name, v, sizeof(v));
    return strcasecmp(v, "true") == 0;
}

void sim_deepgram_model(struct sim_request *r, struct sim_deepgram_model *out)
{
    sim_deepgram_query(r, "model", out->name, sizeof(out->name));
    if (out->name[0] == '\0')
        snprintf(out->name, sizeof(out->name), "base");
    /* A stable made-up UUID per model name (FNV-1a). */
    uint64_t a = UINT64_C(0xcbf29ce484222325), b = UINT64_C(0x84222325cbf29ce4);
    for (const char *p = out->name; *p; p++) {
        a = (a ^ (uint8_t)*p) * UINT64_C(0x100000001b3);
        b = (b ^ (uint8_t)*p) * UINT64_C(0x100000001b3);
    }
    snprintf(out->uuid, sizeof(out->uuid), "%08x-%04x-4%03x-a%03x-%012llx", (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff, (unsigned)(b >> 52) & 0xfff,
             (unsigned long long)(b & UINT64_C(0xffffffffffff)));
}

json_t *sim_deepgram_model_info(const struct sim_deepgram_model *m)
{
    return json_pack("{ss ss ss}", "name", m->name, "version", "2025-01-01.0", "arch",
                     strncmp(m->name, "nova", 4) == 0 ? m->name : "base");
}

json_t *sim_deepgram_alternative(size_t first, size_t n, int64_t start_ms, int64_t end_ms,
                                 bool punctuate)
{
    json_t *words = json_array();
    int64_t span = end_ms - start_ms;
    for (size_t k = 0; k < n; k++) {
        char lex[64], shown[64];
        sim_transcript_word(first + k, true, lex, sizeof(lex));
        json_t *w = json_pack("{ss sf sf sf}", "word", lex, "start",
                              (double)(start_ms + span * (int64_t)k / (int64_t)n) / 1000.0, "end",
                              (double)(start_ms + span * (int64_t)(k + 1) / (int64_t)n) / 1000.0,
                              "confidence", CONFIDENCE);
        if (punctuate) {
            sim_transcript_word(first + k, false, shown, sizeof(shown));
            json_object_set_new(w, "punctuated_word", json_string(shown));
        }
        json_array_append_new(words, w);
    }
    char *text = n > 0 ? sim_transcript(first, n, !punctuate) : NULL;
    json_t *alt = json_pack("{ss sf so}", "transcript", text ? text : "", "confidence",
                            n > 0 ? CONFIDENCE : 0.0, "words", words);
    free(text);
    return alt;
}

char *sim_deepgram_dump(json_t *v)
{
    char *s = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(v);
    return s;
}

void sim_deepgram_created(char out[32])
{
    int64_t ms = now_ms();
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    size_t n = strftime(out, 24, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

void sim_deepgram_hex(const unsigned char *md, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * n] = '\0';
}

int sim_deepgram_encoding(const char *encoding, const char *sample_rate, const char *channels,
                          uint64_t *bytes_per_sec)
{
    static const char *const known[] = {"linear16", "linear32", "mulaw",  "alaw",   "flac", "opus",
                                        "ogg-opus", "speex",    "amr-nb", "amr-wb", "g729"};
    *bytes_per_sec = 0;
    if (encoding[0] == '\0')
        return 0;
    bool ok = false;
    for (size_t i = 0; i < ARRAY_SIZE(known) && !ok; i++)
        ok = strcmp(encoding, known[i]) == 0;
    long rate = strtol(sample_rate, NULL, 10), ch = channels[0] ? strtol(channels, NULL, 10) : 1;
    if (!ok || rate < 8000 || rate > 192000 || ch < 1 || ch > 16)
        return -1;
    int bytes = strcmp(encoding, "linear16") == 0                                 ? 2
                : strcmp(encoding, "linear32") == 0                               ? 4
                : strcmp(encoding, "mulaw") == 0 || strcmp(encoding, "alaw") == 0 ? 1
                                                                                  : 0;
    *bytes_per_sec = (uint64_t)rate * (uint64_t)bytes * (uint64_t)ch;
    return 0;
}

/* ---- keys and errors ------------------------------------------------------ */

/* The browser's subprotocol pair: "token, <key>" or "bearer, <token>". */
static bool subprotocol_key(struct sim_request *r)
{
    size_t len = 0;
    const char *v = sim_header(r, "sec-websocket-protocol", &len);
    for (size_t i = 0; v != NULL && i < len;) {
        while (i < len && (v[i] == ' ' || v[i] == ','))
            i++;
        size_t j = i;
        while (j < len && v[j] != ',')
            j++;
        size_t n = j;
        while (n > i && v[n - 1] == ' ')
            n--;
        bool scheme = (n - i == 5 && strncasecmp(v + i, "token", 5) == 0) ||
                      (n - i == 6 && strncasecmp(v + i, "bearer", 6) == 0);
        if (scheme) {
            /* The next item is the key. */
            size_t k = j;
            while (k < len && (v[k] == ' ' || v[k] == ','))
                k++;
            return k < len;
        }
        i = j;
    }
    return false;
}

static bool authorized(struct sim_request *r)
{
    return sim_has_key(r, "authorization", "Token") || sim_has_key(r, "authorization", "Bearer") ||
           (sim_head(r)->upgrade_websocket && subprotocol_key(r));
}

void sim_deepgram_error_status(struct sim_request *r, int status, const char *code,
                               const char *message)
{
    struct http_kv retry = {"retry-after", "1"};
    sim_reply_json(r, status,
                   json_pack("{ss ss ss}", "err_code", code, "err_msg", message, "request_id",
                             sim_request_id(r)),
                   &retry, status == 429 ? 1 : 0);
}

static void error(struct sim_request *r, enum sim_error what, const char *detail)
{
    char msg[512];
    switch (what) {
    case SIM_ERR_BAD_REQUEST:
        sim_deepgram_error_status(r, 400, "Bad Request", detail ? detail : "Bad Request");
        return;
    case SIM_ERR_UNAUTHORIZED:
        sim_deepgram_error_status(r, 401, "INVALID_AUTH",
                                  "Invalid credentials. (simulated Deepgram)");
        return;
    case SIM_ERR_NOT_FOUND:
        snprintf(msg, sizeof(msg), "No such endpoint: %s (simulated Deepgram)",
                 detail ? detail : "");
        sim_deepgram_error_status(r, 404, "NOT_FOUND", msg);
        return;
    case SIM_ERR_RATE_LIMIT:
        sim_deepgram_error_status(r, 429, "TOO_MANY_REQUESTS",
                                  "Too many requests. Please try again later. (simulated "
                                  "Deepgram)");
        return;
    case SIM_ERR_SERVER:
        sim_deepgram_error_status(r, 500, "INTERNAL_SERVER_ERROR",
                                  "The server encountered an error. (simulated Deepgram)");
        return;
    }
}

/* ---- listen (prerecorded) ------------------------------------------------- */

static void listen_reply(struct sim_request *r)
{
    const char *text = sim_state(r);
    sim_reply(r, 200, "application/json", text, strlen(text), NULL, 0);
}

/* The length of the uploaded audio as the proxy meters it; -1 with a reply
 * sent when the body cannot be audio. */
static int64_t upload_ms(struct sim_request *r, const char *body, size_t len)
{
    if (len > 0 && body[0] == '{') {
        json_t *url = json_object_get(sim_json(r), "url");
        if (!json_is_string(url)) {
            sim_error(r, SIM_ERR_BAD_REQUEST, "Invalid JSON body: \"url\" must be a string");
            return -1;
        }
        /* Not fetched: it holds reply_tokens words of speech. */
        return sim_tunables(r)->reply_tokens * SIM_SPEECH_MS_PER_WORD;
    }
    if (len == 0) {
        sim_error(r, SIM_ERR_BAD_REQUEST,
                  "Bad Request: failed to process audio: corrupt or unsupported data");
        return -1;
    }
    int64_t ms = audio_duration_ms((const uint8_t *)body, len);
    if (ms >= 0)
        return ms;
    char enc[16], rate[16], ch[8];
    uint64_t bps = 0;
    sim_deepgram_query(r, "encoding", enc, sizeof(enc));
    sim_deepgram_query(r, "sample_rate", rate, sizeof(rate));
    sim_deepgram_query(r, "channels", ch, sizeof(ch));
    if (sim_deepgram_encoding(enc, rate, ch, &bps) == -1) {
        sim_error(r, SIM_ERR_BAD_REQUEST,
                  "Bad Request: encoding needs a sample_rate (and a known encoding)");
        return -1;
    }
    return audio_bytes_ms(len, bps > 0 ? bps : UNKNOWN_BYTES_PER_SEC);
}

static void listen_rest(struct sim_request *r)
{
    size_t len;
    const char *body = sim_body(r, &len);
    if (sim_deepgram_query_has(r, "callback")) {
        sim_error(r, SIM_ERR_BAD_REQUEST, "callback= is not simulated (simulated Deepgram)");
        return;
    }
    int64_t ms = upload_ms(r, body, len);
    if (ms < 0)
        return;
    struct sim_deepgram_model model;
    sim_deepgram_model(r, &model);
    bool punctuate =
        sim_deepgram_query_true(r, "punctuate") || sim_deepgram_query_true(r, "smart_format");
    unsigned char md[32];
    unsigned int md_len = 0;
    char sha[65] = "", created[32];
    if (EVP_Digest(body, len, md, &md_len, EVP_sha256(), NULL) == 1 && md_len == 32)
        sim_deepgram_hex(md, 32, sha);
    sim_deepgram_created(created);
    size_t words = (size_t)sim_transcript_words(ms);
    json_t *info = json_object();
    json_object_set_new(info, model.uuid, sim_deepgram_model_info(&model));
    json_t *reply =
        json_pack("{s{ss ss ss ss sf sI s[s] so} s{s[{s[o]}]}}", "metadata", "transaction_key",
                  "deprecated", "request_id", sim_request_id(r), "sha256", sha, "created", created,
                  "duration", (double)ms / 1000.0, "channels", (json_int_t)1, "models", model.uuid,
                  "model_info", info, "results", "channels", "alternatives",
                  sim_deepgram_alternative(0, words, 0, ms, punctuate));
    if (sim_deepgram_query_true(r, "utterances") && words > 0) {
        json_t *u = sim_deepgram_alternative(0, words, 0, ms, punctuate);
        json_object_set_new(u, "start", json_real(0));
        json_object_set_new(u, "end", json_real((double)ms / 1000.0));
        json_object_set_new(u, "channel", json_integer(0));
        json_object_set_new(u, "id", json_string(sim_request_id(r)));
        json_object_set_new(json_object_get(reply, "results"), "utterances", json_pack("[o]", u));
    }
    char *text = sim_deepgram_dump(reply);
    if (text == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    /* Sent when a recognizer running at audio_rtf would be done. */
    sim_set_state(r, text, free);
    sim_after(r, sim_pace_audio_ms(sim_tunables(r)->audio_rtf_ppm, ms), listen_reply);
}

/* ---- speak ---------------------------------------------------------------- */

/* The audio format of a speak request's query; -1 with a 400 sent. */
static int speak_format(struct sim_request *r, struct sim_audio_format *f)
{
    char enc[16], rate[16], container[8], bitrate[16];
    sim_deepgram_query(r, "encoding", enc, sizeof(enc));
    sim_deepgram_query(r, "sample_rate", rate, sizeof(rate));
    sim_deepgram_query(r, "container", container, sizeof(container));
    sim_deepgram_query(r, "bit_rate", bitrate, sizeof(bitrate));
    memset(f, 0, sizeof(*f));
    long sr = rate[0] ? strtol(rate, NULL, 10) : 0;
    bool wav = container[0] == '\0' || strcmp(container, "wav") == 0;
    if (enc[0] == '\0' || strcmp(enc, "mp3") == 0) {
        f->codec = SIM_AUDIO_MP3;
        f->sample_rate = 22050;
        f->bitrate = bitrate[0] ? (uint32_t)strtol(bitrate, NULL, 10) : 48000;
        if ((sr != 0 && sr != 22050) || (f->bitrate != 32000 && f->bitrate != 48000) ||
            (container[0] && strcmp(container, "none") != 0))
            goto bad;
        return 0;
    }
    if (strcmp(enc, "linear16") == 0)
        f->codec = SIM_AUDIO_PCM16;
    else if (strcmp(enc, "mulaw") == 0)
        f->codec = SIM_AUDIO_MULAW;
    else if (strcmp(enc, "alaw") == 0)
        f->codec = SIM_AUDIO_ALAW;
    else
        goto bad;
    f->wav = wav;
    f->sample_rate = sr ? (uint32_t)sr : f->codec == SIM_AUDIO_PCM16 ? 24000 : 8000;
    bool rate_ok = f->codec == SIM_AUDIO_PCM16 ? (sr == 0 || sr == 8000 || sr == 16000 ||
                                                  sr == 24000 || sr == 32000 || sr == 48000)
                                               : (sr == 0 || sr == 8000 || sr == 16000);
    if (!rate_ok || (container[0] && !wav && strcmp(container, "none") != 0))
        goto bad;
    return sim_audio_format_check(f) == 0 ? 0 : -1;
bad:
    sim_error(r, SIM_ERR_BAD_REQUEST,
              "Unsupported audio format (simulated: mp3 at 22050 Hz and 32000/48000 bit_rate; "
              "linear16 at 8000-48000 Hz, mulaw and alaw at 8000/16000 Hz, container wav or "
              "none)");
    return -1;
}

static void speak(struct sim_request *r)
{
    json_t *text = json_object_get(sim_json(r), "text");
    if (!json_is_string(text) || json_string_length(text) == 0) {
        sim_error(r, SIM_ERR_BAD_REQUEST, "Invalid JSON body: \"text\" must be a non-empty string");
        return;
    }
    int64_t chars = meter_json_chars(text);
    if (chars > SPEAK_MAX_CHARS) {
        sim_deepgram_error_status(r, 413, "Payload Too Large",
                                  "Input text exceeds the maximum of 2000 characters.");
        return;
    }
    struct sim_audio_format f;
    if (speak_format(r, &f) == -1)
        return;
    struct sim_deepgram_model model;
    sim_deepgram_model(r, &model);
    char count[24];
    snprintf(count, sizeof(count), "%lld", (long long)chars);
    struct http_kv extra[] = {
        {"dg-model-name", model.name},
        {"dg-model-uuid", model.uuid},
        {"dg-char-count", count},
    };
    sim_speech_reply(r, &f, sim_audio_mime(&f), sim_speech_ms(chars), extra, ARRAY_SIZE(extra));
}

/* ---- models --------------------------------------------------------------- */

static void models(struct sim_request *r)
{
    static const char *const stt[] = {"nova-3", "nova-2", "base"};
    static const char *const tts[] = {"aura-2-thalia-en", "aura-2-andromeda-en", "aura-asteria-en"};
    json_t *s = json_array(), *t = json_array();
    for (size_t i = 0; i < ARRAY_SIZE(stt); i++)
        json_array_append_new(s, json_pack("{ss ss sb sb}", "name", stt[i], "canonical_name",
                                           stt[i], "streaming", 1, "batch", 1));
    for (size_t i = 0; i < ARRAY_SIZE(tts); i++)
        json_array_append_new(t, json_pack("{ss ss}", "name", tts[i], "canonical_name", tts[i]));
    sim_reply_json(r, 200, json_pack("{so so}", "stt", s, "tts", t), NULL, 0);
}

static const struct sim_route routes[] = {
    {"POST", "/v1/listen", listen_rest, NULL},
    {"GET", "/v1/listen", NULL, sim_deepgram_live},
    {"POST", "/v1/speak", speak, NULL},
    {"GET", "/v1/models", models, NULL},
};

const struct sim_provider sim_deepgram = {
    .upstream = "deepgram",
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .authorized = authorized,
    .error = error,
    .request_id_header = "dg-request-id",
    .request_id_prefix = "",
};
