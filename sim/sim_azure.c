/* sim_azure.c - simulated Azure AI Speech (PROVIDERS.md §3): the TTS and
 * STT hosts (regional: the first path segment is the region, as in the
 * proxy's "{region}" templates), their REST endpoints, keys and errors; the
 * sockets are in sim_azure_ws.c.
 *
 *   TTS  POST /cognitiveservices/v1          SSML in (application/ssml+xml,
 *                                            else 415), audio of the
 *                                            X-Microsoft-OutputFormat out,
 *                                            chunked, paced at audio_rtf
 *        GET  /cognitiveservices/voices/list a few voices
 *        WS   /tts/cognitiveservices/websocket/v1, /cognitiveservices/websocket/v1
 *   STT  POST /speech/recognition/{conversation,interactive,dictation}/cognitiveservices/v1
 *                                            ?language=... WAV / Ogg Opus (or
 *                                            raw PCM at the Content-Type's
 *                                            samplerate) in, {RecognitionStatus,
 *                                            DisplayText, Offset, Duration}
 *                                            (+ NBest with format=detailed)
 *                                            after audio x audio_rtf
 *        WS   the same paths, /stt/speech/universal/v2
 *
 * Lengths follow what the proxy meters: TTS audio is sim_speech_ms() of the
 * SSML's billed characters (azure_ssml_characters(), the proxy's own
 * counter), at most 10 minutes; an STT transcript has a word per 400 ms of
 * the upload's real length (audio.h, the proxy's reader), at most 60 s of
 * it (short audio). Keys: Ocp-Apim-Subscription-Key or Authorization:
 * Bearer, as headers or (the SDK's sockets) query parameters; any value. */
#include "common.h"
#include "audio.h"
#include "azure_speech.h"
#include "sim_azure.h"
#include "urlenc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STT_MAX_MS     60000 /* short audio: the first 60 s are recognized */
#define DEFAULT_FORMAT "riff-16khz-16bit-mono-pcm"
#define CONFIDENCE     0.93

/* ---- keys and errors ------------------------------------------------------ */

/* A non-empty query parameter name (the SDK's sockets: the key or
 * "Bearer <token>" in the URL). */
static bool query_key(struct sim_request *r, const char *name)
{
    const struct httpparse_request *h = sim_head(r);
    char v[512];
    if (h->query == NULL || urlenc_query_get(h->query, h->query_len, name, v, sizeof(v)) == -1)
        return false;
    if (strcasecmp(name, "authorization") == 0)
        return strncasecmp(v, "Bearer ", 7) == 0 && sim_count_words(v + 7, strlen(v + 7)) > 0;
    return v[0] != '\0';
}

static bool authorized(struct sim_request *r)
{
    return sim_has_key(r, "ocp-apim-subscription-key", NULL) ||
           sim_has_key(r, "authorization", "Bearer") || query_key(r, "ocp-apim-subscription-key") ||
           query_key(r, "authorization");
}

void sim_azure_error_status(struct sim_request *r, int status, const char *message)
{
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    struct http_kv retry = {"Retry-After", "1"};
    sim_reply_json(r, status, json_pack("{s{ss ss}}", "error", "code", code, "message", message),
                   &retry, status == 429 ? 1 : 0);
}

