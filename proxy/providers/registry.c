/* registry.c - the providers the proxy serves, in a fixed order (their
 * index sizes per-provider state; slots are numbered in this order). A new
 * provider is one line here and its module in this directory. */
#include "common.h"
#include "provider.h"

#include <stdio.h>
#include <string.h>

#define PROVIDERS(X)                                                                               \
    X(openai)                                                                                      \
    X(elevenlabs)                                                                                  \
    X(azure_speech)                                                                                \
    X(deepgram)                                                                                    \
    X(anthropic)                                                                                   \
    X(cartesia)                                                                                    \
    X(deepseek)

#define DECLARE(name) extern const struct provider name##_provider;
PROVIDERS(DECLARE)
#undef DECLARE

#define ENTRY(name) &name##_provider,
static const struct provider *const registry[] = {PROVIDERS(ENTRY)};
#undef ENTRY

/* Built once from the registry (provider_registry_check, or on first use:
 * both only ever write the same values). */
static const struct provider *slots[PROVIDER_SLOT_MAX];
static size_t n_slots;
static char slot_list[256];
static char all_list[512];
static bool derived;

static void derive(void)
{
    if (derived)
        return;
    size_t sl = 0, al = 0;
    n_slots = 0;
    for (size_t i = 0; i < ARRAY_SIZE(registry); i++) {
        const struct provider *p = registry[i];
        al += (size_t)snprintf(all_list + al, sizeof(all_list) - MIN(al, sizeof(all_list)), "%s%s",
                               i ? ", " : "", p->name);
        if (!p->slot || n_slots >= PROVIDER_SLOT_MAX)
            continue;
        sl += (size_t)snprintf(slot_list + sl, sizeof(slot_list) - MIN(sl, sizeof(slot_list)),
                               "%s%s", n_slots ? ", " : "", p->name);
        slots[n_slots++] = p;
    }
    derived = true;
}

size_t provider_count(void)
{
    return ARRAY_SIZE(registry);
}

const struct provider *provider_at(size_t i)
{
    return registry[i < ARRAY_SIZE(registry) ? i : 0];
}

size_t provider_index(const struct provider *p)
{
    for (size_t i = 0; i < ARRAY_SIZE(registry); i++)
        if (registry[i] == p)
            return i;
    return 0;
}

const struct provider *provider_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < ARRAY_SIZE(registry); i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

const char *provider_name(const struct provider *p)
{
    return p != NULL ? p->name : "unknown";
}

size_t provider_slot_count(void)
{
    derive();
    return n_slots;
}

const struct provider *provider_slot_at(size_t i)
{
    derive();
    return i < n_slots ? slots[i] : NULL;
}

bool provider_has_cred(const struct provider *p, enum provider_cred_kind kind)
{
    for (size_t i = 0; p != NULL && i < p->n_creds; i++)
        if (p->creds[i].kind == kind)
            return true;
    return false;
}

int provider_slot_index(const struct provider *p)
{
    derive();
    for (size_t i = 0; i < n_slots; i++)
        if (slots[i] == p)
            return (int)i;
    return -1;
}

const char *provider_slot_list(void)
{
    derive();
    return slot_list;
}

const char *provider_list(void)
{
    derive();
    return all_list;
}

/* A path pattern: absolute, "{}" only as a whole segment. */
static bool pattern_ok(const char *pat)
{
    if (pat[0] != '/')
        return false;
    for (const char *b = strstr(pat, "{}"); b != NULL; b = strstr(b + 2, "{}"))
        if (b[-1] != '/' || (b[2] != '\0' && b[2] != '/'))
            return false;
    return strchr(pat, '?') == NULL;
}

int provider_registry_check(char *err, size_t err_size)
{
    size_t slot_count = 0;
    if (ARRAY_SIZE(registry) > PROVIDER_MAX) {
        snprintf(err, err_size, "registry: %zu providers, at most %d", ARRAY_SIZE(registry),
                 PROVIDER_MAX);
        return -1;
    }
    for (size_t i = 0; i < ARRAY_SIZE(registry); i++) {
        const struct provider *p = registry[i];
        slot_count += p->slot;
        if (p->name == NULL || p->n_hosts == 0 || p->n_hosts > PROVIDER_HOST_MAX ||
            p->n_routes == 0 || p->error_body == NULL || p->inject_header == NULL ||
            p->n_platform_headers > PROVIDER_HDR_MAX || (p->region && p->check_region == NULL) ||
            (p->slot && p->check == NULL)) {
            snprintf(err, err_size, "provider %s: incomplete declaration", provider_name(p));
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(registry[j]->name, p->name) == 0) {
                snprintf(err, err_size, "provider %s: declared twice", p->name);
                return -1;
            }
        for (size_t r = 0; r < p->n_routes; r++) {
            const struct provider_route *rt = &p->routes[r];
            if (rt->host < 0 || (size_t)rt->host >= p->n_hosts || rt->prefix[0] != '/' ||
                rt->strip > strlen(rt->prefix)) {
                snprintf(err, err_size, "provider %s: route %s is malformed", p->name, rt->prefix);
                return -1;
            }
            /* Two providers may not claim the same prefix. */
            for (size_t j = 0; j < i; j++)
                for (size_t q = 0; q < registry[j]->n_routes; q++)
                    if (strcmp(registry[j]->routes[q].prefix, rt->prefix) == 0) {
                        snprintf(err, err_size, "route %s: claimed by %s and %s", rt->prefix,
                                 registry[j]->name, p->name);
                        return -1;
                    }
        }
        for (size_t e = 0; e < p->n_endpoints; e++) {
            const struct provider_endpoint *ep = &p->endpoints[e];
            bool ws = (ep->flags & PROVIDER_EP_WS) != 0;
            if (ep->method == NULL || !pattern_ok(ep->pattern) || ep->line == NULL ||
                ep->host >= (int)p->n_hosts || (ws && (ep->ws == NULL || ep->meter != NULL)) ||
                (!ws && ep->ws != NULL)) {
                snprintf(err, err_size, "provider %s: endpoint %s %s is malformed", p->name,
                         ep->method ? ep->method : "?", ep->pattern ? ep->pattern : "?");
                return -1;
            }
        }
    }
    if (slot_count > PROVIDER_SLOT_MAX) {
        snprintf(err, err_size, "registry: %zu slots, at most %d", slot_count, PROVIDER_SLOT_MAX);
        return -1;
    }
    derive();
    return 0;
}
