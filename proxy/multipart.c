/* multipart.c - multipart/form-data parts and header-value parameters. */
#include "common.h"
#include "multipart.h"

#include <string.h>
#include <strings.h>

/* Case-insensitive search for a token in a header value. */
static const char *find_ci(const char *s, size_t len, const char *tok)
{
    size_t n = strlen(tok);
    for (size_t i = 0; i + n <= len; i++) {
        if (strncasecmp(s + i, tok, n) == 0)
            return s + i;
    }
    return NULL;
}

int multipart_param(const char *v, size_t len, const char *name, char *out, size_t out_size)
{
    size_t name_len = strlen(name);
    const char *end = v + len;
    const char *p = memchr(v, ';', len);
    while (p != NULL && p < end) {
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *k = p;
        while (p < end && *p != '=' && *p != ';')
            p++;
        size_t k_len = (size_t)(p - k);
        while (k_len > 0 && (k[k_len - 1] == ' ' || k[k_len - 1] == '\t'))
            k_len--;
        if (p == end || *p == ';')
            continue;
        p++; /* '=' */
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *val;
        size_t val_len;
        if (p < end && *p == '"') {
            val = ++p;
            while (p < end && *p != '"')
                p++;
            val_len = (size_t)(p - val);
            if (p < end)
                p++;
        } else {
            val = p;
            while (p < end && *p != ';' && *p != ' ' && *p != '\t')
                p++;
            val_len = (size_t)(p - val);
        }
        if (k_len == name_len && strncasecmp(k, name, name_len) == 0) {
            if (val_len == 0 || val_len >= out_size)
                return -1;
            memcpy(out, val, val_len);
            out[val_len] = '\0';
            return 0;
        }
        p = memchr(p, ';', (size_t)(end - p));
    }
    return -1;
}

/* The form field name from a part's headers. */
static void part_name(const char *head, size_t head_len, char *name, size_t name_size)
{
    static const char cd[] = "content-disposition:";
    const char *end = head + head_len;
    const char *line = head;
    name[0] = '\0';
    while (line < end) {
        const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
        size_t n = eol ? (size_t)(eol - line) : (size_t)(end - line);
        if (n > sizeof(cd) - 1 && strncasecmp(line, cd, sizeof(cd) - 1) == 0 &&
            multipart_param(line, n, "name", name, name_size) == -1)
            name[0] = '\0';
        line += n + 2;
    }
}

int multipart_parse(const char *body, size_t len, const char *ct, size_t ct_len,
                    multipart_part_cb cb, void *arg)
{
    char boundary[200 + 1]; /* RFC 2046 allows 70; be lenient */
    char delim[4 + sizeof(boundary)] = "\r\n--";
    if (body == NULL || ct == NULL || find_ci(ct, ct_len, "multipart/form-data") == NULL ||
        multipart_param(ct, ct_len, "boundary", boundary, sizeof(boundary)) == -1)
        return -1;
    size_t b_len = strlen(boundary);
    memcpy(delim + 4, boundary, b_len);
    size_t d_len = 4 + b_len; /* "\r\n--" boundary */

    /* The first delimiter may open the body without the leading CRLF. */
    size_t pos;
    if (len >= d_len - 2 && memcmp(body, delim + 2, d_len - 2) == 0) {
        pos = d_len - 2;
    } else {
        const char *f = memmem(body, len, delim, d_len);
        if (f == NULL)
            return -1;
        pos = (size_t)(f - body) + d_len;
    }
    for (;;) {
        /* After a delimiter: "--" closes, else optional padding and CRLF. */
        if (len - pos >= 2 && memcmp(body + pos, "--", 2) == 0)
            break;
        while (pos < len && (body[pos] == ' ' || body[pos] == '\t'))
            pos++;
        if (len - pos < 2 || memcmp(body + pos, "\r\n", 2) != 0)
            break;
        pos += 2;
        const char *head_end = memmem(body + pos, len - pos, "\r\n\r\n", 4);
        size_t head_len;
        size_t content;
        if (head_end != NULL) {
            head_len = (size_t)(head_end - (body + pos));
            content = pos + head_len + 4;
        } else if (len - pos >= 2 && memcmp(body + pos, "\r\n", 2) == 0) {
            head_len = 0; /* a part without headers */
            content = pos + 2;
        } else {
            break;
        }
        const char *next = memmem(body + content, len - content, delim, d_len);
        if (next == NULL)
            break; /* truncated body: the last part is not reported */
        char name[64];
        part_name(body + pos, head_len, name, sizeof(name));
        cb(arg, name, body + content, (size_t)(next - (body + content)));
        pos = (size_t)(next - body) + d_len;
    }
    return 0;
}
