/* test_relay_ws.c - the WebSocket relay over real loopback sockets: a tiny
 * upstream server and a client (relay_ws_test.h) drive the handshake, echo
 * in both directions with fragmentation, control frames, close codes,
 * refusals and timeouts, peers dying, the first-message rewrite, the
 * client-first mode (key in the first message), metering and back-pressure.
 * The message policy (on_message vetoes, hold_client_text, first_message)
 * is in test_relay_ws_policy.c. */
#include "common.h"
#include "relay_ws_test.h"

/* ---- tests --------------------------------------------------------------- */

static void test_handshake_echo_and_close(void **state)
{
    struct fixture *f = *state;
    f->up_mode = UP_ACCEPT_HELLO;
    start(f);
    /* A frame the client sends before its 101 waits in its input buffer. */
    peer_frame(&f->client, WS_OP_TEXT, true, "early", 5);
    RUN_UNTIL(f->client.head_done && f->client.n_msgs >= 2);

    /* What the upstream saw. */
    const char *uh = f->up.head;
    assert_true(strncmp(uh, "GET /v1/realtime?model=gpt-test HTTP/1.1\r\n", 42) == 0);
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", f->up_port);
    assert_true(has_line(uh, host));
    assert_true(has_line(uh, "\r\nUpgrade: websocket\r\n"));
    assert_true(has_line(uh, "\r\nConnection: Upgrade\r\n"));
    assert_true(has_line(uh, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_true(has_line(uh, "\r\nAuthorization: Bearer sk-test-123\r\n"));
    assert_true(has_line(uh, "\r\nOpenAI-Beta: realtime=v1\r\n"));
    assert_non_null(strcasestr(uh, "\r\nSec-WebSocket-Key: "));

    /* What the client saw: the accept for its own key, the subprotocol. */
    char accept[WS_ACCEPT_LEN + 1], line[80];
    assert_int_equal(ws_accept_key(f->client_key, WS_KEY_LEN, accept), 0);
    snprintf(line, sizeof(line), "\r\nSec-WebSocket-Accept: %s\r\n", accept);
    const char *ch = f->client.head;
    assert_true(strncmp(ch, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0);
    assert_true(has_line(ch, line));
    assert_true(has_line(ch, "\r\nUpgrade: websocket\r\n"));
    assert_true(has_line(ch, "\r\nConnection: Upgrade\r\n"));
    assert_true(has_line(ch, "\r\nSec-WebSocket-Protocol: realtime\r\n"));
    assert_int_equal(f->n_open, 1);

    /* The upstream's first frame came with its 101; the early frame was
     * echoed after it. */
    assert_int_equal(f->client.msgs[0].opcode, WS_OP_TEXT);
    assert_memory_equal(f->client.msgs[0].data, "session.created", 15);
    assert_int_equal(f->client.msgs[1].len, 5);
    assert_memory_equal(f->client.msgs[1].data, "early", 5);

    /* Binary from the client in three fragments: the upstream parses them
     * (it requires masking) and echoes them (the client requires none). */
    uint8_t bin[300];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)(i * 7);
    peer_frame(&f->client, WS_OP_BINARY, false, bin, 100);
    peer_frame(&f->client, WS_OP_CONTINUATION, false, bin + 100, 150);
    peer_frame(&f->client, WS_OP_CONTINUATION, true, bin + 250, 50);
    RUN_UNTIL(f->client.n_msgs >= 3);
    assert_int_equal(f->up.msgs[1].opcode, WS_OP_BINARY);
    assert_int_equal(f->up.msgs[1].frames, 3);
    assert_int_equal(f->up.msgs[1].len, sizeof(bin));
    assert_memory_equal(f->up.msgs[1].data, bin, sizeof(bin));
    assert_int_equal(f->client.msgs[2].opcode, WS_OP_BINARY);
    assert_int_equal(f->client.msgs[2].frames, 3);
    assert_memory_equal(f->client.msgs[2].data, bin, sizeof(bin));

    /* Fragmented text from the upstream, with a ping between fragments. */
    f->up.echo = false;
    peer_frame(&f->up, WS_OP_TEXT, false, "{\"type\":", 8);
    peer_frame(&f->up, WS_OP_PING, true, "mid", 3);
    peer_frame(&f->up, WS_OP_CONTINUATION, true, "\"x\"}", 4);
    RUN_UNTIL(f->client.n_msgs >= 4);
    assert_int_equal(f->client.msgs[3].frames, 2);
    assert_memory_equal(f->client.msgs[3].data, "{\"type\":\"x\"}", 12);
    assert_int_equal(f->client.n_ping, 1);
    assert_memory_equal(f->client.ctl, "mid", 3);

    /* Ping and pong pass through both ways. */
    peer_frame(&f->client, WS_OP_PING, true, "hello", 5);
    RUN_UNTIL(f->up.n_ping == 1);
    assert_int_equal(f->up.ctl_len, 5);
    assert_memory_equal(f->up.ctl, "hello", 5);
    peer_frame(&f->client, WS_OP_PONG, true, "mid", 3);
    RUN_UNTIL(f->up.n_pong == 1);
    assert_memory_equal(f->up.ctl, "mid", 3);
    peer_frame(&f->up, WS_OP_PONG, true, "", 0);
    RUN_UNTIL(f->client.n_pong == 1);
    assert_int_equal(f->client.ctl_len, 0);

    /* Client-initiated close 1000: the upstream answers it, the client gets
     * the answer, the session ends OK. */
    peer_close(&f->client, WS_CLOSE_NORMAL, "done");
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_true(f->up.got_close);
    assert_int_equal(f->up.close_code, 1000);
    assert_string_equal(f->up.reason, "done");
    assert_int_equal(f->client.close_code, 1000);
    assert_int_equal(f->end.end, RELAY_WS_END_OK);
    assert_int_equal(f->end.close_code, 1000);
    assert_true(f->end.closed_by_client);
    assert_int_equal(f->end.upstream_status, 101);
    assert_true(f->end.opened_ms > 0);
    assert_true(f->end.ended_ms >= f->end.opened_ms);
    assert_int_equal(f->end.bytes_from_client, 5 + sizeof(bin));
    assert_int_equal(f->end.bytes_from_upstream, 15 + 5 + sizeof(bin) + 12);
    /* Both connections are closed after the end. */
    RUN_UNTIL(f->client.eof && f->up.eof);
}

static void test_upstream_initiated_close(void **state)
{
    struct fixture *f = *state;
    f->client.close_echo = true;
    f->up.close_echo = false;
    start_open(f);
    peer_close(&f->up, 4000, "bye");
    RUN_UNTIL(f->n_end == 1 && f->up.got_close);
    assert_true(f->client.got_close);
    assert_int_equal(f->client.close_code, 4000);
    assert_string_equal(f->client.reason, "bye");
    assert_true(f->up.got_close);
    assert_int_equal(f->up.close_code, 4000);
    assert_int_equal(f->end.end, RELAY_WS_END_OK);
    assert_int_equal(f->end.close_code, 4000);
    assert_false(f->end.closed_by_client);
}

/* The client closes and the upstream never answers: after the close wait
 * the client still gets a close frame (its own code back), not a bare TCP
 * close it would read as 1006. */
static void test_unanswered_close(void **state)
{
    struct fixture *f = *state;
    f->up.close_echo = false;
    start_open(f);
    peer_close(&f->client, 4001, "bye");
    RUN_UNTIL(f->up.got_close);
    assert_int_equal(f->up.close_code, 4001);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_int_equal(f->client.close_code, 4001);
    assert_int_equal(f->end.end, RELAY_WS_END_OK);
    assert_true(f->end.closed_by_client);
    RUN_UNTIL(f->client.eof);
}

static void test_refused_401(void **state)
{
    struct fixture *f = *state;
    f->up_mode = UP_REFUSE_401;
    start(f);
    RUN_UNTIL(f->n_end == 1 && f->client.eof);
    size_t n = evbuffer_get_length(f->client.raw);
    char *resp = calloc(1, n + 1);
    evbuffer_remove(f->client.raw, resp, n);
    assert_true(strncmp(resp, "HTTP/1.1 401 Unauthorized\r\n", 27) == 0);
    assert_true(has_line(resp, "\r\nContent-Type: application/json\r\n"));
    assert_true(has_line(resp, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(resp, "\r\n\r\n{\"error\":{\"status\":401,"));
    free(resp);
    assert_int_equal(f->n_open, 0);
    assert_int_equal(f->end.end, RELAY_WS_END_UPSTREAM_REFUSED);
    assert_int_equal(f->end.upstream_status, 401);
    assert_int_equal(f->end.opened_ms, 0);
}

static void expect_error_reply(struct fixture *f, int status, enum relay_ws_end end)
{
    RUN_UNTIL(f->n_end == 1 && f->client.eof);
    size_t n = evbuffer_get_length(f->client.raw);
    char *resp = calloc(1, n + 1);
    evbuffer_remove(f->client.raw, resp, n);
    char want[64];
    snprintf(want, sizeof(want), "HTTP/1.1 %d ", status);
    assert_true(strncmp(resp, want, strlen(want)) == 0);
    snprintf(want, sizeof(want), "{\"error\":{\"status\":%d,", status);
    assert_non_null(strstr(resp, want));
    free(resp);
    assert_int_equal(f->n_open, 0);
    assert_int_equal(f->end.end, end);
}

static void test_unreachable_502(void **state)
{
    struct fixture *f = *state;
    char url[128];
    url_for(url, sizeof(url), closed_port());
    start_url(f, url);
    expect_error_reply(f, 502, RELAY_WS_END_UPSTREAM_REFUSED);
    assert_int_equal(f->end.upstream_status, 0);
}

static void test_connect_timeout_504(void **state)
{
    struct fixture *f = *state;
    f->up_mode = UP_SILENT;
    f->limits.upstream_connect_timeout_ms = 100;
    start(f);
    expect_error_reply(f, 504, RELAY_WS_END_TIMEOUT);
    RUN_UNTIL(f->up.eof);
}

static void test_bad_replies_502(void **state)
{
    static const enum up_mode modes[] = {UP_BAD_ACCEPT, UP_BARE_LF, UP_OBS_FOLD};
    for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
        teardown(state);
        setup(state);
        struct fixture *f = *state;
        f->up_mode = modes[i];
        start(f);
        expect_error_reply(f, 502, RELAY_WS_END_UPSTREAM_REFUSED);
        RUN_UNTIL(f->up.eof);
    }
}

static void test_upstream_dies(void **state)
{
    struct fixture *f = *state;
    start_open(f);
    peer_frame(&f->client, WS_OP_TEXT, true, "ping?", 5);
    RUN_UNTIL(f->client.n_msgs == 1);
    peer_gone(&f->up);
    RUN_UNTIL(f->n_end == 1 && f->client.eof);
    assert_true(f->client.got_close);
    assert_int_equal(f->client.close_code, WS_CLOSE_INTERNAL);
    assert_int_equal(f->end.end, RELAY_WS_END_UPSTREAM_GONE);
    assert_int_equal(f->end.close_code, 0);
}

/* The upstream vanishes right after a message while the client is still
 * streaming (a backlog the relay has not read): the client gets the
 * message and the 1011, then a FIN - not a reset, which would make its
 * kernel drop what it had not read yet. */
static void test_upstream_dies_while_client_streams(void **state)
{
    struct fixture *f = *state;
    start_open(f);
    static uint8_t chunk[64 * 1024];
    for (int i = 0; i < 48; i++) /* 3 MiB: more than the relay reads before it ends */
        peer_frame(&f->client, WS_OP_BINARY, true, chunk, sizeof(chunk));
    peer_frame(&f->up, WS_OP_TEXT, true, "last", 4);
    RUN_UNTIL(f->client.n_msgs == 1);
    peer_gone(&f->up);
    RUN_UNTIL(f->n_end == 1 && f->client.eof);
    assert_memory_equal(f->client.msgs[0].data, "last", 4);
    assert_true(f->client.got_close);
    assert_int_equal(f->client.close_code, WS_CLOSE_INTERNAL);
    assert_false(f->client.reset);
    assert_int_equal(f->end.end, RELAY_WS_END_UPSTREAM_GONE);
}

static void test_client_disappears(void **state)
{
    struct fixture *f = *state;
    start_open(f);
    peer_gone(&f->client);
    RUN_UNTIL(f->n_end == 1 && f->up.eof);
    assert_false(f->up.got_close); /* just a TCP close */
    assert_int_equal(f->end.end, RELAY_WS_END_CLIENT_GONE);
}

static void test_hold_first_message(void **state)
{
    struct fixture *f = *state;
    f->params.hold_first_client_message = true;
    f->replacement = "{\"text\":\" \"}";
    f->up.echo = false;
    start_open(f);
    /* The first message, fragmented, with the credential in it. */
    peer_frame(&f->client, WS_OP_TEXT, false, "{\"text\":\" \",", 12);
    peer_frame(&f->client, WS_OP_CONTINUATION, true, "\"xi_api_key\":\"sk\"}", 18);
    peer_frame(&f->client, WS_OP_TEXT, true, "{\"text\":\"hi\"}", 13);
    RUN_UNTIL(f->up.n_msgs == 2);
    assert_int_equal(f->up.msgs[0].frames, 1);
    assert_int_equal(f->up.msgs[0].len, 12);
    assert_memory_equal(f->up.msgs[0].data, "{\"text\":\" \"}", 12);
    assert_int_equal(f->up.msgs[1].len, 13);
    assert_memory_equal(f->up.msgs[1].data, "{\"text\":\"hi\"}", 13);
    /* on_message saw the original, whole. */
    assert_true(f->n_meter >= 1);
    assert_int_equal(f->meter[0].dir, RELAY_WS_FROM_CLIENT);
    assert_true(f->meter[0].complete);
    assert_string_equal(f->meter[0].data, "{\"text\":\" \",\"xi_api_key\":\"sk\"}");
    peer_close(&f->client, WS_CLOSE_NORMAL, NULL);
    RUN_UNTIL(f->n_end == 1);
    assert_int_equal(f->end.end, RELAY_WS_END_OK);
    assert_int_equal(f->end.bytes_from_client, 12 + 13);
}

static void test_client_first(void **state)
{
    struct fixture *f = *state;
    f->up.echo = false;
    start_client_first(f);
    /* The first message, fragmented, with the key; a second one right
     * behind it waits for the upstream. */
    peer_frame(&f->client, WS_OP_TEXT, false, "{\"text\":\" \",", 12);
    peer_frame(&f->client, WS_OP_CONTINUATION, true, "\"xi_api_key\":\"sk\"}", 18);
    peer_frame(&f->client, WS_OP_TEXT, true, "{\"text\":\"hi\"}", 13);
    RUN_UNTIL(f->up.n_msgs == 2);
    assert_int_equal(f->n_first, 1);
    assert_string_equal(f->first_seen, "{\"text\":\" \",\"xi_api_key\":\"sk\"}");
    /* The upstream got on_first's URL and headers, then the replacement
     * first, as one frame, then the rest. */
    static const char get[] = "GET /v1/text-to-speech/v/stream-input HTTP/1.1\r\n";
    assert_true(strncmp(f->up.head, get, sizeof(get) - 1) == 0);
    assert_true(has_line(f->up.head, "\r\nxi-api-key: sk-up-1\r\n"));
    assert_null(strcasestr(f->up.head, "sk-test-123"));
    assert_int_equal(f->up.msgs[0].frames, 1);
    assert_int_equal(f->up.msgs[0].len, 12);
    assert_memory_equal(f->up.msgs[0].data, "{\"text\":\" \"}", 12);
    assert_int_equal(f->up.msgs[1].len, 13);
    assert_memory_equal(f->up.msgs[1].data, "{\"text\":\"hi\"}", 13);
    assert_int_equal(f->n_open, 1);
    /* on_message never saw the first message (on_first did), only the
     * second: the second is not held or replaced either. */
    RUN_UNTIL(f->n_meter >= 1);
    assert_int_equal(f->n_meter, 1);
    assert_string_equal(f->meter[0].data, "{\"text\":\"hi\"}");
    /* Relaying works both ways from here. */
    peer_frame(&f->up, WS_OP_TEXT, true, "{\"audio\":\"AA\"}", 14);
    RUN_UNTIL(f->client.n_msgs == 1);
    assert_memory_equal(f->client.msgs[0].data, "{\"audio\":\"AA\"}", 14);
    peer_close(&f->client, WS_CLOSE_NORMAL, NULL);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_int_equal(f->end.end, RELAY_WS_END_OK);
    assert_int_equal(f->end.upstream_status, 101);
    assert_int_equal(f->end.bytes_from_client, 12 + 13);
}

static void test_client_first_refused(void **state)
{
    struct fixture *f = *state;
    f->first_refuse = true;
    start_client_first(f);
    static const char first[] = "{\"text\":\" \",\"xi_api_key\":\"bad\"}";
    peer_frame(&f->client, WS_OP_TEXT, true, first, sizeof(first) - 1);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close && f->client.eof);
    assert_int_equal(f->n_first, 1);
    assert_string_equal(f->first_seen, first);
    assert_int_equal(f->client.close_code, WS_CLOSE_POLICY);
    assert_string_equal(f->client.reason, "invalid or missing key");
    assert_int_equal(f->end.end, RELAY_WS_END_UNAUTHORIZED);
    assert_int_equal(f->end.opened_ms, 0);
    assert_int_equal(f->n_open, 0);
    assert_false(f->up_accepted); /* nothing connected upstream */
}

static void test_client_first_binary_start(void **state)
{
    struct fixture *f = *state;
    start_client_first(f);
    peer_frame(&f->client, WS_OP_BINARY, true, "\x01\x02", 2);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_int_equal(f->n_first, 0);
    assert_int_equal(f->client.close_code, WS_CLOSE_POLICY);
    assert_int_equal(f->end.end, RELAY_WS_END_UNAUTHORIZED);
    assert_false(f->up_accepted);
}

/* The first message must be whole within ws_first_message_timeout_ms of
 * the 101: nothing sent, or a message that never ends, gets 1008 then. */
static void test_client_first_timeout(void **state)
{
    struct fixture *f = *state;
    f->limits.ws_first_message_timeout_ms = 300;
    int64_t t0 = mono_ms();
    start_client_first(f);
    peer_frame(&f->client, WS_OP_TEXT, false, "{\"text\":\" \",", 12); /* no FIN, ever */
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_true(mono_ms() - t0 >= 280);
    assert_int_equal(f->client.close_code, WS_CLOSE_POLICY);
    assert_int_equal(f->end.end, RELAY_WS_END_TIMEOUT);
    assert_int_equal(f->end.client_close_sent, WS_CLOSE_POLICY);
    assert_int_equal(f->n_first, 0);
    assert_false(f->up_accepted);
}

/* At most ws_first_message_max_bytes: a frame announcing more is refused
 * with 1009 at its header, a message growing past it by fragments at the
 * fragment that crosses it; exactly the limit is read whole. */
static void test_client_first_too_big(void **state)
{
    struct fixture *f = *state;
    static char big[2048];
    memset(big, 'a', sizeof(big));
    f->limits.ws_first_message_max_bytes = 1024;
    start_client_first(f);
    peer_frame(&f->client, WS_OP_TEXT, true, big, 1025);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_int_equal(f->client.close_code, WS_CLOSE_TOO_BIG);
    assert_int_equal(f->end.end, RELAY_WS_END_CLIENT_GONE);
    assert_int_equal(f->end.client_close_sent, WS_CLOSE_TOO_BIG);
    assert_int_equal(f->n_first, 0);
    assert_false(f->up_accepted);
}

static void test_client_first_too_big_fragments(void **state)
{
    struct fixture *f = *state;
    static char big[2048];
    memset(big, 'a', sizeof(big));
    f->limits.ws_first_message_max_bytes = 1024;
    start_client_first(f);
    peer_frame(&f->client, WS_OP_TEXT, false, big, 600);
    peer_frame(&f->client, WS_OP_CONTINUATION, true, big, 600);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_int_equal(f->client.close_code, WS_CLOSE_TOO_BIG);
    assert_int_equal(f->n_first, 0);
    assert_false(f->up_accepted);
}

static void test_client_first_at_limit(void **state)
{
    struct fixture *f = *state;
    static char msg[1024];
    memset(msg, ' ', sizeof(msg));
    memcpy(msg, "{\"text\":\"", 9);
    msg[sizeof(msg) - 2] = '"';
    msg[sizeof(msg) - 1] = '}';
    f->first_refuse = true;
    f->limits.ws_first_message_max_bytes = 1024;
    start_client_first(f);
    peer_frame(&f->client, WS_OP_TEXT, false, msg, 512);
    peer_frame(&f->client, WS_OP_CONTINUATION, true, msg + 512, 512);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_int_equal(f->n_first, 1); /* read whole: on_first judged it */
    assert_int_equal(strlen(f->first_seen), 1024);
    assert_int_equal(f->client.close_code, WS_CLOSE_POLICY);
}

static void test_client_first_upstream_401(void **state)
{
    struct fixture *f = *state;
    f->up_mode = UP_REFUSE_401;
    start_client_first(f);
    peer_frame(&f->client, WS_OP_TEXT, true, "{\"text\":\" \"}", 12);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_true(f->up_accepted);
    /* The client has had its 101: a close frame, not an HTTP error. */
    assert_int_equal(f->client.close_code, WS_CLOSE_POLICY);
    assert_int_equal(f->end.end, RELAY_WS_END_UPSTREAM_REFUSED);
    assert_int_equal(f->end.upstream_status, 401);
    assert_int_equal(f->n_open, 0);
}

static void test_metering(void **state)
{
    struct fixture *f = *state;
    f->params.meter_max = 16;
    f->up.echo = false;
    start_open(f);
    char big[100];
    memset(big, 'a', sizeof(big));
    peer_frame(&f->up, WS_OP_TEXT, true, "{\"type\":\"done\"}", 15);
    peer_frame(&f->up, WS_OP_BINARY, true, "audio", 5);
    peer_frame(&f->up, WS_OP_TEXT, false, big, 10);
    peer_frame(&f->up, WS_OP_CONTINUATION, true, big + 10, 90);
    RUN_UNTIL(f->client.n_msgs == 3 && f->n_meter == 2);
    peer_frame(&f->client, WS_OP_TEXT, true, "hi", 2);
    RUN_UNTIL(f->up.n_msgs == 1 && f->n_meter == 3);
    assert_int_equal(f->meter[0].dir, RELAY_WS_FROM_UPSTREAM);
    assert_true(f->meter[0].complete);
    assert_string_equal(f->meter[0].data, "{\"type\":\"done\"}");
    assert_int_equal(f->meter[1].dir, RELAY_WS_FROM_UPSTREAM);
    assert_false(f->meter[1].complete);
    assert_int_equal(f->meter[1].len, 16);
    assert_memory_equal(f->meter[1].data, big, 16);
    /* The truncated copy did not cut what was relayed. */
    assert_int_equal(f->client.msgs[2].len, 100);
    assert_int_equal(f->meter[2].dir, RELAY_WS_FROM_CLIENT);
    assert_true(f->meter[2].complete);
    assert_string_equal(f->meter[2].data, "hi");
}

static void test_client_protocol_error(void **state)
{
    struct fixture *f = *state;
    start_open(f);
    /* An unmasked frame from a client. */
    uint8_t h[WS_FRAME_HEADER_MAX];
    size_t n = ws_frame_header(h, WS_OP_TEXT, true, 2, false, NULL);
    bufferevent_write(f->client.bev, h, n);
    bufferevent_write(f->client.bev, "no", 2);
    RUN_UNTIL(f->n_end == 1 && f->client.eof && f->up.eof);
    assert_int_equal(f->client.close_code, WS_CLOSE_PROTOCOL);
    assert_int_equal(f->up.close_code, WS_CLOSE_GOING_AWAY);
    assert_int_equal(f->end.end, RELAY_WS_END_CLIENT_GONE);
}

static void test_upstream_protocol_error(void **state)
{
    struct fixture *f = *state;
    start_open(f);
    /* A masked frame from a server; then an invalid close code would not
     * even be read. */
    uint8_t h[WS_FRAME_HEADER_MAX], key[4] = {1, 2, 3, 4};
    size_t n = ws_frame_header(h, WS_OP_TEXT, true, 2, true, key);
    bufferevent_write(f->up.bev, h, n);
    bufferevent_write(f->up.bev, "no", 2);
    RUN_UNTIL(f->n_end == 1 && f->client.eof && f->up.eof);
    assert_int_equal(f->up.close_code, WS_CLOSE_PROTOCOL);
    assert_int_equal(f->client.close_code, WS_CLOSE_INTERNAL);
    assert_int_equal(f->end.end, RELAY_WS_END_UPSTREAM_GONE);
}

static void test_invalid_close_code(void **state)
{
    struct fixture *f = *state;
    start_open(f);
    uint8_t pl[2] = {0x03, 0xed}; /* 1005 may not be sent */
    peer_frame(&f->client, WS_OP_CLOSE, true, pl, 2);
    RUN_UNTIL(f->n_end == 1 && f->client.eof && f->up.eof);
    assert_int_equal(f->client.close_code, WS_CLOSE_PROTOCOL);
    assert_int_equal(f->end.end, RELAY_WS_END_CLIENT_GONE);
}

static void test_back_pressure(void **state)
{
    struct fixture *f = *state;
    f->up.echo = false;
    f->up.keep = false;
    f->client.keep = false;
    f->client.check_pattern = true;
    f->client.pattern_ok = true;
    start_open(f);
    /* The client stops reading; the upstream sends 32 MiB. */
    bufferevent_disable(f->client.bev, EV_READ);
    f->bulk_total = 32u << 20;
    f->bulk_progress_ms = mono_ms();
    bulk_fill(f);
    /* Run until the upstream has made no progress for 300 ms: it stalled. */
    int64_t dl = mono_ms() + 30000;
    while (mono_ms() - f->bulk_progress_ms < 300) {
        assert_true(mono_ms() < dl);
        event_base_loop(f->base, EVLOOP_ONCE);
        size_t out = evbuffer_get_length(bufferevent_get_output(f->front));
        f->front_out_max = MAX(f->front_out_max, out);
    }
    size_t up_unsent = evbuffer_get_length(bufferevent_get_output(f->up.bev));
    uint64_t up_written = f->bulk_queued - up_unsent;
    print_message("upstream stalled after %llu bytes; relay client output max %zu\n",
                  (unsigned long long)up_written, f->front_out_max);
    assert_true(up_written < f->bulk_total / 2);
    /* The relay held at most the high-water mark plus one read. */
    assert_true(f->front_out_max <= f->limits.client_high_watermark + 65536);

    /* The client reads again: everything arrives, in order. */
    bufferevent_enable(f->client.bev, EV_READ);
    int64_t dl2 = mono_ms() + 60000;
    while (f->client.data_bytes < f->bulk_total) {
        assert_true(mono_ms() < dl2);
        event_base_loop(f->base, EVLOOP_ONCE);
        size_t out = evbuffer_get_length(bufferevent_get_output(f->front));
        f->front_out_max = MAX(f->front_out_max, out);
    }
    assert_true(f->client.pattern_ok);
    assert_int_equal(f->client.data_bytes, f->bulk_total);
    assert_true(f->front_out_max <= f->limits.client_high_watermark + 65536);
    f->bulk_total = 0;
    peer_close(&f->client, WS_CLOSE_NORMAL, NULL);
    RUN_UNTIL(f->n_end == 1);
    assert_int_equal(f->end.end, RELAY_WS_END_OK);
    assert_int_equal(f->end.close_code, WS_CLOSE_NORMAL);
    assert_int_equal(f->end.bytes_from_upstream, 32u << 20);
}

/* A frame far larger than one read reaches the relay in many pieces: each
 * is re-masked at its offset, and the echo comes back whole. */
static void test_large_frame_both_ways(void **state)
{
    struct fixture *f = *state;
    const size_t n = 4u << 20;
    f->params.max_message = 8u << 20;
    f->up.keep = false;
    f->client.keep = false;
    f->up.check_pattern = f->up.pattern_ok = true;
    f->client.check_pattern = f->client.pattern_ok = true;
    start_open(f);
    uint8_t *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = pattern_byte(i);
    peer_frame(&f->client, WS_OP_BINARY, true, big, n);
    free(big);
    RUN_UNTIL(f->client.data_bytes == n);
    assert_int_equal(f->up.data_bytes, n);
    assert_true(f->up.pattern_ok);
    assert_true(f->client.pattern_ok);
    assert_int_equal(f->up.frames, 1);
    assert_int_equal(f->client.frames, 1);
}

/* ---- wss:// -------------------------------------------------------------- */

/* A self-signed certificate for the mock upstream with the given
 * subjectAltName; the relay's context trusts exactly it (when trust). */
static void tls_setup(struct fixture *f, const char *san, bool trust)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(key);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"relay-test", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);

    f->tls_server = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate(f->tls_server, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(f->tls_server, key), 1);
    f->tls_client = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(f->tls_client, TLS1_2_VERSION);
    if (trust)
        assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(f->tls_client), x), 1);
    f->params.tls = f->tls_client;
    X509_free(x);
    EVP_PKEY_free(key);
}

