/* urlenc.c - query iteration and percent-decoding (see urlenc.h). */
#include "common.h"
#include "urlenc.h"

#include <string.h>
#include <strings.h>

int urlenc_encode(const char *s, char *out, size_t out_size)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~';
        if (n + (plain ? 1 : 3) >= out_size) {
            if (out_size > 0)
                out[0] = '\0';
            return -1;
        }
        if (plain) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = digits[c >> 4];
            out[n++] = digits[c & 15];
        }
    }
    if (out_size == 0)
        return -1;
    out[n] = '\0';
    return (int)n;
}

int urlenc_decode(const char *s, size_t len, bool plus_space, bool no_controls, char *out,
                  size_t out_size)
{
    size_t n = 0;
    if (out_size == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '+' && plus_space) {
            ch = ' ';
        } else if (ch == '%') {
            if (len - i < 3)
                goto bad;
            int hi = urlenc_hex(s[i + 1]), lo = urlenc_hex(s[i + 2]);
            if (hi < 0 || lo < 0)
                goto bad;
            ch = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (ch == 0 || (no_controls && (ch < 0x20 || ch == 0x7f)) || n + 1 >= out_size)
            goto bad;
        out[n++] = (char)ch;
    }
    out[n] = '\0';
    return (int)n;
bad:
    out[0] = '\0';
    return -1;
}

void urlenc_query_init(struct urlenc_query *it, const char *query, size_t len)
{
    it->cur = query;
    it->end = query != NULL ? query + len : NULL;
}

bool urlenc_query_next(struct urlenc_query *it, struct urlenc_pair *out)
{
    while (it->cur != NULL && it->cur < it->end) {
        const char *q = it->cur;
        const char *amp = memchr(q, '&', (size_t)(it->end - q));
        const char *pe = amp != NULL ? amp : it->end;
        it->cur = amp != NULL ? amp + 1 : it->end;
        if (pe == q)
            continue;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        out->raw = q;
        out->raw_len = (size_t)(pe - q);
        out->name = q;
        out->name_len = (size_t)((eq != NULL ? eq : pe) - q);
        out->has_value = eq != NULL;
        out->value = eq != NULL ? eq + 1 : pe;
        out->value_len = eq != NULL ? (size_t)(pe - eq - 1) : 0;
        return true;
    }
    return false;
}

bool urlenc_name_is(const struct urlenc_pair *pair, const char *name)
{
    size_t want = strlen(name);
    /* Fast path: no escapes, the common case. */
    if (memchr(pair->name, '%', pair->name_len) == NULL &&
        memchr(pair->name, '+', pair->name_len) == NULL)
        return pair->name_len == want && strncasecmp(pair->name, name, want) == 0;
    char buf[128];
    int n = urlenc_decode(pair->name, pair->name_len, true, false, buf, sizeof(buf));
    return n >= 0 && (size_t)n == want && strncasecmp(buf, name, want) == 0;
}

int urlenc_query_get(const char *query, size_t len, const char *name, char *out, size_t out_size)
{
    struct urlenc_query it;
    struct urlenc_pair p;
    if (out_size > 0)
        out[0] = '\0';
    urlenc_query_init(&it, query, len);
    while (urlenc_query_next(&it, &p)) {
        if (!urlenc_name_is(&p, name))
            continue;
        return urlenc_decode(p.value, p.value_len, true, true, out, out_size) >= 0 ? 0 : -1;
    }
    return -1;
}
