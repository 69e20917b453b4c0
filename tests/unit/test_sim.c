/* test_sim.c - the simulator's core (sim.c, sim_ws.c) over real sockets,
 * with a provider module of the test's own: routes and "{id}" segments, a
 * regional host's region, the key check, injected 429 / 500 / reset (a
 * whole reply cut halfway, a token stream cut after half its tokens),
 * ttfb_ms, paced tokens, WebSocket upgrades (101, whole messages, ping,
 * close, drop, a socket's timer), clients that leave, and a stop with
 * replies in flight; a route table merged through more_routes, audio paced
 * at audio_rtf on a stream and on a socket (sim_speaker: pacing, ttfb per
 * utterance, cancel, the reset fault's drop).
 *
 * The test brings its own registry: this file defines every symbol of
 * sim/sim_registry.c, so the library's copy (with the real modules) is not
 * linked into this executable. */
#include "common.h"

#include "config.h"
#include "sim.h"
#include "sim_internal.h"
#include "sim_speaker.h"
#include "ws.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/thread.h>

/* ---- the test's provider ------------------------------------------------- */

static atomic_int ws_closed_code;
static atomic_int ws_closes;

static bool authorized(struct sim_request *r)
{
    return sim_has_key(r, "x-test-key", NULL);
}

static void error(struct sim_request *r, enum sim_error what, const char *detail)
{
    static const int status[] = {
        [SIM_ERR_BAD_REQUEST] = 400, [SIM_ERR_UNAUTHORIZED] = 401, [SIM_ERR_NOT_FOUND] = 404,
        [SIM_ERR_RATE_LIMIT] = 429,  [SIM_ERR_SERVER] = 500,
    };
    char body[256];
    snprintf(body, sizeof(body), "error %d %s", status[what], detail ? detail : "");
    sim_reply(r, status[what], "text/plain", body, strlen(body), NULL, 0);
}

static void item(struct sim_request *r)
{
    sim_reply(r, 200, "text/plain", sim_param(r), strlen(sim_param(r)), NULL, 0);
}

static void echo(struct sim_request *r)
{
    size_t len;
    const char *b = sim_body(r, &len);
    sim_reply(r, 200, "application/octet-stream", b, len, NULL, 0);
}

static void token(struct sim_request *r, size_t i)
{
    sim_stream_write(r, sim_word(i), strlen(sim_word(i)));
}

static void done(struct sim_request *r)
{
    sim_stream_write(r, "|done", 5);
}

static const struct sim_token_ops token_ops = {token, done};

/* POST /tokens with the count as its body. */
static void tokens(struct sim_request *r)
{
    size_t n = (size_t)atoi(sim_body(r, NULL));
    sim_stream_begin(r, 200, "text/plain", NULL, 0);
    sim_stream_tokens(r, n, &token_ops);
}

/* The tag a pending sim_ws_after sends (the sim's thread only). */
static char later_tag[16];

static void later(void *arg)
{
    sim_ws_send(arg, true, later_tag, strlen(later_tag));
}

static void ws_message(struct sim_ws *ws, bool text, const uint8_t *data, size_t len)
{
    if (sim_ws_arg(ws) != NULL) { /* /ws/drop: a last message, then gone */
        sim_ws_send(ws, true, "last", 4);
        sim_ws_drop(ws);
        return;
    }
    /* "after <ms> <tag>": sends <tag> in ms (replacing a pending one). */
    int ms;
    char tag[16];
    char msg[64];
    snprintf(msg, sizeof(msg), "%.*s", (int)MIN(len, sizeof(msg) - 1), (const char *)data);
    if (sscanf(msg, "after %d %15s", &ms, tag) == 2) {
        snprintf(later_tag, sizeof(later_tag), "%s", tag);
        /* "after 0 -": cancels the pending one. */
        sim_ws_after(ws, ms, strcmp(tag, "-") == 0 ? NULL : later, ws);
        return;
    }
    if (len == 3 && memcmp(data, "bye", 3) == 0) {
        sim_ws_close(ws, 4000, "asked to");
        return;
    }
    sim_ws_send(ws, text, data, len);
}