static void wss_echo(struct fixture *f, const char *host)
{
    char url[128];
    snprintf(url, sizeof(url), "wss://%s:%d/v1/realtime", host, f->up_port);
    start_url(f, url);
    RUN_UNTIL(f->client.head_done && f->n_open == 1);
    char hl[96];
    snprintf(hl, sizeof(hl), "\r\nHost: %s:%d\r\n", host, f->up_port);
    assert_true(has_line(f->up.head, hl));
    assert_true(has_line(f->up.head, "\r\nAuthorization: Bearer sk-test-123\r\n"));
    peer_frame(&f->client, WS_OP_TEXT, true, "over tls", 8);
    RUN_UNTIL(f->client.n_msgs == 1);
    assert_memory_equal(f->client.msgs[0].data, "over tls", 8);
    peer_close(&f->client, WS_CLOSE_NORMAL, NULL);
    RUN_UNTIL(f->n_end == 1 && f->client.eof);
    assert_int_equal(f->end.end, RELAY_WS_END_OK);
}

static void test_wss_ip_literal(void **state)
{
    struct fixture *f = *state;
    tls_setup(f, "IP:127.0.0.1", true);
    wss_echo(f, "127.0.0.1");
    assert_string_equal(f->sni, ""); /* no SNI for an address */
}

