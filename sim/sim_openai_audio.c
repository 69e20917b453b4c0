/* sim_openai_audio.c - simulated OpenAI audio (PROVIDERS.md §1.4, §1.5),
 * routes merged into the "openai" host (sim_openai.c's more_routes):
 *
 *   POST /v1/audio/speech          audio of response_format (mp3 default,
 *                                  opus, aac, flac, wav, pcm: 24 kHz mono,
 *                                  sim_audio.h) as long as the input takes to
 *                                  speak (15 characters a second / speed),
 *                                  chunked, paced at audio_rtf (100 ms
 *                                  pieces); stream_format "sse": base64
 *                                  speech.audio.delta events, then
 *                                  speech.audio.done with usage (input words,
 *                                  audio tokens out at 1 per 50 ms) - not for
 *                                  tts-1*, as OpenAI refuses
 *   POST /v1/audio/transcriptions  multipart upload; the audio's length from
 *   POST /v1/audio/translations    the file (WAV, Ogg: the proxy's reader,
 *                                  audio.h; other formats estimated from the
 *                                  size at 32 kbit/s); a transcript of one
 *                                  generated word per 400 ms; json (usage:
 *                                  whisper-1 "duration" in whole seconds
 *                                  rounded up, gpt-4o-*transcribe "tokens":
 *                                  audio 1 per 100 ms + prompt words in,
 *                                  words out), text, verbose_json (duration
 *                                  exact, segments, words), srt, vtt; stream
 *                                  (not whisper-1): transcript.text.delta per
 *                                  word at tokens_per_s, transcript.text.done
 *                                  with usage. Translations answer like
 *                                  whisper-1 without usage (as OpenAI). The
 *                                  reply comes after the audio's length x
 *                                  audio_rtf (transcribing takes time).
 *
 * Not simulated: diarized_json and the speaker-aware models, logprobs,
 * chunking_strategy, a real decode of mp3/m4a/webm uploads. */
#include "common.h"
#include "audio.h"
#include "meter.h"
#include "multipart.h"
#include "sim_audio.h"
#include "sim_openai.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_MS         100
#define SPEECH_MAX_CHARS 4096
#define RATE             24000 /* OpenAI's TTS audio: 24 kHz mono */
#define MP3_BITRATE      64000
/* An upload of a format sim_audio cannot read (mp3, m4a, webm) is taken as
 * compressed speech at 32 kbit/s: the proxy's own estimate (openai.c). */
#define UNKNOWN_BYTES_PER_S 4000
#define SEGMENT_WORDS       12

static void bad_request(struct sim_request *r, const char *message)
{
    sim_openai_error_as(r, SIM_ERR_BAD_REQUEST, message, SIM_OPENAI_OPENAI);
}

/* ---- speech ------------------------------------------------------------------- */

struct speech {
    struct sim_audio_out out;
    struct evbuffer *buf;
    int64_t total_ms;
    bool sse;
    int64_t input_tokens;
};

static void speech_free(void *p)
{
    struct speech *s = p;
    if (s != NULL)
        if (s->buf != NULL)
            evbuffer_free(s->buf);
    free(s);
}

