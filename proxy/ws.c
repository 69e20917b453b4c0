/* ws.c - WebSocket protocol (RFC 6455): handshake checks for both sides,
 * strict UTF-8 validation and an incremental, zero-copy frame parser and
 * writer. No I/O, no allocation (see ws.h for the rules enforced). */
#include "common.h"

#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "httpparse.h"
#include "ws.h"

/* RFC 6455 §1.3: appended to the key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Parser states. */
enum {
    ST_HEADER = 0, /* gathering the 2-14 header bytes */
    ST_PAYLOAD,    /* inside a frame's payload */
    ST_CLOSED,     /* a close frame was delivered */
    ST_ERROR,
};

/* ---- small helpers ---- */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool name_is(const struct httpparse_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

static bool is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

static bool is_control_opcode(int op)
{
    return (op & 0x8) != 0;
}

static bool is_known_opcode(int op)
{
    return op == WS_OP_CONTINUATION || op == WS_OP_TEXT || op == WS_OP_BINARY ||
           op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG;
}

/* ---- server handshake ---- */

int ws_check_upgrade(const struct httpparse_request *req, const char **why)
{
    if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0) {
        *why = "a WebSocket upgrade must use GET";
        return 400;
    }
    if (req->version_minor != 1) {
        *why = "a WebSocket upgrade needs HTTP/1.1";
        return 400;
    }
    /* Several Connection (or Upgrade) fields form one list, so look at all. */
    bool conn_upgrade = false, upgrade_ws = false;
    const struct httpparse_header *version = NULL, *key = NULL;
    int n_version = 0, n_key = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct httpparse_header *h = &req->headers[i];
        if (name_is(h, "connection")) {
            conn_upgrade = conn_upgrade || httpparse_list_has(h->value, h->value_len, "upgrade");
        } else if (name_is(h, "upgrade")) {
            upgrade_ws = upgrade_ws || httpparse_list_has(h->value, h->value_len, "websocket");
        } else if (name_is(h, "sec-websocket-version")) {
            version = h;
            n_version++;
        } else if (name_is(h, "sec-websocket-key")) {
            key = h;
            n_key++;
        }
    }
    if (!conn_upgrade) {
        *why = "a WebSocket upgrade needs Connection: Upgrade";
        return 400;
    }
    if (!upgrade_ws) {
        *why = "a WebSocket upgrade needs Upgrade: websocket";
        return 400;
    }
    if (n_version != 1 || version->value_len != 2 || memcmp(version->value, "13", 2) != 0) {
        *why = "unsupported Sec-WebSocket-Version (only 13 is spoken)";
        return 426;
    }
    if (n_key != 1) {
        *why = n_key == 0 ? "missing Sec-WebSocket-Key" : "duplicate Sec-WebSocket-Key";
        return 400;
    }
    /* 16 bytes encode to 22 characters and "==" padding. */
    bool key_ok = key->value_len == WS_KEY_LEN && key->value[22] == '=' && key->value[23] == '=';
    for (size_t i = 0; key_ok && i < 22; i++)
        key_ok = is_base64_char(key->value[i]);
    if (!key_ok) {
        *why = "Sec-WebSocket-Key is not base64 of 16 bytes";
        return 400;
    }
    *why = NULL;
    return 0;
}

int ws_accept_key(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1])
{
    int rc = -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        goto failed;
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 || EVP_DigestUpdate(ctx, key, len) != 1 ||
        EVP_DigestUpdate(ctx, ws_guid, sizeof(ws_guid) - 1) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len != 20)
        goto failed;
    /* EVP_EncodeBlock NUL-terminates: 28 characters + NUL. */
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != WS_ACCEPT_LEN)
        goto failed;
    rc = 0;
failed:
    EVP_MD_CTX_free(ctx);
    return rc;
}

void ws_list_init(struct ws_list *it, const char *value, size_t len)
{
    it->cur = value;
    it->end = value == NULL ? NULL : value + len;
}