static void test_wss_host_name(void **state)
{
    struct fixture *f = *state;
    tls_setup(f, "DNS:localhost", true);
    /* The resolver answers "localhost" from the hosts file. */
    assert_int_equal(evdns_base_load_hosts(f->dns, NULL), 0);
    wss_echo(f, "localhost");
    assert_string_equal(f->sni, "localhost");
}

static void test_wss_wrong_name_502(void **state)
{
    struct fixture *f = *state;
    tls_setup(f, "DNS:api.example.com", true);
    char url[128];
    snprintf(url, sizeof(url), "wss://127.0.0.1:%d/", f->up_port);
    start_url(f, url);
    expect_error_reply(f, 502, RELAY_WS_END_UPSTREAM_REFUSED);
    assert_false(f->up.head_done); /* the upgrade request never left */
}

static void test_wss_untrusted_502(void **state)
{
    struct fixture *f = *state;
    tls_setup(f, "IP:127.0.0.1", false);
    char url[128];
    snprintf(url, sizeof(url), "wss://127.0.0.1:%d/", f->up_port);
    start_url(f, url);
    expect_error_reply(f, 502, RELAY_WS_END_UPSTREAM_REFUSED);
    assert_false(f->up.head_done);
}

static void test_shutdown(void **state)
{
    struct fixture *f = *state;
    start_open(f);
    relay_ws_shutdown(f->relay);
    relay_ws_shutdown(f->relay); /* idempotent until on_end */
    assert_int_equal(f->n_end, 0);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close && f->up.got_close);
    assert_int_equal(f->client.close_code, WS_CLOSE_GOING_AWAY);
    assert_int_equal(f->up.close_code, WS_CLOSE_GOING_AWAY);
    assert_int_equal(f->end.end, RELAY_WS_END_SHUTDOWN);
}