/* response_format -> the audio it asks for; -1 when unknown. */
static int speech_format(const char *name, struct sim_audio_format *f)
{
    static const struct {
        const char *name;
        enum sim_audio_codec codec;
        bool wav;
        const char *mime;
    } formats[] = {
        {"mp3", SIM_AUDIO_MP3, false, "audio/mpeg"}, {"opus", SIM_AUDIO_OPUS, false, "audio/opus"},
        {"aac", SIM_AUDIO_AAC, false, "audio/aac"},  {"flac", SIM_AUDIO_FLAC, false, "audio/flac"},
        {"wav", SIM_AUDIO_PCM16, true, "audio/wav"}, {"pcm", SIM_AUDIO_PCM16, false, "audio/pcm"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(formats); i++)
        if (strcmp(name, formats[i].name) == 0) {
            if (sim_audio_format_set(f, formats[i].codec, formats[i].wav, RATE, MP3_BITRATE) == -1)
                return -1;
            f->mime = formats[i].mime;
            return 0;
        }
    return -1;
}

static void speech_piece(struct sim_request *r, size_t i)
{
    struct speech *s = sim_state(r);
    if (sim_audio_render(&s->out, (int64_t)(i + 1) * CHUNK_MS, s->buf) == -1) {
        sim_cut(r);
        return;
    }
    size_t len = evbuffer_get_length(s->buf);
    if (len == 0)
        return;
    const uint8_t *d = evbuffer_pullup(s->buf, -1);
    if (s->sse) {
        char *b64 = sim_audio_base64(d, len);
        if (b64 != NULL)
            sim_sse(r, NULL, json_pack("{ss ss}", "type", "speech.audio.delta", "audio", b64));
        free(b64);
    } else {
        sim_stream_write(r, (const char *)d, len);
    }
    evbuffer_drain(s->buf, len);
}

static void speech_done(struct sim_request *r)
{
    struct speech *s = sim_state(r);
    if (!s->sse)
        return;
    int64_t out = sim_audio_assistant_tokens(s->total_ms);
    sim_sse(r, NULL,
            json_pack("{ss s{sI sI sI}}", "type", "speech.audio.done", "usage", "input_tokens",
                      (json_int_t)s->input_tokens, "output_tokens", (json_int_t)out, "total_tokens",
                      (json_int_t)(s->input_tokens + out)));
}

static const struct sim_token_ops speech_ops = {speech_piece, speech_done};

static void speech(struct sim_request *r)
{
    json_t *body = sim_json(r);
    if (body == NULL) {
        bad_request(r, "We could not parse the JSON body of your request.");
        return;
    }
    const char *model = json_string_value(json_object_get(body, "model"));
    json_t *input = json_object_get(body, "input");
    json_t *voice = json_object_get(body, "voice");
    const char *fmt = json_string_value(json_object_get(body, "response_format"));
    const char *stream = json_string_value(json_object_get(body, "stream_format"));
    json_t *speed = json_object_get(body, "speed");
    struct sim_audio_format f;
    if (model == NULL || model[0] == '\0') {
        bad_request(r, "Missing required parameter: 'model'.");
        return;
    }
    if (!json_is_string(input) || json_string_length(input) == 0) {
        bad_request(r, "Missing required parameter: 'input'.");
        return;
    }
    int64_t chars = meter_utf8_chars(json_string_value(input), json_string_length(input));
    if (chars > SPEECH_MAX_CHARS) {
        bad_request(r, "Invalid 'input': string too long. Expected a string with maximum length "
                       "4096.");
        return;
    }
    if (!json_is_string(voice) && !json_is_string(json_object_get(voice, "id"))) {
        bad_request(r, "Missing required parameter: 'voice'.");
        return;
    }
    if (speech_format(fmt != NULL ? fmt : "mp3", &f) == -1) {
        bad_request(r, "Invalid value for 'response_format': expected one of mp3, opus, aac, "
                       "flac, wav, pcm.");
        return;
    }
    if (speed != NULL && (!json_is_number(speed) || json_number_value(speed) < 0.25 ||
                          json_number_value(speed) > 4.0)) {
        bad_request(r, "Invalid 'speed': expected a number from 0.25 to 4.0.");
        return;
    }
    bool sse = stream != NULL && strcmp(stream, "sse") == 0;
    if (stream != NULL && !sse && strcmp(stream, "audio") != 0) {
        bad_request(r, "Invalid value for 'stream_format': expected 'audio' or 'sse'.");
        return;
    }
    if (sse && strncmp(model, "tts-1", 5) == 0) {
        bad_request(r, "stream_format 'sse' is not supported for this model.");
        return;
    }
    struct speech *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->buf = evbuffer_new()) == NULL) {
        free(s);
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    sim_set_state(r, s, speech_free);
    s->sse = sse;
    s->total_ms = sim_audio_speech_ms(chars, speed ? json_number_value(speed) : 1.0);
    s->input_tokens =
        sim_count_json_words(input) + sim_count_json_words(json_object_get(body, "instructions"));
    sim_audio_out_init(&s->out, &f, s->total_ms);
    size_t n = (size_t)MAX((int64_t)1, (s->total_ms + CHUNK_MS - 1) / CHUNK_MS);
    sim_stream_begin(r, 200, sse ? "text/event-stream; charset=utf-8" : f.mime, NULL, 0);
    sim_stream_audio(r, n, CHUNK_MS, &speech_ops);
}

