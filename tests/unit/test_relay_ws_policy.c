/* test_relay_ws_policy.c - the WebSocket relay's message policy over real
 * loopback sockets (fixture in relay_ws_test.h): on_message ending the
 * session (a veto) in both directions, client text held whole until the
 * hook accepted it (hold_client_text), first_message going upstream before
 * anything the client sends, and the client-first refusals (refuse_reason,
 * shutdown from on_first, a target that cannot be used, no or a wrong first
 * message).
 *
 * "Nothing was forwarded yet" is checked with a barrier: a ping sent after
 * the data travels the same connection, in order, so once the other side
 * has the ping it has everything the relay forwarded before it. */
#include "common.h"
#include "relay_ws_test.h"

/* on_message of these tests: records (on_message), then offers
 * f->replace_each as every message's replacement and refuses a message
 * equal to f->veto_text with f->veto_reason. */
static int policy_on_message(void *arg, enum relay_ws_dir dir, const char *data, size_t len,
                             bool complete, char **replace, size_t *replace_len,
                             const char **reason)
{
    struct fixture *f = arg;
    int rc = on_message(arg, dir, data, len, complete, replace, replace_len, reason);
    if (f->replace_each != NULL && *replace == NULL) {
        *replace = strdup(f->replace_each);
        assert_non_null(*replace);
        *replace_len = strlen(f->replace_each);
    }
    if (f->veto_text != NULL && len == strlen(f->veto_text) &&
        memcmp(data, f->veto_text, len) == 0) {
        *reason = f->veto_reason;
        return f->veto_rc != 0 ? f->veto_rc : -1;
    }
    return rc;
}

static void policy_on_binary(void *arg, enum relay_ws_dir dir, const uint8_t *data, size_t len,
                             uint64_t message_off, bool last)
{
    struct fixture *f = arg;
    assert_true(len == 0 || data != NULL);
    if (f->n_binary < MAX_METER)
        f->binary[f->n_binary] = (struct binary_rec){dir, len, message_off, last};
    f->n_binary++;
}

static int policy_setup(void **state)
{
    int rc = setup(state);
    struct fixture *f = *state;
    f->params.on_message = policy_on_message;
    f->up.echo = false; /* what the upstream got is what the client sent */
    return rc;
}

/* Waits until the upstream has a ping the client sends now: everything the
 * relay forwarded from the client before has reached the upstream. */
static void client_barrier(struct fixture *f)
{
    int n = f->up.n_ping;
    peer_frame(&f->client, WS_OP_PING, true, "barrier", 7);
    RUN_UNTIL(f->up.n_ping == n + 1);
}

/* The same from the upstream toward the client. */
static void upstream_barrier(struct fixture *f)
{
    int n = f->client.n_ping;
    peer_frame(&f->up, WS_OP_PING, true, "barrier", 7);
    RUN_UNTIL(f->client.n_ping == n + 1);
}

static void send_text(struct peer *p, const char *s)
{
    peer_frame(p, WS_OP_TEXT, true, s, strlen(s));
}

static void assert_msg(const struct msg *m, int opcode, const char *text)
{
    assert_int_equal(m->opcode, opcode);
    assert_int_equal(m->len, strlen(text));
    if (m->len > 0)
        assert_memory_equal(m->data, text, m->len);
}

/* The end of a veto: the client has close 1008 with the reason, the
 * upstream a normal close, both connections are closed. */
static void expect_policy_end(struct fixture *f, const char *reason)
{
    RUN_UNTIL(f->n_end == 1 && f->client.got_close && f->up.got_close && f->client.eof &&
              f->up.eof);
    assert_int_equal(f->end.end, RELAY_WS_END_POLICY);
    assert_int_equal(f->client.close_code, WS_CLOSE_POLICY);
    assert_string_equal(f->client.reason, reason);
    assert_int_equal(f->up.close_code, WS_CLOSE_NORMAL);
    assert_int_equal(f->client.proto_error, 0);
    assert_int_equal(f->up.proto_error, 0);
}