bool ws_list_next(struct ws_list *it, const char **item, size_t *item_len)
{
    while (it->cur != NULL && it->cur < it->end) {
        const char *start = it->cur;
        const char *comma = memchr(start, ',', (size_t)(it->end - start));
        const char *stop = comma != NULL ? comma : it->end;
        it->cur = comma != NULL ? comma + 1 : it->end;
        while (start < stop && is_ows(*start))
            start++;
        while (stop > start && is_ows(stop[-1]))
            stop--;
        if (stop > start) {
            *item = start;
            *item_len = (size_t)(stop - start);
            return true;
        }
    }
    return false;
}

bool ws_token_valid(const char *s, size_t n)
{
    return httpparse_token_valid(s, n);
}

/* ---- client handshake ---- */

int ws_client_key(char out[WS_KEY_LEN + 1])
{
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return -1;
    if (EVP_EncodeBlock((unsigned char *)out, nonce, sizeof(nonce)) != WS_KEY_LEN)
        return -1;
    return 0;
}

bool ws_check_accept(const char *sent_key, const char *accept_value, size_t len)
{
    char want[WS_ACCEPT_LEN + 1];
    if (sent_key == NULL || accept_value == NULL)
        return false;
    while (len > 0 && is_ows(accept_value[0]))
        accept_value++, len--;
    while (len > 0 && is_ows(accept_value[len - 1]))
        len--;
    if (len != WS_ACCEPT_LEN)
        return false;
    if (ws_accept_key(sent_key, strlen(sent_key), want) == -1)
        return false;
    return memcmp(want, accept_value, WS_ACCEPT_LEN) == 0;
}

/* ---- UTF-8 ---- */

#define UTF8_FAILED 0xff

void ws_utf8_init(struct ws_utf8 *u)
{
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xbf;
}

/* The lead byte decides how many continuation bytes follow and, for the
 * first of them, the range that excludes overlongs (E0, F0), surrogates (ED)
 * and code points past U+10FFFF (F4) - RFC 3629 §4. */
static bool utf8_lead(struct ws_utf8 *u, uint8_t b)
{
    u->lo = 0x80;
    u->hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
        u->need = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
        u->need = 2;
        if (b == 0xe0)
            u->lo = 0xa0;
        else if (b == 0xed)
            u->hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        u->need = 3;
        if (b == 0xf0)
            u->lo = 0x90;
        else if (b == 0xf4)
            u->hi = 0x8f;
    } else {
        return false; /* 80-BF stray continuation, C0/C1 overlong, F5-FF */
    }
    return true;
}

size_t ws_utf8_feed(struct ws_utf8 *u, const uint8_t *s, size_t n)
{
    if (u->need == UTF8_FAILED)
        return 0;
    size_t i = 0;
    while (i < n) {
        if (u->need == 0) {
            /* Text is mostly ASCII: skip it eight bytes at a time. */
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if ((w & 0x8080808080808080ull) != 0)
                    break;
                i += 8;
            }
            if (i == n)
                break;
            uint8_t b = s[i];
            if (b < 0x80) {
                i++;
                continue;
            }
            if (!utf8_lead(u, b))
                goto failed;
            i++;
            continue;
        }
        uint8_t b = s[i];
        if (b < u->lo || b > u->hi)
            goto failed;
        u->need--;
        u->lo = 0x80;
        u->hi = 0xbf;
        i++;
    }
    return n;
failed:
    u->need = UTF8_FAILED;
    return i;
}

bool ws_utf8_complete(const struct ws_utf8 *u)
{
    return u->need == 0;
}

/* ---- frame writer ---- */