/* ---- transcriptions and translations -------------------------------------------- */

struct upload {
    const char *file;
    size_t file_len;
    char model[MODEL_MAX];
    char format[32];
    int64_t prompt; /* words of "prompt" */
    bool stream;
    bool words; /* timestamp_granularities[] has "word" */
    bool have_model, have_file;
};

static void field(char *out, size_t size, const char *data, size_t len)
{
    while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n' || data[len - 1] == ' '))
        len--;
    snprintf(out, size, "%.*s", (int)MIN(len, size - 1), data);
}

static void upload_part(void *arg, const char *name, const char *data, size_t len)
{
    struct upload *u = arg;
    char v[64];
    if (strcmp(name, "file") == 0) {
        u->file = data;
        u->file_len = len;
        u->have_file = true;
    } else if (strcmp(name, "model") == 0) {
        field(u->model, sizeof(u->model), data, len);
        u->have_model = u->model[0] != '\0';
    } else if (strcmp(name, "response_format") == 0) {
        field(u->format, sizeof(u->format), data, len);
    } else if (strcmp(name, "prompt") == 0) {
        u->prompt = sim_count_words(data, len);
    } else if (strcmp(name, "stream") == 0) {
        field(v, sizeof(v), data, len);
        u->stream = strcmp(v, "true") == 0;
    } else if (strcmp(name, "timestamp_granularities[]") == 0) {
        field(v, sizeof(v), data, len);
        u->words |= strcmp(v, "word") == 0;
    }
}

/* What a transcription keeps until its reply is sent. */
struct stt {
    bool translate;
    struct upload up;
    int64_t ms;  /* the audio's length */
    size_t n;    /* transcript words */
    char *text;  /* the transcript */
    char *reply; /* the reply, when it waits for the audio's length */
    const char *reply_type;
    json_t *usage; /* the stream's usage (done event) */
};

static void stt_free(void *p)
{
    struct stt *t = p;
    if (t != NULL) {
        free(t->text);
        free(t->reply);
        json_decref(t->usage);
    }
    free(t);
}

static bool whisper(const struct stt *t)
{
    return strncmp(t->up.model, "whisper", 7) == 0;
}

static json_t *stt_usage(const struct stt *t)
{
    if (whisper(t))
        return json_pack("{ss sI}", "type", "duration", "seconds",
                         (json_int_t)((t->ms + 999) / 1000));
    int64_t audio = sim_audio_user_tokens(t->ms), in = audio + t->up.prompt;
    return json_pack("{ss sI s{sI sI} sI sI}", "type", "tokens", "input_tokens", (json_int_t)in,
                     "input_token_details", "text_tokens", (json_int_t)t->up.prompt, "audio_tokens",
                     (json_int_t)audio, "output_tokens", (json_int_t)t->n, "total_tokens",
                     (json_int_t)(in + (int64_t)t->n));
}

/* Word j's time span in seconds: the words share the audio evenly. */
static double word_at(const struct stt *t, size_t j)
{
    return (double)t->ms / 1000.0 * (double)j / (double)t->n;
}

/* Segment k: words [k * SEGMENT_WORDS, ...). */
static size_t segments(const struct stt *t)
{
    return (t->n + SEGMENT_WORDS - 1) / SEGMENT_WORDS;
}

static char *segment_text(size_t from, size_t to)
{
    size_t len = 0;
    for (size_t j = from; j < to; j++)
        len += strlen(sim_word(j)) + 1;
    char *s = malloc(len + 1), *p = s;
    if (s == NULL)
        return NULL;
    for (size_t j = from; j < to; j++) {
        const char *w = sim_word(j);
        if (j == from && w[0] != ' ')
            *p++ = ' '; /* Whisper's segments start with a space */
        size_t l = strlen(w);
        memcpy(p, w, l);
        p += l;
    }
    *p = '\0';
    return s;
}

