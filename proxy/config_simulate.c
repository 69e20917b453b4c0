/* config_simulate.c - the "simulate" section of the config
 * (config_simulate.h): defaults, per-upstream overrides, ranges. */
#include "common.h"
#include "config_simulate.h"

#include <stdio.h>
#include <string.h>

static const char *const section_keys[] = {
    "charge",       "tls",       "seed",   "ttfb_ms",   "tokens_per_s",
    "reply_tokens", "audio_rtf", "errors", "providers",
};
static const char *const tunable_keys[] = {
    "ttfb_ms", "tokens_per_s", "reply_tokens", "audio_rtf", "errors",
};
/* In enum config_sim_error order. */
static const char *const error_keys[CONFIG_SIM_ERR_KINDS] = {"429", "500", "reset"};

#define TTFB_MAX_MS   600000
#define RATE_MAX      1000000
#define REPLY_MAX     1000000
#define RTF_MAX_PPM   INT64_C(100000000) /* 100x slower than real time */
#define PPM           INT64_C(1000000)
#define DEFAULT_REPLY 16

/* The tunables of obj (the section itself, or one "providers" entry) over
 * base. Unknown keys are the caller's check. */
static int parse_tunables(struct config_json *p, json_t *obj, const char *path,
                          const struct config_sim_tunables *base, struct config_sim_tunables *out)
{
    *out = *base;
    if (config_json_int(p, obj, path, "ttfb_ms", base->ttfb_ms, 0, TTFB_MAX_MS, &out->ttfb_ms) ==
            -1 ||
        config_json_int(p, obj, path, "tokens_per_s", base->tokens_per_s, 0, RATE_MAX,
                        &out->tokens_per_s) == -1 ||
        config_json_int(p, obj, path, "reply_tokens", base->reply_tokens, 1, REPLY_MAX,
                        &out->reply_tokens) == -1 ||
        config_json_ppm(p, obj, path, "audio_rtf", base->audio_rtf_ppm, 0, RTF_MAX_PPM,
                        &out->audio_rtf_ppm) == -1)
        return -1;
    json_t *errors = config_json_get(obj, "errors");
    if (errors == NULL)
        return 0;
    char epath[KEYPATH_MAX];
    config_json_path(epath, sizeof(epath), path, "errors");
    if (config_json_object(p, errors, epath) == -1 ||
        config_json_keys(p, errors, epath, error_keys, CONFIG_SIM_ERR_KINDS) == -1)
        return -1;
    int64_t sum = 0;
    for (int k = 0; k < CONFIG_SIM_ERR_KINDS; k++) {
        if (config_json_ppm(p, errors, epath, error_keys[k], base->error_ppm[k], 0, PPM,
                            &out->error_ppm[k]) == -1)
            return -1;
        sum += out->error_ppm[k];
    }
    if (sum > PPM)
        return config_json_fail(p,
                                "%s: the rates add up to %g; a reply fails at most once, so "
                                "their sum is at most 1",
                                epath, (double)sum / 1e6);
    return 0;
}

int config_simulate_parse(struct config_json *p, json_t *obj, struct config_simulate *out)
{
    static const char path[] = "simulate";
    const struct config_sim_tunables zero = {.reply_tokens = DEFAULT_REPLY};
    memset(out, 0, sizeof(*out));
    out->present = obj != NULL;
    if (obj != NULL &&
        (config_json_object(p, obj, path) == -1 ||
         config_json_keys(p, obj, path, section_keys, ARRAY_SIZE(section_keys)) == -1))
        return -1;
    int64_t seed = 0;
    if (config_json_bool(p, obj, path, "charge", false, &out->charge) == -1 ||
        config_json_bool(p, obj, path, "tls", false, &out->tls) == -1 ||
        config_json_int(p, obj, path, "seed", 0, 0, INT64_MAX, &seed) == -1 ||
        parse_tunables(p, obj, path, &zero, &out->defaults) == -1)
        return -1;
    out->seeded = config_json_get(obj, "seed") != NULL;
    out->seed = (uint64_t)seed;

    /* Every upstream host may be overridden, simulated or not yet: an
     * override stays valid while an upstream is switched back and forth. */
    const char *keys[PROVIDER_MAX * PROVIDER_HOST_MAX];
    size_t n_keys = 0;
    for (size_t i = 0; i < provider_count(); i++)
        for (size_t h = 0; h < provider_at(i)->n_hosts; h++)
            keys[n_keys++] = provider_at(i)->hosts[h].config_key;
    json_t *providers = config_json_get(obj, "providers");
    char ppath[KEYPATH_MAX];
    config_json_path(ppath, sizeof(ppath), path, "providers");
    if (providers != NULL && (config_json_object(p, providers, ppath) == -1 ||
                              config_json_keys(p, providers, ppath, keys, n_keys) == -1))
        return -1;
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *pr = provider_at(i);
        for (size_t h = 0; h < pr->n_hosts; h++) {
            json_t *o = config_json_get(providers, pr->hosts[h].config_key);
            char opath[KEYPATH_MAX];
            config_json_path(opath, sizeof(opath), ppath, pr->hosts[h].config_key);
            if (o != NULL &&
                (config_json_object(p, o, opath) == -1 ||
                 config_json_keys(p, o, opath, tunable_keys, ARRAY_SIZE(tunable_keys)) == -1))
                return -1;
            if (parse_tunables(p, o, opath, &out->defaults, &out->hosts[i][h]) == -1)
                return -1;
        }
    }
    return 0;
}

const struct config_sim_tunables *config_simulate_tunables(const struct config_simulate *s,
                                                           const char *upstream_key)
{
    for (size_t i = 0; i < provider_count(); i++) {
        const struct provider *pr = provider_at(i);
        for (size_t h = 0; h < pr->n_hosts; h++)
            if (strcmp(pr->hosts[h].config_key, upstream_key) == 0)
                return &s->hosts[i][h];
    }
    return NULL;
}