static const char MSG_A[] = "{\"model\":\"priced-a\"}";
static const char MSG_B[] = "{\"model\":\"unpriced\"}";
static const char MSG_C[] = "{\"model\":\"priced-c\"}";

/* ---- vetoes -------------------------------------------------------------- */

/* hold_client_text: the refused message and everything after it stay with
 * the relay; the one before was forwarded. */
static void test_veto_held_client_message(void **state)
{
    struct fixture *f = *state;
    f->params.hold_client_text = true;
    f->veto_text = MSG_B;
    f->veto_reason = "model_not_priced";
    start_open(f);
    send_text(&f->client, MSG_A);
    send_text(&f->client, MSG_B);
    send_text(&f->client, MSG_C);
    expect_policy_end(f, "model_not_priced");
    assert_int_equal(f->up.n_msgs, 1);
    assert_msg(&f->up.msgs[0], WS_OP_TEXT, MSG_A);
    assert_int_equal(f->up.data_bytes, strlen(MSG_A));
    /* The hook saw A and B whole; C never reached it. */
    assert_int_equal(f->n_meter, 2);
    assert_int_equal(f->meter[1].dir, RELAY_WS_FROM_CLIENT);
    assert_true(f->meter[1].complete);
    assert_string_equal(f->meter[1].data, MSG_B);
    assert_int_equal(f->end.bytes_from_client, strlen(MSG_A));
    assert_int_equal(f->client.n_msgs, 0);
}

/* Any non-zero return refuses (fail closed), not only -1. */
static void test_veto_any_nonzero(void **state)
{
    struct fixture *f = *state;
    f->params.hold_client_text = true;
    f->veto_text = MSG_B;
    f->veto_reason = "refused";
    f->veto_rc = 1;
    start_open(f);
    send_text(&f->client, MSG_A);
    send_text(&f->client, MSG_B);
    expect_policy_end(f, "refused");
    assert_int_equal(f->up.n_msgs, 1);
    assert_msg(&f->up.msgs[0], WS_OP_TEXT, MSG_A);
}

/* Without holding, the header promises only that the session ends: a text
 * message goes out as it arrives, so the refused one was already forwarded
 * when the hook saw it whole. What follows it is not forwarded. */
static void test_veto_client_message_not_held(void **state)
{
    struct fixture *f = *state;
    f->veto_text = MSG_B;
    f->veto_reason = "refused";
    start_open(f);
    send_text(&f->client, MSG_A);
    send_text(&f->client, MSG_B);
    send_text(&f->client, MSG_C);
    expect_policy_end(f, "refused");
    assert_int_equal(f->up.n_msgs, 2);
    assert_msg(&f->up.msgs[0], WS_OP_TEXT, MSG_A);
    assert_msg(&f->up.msgs[1], WS_OP_TEXT, MSG_B);
    assert_int_equal(f->up.data_bytes, strlen(MSG_A) + strlen(MSG_B));
    assert_int_equal(f->n_meter, 2);
    assert_int_equal(f->end.bytes_from_client, strlen(MSG_A) + strlen(MSG_B));
}

/* The hook is called for upstream text too (never held): the refused
 * message reached the client, then its close 1008; nothing after it. */
