/* httpparse.c - strict HTTP/1.1 head parser (requests from clients, response
 * heads from upstreams) and incremental chunked body decoder (DESIGN §4c,
 * RFC 9112 as HAProxy/Envoy apply it): one pass over the bytes, no I/O, no
 * allocation. Both heads share the field-line scanner and the byte classes. */
#include "common.h"

#include <string.h>
#include <strings.h>

#include "httpparse.h"
#include "urlenc.h"

/* Used when a limit is 0 (unset); the same defaults as config_limits. */
#define DEFAULT_MAX_REQUEST_LINE 8192
#define DEFAULT_MAX_HEADER_BYTES 32768

/* Larger values are refused rather than risking overflow in whoever adds
 * offsets to them later. */
#define CONTENT_LENGTH_MAX (INT64_MAX / 2)
#define CHUNK_SIZE_MAX     ((uint64_t)INT64_MAX / 2)
#define CHUNK_SIZE_DIGITS  16    /* hex digits in one chunk-size, leading zeros included */
#define CHUNK_EXT_MAX      4096  /* bytes of extensions on one chunk-size line */
#define CHUNK_TRAILER_MAX  16384 /* bytes of the whole trailer section */

/* Byte classes. C_TOKEN is RFC 9110 tchar (header names and methods; '_' is
 * a tchar but field names with it are refused separately, because nginx and
 * CGI-style backends map '_' and '-' to the same variable, which lets a client
 * smuggle a header past a filter). C_VALUE is field-vchar / SP / HTAB incl.
 * obs-text. C_TARGET is VCHAR without '#' (browsers send raw "{}|^" in
 * queries, so the set is wider than RFC 3986). C_HOST is reg-name / IP-literal
 * / port. */
#define C_TOKEN  0x01
#define C_VALUE  0x02
#define C_TARGET 0x04
#define C_HOST   0x08