size_t ws_frame_header(uint8_t out[WS_FRAME_HEADER_MAX], int opcode, bool fin, uint64_t len,
                       bool mask, const uint8_t key[4])
{
    if (!is_known_opcode(opcode) || len >= (1ull << 63))
        return 0;
    if (is_control_opcode(opcode) && (!fin || len > WS_CONTROL_MAX))
        return 0;
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    uint8_t mbit = mask ? 0x80 : 0;
    if (len < 126) {
        out[n++] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        out[n++] = (uint8_t)(mbit | 126);
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = (uint8_t)(mbit | 127);
        for (int shift = 56; shift >= 0; shift -= 8)
            out[n++] = (uint8_t)(len >> shift);
    }
    if (mask) {
        memcpy(out + n, key, 4);
        n += 4;
    }
    return n;
}

void ws_mask(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset)
{
    /* The key rotated so that k[0] applies to data[0]. */
    uint8_t k[8];
    for (int j = 0; j < 8; j++)
        k[j] = key[(offset + (uint64_t)j) & 3];
    size_t i = 0;
    if (len >= 8) {
        uint64_t kw;
        memcpy(&kw, k, 8);
        for (; len - i >= 8; i += 8) {
            uint64_t w;
            memcpy(&w, data + i, 8);
            w ^= kw;
            memcpy(data + i, &w, 8);
        }
    }
    for (; i < len; i++)
        data[i] ^= k[i & 7];
}

int ws_new_mask_key(uint8_t key[4])
{
    return RAND_bytes(key, 4) == 1 ? 0 : -1;
}

size_t ws_close_payload(uint8_t out[WS_CONTROL_MAX], int code, const char *reason)
{
    if (code == 0 || code == WS_CLOSE_NO_STATUS)
        return 0;
    out[0] = (uint8_t)((unsigned)code >> 8);
    out[1] = (uint8_t)code;
    size_t n = reason != NULL ? strlen(reason) : 0;
    if (n > WS_CLOSE_REASON_MAX) {
        /* Cut before a continuation byte would split a character. */
        n = WS_CLOSE_REASON_MAX;
        while (n > 0 && ((uint8_t)reason[n] & 0xc0) == 0x80)
            n--;
    }
    if (n > 0)
        memcpy(out + 2, reason, n);
    return 2 + n;
}

bool ws_close_code_valid(int code)
{
    if (code >= 3000 && code <= 4999)
        return true;
    return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

/* ---- frame parser ---- */

void ws_parser_init(struct ws_parser *p, const struct ws_parser_options *opt, ws_event_cb cb,
                    void *arg)
{
    memset(p, 0, sizeof(*p));
    p->opt = *opt;
    p->cb = cb;
    p->arg = arg;
    p->state = ST_HEADER;
    p->hdr_need = 2;
    ws_utf8_init(&p->utf8);
}

int ws_parser_error(const struct ws_parser *p, const char **why)
{
    if (why != NULL)
        *why = p->error_why;
    return p->error_code;
}

static enum ws_status fail(struct ws_parser *p, int code, const char *why)
{
    p->state = ST_ERROR;
    p->error_code = code;
    p->error_why = why;
    return WS_ERROR;
}

/* Checks header bytes as soon as they arrive, in wire order, so the first
 * violation is reported whatever the split. WS_MORE means go on. */
static enum ws_status header_byte(struct ws_parser *p)
{
    uint8_t b = p->hdr[p->hdr_len - 1];
    if (p->hdr_len == 1) {
        p->fin = (b & 0x80) != 0;
        p->opcode = b & 0x0f;
        if ((b & 0x70) != 0)
            return fail(p, WS_CLOSE_PROTOCOL, "reserved bits set (no extension negotiated)");
        if (!is_known_opcode(p->opcode))
            return fail(p, WS_CLOSE_PROTOCOL, "unknown opcode");
        if (is_control_opcode(p->opcode)) {
            if (!p->fin)
                return fail(p, WS_CLOSE_PROTOCOL, "fragmented control frame");
        } else if (p->opcode == WS_OP_CONTINUATION) {
            if (!p->in_message)
                return fail(p, WS_CLOSE_PROTOCOL, "continuation frame without a message");
        } else if (p->in_message) {
            return fail(p, WS_CLOSE_PROTOCOL, "new message inside a fragmented message");
        }
    } else if (p->hdr_len == 2) {
        p->masked = (b & 0x80) != 0;
        uint8_t len7 = b & 0x7f;
        if (p->opt.role == WS_ROLE_SERVER && !p->masked)
            return fail(p, WS_CLOSE_PROTOCOL, "client frame not masked");
        if (p->opt.role == WS_ROLE_CLIENT && p->masked)
            return fail(p, WS_CLOSE_PROTOCOL, "server frame masked");
        if (is_control_opcode(p->opcode) && len7 > WS_CONTROL_MAX)
            return fail(p, WS_CLOSE_PROTOCOL, "control frame longer than 125 bytes");
        p->hdr_need = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (p->masked ? 4 : 0));
    } else if (p->hdr_len == 3 && (p->hdr[1] & 0x7f) == 127 && (b & 0x80) != 0) {
        return fail(p, WS_CLOSE_PROTOCOL, "64-bit frame length with the top bit set");
    }
    return WS_MORE;
}

