/* sim_azure_proto.c - the pure pieces of simulated Azure Speech
 * (sim_azure.h): the Speech SDK socket's message framing both ways
 * (PROVIDERS.md §3.3) and the output format names of TTS. No I/O.
 *
 *   text:   "Path: turn.start\r\nX-RequestId: <id>\r\n...\r\n\r\n{json}"
 *   binary: [len hi][len lo] "Path: audio\r\nX-RequestId: <id>\r\n..." payload */
#include "common.h"
#include "sim_azure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Copies v[0..len) trimmed of spaces and tabs into out, cut to fit. */
static void copy_trimmed(const char *v, size_t len, char *out, size_t out_size, bool lower)
{
    while (len > 0 && (*v == ' ' || *v == '\t'))
        v++, len--;
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    size_t n = MIN(len, out_size - 1);
    for (size_t i = 0; i < n; i++)
        out[i] = lower && v[i] >= 'A' && v[i] <= 'Z' ? (char)(v[i] - 'A' + 'a') : v[i];
    out[n] = '\0';
}

/* One header line "Name: value" (no CRLF). */
static void header_line(const char *line, size_t len, struct sim_azure_msg *out)
{
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || colon == line)
        return;
    char name[32];
    copy_trimmed(line, (size_t)(colon - line), name, sizeof(name), true);
    const char *v = colon + 1;
    size_t vl = len - (size_t)(v - line);
    if (strcmp(name, "path") == 0)
        copy_trimmed(v, vl, out->path, sizeof(out->path), true);
    else if (strcmp(name, "x-requestid") == 0)
        copy_trimmed(v, vl, out->request_id, sizeof(out->request_id), false);
    else if (strcmp(name, "content-type") == 0)
        copy_trimmed(v, vl, out->content_type, sizeof(out->content_type), false);
}

/* The header lines of head[0..len), split at CR, LF or both. */
static void header_block(const char *head, size_t len, struct sim_azure_msg *out)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && head[j] != '\r' && head[j] != '\n')
            j++;
        if (j > i)
            header_line(head + i, j - i, out);
        i = j + 1;
    }
}

int sim_azure_msg_parse(bool text, const uint8_t *data, size_t len, struct sim_azure_msg *out)
{
    memset(out, 0, sizeof(*out));
    out->body = data + len;
    if (text) {
        const char *s = (const char *)data;
        const char *end = len >= 4 ? memmem(s, len, "\r\n\r\n", 4) : NULL;
        size_t head = end != NULL ? (size_t)(end - s) : len;
        header_block(s, head, out);
        if (end != NULL) {
            out->body = data + head + 4;
            out->body_len = len - head - 4;
        }
        return 0;
    }
    if (len < 2)
        return -1;
    size_t head = (size_t)data[0] << 8 | data[1];
    if (head > len - 2)
        return -1;
    header_block((const char *)data + 2, head, out);
    out->body = data + 2 + head;
    out->body_len = len - 2 - head;
    return 0;
}

/* "2026-12-06T14:12:18.690Z" */
static void iso_time(int64_t now_ms, char out[32])
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    size_t n = strftime(out, 24, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(now_ms % 1000));
}

char *sim_azure_text_msg(const char *path, const char *request_id, int64_t now_ms, const char *body,
                         size_t *len)
{
    char ts[32];
    iso_time(now_ms, ts);
    char *out = NULL;
    int n = asprintf(&out,
                     "Path: %s\r\nX-RequestId: %s\r\nX-Timestamp: %s\r\n"
                     "Content-Type: application/json; charset=utf-8\r\n\r\n%s",
                     path, request_id, ts, body);
    if (n < 0)
        return NULL;
    *len = (size_t)n;
    return out;
}

size_t sim_azure_binary_head(const char *path, const char *request_id, const char *stream_id,
                             int64_t now_ms, uint8_t *out, size_t out_size)
{
    char ts[32];
    iso_time(now_ms, ts);
    if (out_size < 3)
        return 0;
    int n = snprintf((char *)out + 2, out_size - 2,
                     "Path: %s\r\nX-RequestId: %s\r\n%s%s%s"
                     "X-Timestamp: %s\r\nContent-Type: audio/x-wav\r\n",
                     path, request_id, stream_id ? "X-StreamId: " : "", stream_id ? stream_id : "",
                     stream_id ? "\r\n" : "", ts);
    if (n < 0 || (size_t)n >= out_size - 2 || n > 0x7fff)
        return 0;
    out[0] = (uint8_t)(n >> 8);
    out[1] = (uint8_t)n;
    return (size_t)n + 2;
}

/* ---- output formats -------------------------------------------------------- */

/* "16khz" -> 16000, "22050hz" -> 22050; 0 when not a rate Azure names. */
static uint32_t parse_rate(const char *s, size_t len)
{
    static const uint32_t rates[] = {8000, 16000, 22050, 24000, 44100, 48000};
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    size_t digits = (size_t)(end - s);
    if (digits == 0 || digits > 6)
        return 0;
    if (len - digits == 3 && strncasecmp(end, "khz", 3) == 0)
        v *= 1000;
    else if (!(len - digits == 2 && strncasecmp(end, "hz", 2) == 0))
        return 0;
    for (size_t i = 0; i < ARRAY_SIZE(rates); i++)
        if (rates[i] == v)
            return (uint32_t)v;
    return 0;
}

int sim_azure_output_format(const char *name, struct sim_audio_format *out)
{
    /* Five '-'-separated parts: container, rate, bits or bitrate, "mono",
     * codec. */
    const char *part[5];
    size_t plen[5], n = 0;
    const char *p = name;
    memset(out, 0, sizeof(*out));
    while (n < 5) {
        size_t l = strcspn(p, "-");
        part[n] = p;
        plen[n++] = l;
        if (p[l] == '\0')
            break;
        p += l + 1;
    }
    if (n != 5 || part[4][plen[4]] != '\0' || plen[3] != 4 || strncasecmp(part[3], "mono", 4) != 0)
        return -1;
    out->sample_rate = parse_rate(part[1], plen[1]);
#define IS(i, lit) (plen[i] == sizeof(lit) - 1 && strncasecmp(part[i], lit, plen[i]) == 0)
    if (IS(0, "audio") && IS(4, "mp3")) {
        char *end;
        unsigned long kbit = strtoul(part[2], &end, 10);
        if (end == part[2] || (size_t)(end - part[2]) + 8 != plen[2] ||
            strncasecmp(end, "kbitrate", 8) != 0)
            return -1;
        out->codec = SIM_AUDIO_MP3;
        out->bitrate = (uint32_t)MIN(kbit, 10000ul) * 1000;
    } else if (IS(0, "raw") || IS(0, "riff")) {
        out->wav = IS(0, "riff");
        if (IS(4, "pcm") && IS(2, "16bit"))
            out->codec = SIM_AUDIO_PCM16;
        else if (IS(4, "mulaw") && IS(2, "8bit"))
            out->codec = SIM_AUDIO_MULAW;
        else if (IS(4, "alaw") && IS(2, "8bit"))
            out->codec = SIM_AUDIO_ALAW;
        else
            return -1;
        /* Azure's G.711 formats are 8 kHz only. */
        if (out->codec != SIM_AUDIO_PCM16 && out->sample_rate != 8000)
            return -1;
    } else {
        return -1;
    }
#undef IS
    return out->sample_rate > 0 ? sim_audio_format_check(out) : -1;
}