static void ws_close(struct sim_ws *ws, int code)
{
    (void)ws;
    atomic_store(&ws_closed_code, code);
    atomic_fetch_add(&ws_closes, 1);
}

static const struct sim_ws_ops ws_ops = {ws_message, ws_close};

static void ws(struct sim_request *r)
{
    sim_ws_accept(r, "chat", &ws_ops, NULL);
}

static void ws_drop(struct sim_request *r)
{
    sim_ws_accept(r, NULL, &ws_ops, (void *)1);
}

/* POST /audio with the number of 40 ms pieces as its body: "[i]" each. */
static void audio_piece(struct sim_request *r, size_t i)
{
    char b[16];
    snprintf(b, sizeof(b), "[%zu]", i);
    sim_stream_write(r, b, strlen(b));
}

static const struct sim_token_ops audio_ops = {audio_piece, done};

static void audio(struct sim_request *r)
{
    size_t n = (size_t)atoi(sim_body(r, NULL));
    sim_stream_begin(r, 200, "text/plain", NULL, 0);
    sim_stream_audio(r, n, 40, &audio_ops);
}

static const struct sim_route more[] = {{"POST", "/audio", audio, NULL}};
static const struct sim_route_table more_table = {more, ARRAY_SIZE(more)};
static const struct sim_route_table *const more_routes[] = {&more_table, NULL};

/* /ws/speak: a message "<n>" queues n pieces of 40 ms ("p<i>" each, then
 * "done"), "c" cancels everything queued. */
struct speak {
    struct sim_speaker *sp;
};

static void speak_piece(struct sim_ws *ws, void *u, size_t i)
{
    char b[16];
    (void)u;
    snprintf(b, sizeof(b), "p%zu", i);
    sim_ws_send(ws, true, b, strlen(b));
}

static void speak_done(struct sim_ws *ws, void *u)
{
    (void)u;
    sim_ws_send(ws, true, "done", 4);
}

static const struct sim_speaker_ops speak_ops = {speak_piece, speak_done, NULL};

static void speak_message(struct sim_ws *ws, bool text, const uint8_t *data, size_t len)
{
    struct speak *s = sim_ws_arg(ws);
    char b[16];
    (void)text;
    snprintf(b, sizeof(b), "%.*s", (int)MIN(len, sizeof(b) - 1), (const char *)data);
    if (strcmp(b, "c") == 0) {
        char n[16];
        snprintf(n, sizeof(n), "cancelled %zu", sim_speaker_cancel(s->sp, NULL, NULL));
        sim_ws_send(ws, true, n, strlen(n));
        return;
    }
    assert_int_equal(sim_speaker_say(s->sp, (size_t)atoi(b), 40, &speak_ops, NULL), 0);
}

static void speak_close(struct sim_ws *ws, int code)
{
    struct speak *s = sim_ws_arg(ws);
    (void)code;
    sim_speaker_free(s->sp);
    free(s);
}

static const struct sim_ws_ops speak_ws_ops = {speak_message, speak_close};

static void speak(struct sim_request *r)
{
    struct speak *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    struct sim_ws *ws = sim_ws_accept(r, NULL, &speak_ws_ops, s);
    assert_non_null(ws);
    assert_non_null(s->sp = sim_speaker_new(ws));
}

static const struct sim_route routes[] = {
    {"GET", "/items/{id}", item, NULL}, {"POST", "/echo", echo, NULL},
    {"POST", "/tokens", tokens, NULL},  {"GET", "/ws", NULL, ws},
    {"GET", "/ws/drop", NULL, ws_drop}, {"GET", "/ws/speak", NULL, speak},
};

static const struct sim_provider test_provider = {
    .upstream = "cartesia",
    .routes = routes,
    .n_routes = ARRAY_SIZE(routes),
    .more_routes = more_routes,
    .authorized = authorized,
    .error = error,
    .request_id_header = "x-test-id",
    .request_id_prefix = "tst_",
};