/* The whole header is in p->hdr: decode the length and check the limits. */
static enum ws_status header_done(struct ws_parser *p)
{
    uint8_t len7 = p->hdr[1] & 0x7f;
    size_t n = 2;
    uint64_t len = len7;
    if (len7 == 126) {
        len = ((uint64_t)p->hdr[2] << 8) | p->hdr[3];
        n = 4;
        if (len < 126)
            return fail(p, WS_CLOSE_PROTOCOL, "frame length not minimally encoded");
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | p->hdr[2 + i];
        n = 10;
        if (len <= 0xffff)
            return fail(p, WS_CLOSE_PROTOCOL, "frame length not minimally encoded");
    }
    if (p->masked)
        memcpy(p->key, p->hdr + n, 4);
    p->frame_len = len;
    p->frame_off = 0;
    if (!is_control_opcode(p->opcode)) {
        if (p->opcode != WS_OP_CONTINUATION) {
            p->in_message = true;
            p->msg_opcode = p->opcode;
            p->msg_len = 0;
            p->msg_off = 0;
            p->check_utf8 = p->opt.validate_utf8 && p->opcode == WS_OP_TEXT;
            ws_utf8_init(&p->utf8);
        }
        uint64_t max = p->opt.max_message;
        if (max != 0 && (p->msg_len > max || len > max - p->msg_len))
            return fail(p, WS_CLOSE_TOO_BIG, "message too big");
        p->msg_len += len;
    }
    p->state = ST_PAYLOAD;
    return WS_MORE;
}

static void next_frame(struct ws_parser *p)
{
    p->state = ST_HEADER;
    p->hdr_len = 0;
    p->hdr_need = 2;
}

/* Delivers buf[0..n) of the current data frame (n == 0 only for a
 * zero-length frame). The bytes are unmasked in place first. */
static enum ws_status data_chunk(struct ws_parser *p, uint8_t *buf, size_t n)
{
    if (p->masked)
        ws_mask(buf, n, p->key, p->frame_off);
    struct ws_event ev = {
        .type = WS_EVENT_DATA,
        .data = buf,
        .len = n,
        .opcode = p->msg_opcode,
        .frame_opcode = p->opcode,
        .fin = p->fin,
        .frame_len = p->frame_len,
        .frame_off = p->frame_off,
        .message_off = p->msg_off,
    };
    if (p->frame_off == 0) {
        ev.flags |= WS_CHUNK_FRAME_START;
        if (p->opcode != WS_OP_CONTINUATION)
            ev.flags |= WS_CHUNK_MSG_START;
    }
    bool frame_end = p->frame_off + n == p->frame_len;
    if (p->check_utf8) {
        size_t good = ws_utf8_feed(&p->utf8, buf, n);
        if (good < n || (frame_end && p->fin && !ws_utf8_complete(&p->utf8))) {
            /* The bytes before the offending one go out (without the END
             * flags) so the result does not depend on how input was split;
             * the caller closes with 1007 either way. */
            if (good > 0) {
                ev.len = good;
                (void)p->cb(p->arg, &ev);
            }
            return fail(p, WS_CLOSE_INVALID_DATA, "invalid UTF-8 in a text message");
        }
    }
    p->frame_off += n;
    p->msg_off += n;
    if (frame_end) {
        ev.flags |= WS_CHUNK_FRAME_END;
        if (p->fin) {
            ev.flags |= WS_CHUNK_MSG_END;
            p->in_message = false;
            p->check_utf8 = false;
        }
        next_frame(p);
    }
    return p->cb(p->arg, &ev) != 0 ? WS_STOPPED : WS_MORE;
}