static const uint8_t char_class[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  2,  0,  0,  0,  0,  0,  0,  /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    2,  15, 6,  3,  15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15, 6,  /* 0x20  !"#$%&'()*+,-./ */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 14, 6,  14, 6,  6,  /* 0x30 0-9:;<=>? */
    6,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x40 @A-O */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 6,  14, 7,  15, /* 0x50 P-Z[\]^_ */
    7,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x60 `a-o */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6,  7,  6,  15, 0,  /* 0x70 p-z{|}~DEL */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0x80 obs-text */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0x90 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xa0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xb0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xc0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xd0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xe0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 0xf0 */
};

static inline bool is_class(char c, uint8_t cls)
{
    return (char_class[(uint8_t)c] & cls) != 0;
}

bool httpparse_tchar(char c)
{
    return is_class(c, C_TOKEN);
}

bool httpparse_token_valid(const char *s, size_t n)
{
    if (s == NULL || n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_class(s[i], C_TOKEN))
            return false;
    }
    return true;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Error outputs of one head parse; the flags collect what the headers said
 * until the cross-field checks at the end (requests only). */
struct head_parse {
    int status;
    const char *why;
    bool response; /* a response head: names the head in reasons, allows '_' */
    bool seen_cl;
    bool seen_te;
    bool seen_host;
    bool conn_close;
    bool conn_keep_alive;
    bool conn_upgrade;
    bool upgrade_ws;
};

/* Records an error; always returns -1 so callers can `return fail(...)`. */
static int fail(struct head_parse *p, int status, const char *why)
{
    p->status = status;
    p->why = why;
    return -1;
}

static bool name_is(const char *s, size_t n, const char *lit, size_t lit_len)
{
    return n == lit_len && strncasecmp(s, lit, n) == 0;
}

#define NAME_IS(s, n, lit) name_is((s), (n), (lit), sizeof(lit) - 1)

/* Steps through a comma-separated list: the next element (OWS trimmed,
 * possibly empty) is returned in *tok. False when the list is exhausted. */
static bool list_next(const char **cur, const char *end, const char **tok, size_t *tok_len)
{
    const char *s = *cur;
    if (s == NULL || s > end)
        return false;
    const char *comma = memchr(s, ',', (size_t)(end - s));
    const char *e = comma ? comma : end;
    *cur = comma ? comma + 1 : end + 1;
    while (s < e && is_ows(*s))
        s++;
    while (e > s && is_ows(e[-1]))
        e--;
    *tok = s;
    *tok_len = (size_t)(e - s);
    return true;
}

bool httpparse_list_has(const char *value, size_t value_len, const char *token)
{
    if (value == NULL || token == NULL)
        return false;
    size_t token_len = strlen(token);
    const char *cur = value, *tok;
    size_t tok_len;
    while (list_next(&cur, value + value_len, &tok, &tok_len)) {
        if (name_is(tok, tok_len, token, token_len))
            return true;
    }
    return false;
}

const struct httpparse_header *httpparse_find(const struct httpparse_request *req, const char *name)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct httpparse_header *h = &req->headers[i];
        if (name_is(h->name, h->name_len, name, name_len))
            return h;
    }
    return NULL;
}

/* "HTTP/1.0" and "HTTP/1.1" are accepted; any other well-formed
 * HTTP/x[.y] is 505, everything else 400. Case-sensitive (RFC 9112 §2.3). */
static int parse_version(const char *v, size_t n, int *minor, struct head_parse *p)
{
    if (n == 8 && memcmp(v, "HTTP/1.", 7) == 0 && (v[7] == '0' || v[7] == '1')) {
        *minor = v[7] - '0';
        return 0;
    }
    if (n < 6 || memcmp(v, "HTTP/", 5) != 0)
        return fail(p, 400, "malformed HTTP version in request line");
    size_t i = 5, digits = 0;
    while (i < n && v[i] >= '0' && v[i] <= '9')
        i++, digits++;
    if (digits == 0)
        return fail(p, 400, "malformed HTTP version in request line");
    if (i < n && v[i] == '.') {
        i++;
        digits = 0;
        while (i < n && v[i] >= '0' && v[i] <= '9')
            i++, digits++;
        if (digits == 0)
            return fail(p, 400, "malformed HTTP version in request line");
    }
    if (i != n)
        return fail(p, 400, "malformed HTTP version in request line");
    return fail(p, 505, "HTTP version not supported (only HTTP/1.0 and HTTP/1.1)");
}

/* Only origin-form ("/path?query") is served; a reverse proxy has no use for
 * absolute-form, and authority-/asterisk-form belong to CONNECT/OPTIONS *. */
static int parse_target(const char *t, size_t n, struct httpparse_request *req,
                        struct head_parse *p)
{
    if (n == 0 || memchr(t, ' ', n) != NULL)
        return fail(p, 400, "malformed request line");
    if (t[0] != '/') {
        if (n == 1 && t[0] == '*')
            return fail(p, 400, "asterisk-form request target not supported");
        if (memmem(t, n, "://", 3) != NULL)
            return fail(p, 400, "absolute-form request target not supported");
        return fail(p, 400, "request target must start with '/'");
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_class(t[i], C_TARGET))
            return fail(p, 400, "invalid character in request target");
    }
    req->target = t;
    req->target_len = n;
    const char *q = memchr(t, '?', n);
    req->path = t;
    if (q != NULL) {
        req->path_len = (size_t)(q - t);
        req->query = q + 1;
        req->query_len = n - req->path_len - 1;
    } else {
        req->path_len = n;
    }
    return 0;
}

/* line[0..n) is the request line without its CRLF. Strict single-SP
 * separators: "method SP target SP version". */
static int parse_request_line(const char *line, size_t n, struct httpparse_request *req,
                              struct head_parse *p)
{
    const char *sp1 = memchr(line, ' ', n);
    if (sp1 == NULL || sp1 == line)
        return fail(p, 400, "malformed request line");
    for (const char *m = line; m < sp1; m++) {
        if (!is_class(*m, C_TOKEN))
            return fail(p, 400, "invalid character in request method");
    }
    req->method = line;
    req->method_len = (size_t)(sp1 - line);

    const char *sp2 = memrchr(line, ' ', n);
    if (sp2 == sp1) {
        /* "GET /path" without a version is an HTTP/0.9 simple request. */
        if ((size_t)(sp1 + 1 - line) < n && sp1[1] == '/')
            return fail(p, 505, "HTTP/0.9 request not supported");
        return fail(p, 400, "malformed request line");
    }
    /* The version is checked first so that e.g. the HTTP/2 preface
     * "PRI * HTTP/2.0" gets 505 rather than a complaint about its target. */
    const char *v = sp2 + 1;
    if (parse_version(v, (size_t)(line + n - v), &req->version_minor, p) == -1)
        return -1;
    return parse_target(sp1 + 1, (size_t)(sp2 - sp1 - 1), req, p);
}

/* Content-Length = 1*DIGIT: no sign, no list, no whitespace inside. */
static int parse_content_length(const char *v, size_t n, int64_t *out, struct head_parse *p)
{
    if (n == 0)
        return fail(p, 400, "empty Content-Length header");
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return fail(p, 400, "malformed Content-Length header");
        int d = v[i] - '0';
        if (x > (CONTENT_LENGTH_MAX - d) / 10)
            return fail(p, 400, "Content-Length too large");
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

/* Derives the request's framing and connection properties from one field. */
static int apply_field(const struct httpparse_header *h, struct httpparse_request *req,
                       struct head_parse *p)
{
    const char *v = h->value, *end = h->value + h->value_len, *tok;
    size_t tok_len;

    switch (h->name_len) {
    case 4:
        if (!NAME_IS(h->name, h->name_len, "host"))
            break;
        if (p->seen_host)
            return fail(p, 400, "duplicate Host header");
        for (size_t i = 0; i < h->value_len; i++) {
            if (!is_class(v[i], C_HOST))
                return fail(p, 400, "invalid character in Host header");
        }
        p->seen_host = true;
        req->host = v;
        req->host_len = h->value_len;
        break;
    case 6:
        if (NAME_IS(h->name, h->name_len, "expect") && NAME_IS(v, h->value_len, "100-continue"))
            req->expect_continue = true;
        break;
    case 7:
        if (NAME_IS(h->name, h->name_len, "upgrade") &&
            httpparse_list_has(v, h->value_len, "websocket"))
            p->upgrade_ws = true;
        break;
    case 10:
        if (!NAME_IS(h->name, h->name_len, "connection"))
            break;
        /* Several Connection fields are one list (RFC 9110 §5.3). */
        while (list_next(&v, end, &tok, &tok_len)) {
            if (NAME_IS(tok, tok_len, "close"))
                p->conn_close = true;
            else if (NAME_IS(tok, tok_len, "keep-alive"))
                p->conn_keep_alive = true;
            else if (NAME_IS(tok, tok_len, "upgrade"))
                p->conn_upgrade = true;
        }
        break;
    case 14:
        if (!NAME_IS(h->name, h->name_len, "content-length"))
            break;
        /* Even equal duplicates: two parsers may disagree on which one wins. */
        if (p->seen_cl)
            return fail(p, 400, "duplicate Content-Length header");
        p->seen_cl = true;
        if (parse_content_length(v, h->value_len, &req->content_length, p) == -1)
            return -1;
        break;
    case 17:
        if (!NAME_IS(h->name, h->name_len, "transfer-encoding"))
            break;
        if (p->seen_te)
            return fail(p, 400, "duplicate Transfer-Encoding header");
        p->seen_te = true;
        if (!NAME_IS(v, h->value_len, "chunked"))
            return fail(p, 400, "Transfer-Encoding other than chunked");
        req->chunked = true;
        break;
    default:
        break;
    }
    if (p->seen_cl && p->seen_te)
        return fail(p, 400, "Content-Length and Transfer-Encoding in one request");
    return 0;
}

/* line[0..n) is one field line without its CRLF; it does not start with
 * whitespace (the caller refused obs-fold). Fills *h; for a request (req not
 * NULL) also refuses '_' in the name and derives req's framing from it. */
static int parse_field(const char *line, size_t n, struct httpparse_header *h,
                       struct httpparse_request *req, struct head_parse *p)
{
    size_t i = 0;
    while (i < n && is_class(line[i], C_TOKEN) && (req == NULL || line[i] != '_'))
        i++;
    if (i == n)
        return fail(p, 400, "header line without colon");
    if (line[i] != ':') {
        if (line[i] == '_')
            return fail(p, 400, "header name contains '_'");
        if (is_ows(line[i])) {
            size_t j = i;
            while (j < n && is_ows(line[j]))
                j++;
            if (j < n && line[j] == ':')
                return fail(p, 400, "whitespace between header name and colon");
        }
        return fail(p, 400, "invalid character in header name");
    }
    if (i == 0)
        return fail(p, 400, "empty header name");

    size_t vs = i + 1, ve = n;
    while (vs < ve && is_ows(line[vs]))
        vs++;
    while (ve > vs && is_ows(line[ve - 1]))
        ve--;
    for (size_t k = vs; k < ve; k++) {
        if (!is_class(line[k], C_VALUE))
            return fail(p, 400, "control character in header value");
    }

    h->name = line;
    h->name_len = i;
    h->value = line + vs;
    h->value_len = ve - vs;
    return req != NULL ? apply_field(h, req, p) : 0;
}

static void request_reset(struct httpparse_request *req)
{
    req->method = req->target = req->path = req->query = req->host = NULL;
    req->method_len = req->target_len = req->path_len = req->query_len = req->host_len = 0;
    req->version_minor = 1;
    req->n_headers = 0;
    req->head_len = 0;
    req->chunked = false;
    req->content_length = -1;
    req->keep_alive = false;
    req->expect_continue = false;
    req->upgrade_websocket = false;
}

/* Outcome of one step of the head scan; -1 is an error recorded in p. */
enum scan { SCAN_OK = 0, SCAN_MORE = 1 };

/* Finds the request line after optional empty lines. On SCAN_OK *pos is just
 * past its LF. Scans at most max_line + 2 bytes of it, so an endless line is
 * refused (414) as soon as it is known to be too long. */
static int scan_request_line(const char *buf, size_t len, size_t max_line, size_t *pos,
                             struct httpparse_request *req, struct head_parse *p)
{
    size_t i = *pos;
    /* RFC 9112 §2.2: ignore empty lines before the request line (they count
     * toward the head size, which bounds them). */
    while (i < len && buf[i] == '\r') {
        if (i + 1 >= len)
            return SCAN_MORE;
        if (buf[i + 1] != '\n')
            return fail(p, 400, "CR not followed by LF in request head");
        i += 2;
    }
    if (i >= len)
        return SCAN_MORE;
    if (buf[i] == '\n')
        return fail(p, 400, "bare LF line ending");

    size_t window = MIN(len - i, max_line + 2);
    const char *lf = memchr(buf + i, '\n', window);
    if (lf == NULL) {
        size_t known = window - (buf[i + window - 1] == '\r' ? 1 : 0);
        if (known > max_line)
            return fail(p, 414, "request line too long");
        *pos = i;
        return SCAN_MORE;
    }
    if (lf[-1] != '\r')
        return fail(p, 400, "bare LF line ending");
    if (parse_request_line(buf + i, (size_t)(lf - 1 - (buf + i)), req, p) == -1)
        return -1;
    *pos = (size_t)(lf + 1 - buf);
    return SCAN_OK;
}

/* Parses field lines from *pos up to and including the empty line into
 * fields[*n_fields..max_fields), counting them in *n_fields; req is the
 * request they belong to, NULL for a response. Never looks at or past
 * buf[end] (end is bounded by the head-size limit). */
static int scan_fields(const char *buf, size_t end, size_t max_fields, size_t *pos,
                       struct httpparse_header *fields, size_t *n_fields,
                       struct httpparse_request *req, struct head_parse *p)
{
    size_t i = *pos;
    for (;;) {
        if (i >= end)
            return SCAN_MORE;
        char c = buf[i];
        if (c == '\r') {
            if (i + 1 >= end)
                return SCAN_MORE;
            if (buf[i + 1] != '\n')
                return fail(p, 400,
                            p->response ? "CR not followed by LF in response head"
                                        : "CR not followed by LF in request head");
            *pos = i + 2;
            return SCAN_OK;
        }
        if (c == '\n')
            return fail(p, 400, "bare LF line ending");
        if (is_ows(c))
            return fail(p, 400, "obs-fold (header line starting with whitespace)");
        if (*n_fields >= max_fields)
            return fail(p, 431, "too many header fields");
        const char *lf = memchr(buf + i, '\n', end - i);
        if (lf == NULL)
            return SCAN_MORE;
        if (lf[-1] != '\r')
            return fail(p, 400, "bare LF line ending");
        if (parse_field(buf + i, (size_t)(lf - 1 - (buf + i)), &fields[*n_fields], req, p) == -1)
            return -1;
        (*n_fields)++;
        i = (size_t)(lf + 1 - buf);
    }
}

/* Checks that need the whole head, then the connection defaults. */
static int finish_head(struct httpparse_request *req, struct head_parse *p)
{
    if (req->chunked && req->version_minor == 0)
        return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (!p->seen_host && req->version_minor == 1)
        return fail(p, 400, "missing Host header");
    if (req->version_minor == 1)
        req->keep_alive = !p->conn_close;
    else
        req->keep_alive = p->conn_keep_alive && !p->conn_close;
    req->upgrade_websocket = p->conn_upgrade && p->upgrade_ws;
    return 0;
}

/* The outcome of a head scan as the public status: a head that has not ended
 * within max_head bytes is too large whatever follows. */
static enum httpparse_status head_result(int rc, size_t len, size_t max_head, struct head_parse *p,
                                         int *code, const char **why)
{
    if (rc == SCAN_MORE && len >= max_head)
        rc = fail(p, 431, p->response ? "response head too large" : "request head too large");
    if (rc == SCAN_OK)
        return HTTPPARSE_DONE;
    if (rc == SCAN_MORE)
        return HTTPPARSE_INCOMPLETE;
    if (code != NULL)
        *code = p->status;
    if (why != NULL)
        *why = p->why;
    return HTTPPARSE_ERROR;
}

enum httpparse_status httpparse_request(const char *buf, size_t len,
                                        const struct httpparse_limits *limits,
                                        struct httpparse_request *req, int *http_status,
                                        const char **why)
{
    size_t max_line = DEFAULT_MAX_REQUEST_LINE, max_head = DEFAULT_MAX_HEADER_BYTES;
    size_t max_fields = HTTPPARSE_MAX_HEADERS;
    if (limits != NULL) {
        if (limits->max_request_line > 0)
            max_line = limits->max_request_line;
        if (limits->max_header_bytes > 0)
            max_head = limits->max_header_bytes;
        if (limits->max_headers > 0)
            max_fields = MIN(limits->max_headers, (size_t)HTTPPARSE_MAX_HEADERS);
    }
    struct head_parse p = {0};
    size_t pos = 0;
    int rc;

    request_reset(req);
    rc = scan_request_line(buf, len, max_line, &pos, req, &p);
    if (rc != SCAN_OK)
        goto out;
    if (pos > max_head) {
        rc = fail(&p, 431, "request head too large");
        goto out;
    }
    /* Nothing past the head limit is looked at: a head that has not ended
     * there is too large whatever follows. */
    rc = scan_fields(buf, MIN(len, max_head), max_fields, &pos, req->headers, &req->n_headers, req,
                     &p);
    if (rc != SCAN_OK)
        goto out;
    rc = finish_head(req, &p);
    req->head_len = pos;

out:
    return head_result(rc, len, max_head, &p, http_status, why);
}

/* line[0..n) is the status line without its CRLF:
 * "HTTP/1.x" SP 3DIGIT [ SP reason-phrase ]. */
static int parse_status_line(const char *line, size_t n, struct httpparse_response *resp,
                             struct head_parse *p)
{
    if (n < 8 || memcmp(line, "HTTP/", 5) != 0)
        return fail(p, 400, "malformed status line");
    if (memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1'))
        return fail(p, 400, "HTTP version in status line is not 1.0 or 1.1");
    if (n < 12 || line[8] != ' ')
        return fail(p, 400, "malformed status line");
    int status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9')
            return fail(p, 400, "malformed status code");
        status = status * 10 + (line[i] - '0');
    }
    if (status < 100)
        return fail(p, 400, "status code below 100");
    if (n > 12 && line[12] != ' ')
        return fail(p, 400, "malformed status line");
    size_t rs = n > 12 ? 13 : 12;
    for (size_t i = rs; i < n; i++) {
        if (!is_class(line[i], C_VALUE))
            return fail(p, 400, "control character in reason phrase");
    }
    resp->version_minor = line[7] - '0';
    resp->status = status;
    resp->reason = line + rs;
    resp->reason_len = n - rs;
    return 0;
}

/* Finds and parses the status line in buf[0..end). Unlike a request, no
 * empty line may precede it. Bytes that cannot begin a status line are
 * refused before the line is complete, so an upstream speaking another
 * protocol fails at once instead of at the size limit. */
static int scan_status_line(const char *buf, size_t end, size_t *pos,
                            struct httpparse_response *resp, struct head_parse *p)
{
    static const char prefix[] = "HTTP/";
    if (memcmp(buf, prefix, MIN(end, sizeof(prefix) - 1)) != 0) {
        if (buf[0] == '\n' || (buf[0] == '\r' && end > 1 && buf[1] == '\n'))
            return fail(p, 400, "empty line before the status line");
        return fail(p, 400, "malformed status line");
    }
    const char *lf = memchr(buf, '\n', end);
    if (lf == NULL)
        return SCAN_MORE;
    if (lf[-1] != '\r')
        return fail(p, 400, "bare LF line ending");
    if (parse_status_line(buf, (size_t)(lf - 1 - buf), resp, p) == -1)
        return -1;
    *pos = (size_t)(lf + 1 - buf);
    return SCAN_OK;
}

static void response_reset(struct httpparse_response *resp)
{
    resp->version_minor = 1;
    resp->status = 0;
    resp->reason = NULL;
    resp->reason_len = 0;
    resp->n_headers = 0;
    resp->head_len = 0;
}

enum httpparse_status httpparse_response(const char *buf, size_t len,
                                         const struct httpparse_limits *limits,
                                         struct httpparse_response *resp, int *code,
                                         const char **why)
{
    size_t max_head = DEFAULT_MAX_HEADER_BYTES, max_fields = HTTPPARSE_MAX_HEADERS;
    if (limits != NULL) {
        if (limits->max_header_bytes > 0)
            max_head = limits->max_header_bytes;
        if (limits->max_headers > 0)
            max_fields = MIN(limits->max_headers, (size_t)HTTPPARSE_MAX_HEADERS);
    }
    struct head_parse p = {.response = true};
    /* Nothing past the head limit is looked at. */
    size_t end = MIN(len, max_head), pos = 0;
    int rc = SCAN_MORE;

    response_reset(resp);
    if (end == 0)
        goto out;
    rc = scan_status_line(buf, end, &pos, resp, &p);
    if (rc != SCAN_OK)
        goto out;
    rc = scan_fields(buf, end, max_fields, &pos, resp->headers, &resp->n_headers, NULL, &p);
    if (rc == SCAN_OK)
        resp->head_len = pos;

out:
    return head_result(rc, len, max_head, &p, code, why);
}

/* Chunked decoder. Each state names the next byte expected. */
enum chunk_state {
    CH_SIZE_START = 0, /* first hex digit of a chunk-size */
    CH_SIZE,           /* more hex digits, ';', BWS or CR */
    CH_SIZE_BWS,       /* whitespace after the size: only before ';' */
    CH_EXT,            /* chunk extensions, skipped up to CR */
    CH_SIZE_LF,        /* LF ending the size line */
    CH_DATA,           /* remaining data bytes of the chunk */
    CH_DATA_CR,        /* CR after the data */
    CH_DATA_LF,        /* LF after the data */
    CH_TRAILER_START,  /* start of a trailer field line or the final CR */
    CH_TRAILER_NAME,   /* trailer field name up to ':' */
    CH_TRAILER_VALUE,  /* trailer field value up to CR */
    CH_TRAILER_LF,     /* LF ending a trailer field line */
    CH_FINAL_LF,       /* LF ending the body */
    CH_DONE,
    CH_FAILED,
};

void httpparse_chunked_init(struct httpparse_chunked *st)
{
    st->state = CH_SIZE_START;
    st->remaining = 0;
    st->line_len = 0;
}

/* Control bytes (but HTAB) and DEL are not allowed in extensions/trailers. */
static inline bool is_ctl(char c)
{
    return ((uint8_t)c < 0x20 && c != '\t') || c == 0x7f;
}

enum httpparse_chunked_status httpparse_chunked_feed(struct httpparse_chunked *st, const char *in,
                                                     size_t len, size_t *consumed,
                                                     httpparse_data_cb out, void *arg,
                                                     const char **why)
{
    const char *err = NULL;
    size_t i = 0;
    int hex;

    if (st->state == CH_DONE) {
        *consumed = 0;
        return HTTPPARSE_CHUNKED_DONE;
    }
    if (st->state == CH_FAILED) {
        err = "chunked decoder already failed";
        goto failed;
    }
    while (i < len) {
        char c = in[i];
        switch ((enum chunk_state)st->state) {
        case CH_DATA: {
            size_t n = (size_t)MIN(st->remaining, (uint64_t)(len - i));
            if (out != NULL && out(arg, in + i, n) == -1) {
                err = "chunked body too large";
                goto failed;
            }
            i += n;
            st->remaining -= n;
            if (st->remaining == 0)
                st->state = CH_DATA_CR;
            continue;
        }
        case CH_SIZE_START:
            hex = urlenc_hex(c);
            if (hex < 0) {
                err = c == '\n' ? "bare LF in chunked framing" : "chunk size is not hexadecimal";
                goto failed;
            }
            st->remaining = (uint64_t)hex;
            st->line_len = 1;
            st->state = CH_SIZE;
            break;
        case CH_SIZE:
            hex = urlenc_hex(c);
            if (hex >= 0) {
                if (++st->line_len > CHUNK_SIZE_DIGITS) {
                    err = "chunk size has too many digits";
                    goto failed;
                }
                st->remaining = st->remaining << 4 | (uint64_t)hex;
                if (st->remaining > CHUNK_SIZE_MAX) {
                    err = "chunk size too large";
                    goto failed;
                }
            } else if (c == '\r') {
                st->state = CH_SIZE_LF;
            } else if (c == ';') {
                st->line_len = 0;
                st->state = CH_EXT;
            } else if (is_ows(c)) {
                st->state = CH_SIZE_BWS;
            } else {
                err =
                    c == '\n' ? "bare LF in chunked framing" : "invalid character after chunk size";
                goto failed;
            }
            break;
        case CH_SIZE_BWS:
            if (c == ';') {
                st->line_len = 0;
                st->state = CH_EXT;
            } else if (!is_ows(c)) {
                err = "whitespace after chunk size";
                goto failed;
            }
            break;
        case CH_EXT:
            if (c == '\r') {
                st->state = CH_SIZE_LF;
            } else if (c == '\n') {
                err = "bare LF in chunked framing";
                goto failed;
            } else if (is_ctl(c)) {
                err = "control character in chunk extension";
                goto failed;
            } else if (++st->line_len > CHUNK_EXT_MAX) {
                err = "chunk extension too long";
                goto failed;
            }
            break;
        case CH_SIZE_LF:
            if (c != '\n') {
                err = "CR not followed by LF in chunked framing";
                goto failed;
            }
            st->line_len = 0;
            if (st->remaining > 0) {
                st->state = CH_DATA;
            } else {
                st->state = CH_TRAILER_START; /* remaining now counts trailer bytes */
            }
            break;
        case CH_DATA_CR:
            if (c != '\r') {
                err = c == '\n' ? "bare LF in chunked framing" : "chunk data not followed by CRLF";
                goto failed;
            }
            st->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (c != '\n') {
                err = "CR not followed by LF in chunked framing";
                goto failed;
            }
            st->state = CH_SIZE_START;
            break;
        case CH_TRAILER_START:
            if (c == '\r') {
                st->state = CH_FINAL_LF;
                break;
            }
            if (c == '\n') {
                err = "bare LF in chunked framing";
                goto failed;
            }
            if (!is_class(c, C_TOKEN)) {
                err = is_ows(c) ? "obs-fold in chunked trailer" : "invalid chunked trailer field";
                goto failed;
            }
            st->state = CH_TRAILER_NAME;
            goto count_trailer;
        case CH_TRAILER_NAME:
            if (c == ':') {
                st->state = CH_TRAILER_VALUE;
            } else if (!is_class(c, C_TOKEN)) {
                err = "invalid chunked trailer field";
                goto failed;
            }
            goto count_trailer;
        case CH_TRAILER_VALUE:
            if (c == '\r') {
                st->state = CH_TRAILER_LF;
            } else if (c == '\n') {
                err = "bare LF in chunked framing";
                goto failed;
            } else if (is_ctl(c)) {
                err = "control character in chunked trailer";
                goto failed;
            }
            goto count_trailer;
        case CH_TRAILER_LF:
            if (c != '\n') {
                err = "CR not followed by LF in chunked framing";
                goto failed;
            }
            st->state = CH_TRAILER_START;
            goto count_trailer;
        case CH_FINAL_LF:
            if (c != '\n') {
                err = "CR not followed by LF in chunked framing";
                goto failed;
            }
            st->state = CH_DONE;
            *consumed = i + 1;
            return HTTPPARSE_CHUNKED_DONE;
        case CH_DONE:
        case CH_FAILED:
        default:
            err = "chunked decoder in an invalid state";
            goto failed;
        }
        i++;
        continue;
    count_trailer:
        if (++st->remaining > CHUNK_TRAILER_MAX) {
            err = "chunked trailers too large";
            goto failed;
        }
        i++;
    }
    *consumed = len;
    return HTTPPARSE_CHUNKED_MORE;

failed:
    st->state = CH_FAILED;
    *consumed = i;
    if (why != NULL)
        *why = err;
    return HTTPPARSE_CHUNKED_ERROR;
}