static json_t *verbose_json(const struct stt *t)
{
    json_t *segs = json_array(), *words = json_array();
    for (size_t k = 0; k < segments(t); k++) {
        size_t from = k * SEGMENT_WORDS, to = MIN(t->n, from + SEGMENT_WORDS);
        char *text = segment_text(from, to);
        json_t *tokens = json_array();
        for (size_t j = from; j < to; j++)
            json_array_append_new(tokens, json_integer(50364 + (json_int_t)j));
        json_array_append_new(
            segs, json_pack("{sI sI sf sf ss so sf sf sf sf}", "id", (json_int_t)k, "seek",
                            (json_int_t)0, "start", word_at(t, from), "end", word_at(t, to), "text",
                            text ? text : "", "tokens", tokens, "temperature", 0.0, "avg_logprob",
                            -0.25, "compression_ratio", 1.2, "no_speech_prob", 0.01));
        free(text);
    }
    for (size_t j = 0; t->up.words && j < t->n; j++) {
        const char *w = sim_word(j);
        json_array_append_new(words, json_pack("{ss sf sf}", "word", w[0] == ' ' ? w + 1 : w,
                                               "start", word_at(t, j), "end", word_at(t, j + 1)));
    }
    json_t *o =
        json_pack("{ss ss sf ss so}", "task", t->translate ? "translate" : "transcribe", "language",
                  "english", "duration", (double)t->ms / 1000.0, "text", t->text, "segments", segs);
    if (t->up.words)
        json_object_set_new(o, "words", words);
    else
        json_decref(words);
    if (!t->translate)
        json_object_set_new(o, "usage", stt_usage(t));
    return o;
}

/* "HH:MM:SS,mmm" (srt) or "HH:MM:SS.mmm" (vtt). */
static void timestamp(char *out, size_t size, double s, char sep)
{
    int64_t ms = (int64_t)llround(s * 1000.0);
    snprintf(out, size, "%02lld:%02lld:%02lld%c%03lld", (long long)(ms / 3600000),
             (long long)(ms / 60000 % 60), (long long)(ms / 1000 % 60), sep,
             (long long)(ms % 1000));
}

static char *subtitles(const struct stt *t, bool vtt)
{
    struct evbuffer *b = evbuffer_new();
    char *out = NULL;
    if (b == NULL)
        return NULL;
    if (vtt)
        evbuffer_add_printf(b, "WEBVTT\n\n");
    for (size_t k = 0; k < segments(t); k++) {
        size_t from = k * SEGMENT_WORDS, to = MIN(t->n, from + SEGMENT_WORDS);
        char a[32], z[32];
        char *text = segment_text(from, to);
        timestamp(a, sizeof(a), word_at(t, from), vtt ? '.' : ',');
        timestamp(z, sizeof(z), word_at(t, to), vtt ? '.' : ',');
        if (!vtt)
            evbuffer_add_printf(b, "%zu\n", k + 1);
        evbuffer_add_printf(b, "%s --> %s\n%s\n\n", a, z, text ? text + 1 : "");
        free(text);
    }
    size_t len = evbuffer_get_length(b);
    if ((out = malloc(len + 1)) != NULL) {
        evbuffer_remove(b, out, len);
        out[len] = '\0';
    }
    evbuffer_free(b);
    return out;
}

static void stt_send(struct sim_request *r)
{
    struct stt *t = sim_state(r);
    sim_reply(r, 200, t->reply_type, t->reply, strlen(t->reply), NULL, 0);
}

static void stt_token(struct sim_request *r, size_t i)
{
    sim_sse(r, NULL, json_pack("{ss ss}", "type", "transcript.text.delta", "delta", sim_word(i)));
}

static void stt_done(struct sim_request *r)
{
    struct stt *t = sim_state(r);
    json_t *usage = t->usage;
    t->usage = NULL;
    sim_sse(
        r, NULL,
        json_pack("{ss ss so}", "type", "transcript.text.done", "text", t->text, "usage", usage));
}