/* The whole control frame is in p->ctl (unmasked): deliver it. */
static enum ws_status control_done(struct ws_parser *p)
{
    size_t n = (size_t)p->frame_len;
    struct ws_event ev = {.data = p->ctl, .len = n};
    int op = p->opcode;
    next_frame(p);
    if (op == WS_OP_PING || op == WS_OP_PONG) {
        ev.type = op == WS_OP_PING ? WS_EVENT_PING : WS_EVENT_PONG;
        return p->cb(p->arg, &ev) != 0 ? WS_STOPPED : WS_MORE;
    }
    ev.type = WS_EVENT_CLOSE;
    ev.close_code = WS_CLOSE_NO_STATUS;
    if (n == 1)
        return fail(p, WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload");
    if (n >= 2) {
        ev.close_code = (p->ctl[0] << 8) | p->ctl[1];
        if (!ws_close_code_valid(ev.close_code))
            return fail(p, WS_CLOSE_PROTOCOL, "invalid close code");
        struct ws_utf8 u;
        ws_utf8_init(&u);
        if (ws_utf8_feed(&u, p->ctl + 2, n - 2) != n - 2 || !ws_utf8_complete(&u))
            return fail(p, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
        ev.reason = (const char *)p->ctl + 2;
        ev.reason_len = n - 2;
    }
    p->state = ST_CLOSED;
    (void)p->cb(p->arg, &ev);
    return WS_CLOSED;
}

enum ws_status ws_parser_feed(struct ws_parser *p, uint8_t *in, size_t len, size_t *consumed)
{
    size_t at = 0;
    enum ws_status rc = WS_MORE;
    while (rc == WS_MORE) {
        if (p->state == ST_ERROR) {
            rc = WS_ERROR;
        } else if (p->state == ST_CLOSED) {
            rc = WS_CLOSED;
        } else if (p->state == ST_HEADER) {
            if (at == len)
                break;
            while (rc == WS_MORE && at < len && p->hdr_len < p->hdr_need) {
                p->hdr[p->hdr_len++] = in[at++];
                rc = header_byte(p);
            }
            if (rc == WS_MORE && p->hdr_len == p->hdr_need)
                rc = header_done(p);
        } else if (is_control_opcode(p->opcode)) {
            size_t n = (size_t)MIN(p->frame_len - p->frame_off, (uint64_t)(len - at));
            if (n > 0) {
                memcpy(p->ctl + p->frame_off, in + at, n);
                if (p->masked)
                    ws_mask(p->ctl + p->frame_off, n, p->key, p->frame_off);
                p->frame_off += n;
                at += n;
            }
            if (p->frame_off < p->frame_len)
                break;
            rc = control_done(p);
        } else {
            uint64_t left = p->frame_len - p->frame_off;
            /* A zero-length frame is delivered as soon as its header is in;
             * otherwise wait for payload bytes. */
            if (left > 0 && at == len)
                break;
            size_t n = (size_t)MIN(left, (uint64_t)(len - at));
            rc = data_chunk(p, in + at, n);
            at += n;
        }
    }
    /* On error the position is not meaningful; report what was scanned. */
    *consumed = at;
    return rc;
}
