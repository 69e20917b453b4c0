/* fuzz_httpresponse.c - libFuzzer target for httpparse_response (the
 * upstream WebSocket handshake reply): memory safety, invariants of a parsed
 * head, independence from what follows the head and from where the input is
 * cut, and agreement with ref_reply below, a frozen copy of the reply parser
 * relay_ws.c had before the response parser moved into httpparse (so the move
 * can be shown to be neither looser nor stricter, but for the field-count
 * limit). Also checks httpparse_list_has against ws_list, the iterator the
 * relay used to match Upgrade and Connection with. */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpparse.h"
#include "ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---- the reference: relay_ws.c's handshake_read + reply_parse ---------- */

enum ref_result { REF_DONE, REF_INCOMPLETE, REF_ERROR };

struct ref_reply {
    size_t head_len;
    int status;
    size_t n_fields;
};

static bool ref_head_char_ok(char c)
{
    return c == '\t' || ((unsigned char)c >= 0x20 && c != 0x7f);
}

static bool ref_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int ref_parse(const char *p, size_t len, struct ref_reply *out)
{
    const char *end = p + len;
    const char *eol = memmem(p, len, "\r\n", 2);
    if (eol == NULL || len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
        p[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        out->status = out->status * 10 + (p[i] - '0');
    }
    if (out->status < 100 || (p + 12 < eol && p[12] != ' '))
        return -1;
    for (const char *c = p + 12; c < eol; c++)
        if (!ref_head_char_ok(*c))
            return -1;
    const char *line = eol + 2;
    while (line < end) {
        eol = memmem(line, (size_t)(end - line), "\r\n", 2);
        if (eol == NULL)
            return -1;
        if (eol == line)
            return eol + 2 == end ? 0 : -1;
        if (*line == ' ' || *line == '\t')
            return -1;
        const char *colon = line;
        while (colon < eol && ref_tchar(*colon))
            colon++;
        if (colon == line || colon == eol || *colon != ':')
            return -1;
        for (const char *c = colon + 1; c < eol; c++)
            if (!ref_head_char_ok(*c))
                return -1;
        out->n_fields++;
        line = eol + 2;
    }
    return -1;
}

/* The old scan for the end of the head (no size limit here: the caller
 * compares only within the new parser's limit). */
static enum ref_result ref_reply(const char *p, size_t len, struct ref_reply *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\n')
            continue;
        if (i == 0 || p[i - 1] != '\r')
            return REF_ERROR;
        if (i >= 3 && p[i - 2] == '\n' && p[i - 3] == '\r') {
            out->head_len = i + 1;
            return ref_parse(p, i + 1, out) == 0 ? REF_DONE : REF_ERROR;
        }
    }
    return REF_INCOMPLETE;
}

/* relay_ws.c's former list_has. */
static bool ref_list_has(const char *v, size_t len, const char *token)
{
    struct ws_list it;
    const char *item;
    size_t n, tl = strlen(token);
    ws_list_init(&it, v, len);
    while (ws_list_next(&it, &item, &n))
        if (n == tl && strncasecmp(item, token, n) == 0)
            return true;
    return false;
}

/* ---- checks ------------------------------------------------------------- */

static struct httpparse_response resp, resp2;