static void test_veto_upstream_message(void **state)
{
    struct fixture *f = *state;
    f->params.hold_client_text = true;
    f->veto_text = MSG_B;
    f->veto_reason = "upstream said no";
    start_open(f);
    send_text(&f->up, MSG_A);
    send_text(&f->up, MSG_B);
    send_text(&f->up, MSG_C);
    expect_policy_end(f, "upstream said no");
    assert_int_equal(f->client.n_msgs, 2);
    assert_msg(&f->client.msgs[0], WS_OP_TEXT, MSG_A);
    assert_msg(&f->client.msgs[1], WS_OP_TEXT, MSG_B);
    assert_int_equal(f->n_meter, 2);
    assert_int_equal(f->meter[0].dir, RELAY_WS_FROM_UPSTREAM);
    assert_int_equal(f->meter[1].dir, RELAY_WS_FROM_UPSTREAM);
    assert_true(f->meter[1].complete);
    assert_int_equal(f->end.bytes_from_upstream, strlen(MSG_A) + strlen(MSG_B));
    assert_int_equal(f->up.n_msgs, 0);
}

/* ---- hold_client_text ---------------------------------------------------- */

/* A fragmented text message: no fragment goes out until the last one came
 * and the hook accepted the whole; then it goes as one message. */
static void test_hold_text_fragmented(void **state)
{
    struct fixture *f = *state;
    f->params.hold_client_text = true;
    start_open(f);
    peer_frame(&f->client, WS_OP_TEXT, false, "{\"text\":", 8);
    client_barrier(f);
    assert_int_equal(f->up.data_bytes, 0);
    assert_int_equal(f->up.frames, 0);
    assert_int_equal(f->n_meter, 0);
    peer_frame(&f->client, WS_OP_CONTINUATION, false, "\"hel", 4);
    client_barrier(f);
    assert_int_equal(f->up.data_bytes, 0);
    assert_int_equal(f->n_meter, 0);
    peer_frame(&f->client, WS_OP_CONTINUATION, true, "lo\"}", 4);
    RUN_UNTIL(f->up.n_msgs == 1);
    assert_int_equal(f->n_meter, 1);
    assert_int_equal(f->meter[0].dir, RELAY_WS_FROM_CLIENT);
    assert_true(f->meter[0].complete);
    assert_string_equal(f->meter[0].data, "{\"text\":\"hello\"}");
    assert_msg(&f->up.msgs[0], WS_OP_TEXT, "{\"text\":\"hello\"}");
    assert_int_equal(f->up.msgs[0].frames, 1);

    /* Every text message is held, a one-frame one and an empty one too. */
    send_text(&f->client, "{\"text\":\"x\"}");
    send_text(&f->client, "");
    RUN_UNTIL(f->up.n_msgs == 3);
    assert_int_equal(f->n_meter, 3);
    assert_string_equal(f->meter[1].data, "{\"text\":\"x\"}");
    assert_int_equal(f->meter[2].len, 0);
    assert_true(f->meter[2].complete);
    assert_msg(&f->up.msgs[1], WS_OP_TEXT, "{\"text\":\"x\"}");
    assert_msg(&f->up.msgs[2], WS_OP_TEXT, "");

    peer_close(&f->client, WS_CLOSE_NORMAL, NULL);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_int_equal(f->end.end, RELAY_WS_END_OK);
    assert_int_equal(f->end.bytes_from_client, 16 + 12);
}

/* A refused fragmented message: none of its fragments went upstream. The
 * replacement offered with the refusal is dropped (freed: ASan). */
static void test_hold_text_vetoed_fragments(void **state)
{
    struct fixture *f = *state;
    f->params.hold_client_text = true;
    f->veto_text = "{\"model\":\"unpriced\",\"text\":\"hi\"}";
    f->veto_reason = "model_not_priced";
    f->replace_each = "{\"text\":\"replaced\"}";
    start_open(f);
    peer_frame(&f->client, WS_OP_TEXT, false, "{\"model\":", 9);
    client_barrier(f);
    peer_frame(&f->client, WS_OP_CONTINUATION, false, "\"unpriced\",", 11);
    client_barrier(f);
    assert_int_equal(f->up.data_bytes, 0);
    peer_frame(&f->client, WS_OP_CONTINUATION, true, "\"text\":\"hi\"}", 12);
    expect_policy_end(f, "model_not_priced");
    assert_int_equal(f->n_meter, 1);
    assert_true(f->meter[0].complete);
    assert_string_equal(f->meter[0].data, f->veto_text);
    assert_int_equal(f->up.data_bytes, 0);
    assert_int_equal(f->up.frames, 0);
    assert_int_equal(f->up.n_msgs, 0);
    assert_int_equal(f->up.n_ping, 2); /* the barriers, and nothing else */
    assert_int_equal(f->end.bytes_from_client, 0);
}

