/* sim_pace.c - the simulator's pure pieces (sim_provider.h): generated
 * words and the word count that makes usage exact, token and audio pacing
 * arithmetic, the fault of a reply, the seeded generator. No I/O, no
 * state of their own. */
#include "common.h"
#include "sim_provider.h"

#include <stdlib.h>
#include <string.h>

/* Words of generated replies, each with its leading space; token 0 is
 * the first word without it. */
static const char *const words[] = {
    " Simulated", " replies", " come",   " from",  " the",     " byok", " simulator,", " not",
    " from",      " a",       " model.", " Each",  " word",    " is",   " one",        " token,",
    " so",        " the",     " usage",  " it",    " reports", " is",   " exact.",     " The",
    " quick",     " brown",   " fox",    " jumps", " over",    " the",  " lazy",       " dog.",
};

const char *sim_word(size_t i)
{
    const char *w = words[i % ARRAY_SIZE(words)];
    return i == 0 ? w + 1 : w;
}

char *sim_text(size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(sim_word(i));
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    char *p = out;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(sim_word(i));
        memcpy(p, sim_word(i), l);
        p += l;
    }
    *p = '\0';
    return out;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int64_t sim_count_words(const char *s, size_t len)
{
    int64_t n = 0;
    bool in_word = false;
    for (size_t i = 0; i < len; i++) {
        bool sp = is_space(s[i]);
        if (!sp && !in_word)
            n++;
        in_word = !sp;
    }
    return n;
}

int64_t sim_count_json_words(const json_t *v)
{
    int64_t n = 0;
    size_t i;
    json_t *e;
    if (v == NULL)
        return 0;
    switch (json_typeof(v)) {
    case JSON_STRING:
        return sim_count_words(json_string_value(v), json_string_length(v));
    case JSON_ARRAY:
        json_array_foreach((json_t *)v, i, e)
        {
            /* A token array (embeddings input): one token per number. */
            n += json_is_integer(e) ? 1 : sim_count_json_words(e);
        }
        return n;
    case JSON_OBJECT:
        return sim_count_json_words(json_object_get(v, "text")) +
               sim_count_json_words(json_object_get(v, "content"));
    default:
        return 0;
    }
}

int64_t sim_pace_token_ms(int64_t tokens_per_s, size_t i)
{
    if (tokens_per_s <= 0)
        return 0;
    return (int64_t)i * 1000 / tokens_per_s;
}

size_t sim_pace_tokens_due(int64_t tokens_per_s, int64_t elapsed_ms, size_t n)
{
    if (tokens_per_s <= 0 || n == 0)
        return n;
    if (elapsed_ms < 0)
        elapsed_ms = 0;
    /* Token i is due at floor(i * 1000 / rate) <= elapsed, that is
     * i * 1000 < (elapsed + 1) * rate: ceil((elapsed + 1) * rate / 1000) of
     * them. */
    int64_t due = ((elapsed_ms + 1) * tokens_per_s + 999) / 1000;
    return (size_t)MAX((int64_t)1, MIN(due, (int64_t)n));
}

int64_t sim_pace_audio_ms(int64_t rtf_ppm, int64_t audio_ms)
{
    if (rtf_ppm <= 0 || audio_ms <= 0)
        return 0;
    /* rtf_ppm is at most 10^8 (config_simulate.c): the product fits in
     * int64 below 9 * 10^10 ms of audio; beyond, divide first. */
    if (audio_ms < INT64_C(90000000000))
        return audio_ms * rtf_ppm / 1000000;
    return audio_ms / 1000000 * rtf_ppm;
}

enum config_sim_error sim_fault_for(const struct config_sim_tunables *t, uint64_t draw_ppm)
{
    uint64_t edge = 0;
    for (int k = 0; k < CONFIG_SIM_ERR_KINDS; k++) {
        edge += (uint64_t)t->error_ppm[k];
        if (draw_ppm < edge)
            return (enum config_sim_error)k;
    }
    return CONFIG_SIM_ERR_KINDS;
}

uint64_t sim_rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

uint64_t sim_rng_below(uint64_t *state, uint64_t bound)
{
    /* Reject the top partial range so every value is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do
        x = sim_rng_next(state);
    while (x >= limit);
    return x % bound;
}