static void region(struct sim_request *r)
{
    sim_reply(r, 200, "text/plain", sim_region(r), strlen(sim_region(r)), NULL, 0);
}

static const struct sim_route regional_routes[] = {
    {"GET", "/cognitiveservices/voices/list", region, NULL},
};

static const struct sim_provider regional_provider = {
    .upstream = "azure_speech_tts",
    .routes = regional_routes,
    .n_routes = ARRAY_SIZE(regional_routes),
    .authorized = authorized,
    .error = error,
    .request_id_header = "x-test-id",
    .request_id_prefix = "tst_",
};

static const struct sim_provider *const test_modules[] = {&test_provider, &regional_provider};

const struct sim_provider *sim_registry_find(const char *upstream)
{
    for (size_t i = 0; i < ARRAY_SIZE(test_modules); i++)
        if (strcmp(test_modules[i]->upstream, upstream) == 0)
            return test_modules[i];
    return NULL;
}

size_t sim_registry_count(void)
{
    return ARRAY_SIZE(test_modules);
}

const struct sim_provider *sim_registry_at(size_t i)
{
    return i < ARRAY_SIZE(test_modules) ? test_modules[i] : NULL;
}

bool sim_supports(const char *upstream)
{
    return sim_registry_find(upstream) != NULL;
}

const char *sim_supported(void)
{
    return "cartesia, azure_speech_tts";
}

/* ---- harness --------------------------------------------------------------- */

struct harness {
    struct config *cfg;
    struct sim *sim;
    int port, region_port;
};

/* A simulator for the test provider (and the regional one) with the
 * "simulate" section json. */
static void start(struct harness *h, const char *json)
{
    char *err = NULL;
    memset(h, 0, sizeof(*h));
    h->cfg = config_parse("{}", &err);
    assert_non_null(h->cfg);
    json_t *obj = json_loads(json, 0, NULL);
    assert_non_null(obj);
    struct config_json p = {0};
    assert_int_equal(config_simulate_parse(&p, obj, &h->cfg->simulate), 0);
    json_decref(obj);
    struct sim_listen ls[] = {{"cartesia", NULL}, {"azure_speech_tts", NULL}};
    char msg[256];
    h->sim = sim_start(&h->cfg->simulate, &h->cfg->limits, ls, 2, msg, sizeof(msg));
    if (h->sim == NULL)
        fail_msg("sim_start: %s", msg);
    assert_int_equal(sscanf(sim_url(h->sim, 0), "http://127.0.0.1:%d", &h->port), 1);
    assert_int_equal(sscanf(sim_url(h->sim, 1), "http://127.0.0.1:%d/{region}", &h->region_port),
                     1);
    assert_non_null(strstr(sim_url(h->sim, 1), "/{region}"));
}