/* Each held message may be replaced; a replacement for an upstream
 * message (never held) is ignored and freed. */
static void test_hold_text_replace_each(void **state)
{
    struct fixture *f = *state;
    f->params.hold_client_text = true;
    f->replace_each = "{\"text\":\"[redacted]\"}";
    start_open(f);
    send_text(&f->client, "{\"text\":\"one\",\"key\":\"sk-1\"}");
    send_text(&f->client, "{\"text\":\"two\",\"key\":\"sk-2\"}");
    RUN_UNTIL(f->up.n_msgs == 2);
    assert_msg(&f->up.msgs[0], WS_OP_TEXT, "{\"text\":\"[redacted]\"}");
    assert_msg(&f->up.msgs[1], WS_OP_TEXT, "{\"text\":\"[redacted]\"}");
    assert_string_equal(f->meter[0].data, "{\"text\":\"one\",\"key\":\"sk-1\"}");
    assert_string_equal(f->meter[1].data, "{\"text\":\"two\",\"key\":\"sk-2\"}");
    send_text(&f->up, "{\"audio\":\"AA\"}");
    RUN_UNTIL(f->client.n_msgs == 1 && f->n_meter == 3);
    assert_msg(&f->client.msgs[0], WS_OP_TEXT, "{\"audio\":\"AA\"}");
    assert_int_equal(f->meter[2].dir, RELAY_WS_FROM_UPSTREAM);
    peer_close(&f->client, WS_CLOSE_NORMAL, NULL);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_int_equal(f->end.end, RELAY_WS_END_OK);
    assert_int_equal(f->end.bytes_from_client, 2 * strlen(f->replace_each));
    assert_int_equal(f->end.bytes_from_upstream, 14);
}

/* Only client text is held: a client binary message goes out fragment by
 * fragment (to on_binary, not on_message), and upstream text as it comes. */
static void test_hold_text_binary_not_held(void **state)
{
    struct fixture *f = *state;
    f->params.hold_client_text = true;
    f->params.on_binary = policy_on_binary;
    start_open(f);
    uint8_t bin[150];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)(i * 3);
    peer_frame(&f->client, WS_OP_BINARY, false, bin, 100);
    client_barrier(f);
    assert_int_equal(f->up.data_bytes, 100); /* the first fragment is out */
    assert_int_equal(f->up.n_msgs, 0);
    peer_frame(&f->client, WS_OP_CONTINUATION, true, bin + 100, 50);
    RUN_UNTIL(f->up.n_msgs == 1);
    assert_int_equal(f->up.msgs[0].opcode, WS_OP_BINARY);
    assert_int_equal(f->up.msgs[0].frames, 2);
    assert_int_equal(f->up.msgs[0].len, sizeof(bin));
    assert_memory_equal(f->up.msgs[0].data, bin, sizeof(bin));
    assert_int_equal(f->n_meter, 0);
    /* on_binary: the chunks in order, at their offsets, last on the last. */
    assert_true(f->n_binary >= 2 && f->n_binary <= MAX_METER);
    uint64_t off = 0;
    for (size_t i = 0; i < f->n_binary; i++) {
        assert_int_equal(f->binary[i].dir, RELAY_WS_FROM_CLIENT);
        assert_int_equal(f->binary[i].message_off, off);
        assert_int_equal(f->binary[i].last, i + 1 == f->n_binary);
        off += f->binary[i].len;
    }
    assert_int_equal(off, sizeof(bin));

    /* Upstream text: its first fragment reaches the client before the
     * message is whole; the hook sees it once, at its end. */
    peer_frame(&f->up, WS_OP_TEXT, false, "{\"a\":", 5);
    upstream_barrier(f);
    assert_int_equal(f->client.data_bytes, 5);
    assert_int_equal(f->n_meter, 0);
    peer_frame(&f->up, WS_OP_CONTINUATION, true, "1}", 2);
    RUN_UNTIL(f->client.n_msgs == 1 && f->n_meter == 1);
    assert_msg(&f->client.msgs[0], WS_OP_TEXT, "{\"a\":1}");
    assert_int_equal(f->meter[0].dir, RELAY_WS_FROM_UPSTREAM);
    assert_string_equal(f->meter[0].data, "{\"a\":1}");
}