static void test_shutdown_from_on_open(void **state)
{
    struct fixture *f = *state;
    f->shutdown_on_open = true;
    start(f);
    RUN_UNTIL(f->n_end == 1 && f->client.eof && f->up.eof);
    assert_int_equal(f->client.close_code, WS_CLOSE_GOING_AWAY);
    assert_int_equal(f->end.end, RELAY_WS_END_SHUTDOWN);
}

static void test_shutdown_while_connecting(void **state)
{
    struct fixture *f = *state;
    f->up_mode = UP_SILENT;
    start(f);
    relay_ws_shutdown(f->relay);
    expect_error_reply(f, 503, RELAY_WS_END_SHUTDOWN);
}

static void test_idle_timeout(void **state)
{
    struct fixture *f = *state;
    f->limits.idle_timeout_ms = 20; /* x5 for WebSocket sessions */
    int64_t t0 = mono_ms();
    start_open(f);
    RUN_UNTIL(f->n_end == 1);
    /* 5 x 20 ms, not 20 ms (timers count from the loop's cached time, so
     * allow for a few ms of rounding). */
    assert_true(mono_ms() - t0 >= 90);
    RUN_UNTIL(f->client.got_close && f->up.got_close);
    assert_int_equal(f->client.close_code, WS_CLOSE_GOING_AWAY);
    assert_int_equal(f->up.close_code, WS_CLOSE_GOING_AWAY);
    assert_int_equal(f->end.end, RELAY_WS_END_TIMEOUT);
}