static const struct sim_token_ops stt_stream_ops = {stt_token, stt_done};

static void transcribe(struct sim_request *r, bool translate)
{
    size_t ct_len = 0, len = 0;
    const char *ct = sim_header(r, "content-type", &ct_len);
    const char *body = sim_body(r, &len);
    struct stt *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    sim_set_state(r, t, stt_free);
    t->translate = translate;
    if (ct == NULL || multipart_parse(body, len, ct, ct_len, upload_part, &t->up) == -1) {
        bad_request(r, "The request must be multipart/form-data with a file.");
        return;
    }
    if (!t->up.have_file || t->up.file_len == 0) {
        bad_request(r, "Missing required parameter: 'file'.");
        return;
    }
    if (!t->up.have_model) {
        bad_request(r, "Missing required parameter: 'model'.");
        return;
    }
    const char *fmt = t->up.format[0] != '\0' ? t->up.format : "json";
    bool json = strcmp(fmt, "json") == 0, verbose = strcmp(fmt, "verbose_json") == 0;
    bool text = strcmp(fmt, "text") == 0, srt = strcmp(fmt, "srt") == 0,
         vtt = strcmp(fmt, "vtt") == 0;
    if (!json && !verbose && !text && !srt && !vtt) {
        bad_request(r, "Invalid value for 'response_format': expected one of json, text, srt, "
                       "verbose_json, vtt.");
        return;
    }
    if (!whisper(t) && (translate || (!json && !text))) {
        bad_request(r, translate ? "Translations are served by whisper-1 only."
                                 : "This response_format is not compatible with this model: use "
                                   "json or text.");
        return;
    }
    if (t->up.stream && (whisper(t) || translate)) {
        bad_request(r, "Streaming is not supported for whisper-1.");
        return;
    }
    t->ms = audio_duration_ms((const uint8_t *)t->up.file, t->up.file_len);
    if (t->ms < 0)
        t->ms = audio_bytes_ms(t->up.file_len, UNKNOWN_BYTES_PER_S);
    t->n = (size_t)sim_audio_transcript_words(t->ms);
    if ((t->text = sim_text(t->n)) == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    if (t->up.stream) {
        t->usage = stt_usage(t);
        sim_stream_begin(r, 200, "text/event-stream; charset=utf-8", NULL, 0);
        sim_stream_tokens(r, t->n, &stt_stream_ops);
        return;
    }
    json_t *reply = NULL;
    if (verbose) {
        reply = verbose_json(t);
    } else if (json) {
        reply = json_pack("{ss}", "text", t->text);
        if (!translate)
            json_object_set_new(reply, "usage", stt_usage(t));
    }
    if (reply != NULL) {
        t->reply = json_dumps(reply, JSON_COMPACT);
        t->reply_type = "application/json";
        json_decref(reply);
    } else if (text) {
        size_t tl = strlen(t->text);
        if ((t->reply = malloc(tl + 2)) != NULL) {
            memcpy(t->reply, t->text, tl);
            memcpy(t->reply + tl, "\n", 2);
        }
        t->reply_type = "text/plain; charset=utf-8";
    } else {
        t->reply = subtitles(t, vtt);
        t->reply_type = vtt ? "text/vtt; charset=utf-8" : "application/x-subrip";
    }
    if (t->reply == NULL) {
        sim_error(r, SIM_ERR_SERVER, NULL);
        return;
    }
    sim_after(r, sim_pace_audio_ms(sim_tunables(r)->audio_rtf_ppm, t->ms), stt_send);
}

static void transcriptions(struct sim_request *r)
{
    transcribe(r, false);
}

static void translations(struct sim_request *r)
{
    transcribe(r, true);
}

static const struct sim_route routes[] = {
    {"POST", "/v1/audio/speech", speech, NULL},
    {"POST", "/v1/audio/transcriptions", transcriptions, NULL},
    {"POST", "/v1/audio/translations", translations, NULL},
};

const struct sim_route_table sim_openai_audio_routes = {routes, ARRAY_SIZE(routes)};