static void stop(struct harness *h)
{
    sim_stop(h->sim);
    config_free(h->cfg);
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* Reads until EOF (or want bytes, when want > 0), 5 s at most. */
static size_t read_some(int fd, char *buf, size_t size, size_t want)
{
    size_t got = 0;
    int64_t deadline = mono_ms() + 5000;
    while (got + 1 < size && (want == 0 || got < want)) {
        struct pollfd pf = {fd, POLLIN, 0};
        int left = (int)(deadline - mono_ms());
        if (left <= 0)
            fail_msg("no EOF within 5 s (%zu bytes read: %.*s)", got, (int)got, buf);
        if (poll(&pf, 1, left) <= 0)
            continue;
        ssize_t n = recv(fd, buf + got, size - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    return got;
}

/* One request with Connection: close; the whole answer in buf. */
static size_t request(int port, const char *method, const char *path, const char *headers,
                      const char *body, char *buf, size_t size)
{
    int fd = connect_to(port);
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%sContent-Length: %zu\r\n"
                     "\r\n%s",
                     method, path, headers, body ? strlen(body) : 0, body ? body : "");
    send_all(fd, req, (size_t)n);
    size_t got = read_some(fd, buf, size, 0);
    close(fd);
    return got;
}

static int status_of(const char *resp)
{
    int s = 0;
    assert_int_equal(sscanf(resp, "HTTP/1.1 %d", &s), 1);
    return s;
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    return b + 4;
}

#define KEY "x-test-key: k\r\n"

static int setup(void **state)
{
    (void)state;
    return evthread_use_pthreads();
}

/* ---- tests ----------------------------------------------------------------- */

static void test_routes_and_keys(void **state)
{
    (void)state;
    struct harness h;
    char buf[8192];
    start(&h, "{}");
    request(h.port, "GET", "/items/abc", KEY, NULL, buf, sizeof(buf));
    assert_int_equal(status_of(buf), 200);
    assert_string_equal(body_of(buf), "abc");
    assert_non_null(strstr(buf, "\r\nx-test-id: tst_"));
    request(h.port, "GET", "/items/abc?q=1", KEY, NULL, buf, sizeof(buf));
    assert_string_equal(body_of(buf), "abc");
    /* "{id}" is one non-empty segment. */
    request(h.port, "GET", "/items/", KEY, NULL, buf, sizeof(buf));
    assert_int_equal(status_of(buf), 404);
    request(h.port, "GET", "/items/a/b", KEY, NULL, buf, sizeof(buf));
    assert_int_equal(status_of(buf), 404);
    /* Another method, an unknown path: the provider's 404, naming it. */
    request(h.port, "POST", "/items/abc", KEY, "", buf, sizeof(buf));
    assert_int_equal(status_of(buf), 404);
    assert_string_equal(body_of(buf), "error 404 POST /items/abc");
    request(h.port, "GET", "/ws", KEY, NULL, buf, sizeof(buf)); /* not an upgrade */
    assert_int_equal(status_of(buf), 404);
    /* No key, an empty key: the provider's 401. */
    request(h.port, "GET", "/items/abc", "", NULL, buf, sizeof(buf));
    assert_int_equal(status_of(buf), 401);
    request(h.port, "GET", "/items/abc", "x-test-key: \r\n", NULL, buf, sizeof(buf));
    assert_int_equal(status_of(buf), 401);
    request(h.port, "POST", "/echo", KEY, "hello body", buf, sizeof(buf));
    assert_string_equal(body_of(buf), "hello body");
    /* A regional host: the first segment is the region. */
    request(h.region_port, "GET", "/westeurope/cognitiveservices/voices/list", KEY, NULL, buf,
            sizeof(buf));
    assert_int_equal(status_of(buf), 200);
    assert_string_equal(body_of(buf), "westeurope");
    request(h.region_port, "GET", "/cognitiveservices/voices/list", KEY, NULL, buf, sizeof(buf));
    assert_int_equal(status_of(buf), 404);
    stop(&h);
}

static void test_injected_errors(void **state)
{
    (void)state;
    struct harness h;
    char buf[8192];
    start(&h, "{\"errors\": {\"429\": 1}}");
    request(h.port, "GET", "/items/abc", KEY, NULL, buf, sizeof(buf));
    assert_int_equal(status_of(buf), 429);
    /* The key comes first: no key is a 401 whatever the rates. */
    request(h.port, "GET", "/items/abc", "", NULL, buf, sizeof(buf));
    assert_int_equal(status_of(buf), 401);
    stop(&h);
    start(&h, "{\"errors\": {\"500\": 1}}");
    request(h.port, "GET", "/items/abc", KEY, NULL, buf, sizeof(buf));
    assert_int_equal(status_of(buf), 500);
    stop(&h);
}

/* reset: a whole reply announces its length and stops halfway; a token
 * stream stops after half its tokens, without the last chunk. */
static void test_reset(void **state)
{
    (void)state;
    struct harness h;
    char buf[8192], body[1001];
    memset(body, 'x', 1000);
    body[1000] = '\0';
    start(&h, "{\"errors\": {\"reset\": 1}}");
    request(h.port, "POST", "/echo", KEY, body, buf, sizeof(buf));
    assert_int_equal(status_of(buf), 200);
    assert_non_null(strstr(buf, "Content-Length: 1000\r\n"));
    assert_int_equal(strlen(body_of(buf)), 500);
    request(h.port, "POST", "/tokens", KEY, "10", buf, sizeof(buf));
    assert_int_equal(status_of(buf), 200);
    assert_non_null(strstr(buf, "Transfer-Encoding: chunked"));
    assert_non_null(strstr(body_of(buf), sim_word(4)));
    assert_null(strstr(body_of(buf), sim_word(5)));
    assert_null(strstr(body_of(buf), "|done"));
    assert_null(strstr(body_of(buf), "\r\n0\r\n\r\n"));
    stop(&h);
}

static void test_ttfb_and_paced_tokens(void **state)
{
    (void)state;
    struct harness h;
    char buf[16384];
    start(&h, "{\"ttfb_ms\": 120, \"tokens_per_s\": 200}");
    int64_t t0 = mono_ms();
    request(h.port, "GET", "/items/x", KEY, NULL, buf, sizeof(buf));
    assert_true(mono_ms() - t0 >= 120);
    /* 21 tokens at 200/s: the last one 100 ms after the first. */
    t0 = mono_ms();
    request(h.port, "POST", "/tokens", KEY, "21", buf, sizeof(buf));
    int64_t took = mono_ms() - t0;
    assert_true(took >= 220);
    char *text = sim_text(21);
    char want[1024];
    snprintf(want, sizeof(want), "%s|done", text);
    free(text);
    /* De-chunk: the pieces in order. */
    char joined[4096] = "";
    const char *p = body_of(buf);
    for (;;) {
        unsigned len = 0;
        assert_int_equal(sscanf(p, "%x", &len), 1);
        p = strstr(p, "\r\n") + 2;
        if (len == 0)
            break;
        strncat(joined, p, len);
        p += len + 2;
    }
    assert_string_equal(joined, want);
    stop(&h);
}

/* A client that leaves mid-stream, and a stop with a stream in flight:
 * each request is freed once (the sanitizer build checks it). */
static void test_abort_and_stop(void **state)
{
    (void)state;
    struct harness h;
    char buf[4096];
    start(&h, "{\"tokens_per_s\": 2}");
    int fd = connect_to(h.port);
    const char *req = "POST /tokens HTTP/1.1\r\nHost: x\r\n" KEY "Content-Length: 3\r\n\r\n100";
    send_all(fd, req, strlen(req));
    assert_true(read_some(fd, buf, sizeof(buf), 20) >= 20);
    close(fd);
    int held = connect_to(h.port);
    send_all(held, req, strlen(req));
    assert_true(read_some(held, buf, sizeof(buf), 20) >= 20);
    /* The connection keeps working for others meanwhile. */
    request(h.port, "GET", "/items/still", KEY, NULL, buf, sizeof(buf));
    assert_string_equal(body_of(buf), "still");
    stop(&h);
    /* The stream was cut by the stop. */
    read_some(held, buf, sizeof(buf), 0);
    close(held);
}

/* ---- WebSocket ------------------------------------------------------------- */

static void ws_send(int fd, int opcode, const void *data, size_t len)
{
    uint8_t h[WS_FRAME_HEADER_MAX], key[4] = {1, 2, 3, 4}, payload[256];
    assert_true(len <= sizeof(payload));
    size_t hl = ws_frame_header(h, opcode, true, len, true, key);
    memcpy(payload, data, len);
    ws_mask(payload, len, key, 0);
    send_all(fd, h, hl);
    send_all(fd, payload, len);
}

/* One short server frame: its opcode, payload into out. */
static int ws_recv(int fd, char *out, size_t *len)
{
    uint8_t h[2];
    assert_int_equal(read_some(fd, (char *)out, 3, 2), 2);
    memcpy(h, out, 2);
    assert_int_equal(h[1] & 0x80, 0); /* a server does not mask */
    size_t n = h[1] & 0x7f;
    assert_true(n < 126);
    if (n > 0)
        assert_int_equal(read_some(fd, out, n + 1, n), n);
    out[n] = '\0';
    *len = n;
    return h[0] & 0x0f;
}

static int ws_open(int port, const char *path, char *buf, size_t size)
{
    int fd = connect_to(port);
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Protocol: chat\r\n" KEY "\r\n",
                     path);
    send_all(fd, req, (size_t)n);
    /* The 101's head, byte by byte up to its blank line. */
    size_t got = 0;
    while ((got < 4 || memcmp(buf + got - 4, "\r\n\r\n", 4) != 0) && got + 2 < size)
        assert_int_equal(read_some(fd, buf + got, 2, 1), 1), got++;
    buf[got] = '\0';
    return fd;
}

static void test_websocket(void **state)
{
    (void)state;
    struct harness h;
    char buf[4096];
    size_t len;
    start(&h, "{}");
    int fd = ws_open(h.port, "/ws", buf, sizeof(buf));
    assert_int_equal(status_of(buf), 101);
    /* RFC 6455's own example key and accept. */
    assert_non_null(strstr(buf, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_non_null(strstr(buf, "Sec-WebSocket-Protocol: chat\r\n"));
    assert_non_null(strstr(buf, "x-test-id: tst_"));
    ws_send(fd, WS_OP_TEXT, "hello", 5);
    assert_int_equal(ws_recv(fd, buf, &len), WS_OP_TEXT);
    assert_string_equal(buf, "hello");
    ws_send(fd, WS_OP_BINARY, "\x01\x02", 2);
    assert_int_equal(ws_recv(fd, buf, &len), WS_OP_BINARY);
    assert_int_equal(len, 2);
    ws_send(fd, WS_OP_PING, "p", 1);
    assert_int_equal(ws_recv(fd, buf, &len), WS_OP_PONG);
    assert_string_equal(buf, "p");
    /* sim_ws_after: fires after its delay; a new call replaces the pending
     * one (B never comes: the next message after C is D). */
    int64_t t0 = mono_ms();
    ws_send(fd, WS_OP_TEXT, "after 100 A", 11);
    assert_int_equal(ws_recv(fd, buf, &len), WS_OP_TEXT);
    assert_string_equal(buf, "A");
    assert_true(mono_ms() - t0 >= 100);
    ws_send(fd, WS_OP_TEXT, "after 300 B", 11);
    ws_send(fd, WS_OP_TEXT, "after 20 C", 10);
    assert_int_equal(ws_recv(fd, buf, &len), WS_OP_TEXT);
    assert_string_equal(buf, "C");
    t0 = mono_ms();
    ws_send(fd, WS_OP_TEXT, "after 450 D", 11);
    assert_int_equal(ws_recv(fd, buf, &len), WS_OP_TEXT);
    assert_string_equal(buf, "D");
    assert_true(mono_ms() - t0 >= 450);
    /* A cancelled call never runs: nothing comes in three times its
     * delay. */
    ws_send(fd, WS_OP_TEXT, "after 100 F", 11);
    ws_send(fd, WS_OP_TEXT, "after 0 -", 9);
    struct pollfd quiet = {fd, POLLIN, 0};
    assert_int_equal(poll(&quiet, 1, 300), 0);
    /* A call pending when the socket closes never runs (the close below
     * comes first; the sanitizer build catches a use after free). */
    ws_send(fd, WS_OP_TEXT, "after 200 E", 11);

    /* The module closes: its code reaches the client and on_close. */
    int closes = atomic_load(&ws_closes);
    ws_send(fd, WS_OP_TEXT, "bye", 3);
    assert_int_equal(ws_recv(fd, buf, &len), WS_OP_CLOSE);
    assert_int_equal(((uint8_t)buf[0] << 8) | (uint8_t)buf[1], 4000);
    read_some(fd, buf, sizeof(buf), 0); /* then EOF */
    close(fd);
    for (int64_t end = mono_ms() + 5000; atomic_load(&ws_closes) == closes && mono_ms() < end;)
        usleep(1000);
    assert_int_equal(atomic_load(&ws_closed_code), 4000);

    /* The client closes: echoed, on_close hears its code. */
    fd = ws_open(h.port, "/ws", buf, sizeof(buf));
    closes = atomic_load(&ws_closes);
    ws_send(fd, WS_OP_CLOSE, "\x03\xe8", 2);
    assert_int_equal(ws_recv(fd, buf, &len), WS_OP_CLOSE);
    assert_int_equal(((uint8_t)buf[0] << 8) | (uint8_t)buf[1], 1000);
    close(fd);
    for (int64_t end = mono_ms() + 5000; atomic_load(&ws_closes) == closes && mono_ms() < end;)
        usleep(1000);
    assert_int_equal(atomic_load(&ws_closed_code), 1000);

    /* sim_ws_drop: what was sent arrives, then no close frame: the
     * connection just ends (1006). */
    fd = ws_open(h.port, "/ws/drop", buf, sizeof(buf));
    assert_null(strstr(buf, "Sec-WebSocket-Protocol"));
    closes = atomic_load(&ws_closes);
    ws_send(fd, WS_OP_TEXT, "x", 1);
    assert_int_equal(ws_recv(fd, buf, &len), WS_OP_TEXT);
    assert_string_equal(buf, "last");
    assert_int_equal(read_some(fd, buf, sizeof(buf), 0), 0);
    close(fd);
    for (int64_t end = mono_ms() + 5000; atomic_load(&ws_closes) == closes && mono_ms() < end;)
        usleep(1000);
    assert_int_equal(atomic_load(&ws_closed_code), 1006);

    /* A bad upgrade: answered by the core, no socket. */
    request(h.port, "GET", "/ws", "Upgrade: websocket\r\nConnection: Upgrade\r\n" KEY, NULL, buf,
            sizeof(buf));
    assert_int_equal(status_of(buf), 426);

    /* A socket open at stop: closed (1001), freed. */
    fd = ws_open(h.port, "/ws", buf, sizeof(buf));
    stop(&h);
    read_some(fd, buf, sizeof(buf), 0);
    close(fd);
    assert_int_equal(atomic_load(&ws_closed_code), 1001);
}

/* A stream of audio pieces: found through more_routes, paced at audio_rtf
 * (piece i at i x 40 ms x rtf), cut after half its pieces by a reset. */
static void test_paced_audio(void **state)
{
    (void)state;
    struct harness h;
    char buf[8192];
    start(&h, "{\"audio_rtf\": 1.0}");
    int64_t t0 = mono_ms();
    request(h.port, "POST", "/audio", KEY, "6", buf, sizeof(buf));
    int64_t took = mono_ms() - t0;
    assert_int_equal(status_of(buf), 200);
    assert_non_null(strstr(body_of(buf), "[0]"));
    assert_non_null(strstr(body_of(buf), "[5]"));
    assert_non_null(strstr(body_of(buf), "|done"));
    assert_true(took >= 200); /* the last piece is due 5 x 40 ms after the first */
    stop(&h);
    start(&h, "{\"audio_rtf\": 1.0, \"errors\": {\"reset\": 1}}");
    request(h.port, "POST", "/audio", KEY, "6", buf, sizeof(buf));
    assert_non_null(strstr(body_of(buf), "[2]"));
    assert_null(strstr(body_of(buf), "[3]"));
    assert_null(strstr(body_of(buf), "|done"));
    stop(&h);
}

/* Reads text frames until one equals want; returns when it came (mono ms). */
static int64_t ws_until(int fd, const char *want, char *buf, size_t size)
{
    size_t len;
    (void)size;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(ws_recv(fd, buf, &len), WS_OP_TEXT);
        if (strcmp(buf, want) == 0)
            return mono_ms();
    }
    fail_msg("no \"%s\" in 1000 frames", want);
    return 0;
}

static void test_speaker(void **state)
{
    (void)state;
    struct harness h;
    char buf[4096];
    size_t len;
    start(&h, "{\"audio_rtf\": 1.0, \"ttfb_ms\": 30}");
    int fd = ws_open(h.port, "/ws/speak", buf, sizeof(buf));
    assert_int_equal(status_of(buf), 101);
    /* 6 pieces: p0 after ttfb, p5 5 x 40 ms later; a second utterance
     * follows the first, in order. */
    int64_t t0 = mono_ms();
    ws_send(fd, WS_OP_TEXT, "6", 1);
    ws_send(fd, WS_OP_TEXT, "2", 1);
    int64_t first = ws_until(fd, "p0", buf, sizeof(buf));
    int64_t last = ws_until(fd, "p5", buf, sizeof(buf));
    assert_true(first - t0 >= 30);
    assert_true(last - first >= 190);
    ws_until(fd, "done", buf, sizeof(buf));
    ws_until(fd, "p0", buf, sizeof(buf));
    ws_until(fd, "p1", buf, sizeof(buf));
    ws_until(fd, "done", buf, sizeof(buf));
    /* Cancel: the queue is dropped, no done comes. */
    ws_send(fd, WS_OP_TEXT, "50", 2);
    ws_until(fd, "p1", buf, sizeof(buf));
    ws_send(fd, WS_OP_TEXT, "c", 1);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(ws_recv(fd, buf, &len), WS_OP_TEXT);
        assert_string_not_equal(buf, "done");
        if (strncmp(buf, "cancelled", 9) == 0)
            break;
    }
    assert_string_equal(buf, "cancelled 1");
    ws_send(fd, WS_OP_TEXT, "1", 1);
    ws_until(fd, "done", buf, sizeof(buf));
    close(fd);
    stop(&h);

    /* The reset fault: half the first utterance, then the connection ends
     * without a close frame. */
    start(&h, "{\"errors\": {\"reset\": 1}}");
    fd = ws_open(h.port, "/ws/speak", buf, sizeof(buf));
    ws_send(fd, WS_OP_TEXT, "6", 1);
    for (int i = 0; i < 3; i++) {
        char want[8];
        snprintf(want, sizeof(want), "p%d", i);
        assert_int_equal(ws_recv(fd, buf, &len), WS_OP_TEXT);
        assert_string_equal(buf, want);
    }
    assert_int_equal(read_some(fd, buf, sizeof(buf), 0), 0);
    close(fd);
    stop(&h);
}

/* sim_start refuses what it cannot simulate, naming it. */
static void test_start_errors(void **state)
{
    (void)state;
    char *err = NULL, msg[256];
    struct config *cfg = config_parse("{}", &err);
    assert_non_null(cfg);
    struct sim_listen bad[] = {{"elevenlabs", NULL}};
    assert_null(sim_start(&cfg->simulate, &cfg->limits, bad, 1, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "simulate elevenlabs: not simulated yet"));
    struct sim_listen twice[] = {{"cartesia", NULL}, {"cartesia", NULL}};
    assert_null(sim_start(&cfg->simulate, &cfg->limits, twice, 2, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "listed twice"));
    struct sim_listen addr[] = {{"cartesia", "nonsense"}};
    assert_null(sim_start(&cfg->simulate, &cfg->limits, addr, 1, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "simulate cartesia: listen address"));
    /* Seeded: the seed given; else one drawn, below 2^53. */
    cfg->simulate.seeded = true;
    cfg->simulate.seed = 77;
    struct sim_listen one[] = {{"cartesia", NULL}};
    struct sim *s = sim_start(&cfg->simulate, &cfg->limits, one, 1, msg, sizeof(msg));
    assert_non_null(s);
    assert_int_equal(sim_seed(s), 77);
    sim_stop(s);
    sim_stop(NULL);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_and_keys), cmocka_unit_test(test_injected_errors),
        cmocka_unit_test(test_reset),           cmocka_unit_test(test_ttfb_and_paced_tokens),
        cmocka_unit_test(test_abort_and_stop),  cmocka_unit_test(test_websocket),
        cmocka_unit_test(test_start_errors),    cmocka_unit_test(test_paced_audio),
        cmocka_unit_test(test_speaker),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