/* The hold is bounded by meter_max: a message of exactly meter_max bytes
 * passes; a longer one is refused (1009) before any of it goes out. */
static void test_hold_text_bound(void **state)
{
    struct fixture *f = *state;
    f->params.hold_client_text = true;
    f->params.meter_max = 16;
    start_open(f);
    send_text(&f->client, "0123456789abcdef");
    RUN_UNTIL(f->up.n_msgs == 1);
    assert_msg(&f->up.msgs[0], WS_OP_TEXT, "0123456789abcdef");
    assert_true(f->meter[0].complete);
    peer_frame(&f->client, WS_OP_TEXT, false, "0123456789abcdef", 16);
    client_barrier(f);
    peer_frame(&f->client, WS_OP_CONTINUATION, true, "01234567", 8);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close && f->up.got_close);
    assert_int_equal(f->client.close_code, WS_CLOSE_TOO_BIG);
    assert_int_equal(f->up.close_code, WS_CLOSE_GOING_AWAY);
    assert_int_equal(f->end.end, RELAY_WS_END_CLIENT_GONE);
    assert_int_equal(f->up.n_msgs, 1);
    assert_int_equal(f->up.data_bytes, 16);
    assert_int_equal(f->n_meter, 1);
}

/* Invalid UTF-8 in the last fragment of a held message: the client gets
 * 1007, the upstream 1001 and none of the message. */
static void test_hold_text_invalid_utf8(void **state)
{
    struct fixture *f = *state;
    f->params.hold_client_text = true;
    start_open(f);
    peer_frame(&f->client, WS_OP_TEXT, false, "{\"text\":\"", 9);
    client_barrier(f);
    peer_frame(&f->client, WS_OP_CONTINUATION, true, "ok\xff\"}", 5);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close && f->up.got_close);
    assert_int_equal(f->client.close_code, WS_CLOSE_INVALID_DATA);
    assert_int_equal(f->up.close_code, WS_CLOSE_GOING_AWAY);
    assert_int_equal(f->end.end, RELAY_WS_END_CLIENT_GONE);
    assert_int_equal(f->up.data_bytes, 0);
    assert_int_equal(f->n_meter, 0);
}

/* ---- first_message (normal mode) ----------------------------------------- */

/* The test client sends "on-101" as soon as it has read its 101. */
static void client_read_send_on_101(struct bufferevent *bev, void *arg)
{
    struct peer *p = arg;
    bool had_head = p->head_done;
    peer_read_cb(bev, arg);
    if (!had_head && p->head_done && p->bev != NULL)
        send_text(p, "on-101");
}

/* first_message is the upstream's first message: before a frame the client
 * sent ahead of its 101 and one it sent the moment it had the 101. */