static void error(struct sim_request *r, enum sim_error what, const char *detail)
{
    char msg[512];
    switch (what) {
    case SIM_ERR_BAD_REQUEST:
        sim_azure_error_status(r, 400, detail ? detail : "Bad request (simulated Azure Speech)");
        return;
    case SIM_ERR_UNAUTHORIZED:
        sim_azure_error_status(
            r, 401,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource. (simulated Azure Speech)");
        return;
    case SIM_ERR_NOT_FOUND:
        snprintf(msg, sizeof(msg), "Resource not found: %s (simulated Azure Speech)",
                 detail ? detail : "");
        sim_azure_error_status(r, 404, msg);
        return;
    case SIM_ERR_RATE_LIMIT:
        sim_azure_error_status(r, 429,
                               "Too many requests. The rate limit of the resource is exceeded "
                               "(simulated Azure Speech).");
        return;
    case SIM_ERR_SERVER:
        sim_azure_error_status(r, 500, "Internal server error (simulated Azure Speech).");
        return;
    }
}

/* ---- TTS ------------------------------------------------------------------ */

/* The MIME type Azure labels a format with. */
static const char *azure_mime(const struct sim_audio_format *f)
{
    return f->wav ? "audio/x-wav" : sim_audio_mime(f);
}

static void tts(struct sim_request *r)
{
    size_t ct_len = 0, len;
    const char *ct = sim_header(r, "content-type", &ct_len);
    if (ct == NULL || ct_len < 20 || strncasecmp(ct, "application/ssml+xml", 20) != 0) {
        sim_azure_error_status(r, 415,
                               "Unsupported Media Type: the body must be SSML "
                               "(Content-Type: application/ssml+xml)");
        return;
    }
    const char *ssml = sim_body(r, &len);
    if (memmem(ssml, len, "<speak", 6) == NULL) {
        sim_error(r, SIM_ERR_BAD_REQUEST, "The SSML is invalid: no <speak> element");
        return;
    }
    size_t fl = 0;
    const char *fv = sim_header(r, "x-microsoft-outputformat", &fl);
    char fname[64];
    snprintf(fname, sizeof(fname), "%.*s", fv ? (int)MIN(fl, sizeof(fname) - 1) : 0, fv ? fv : "");
    struct sim_audio_format f;
    if (sim_azure_output_format(fname[0] ? fname : DEFAULT_FORMAT, &f) == -1) {
        char msg[512];
        snprintf(msg, sizeof(msg),
                 "X-Microsoft-OutputFormat \"%s\" is not simulated (simulated: " SIM_AZURE_FORMATS
                 ")",
                 fname);
        sim_error(r, SIM_ERR_BAD_REQUEST, msg);
        return;
    }
    int64_t chars = azure_ssml_characters(ssml, len, NULL);
    int64_t ms = MIN(sim_speech_ms(chars), (int64_t)SIM_AZURE_TTS_MAX_MS);
    sim_speech_reply(r, &f, azure_mime(&f), ms, NULL, 0);
}

static void voices(struct sim_request *r)
{
    static const char *const list[][5] = {
        /* ShortName, DisplayName, Gender, Locale, LocaleName */
        {"en-US-JennyNeural", "Jenny", "Female", "en-US", "English (United States)"},
        {"en-US-GuyNeural", "Guy", "Male", "en-US", "English (United States)"},
        {"en-US-AvaMultilingualNeural", "Ava Multilingual", "Female", "en-US",
         "English (United States)"},
        {"en-GB-SoniaNeural", "Sonia", "Female", "en-GB", "English (United Kingdom)"},
        {"de-DE-KatjaNeural", "Katja", "Female", "de-DE", "German (Germany)"},
    };
    json_t *out = json_array();
    for (size_t i = 0; i < ARRAY_SIZE(list); i++) {
        char name[160];
        const char *shortname = list[i][0];
        snprintf(name, sizeof(name), "Microsoft Server Speech Text to Speech Voice (%s, %s)",
                 list[i][3], shortname + 6);
        json_array_append_new(out, json_pack("{ss ss ss ss ss ss ss ss ss ss ss}", "Name", name,
                                             "DisplayName", list[i][1], "LocalName", list[i][1],
                                             "ShortName", shortname, "Gender", list[i][2], "Locale",
                                             list[i][3], "LocaleName", list[i][4],
                                             "SampleRateHertz", "24000", "VoiceType", "Neural",
                                             "Status", "GA", "WordsPerMinute", "150"));
    }
    sim_reply_json(r, 200, out, NULL, 0);
}

/* ---- STT ------------------------------------------------------------------ */

json_t *sim_azure_phrase(const char *status, int64_t offset_ms, int64_t duration_ms,
                         size_t first_word, size_t words, bool detailed)
{
    json_t *o = json_pack("{ss sI sI}", "RecognitionStatus", status, "Offset",
                          (json_int_t)(offset_ms * SIM_AZURE_TICKS_PER_MS), "Duration",
                          (json_int_t)(duration_ms * SIM_AZURE_TICKS_PER_MS));
    if (words == 0)
        return o;
    char *display = sim_transcript(first_word, words, false);
    char *lexical = sim_transcript(first_word, words, true);
    if (display != NULL && lexical != NULL) {
        json_object_set_new(o, "DisplayText", json_string(display));
        if (detailed)
            json_object_set_new(o, "NBest",
                                json_pack("[{sf ss ss ss ss}]", "Confidence", CONFIDENCE, "Lexical",
                                          lexical, "ITN", lexical, "MaskedITN", lexical, "Display",
                                          display));
    }
    free(display);
    free(lexical);
    return o;
}

/* The sample rate a Content-Type names ("audio/wav; codecs=audio/pcm;
 * samplerate=16000"); 0 when none. */
static int64_t content_samplerate(const char *ct, size_t len)
{
    const char *p = ct ? memmem(ct, len, "samplerate=", 11) : NULL;
    if (p == NULL)
        return 0;
    int64_t v = 0;
    for (p += 11; p < ct + len && *p >= '0' && *p <= '9' && v < 1000000; p++)
        v = v * 10 + (*p - '0');
    return v >= 8000 && v <= 48000 ? v : 0;
}

static void json_free(void *p)
{
    json_decref(p);
}

/* The reply kept in the request's state: the request still owns it (and
 * frees it at its end), the reply takes a reference of its own. */
static void stt_reply(struct sim_request *r)
{
    sim_reply_json(r, 200, json_incref(sim_state(r)), NULL, 0);
}

static void stt(struct sim_request *r)
{
    const char *mode = sim_param(r);
    if (strcmp(mode, "conversation") != 0 && strcmp(mode, "interactive") != 0 &&
        strcmp(mode, "dictation") != 0) {
        sim_error(r, SIM_ERR_NOT_FOUND, sim_path(r));
        return;
    }
    const struct httpparse_request *h = sim_head(r);
    char language[32], format[16];
    if (h->query == NULL ||
        urlenc_query_get(h->query, h->query_len, "language", language, sizeof(language)) == -1 ||
        language[0] == '\0') {
        sim_error(r, SIM_ERR_BAD_REQUEST,
                  "The language parameter is required (e.g. ?language=en-US)");
        return;
    }
    bool detailed =
        urlenc_query_get(h->query, h->query_len, "format", format, sizeof(format)) == 0 &&
        strcasecmp(format, "detailed") == 0;
    size_t len, ct_len = 0;
    const char *body = sim_body(r, &len);
    const char *ct = sim_header(r, "content-type", &ct_len);
    int64_t ms = audio_duration_ms((const uint8_t *)body, len);
    if (ms < 0) {
        int64_t rate = content_samplerate(ct, ct_len);
        if (rate == 0) {
            sim_error(r, SIM_ERR_BAD_REQUEST,
                      "Unsupported audio: send WAV, Ogg Opus, or raw PCM with "
                      "\"samplerate=\" in the Content-Type");
            return;
        }
        ms = audio_bytes_ms(len, (uint64_t)rate * 2);
    }
    int64_t heard = MIN(ms, (int64_t)STT_MAX_MS);
    json_t *reply = heard > 0 ? sim_azure_phrase("Success", 0, heard, 0,
                                                 (size_t)sim_transcript_words(heard), detailed)
                              : sim_azure_phrase("InitialSilenceTimeout", 0, 0, 0, 0, false);
    /* Sent when a recognizer running at audio_rtf would be done. */
    sim_set_state(r, reply, json_free);
    sim_after(r, sim_pace_audio_ms(sim_tunables(r)->audio_rtf_ppm, heard), stt_reply);
}

/* ---- the declarations ----------------------------------------------------- */

static const struct sim_route tts_routes[] = {
    {"POST", "/cognitiveservices/v1", tts, NULL},
    {"GET", "/cognitiveservices/voices/list", voices, NULL},
    {"GET", "/tts/cognitiveservices/websocket/v1", NULL, sim_azure_tts_socket},
    {"GET", "/cognitiveservices/websocket/v1", NULL, sim_azure_tts_socket},
};

static const struct sim_route stt_routes[] = {
    {"POST", "/speech/recognition/{id}/cognitiveservices/v1", stt, NULL},
    {"GET", "/speech/recognition/{id}/cognitiveservices/v1", NULL, sim_azure_stt_socket},
    {"GET", "/stt/speech/universal/v2", NULL, sim_azure_stt_socket},
};

const struct sim_provider sim_azure_tts = {
    .upstream = "azure_speech_tts",
    .routes = tts_routes,
    .n_routes = ARRAY_SIZE(tts_routes),
    .authorized = authorized,
    .error = error,
    .request_id_header = "X-RequestId",
    .request_id_prefix = "",
};

const struct sim_provider sim_azure_stt = {
    .upstream = "azure_speech_stt",
    .routes = stt_routes,
    .n_routes = ARRAY_SIZE(stt_routes),
    .authorized = authorized,
    .error = error,
    .request_id_header = "X-RequestId",
    .request_id_prefix = "",
};