static void test_bad_urls(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {
        "http://127.0.0.1/",
        "ws://user@127.0.0.1/",
        "ws://127.0.0.1/a#frag",
        "ws://127.0.0.1:0/",
        "ws://127.0.0.1:65536/",
        "ws://[::1/",
        "ws://127.0.0.1/a b",
        "ws://",
        "wss://h:/",
        "ws://[nothex]/",
        "ws://ho st/",
        "ftp://h/",
        "ws://h:12a/",
        "ws://h\r\n/",
        NULL,
    };
    int cfd, afd;
    tcp_pair(&cfd, &afd);
    struct bufferevent *bev = bufferevent_socket_new(f->base, afd, BEV_OPT_CLOSE_ON_FREE);
    char key[WS_KEY_LEN + 1];
    assert_int_equal(ws_client_key(key), 0);
    f->params.client = bev;
    f->params.client_key = key;
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        f->params.upstream_url = bad[i];
        assert_null(relay_ws_start(&f->params));
    }
    /* Header lines that could end the head early are refused too. */
    f->params.upstream_url = "ws://127.0.0.1:1/";
    f->params.upstream_headers = "X: 1\r\n\r\nGET / HTTP/1.1\r\n";
    assert_null(relay_ws_start(&f->params));
    f->params.upstream_headers = "X: 1\n";
    assert_null(relay_ws_start(&f->params));
    /* The bev is still ours. */
    bufferevent_free(bev);
    close(cfd);
    assert_int_equal(f->n_end, 0);
}

static void test_ipv6_literal_url(void **state)
{
    struct fixture *f = *state;
    /* Accepted as a URL; nothing listens there, so it ends in a 502. */
    char url[64];
    snprintf(url, sizeof(url), "ws://[::1]:%d/x", closed_port());
    start_url(f, url);
    expect_error_reply(f, 502, RELAY_WS_END_UPSTREAM_REFUSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake_echo_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_initiated_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unanswered_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_401, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_502, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout_504, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_replies_502, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_dies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_dies_while_client_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_disappears, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_first_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_first_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_first_binary_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_first_upstream_401, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_first_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_first_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_first_too_big_fragments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_first_at_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_protocol_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_protocol_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_close_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_back_pressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_frame_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wss_ip_literal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wss_host_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wss_wrong_name_502, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wss_untrusted_502, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_from_on_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_while_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_literal_url, setup, teardown),
    };
    log_set_level(getenv("RELAY_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
    signal(SIGPIPE, SIG_IGN); /* a peer writing to a closed socket gets EPIPE */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