static void test_first_message_goes_first(void **state)
{
    struct fixture *f = *state;
    static const char first[] = "{\"type\":\"session.update\",\"session\":{\"voice\":\"alloy\"}}";
    f->up_mode = UP_ACCEPT_HELLO;
    f->params.first_message = first;
    f->params.first_len = sizeof(first) - 1;
    start(f);
    bufferevent_setcb(f->client.bev, client_read_send_on_101, NULL, peer_event_cb, &f->client);
    send_text(&f->client, "early");
    RUN_UNTIL(f->up.n_msgs == 3 && f->client.n_msgs == 1);
    assert_msg(&f->up.msgs[0], WS_OP_TEXT, first);
    assert_int_equal(f->up.msgs[0].frames, 1);
    assert_msg(&f->up.msgs[1], WS_OP_TEXT, "early");
    assert_msg(&f->up.msgs[2], WS_OP_TEXT, "on-101");
    /* A frame, not in the upgrade request (which has the usual headers). */
    assert_null(strstr(f->up.head, "session.update"));
    assert_true(has_line(f->up.head, "\r\nAuthorization: Bearer sk-test-123\r\n"));
    assert_msg(&f->client.msgs[0], WS_OP_TEXT, "session.created");
    assert_int_equal(f->n_open, 1);
    peer_close(&f->client, WS_CLOSE_NORMAL, NULL);
    RUN_UNTIL(f->n_end == 1 && f->client.got_close);
    assert_int_equal(f->end.end, RELAY_WS_END_OK);
    assert_int_equal(f->end.bytes_from_client, sizeof(first) - 1 + 5 + 6);
}

/* A refused upgrade: first_message never goes anywhere (and is freed). */
static void test_first_message_upstream_refused(void **state)
{
    struct fixture *f = *state;
    f->up_mode = UP_REFUSE_401;
    f->params.first_message = "{\"type\":\"session.update\"}";
    f->params.first_len = strlen(f->params.first_message);
    start(f);
    RUN_UNTIL(f->n_end == 1 && f->client.eof && f->up.eof);
    assert_true(f->up.head_done);
    assert_int_equal(f->up.frames, 0);
    assert_int_equal(f->up.data_bytes, 0);
    assert_int_equal(f->end.end, RELAY_WS_END_UPSTREAM_REFUSED);
    assert_int_equal(f->end.upstream_status, 401);
    assert_int_equal(f->end.bytes_from_client, 0);
}

/* ---- client-first refusals ----------------------------------------------- */

/* The client's close after the first message; nothing connected upstream
 * unless connected is set. */
static void expect_first_close(struct fixture *f, int code, enum relay_ws_end end, bool connected)
{
    RUN_UNTIL(f->n_end == 1 && f->client.got_close && f->client.eof);
    assert_int_equal(f->client.close_code, code);
    assert_int_equal(f->end.end, end);
    assert_int_equal(f->n_open, 0);
    assert_int_equal(f->end.opened_ms, 0);
    assert_int_equal(f->up_accepted, connected);
}

/* on_first's reason reaches the client; the target it filled anyway is
 * the relay's to free (ASan). */
static void test_client_first_refuse_reason(void **state)
{
    struct fixture *f = *state;
    f->first_refuse = true;
    f->first_fill = true;
    f->first_refuse_reason = "key revoked";
    start_client_first(f);
    send_text(&f->client, "{\"xi_api_key\":\"bpk_revoked\"}");
    expect_first_close(f, WS_CLOSE_POLICY, RELAY_WS_END_UNAUTHORIZED, false);
    assert_string_equal(f->client.reason, "key revoked");
    assert_int_equal(f->n_first, 1);
}

static void test_client_first_shutdown_in_on_first(void **state)
{
    struct fixture *f = *state;
    f->first_shutdown = true;
    start_client_first(f);
    send_text(&f->client, "{\"xi_api_key\":\"bpk_1\"}");
    expect_first_close(f, WS_CLOSE_GOING_AWAY, RELAY_WS_END_SHUTDOWN, false);
    assert_int_equal(f->n_first, 1);
}

