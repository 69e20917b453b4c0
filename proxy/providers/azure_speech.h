/* azure_speech.h - the Azure Speech parsers fed by network bytes, exposed
 * for the unit and fuzz tests. Internal to proxy/providers/. */
#ifndef BYOK_PROVIDERS_AZURE_SPEECH_H
#define BYOK_PROVIDERS_AZURE_SPEECH_H

#include "common.h"
#include "audio.h"

/* Billable characters of an SSML document: text outside tags, an entity
 * reference (&amp; &#65; ...) counting as one, CDATA content counting as
 * written, comments, processing instructions and attribute values counting
 * nothing, whitespace as written. voice (may be NULL) gets the first
 * <voice name="...">, when it is still "". */
int64_t azure_ssml_characters(const char *ssml, size_t len, char voice[MODEL_MAX]);

/* The Speech SDK's binary messages from the client (PROVIDERS.md §3.3):
 * [2-byte big-endian header length][ASCII headers][payload]; a payload that
 * opens with a WAV header (each turn's first audio message) gives the
 * format, and the audio is every payload byte after such headers. */
struct azure_frames {
    uint32_t hdr_len;      /* of the message being read */
    uint64_t payload_from; /* offset of its payload */
    int head_state;        /* 0 undecided, 1 decided */
    uint8_t head[512];     /* start of the payload, until WAV or not is known */
    size_t head_len;
    uint64_t bytes_per_sec; /* from the last WAV header, 0 none seen */
    uint64_t audio_bytes;
};

/* One chunk of a binary message: data[0..len) at offset off of the
 * message; last on its final chunk. */
void azure_frames_feed(struct azure_frames *f, const uint8_t *data, size_t len, uint64_t off,
                       bool last);

/* 0 when region is a known short name; else -1 with a message naming the
 * expected form (and the short form of a display name such as "East US"). */
int azure_check_region(const char *region, char *err, size_t err_size);

#endif