static bool within(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void check_fields(const char *buf)
{
    for (size_t i = 0; i < resp.n_headers; i++) {
        const struct httpparse_header *h = &resp.headers[i];
        CHECK(within(h->name, h->name_len, buf, resp.head_len));
        CHECK(within(h->value, h->value_len, buf, resp.head_len));
        CHECK(httpparse_token_valid(h->name, h->name_len));
        CHECK(h->name[h->name_len] == ':');
        for (size_t k = 0; k < h->value_len; k++) {
            uint8_t c = (uint8_t)h->value[k];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (h->value_len > 0)
            CHECK(!is_ows(h->value[0]) && !is_ows(h->value[h->value_len - 1]));

        static const char *const tokens[] = {"upgrade", "websocket", "keep-alive"};
        for (size_t t = 0; t < sizeof(tokens) / sizeof(tokens[0]); t++)
            CHECK(httpparse_list_has(h->value, h->value_len, tokens[t]) ==
                  ref_list_has(h->value, h->value_len, tokens[t]));
        /* The field's own name as a token: arbitrary, never empty. */
        char name[64];
        if (h->name_len < sizeof(name)) {
            memcpy(name, h->name, h->name_len);
            name[h->name_len] = '\0';
            CHECK(httpparse_list_has(h->value, h->value_len, name) ==
                  ref_list_has(h->value, h->value_len, name));
        }
    }
}

/* buf[0..len) with the limits; cut < len is a second, shorter cut. */
static void check_response(const char *buf, size_t len, const struct httpparse_limits *lim,
                           size_t cut)
{
    int code = 0;
    const char *why = NULL;
    enum httpparse_status rc = httpparse_response(buf, len, lim, &resp, &code, &why);
    size_t max_head = lim->max_header_bytes;
    size_t max_fields = MIN(lim->max_headers, (size_t)HTTPPARSE_MAX_HEADERS);

    struct ref_reply ref;
    enum ref_result rr = ref_reply(buf, len, &ref);

    if (rc == HTTPPARSE_ERROR) {
        CHECK(code == 400 || code == 431);
        CHECK(why != NULL && why[0] != '\0');
        CHECK(why < buf || why >= buf + len);
        /* Refused: the reference refuses it too, or will once the head
         * ends; or a limit was hit. */
        if (code == 431) {
            CHECK(len >= max_head || rr != REF_DONE || ref.head_len > max_head ||
                  ref.n_fields > max_fields);
            return;
        }
        if (rr == REF_INCOMPLETE) {
            char *more = malloc(len + 4);
            CHECK(more != NULL);
            memcpy(more, buf, len);
            memcpy(more + len, "\r\n\r\n", 4);
            CHECK(ref_reply(more, len + 4, &ref) == REF_ERROR);
            free(more);
        } else {
            CHECK(rr == REF_ERROR);
        }
        return;
    }
    if (rc == HTTPPARSE_INCOMPLETE) {
        CHECK(len < max_head);
        CHECK(rr == REF_INCOMPLETE);
        return;
    }

    CHECK(rc == HTTPPARSE_DONE);
    CHECK(rr == REF_DONE);
    CHECK(resp.head_len == ref.head_len && resp.status == ref.status);
    CHECK(resp.n_headers == ref.n_fields);
    CHECK(resp.head_len >= 16 && resp.head_len <= len && resp.head_len <= max_head);
    CHECK(memcmp(buf, "HTTP/1.", 7) == 0 && resp.version_minor == buf[7] - '0');
    CHECK(memcmp(buf + resp.head_len - 4, "\r\n\r\n", 4) == 0);
    CHECK(resp.status >= 100 && resp.status <= 999);
    CHECK(resp.n_headers <= max_fields);
    CHECK(within(resp.reason, resp.reason_len, buf, resp.head_len));
    check_fields(buf);

    /* The head alone parses the same; any shorter cut is incomplete. */
    int code2 = 0;
    const char *why2 = NULL;
    CHECK(httpparse_response(buf, resp.head_len, lim, &resp2, &code2, &why2) == HTTPPARSE_DONE);
    CHECK(resp2.head_len == resp.head_len && resp2.status == resp.status);
    CHECK(resp2.n_headers == resp.n_headers && resp2.reason_len == resp.reason_len);
    for (size_t i = 0; i < resp.n_headers; i++) {
        CHECK(resp2.headers[i].name == resp.headers[i].name);
        CHECK(resp2.headers[i].value_len == resp.headers[i].value_len);
    }
    CHECK(httpparse_response(buf, resp.head_len - 1, lim, &resp2, &code2, &why2) ==
          HTTPPARSE_INCOMPLETE);
    size_t c = cut % resp.head_len;
    CHECK(httpparse_response(buf, c, lim, &resp2, &code2, &why2) == HTTPPARSE_INCOMPLETE);
}

/* Input layout: byte 0 picks a cut point, byte 1 the limits; the rest is the
 * reply (head and whatever follows it). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t cut_sel = data[0], lim_sel = data[1];
    size_t len = size - 2;
    /* An exact-size copy so that any read past the end is caught. */
    char *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 2, len);

    /* Small limits reach the 431 paths; 16 KiB is what relay_ws uses. */
    struct httpparse_limits lim = {
        .max_header_bytes = (lim_sel & 1) ? 16384 : 24 + (size_t)(lim_sel >> 1) * 2,
        .max_headers = (lim_sel & 0x80) ? HTTPPARSE_MAX_HEADERS + 1 : 1 + (lim_sel & 0x0f),
    };
    check_response(buf, len, &lim, (size_t)cut_sel * 7);

    /* NULL limits are the defaults (32 KiB, HTTPPARSE_MAX_HEADERS). */
    int code;
    const char *why;
    if (httpparse_response(buf, len, NULL, &resp, &code, &why) == HTTPPARSE_DONE)
        CHECK(resp.head_len <= 32768 && resp.n_headers <= HTTPPARSE_MAX_HEADERS);

    free(buf);
    return 0;
}