static void test_client_first_unusable_target(void **state)
{
    struct fixture *f = *state;
    start_client_first(f);
    snprintf(f->first_url, sizeof(f->first_url), "http://127.0.0.1:%d/", f->up_port);
    send_text(&f->client, "{\"xi_api_key\":\"bpk_1\"}");
    expect_first_close(f, WS_CLOSE_INTERNAL, RELAY_WS_END_UPSTREAM_REFUSED, false);
}

static void test_client_first_unreachable(void **state)
{
    struct fixture *f = *state;
    start_client_first(f);
    snprintf(f->first_url, sizeof(f->first_url), "ws://127.0.0.1:%d/", closed_port());
    send_text(&f->client, "{\"xi_api_key\":\"bpk_1\"}");
    expect_first_close(f, WS_CLOSE_INTERNAL, RELAY_WS_END_UPSTREAM_REFUSED, false);
    assert_int_equal(f->end.upstream_status, 0);
}

static void test_client_first_no_message_in_time(void **state)
{
    struct fixture *f = *state;
    f->limits.upstream_connect_timeout_ms = 100;
    start_client_first(f);
    expect_first_close(f, WS_CLOSE_POLICY, RELAY_WS_END_TIMEOUT, false);
    assert_int_equal(f->n_first, 0);
}

static void test_client_first_ping_first(void **state)
{
    struct fixture *f = *state;
    start_client_first(f);
    peer_frame(&f->client, WS_OP_PING, true, "hi", 2);
    expect_first_close(f, WS_CLOSE_POLICY, RELAY_WS_END_UNAUTHORIZED, false);
    assert_int_equal(f->n_first, 0);
}

static void test_client_first_shutdown_waiting(void **state)
{
    struct fixture *f = *state;
    start_client_first(f);
    relay_ws_shutdown(f->relay);
    expect_first_close(f, WS_CLOSE_GOING_AWAY, RELAY_WS_END_SHUTDOWN, false);
    assert_int_equal(f->n_first, 0);
}

static void test_client_first_too_big(void **state)
{
    struct fixture *f = *state;
    f->params.max_message = 64;
    start_client_first(f);
    char big[40];
    memset(big, 'a', sizeof(big));
    peer_frame(&f->client, WS_OP_TEXT, false, big, sizeof(big));
    peer_frame(&f->client, WS_OP_CONTINUATION, true, big, sizeof(big));
    expect_first_close(f, WS_CLOSE_TOO_BIG, RELAY_WS_END_CLIENT_GONE, false);
    assert_int_equal(f->n_first, 0);
}

#define POLICY_TEST(t) cmocka_unit_test_setup_teardown(t, policy_setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        POLICY_TEST(test_veto_held_client_message),
        POLICY_TEST(test_veto_any_nonzero),
        POLICY_TEST(test_veto_client_message_not_held),
        POLICY_TEST(test_veto_upstream_message),
        POLICY_TEST(test_hold_text_fragmented),
        POLICY_TEST(test_hold_text_vetoed_fragments),
        POLICY_TEST(test_hold_text_replace_each),
        POLICY_TEST(test_hold_text_binary_not_held),
        POLICY_TEST(test_hold_text_bound),
        POLICY_TEST(test_hold_text_invalid_utf8),
        POLICY_TEST(test_first_message_goes_first),
        POLICY_TEST(test_first_message_upstream_refused),
        POLICY_TEST(test_client_first_refuse_reason),
        POLICY_TEST(test_client_first_shutdown_in_on_first),
        POLICY_TEST(test_client_first_unusable_target),
        POLICY_TEST(test_client_first_unreachable),
        POLICY_TEST(test_client_first_no_message_in_time),
        POLICY_TEST(test_client_first_ping_first),
        POLICY_TEST(test_client_first_shutdown_waiting),
        POLICY_TEST(test_client_first_too_big),
    };
    log_set_level(getenv("RELAY_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
    signal(SIGPIPE, SIG_IGN); /* a peer writing to a closed socket gets EPIPE */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
