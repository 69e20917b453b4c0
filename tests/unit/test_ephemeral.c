/* test_ephemeral.c - unit tests of the ephemeral token table: tokens look
 * like OpenAI's ("ek_" + 43 base64url), are single use, expire, carry their
 * grant (and its first message) whole, and a full table refuses. Fleet
 * mode's text form of a grant goes there and back whole, and a token's name
 * is the hex SHA-256 of it, never the token. */
#include "common.h"

#include "crypto.h"
#include "ephemeral.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int setup(void **state)
{
    (void)state;
    return ephemeral_init(4);
}

static int teardown(void **state)
{
    (void)state;
    ephemeral_shutdown();
    return 0;
}

static struct ephemeral_grant grant(int64_t ttl_ms, const char *first)
{
    struct ephemeral_grant g;
    memset(&g, 0, sizeof(g));
    g.provider = provider_find("openai");
    snprintf(g.tenant_id, sizeof(g.tenant_id), "t1");
    snprintf(g.key_id, sizeof(g.key_id), "k_1");
    snprintf(g.model, sizeof(g.model), "gpt-realtime");
    snprintf(g.pin.payer_id, sizeof(g.pin.payer_id), "t1");
    g.first_message = first != NULL ? strdup(first) : NULL;
    g.expires_at_ms = now_ms() + ttl_ms;
    return g;
}

static void test_single_use(void **state)
{
    (void)state;
    char token[EPHEMERAL_TOKEN_MAX];
    struct ephemeral_grant g = grant(60000, "{\"type\":\"session.update\"}"), out;
    assert_int_equal(ephemeral_put(&g, token), 0);
    assert_null(g.first_message); /* the table's now */
    assert_int_equal(strlen(token), 3 + 43);
    assert_memory_equal(token, "ek_", 3);
    for (const char *c = token + 3; *c; c++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *c));
    assert_true(ephemeral_is_token(token, strlen(token)));
    assert_false(ephemeral_is_token("bpk_x", 5));
    assert_int_equal(ephemeral_count(), 1);

    assert_int_equal(ephemeral_take(token, strlen(token), &out), 0);
    assert_string_equal(out.tenant_id, "t1");
    assert_string_equal(out.model, "gpt-realtime");
    assert_ptr_equal(out.provider, provider_find("openai"));
    assert_string_equal(out.first_message, "{\"type\":\"session.update\"}");
    ephemeral_grant_free(&out);
    assert_null(out.first_message);
    assert_int_equal(ephemeral_count(), 0);
    /* Taken once: gone. */
    assert_int_equal(ephemeral_take(token, strlen(token), &out), -1);
    /* A token that differs in one character is another token. */
    struct ephemeral_grant g2 = grant(60000, NULL);
    assert_int_equal(ephemeral_put(&g2, token), 0);
    token[10] = token[10] == 'A' ? 'B' : 'A';
    assert_int_equal(ephemeral_take(token, strlen(token), &out), -1);
    assert_int_equal(ephemeral_take("ek_", 3, &out), -1);
}

static void test_expiry(void **state)
{
    (void)state;
    char token[EPHEMERAL_TOKEN_MAX], live[EPHEMERAL_TOKEN_MAX];
    struct ephemeral_grant g = grant(-1, "x"), out;
    assert_int_equal(ephemeral_put(&g, token), 0);
    /* Expired: refused, and gone even so. */
    assert_int_equal(ephemeral_take(token, strlen(token), &out), -1);
    assert_int_equal(ephemeral_count(), 0);

    struct ephemeral_grant old = grant(-1000, NULL), fresh = grant(60000, NULL);
    assert_int_equal(ephemeral_put(&old, token), 0);
    assert_int_equal(ephemeral_put(&fresh, live), 0);
    ephemeral_sweep();
    assert_int_equal(ephemeral_count(), 1);
    assert_int_equal(ephemeral_take(live, strlen(live), &out), 0);
    ephemeral_grant_free(&out);
}

static void test_full_table(void **state)
{
    (void)state;
    char token[EPHEMERAL_TOKEN_MAX];
    for (int i = 0; i < 4; i++) {
        struct ephemeral_grant g = grant(60000, NULL);
        assert_int_equal(ephemeral_put(&g, token), 0);
    }
    struct ephemeral_grant g = grant(60000, "owned");
    assert_int_equal(ephemeral_put(&g, token), -1);
    assert_null(g.first_message); /* freed on failure too */
    assert_int_equal(ephemeral_count(), 4);
}

static void test_grant_text(void **state)
{
    (void)state;
    struct ephemeral_grant g = grant(60000, "{\"type\":\"session.update\",\"x\":\"\\u00e9\"}"), out;
    snprintf(g.session_id, sizeof(g.session_id), "conv-1");
    int slot = provider_slot_index(provider_find("openai"));
    assert_true(slot >= 0);
    g.pin.byok[slot] = true;
    snprintf(g.pin.connection_id[slot], sizeof(g.pin.connection_id[slot]), "c_own");
    g.pin.reason[slot] = "BYOK: the tenant's own connection for this slot";
    char *text = ephemeral_grant_encode(&g);
    assert_non_null(text);
    assert_int_equal(ephemeral_grant_decode(text, strlen(text), &out), 0);
    assert_ptr_equal(out.provider, g.provider);
    assert_string_equal(out.tenant_id, "t1");
    assert_string_equal(out.key_id, "k_1");
    assert_string_equal(out.session_id, "conv-1");
    assert_string_equal(out.model, "gpt-realtime");
    assert_string_equal(out.first_message, g.first_message);
    assert_int_equal(out.expires_at_ms, g.expires_at_ms);
    assert_string_equal(out.pin.payer_id, "t1");
    assert_true(out.pin.byok[slot]);
    assert_string_equal(out.pin.connection_id[slot], "c_own");
    assert_string_equal(out.pin.reason[slot], g.pin.reason[slot]);
    ephemeral_grant_free(&out);
    /* Without a first message; and what is not a grant is refused. */
    ephemeral_grant_free(&g);
    char *text2 = ephemeral_grant_encode(&g);
    assert_int_equal(ephemeral_grant_decode(text2, strlen(text2), &out), 0);
    assert_null(out.first_message);
    ephemeral_grant_free(&out);
    text2[strlen(text2) - 1] = '\0';
    assert_int_equal(ephemeral_grant_decode(text2, strlen(text2), &out), -1);
    const char *unknown = "{\"provider\":\"nope\",\"tenant\":\"t\",\"key\":\"k\",\"session\":\"\","
                          "\"pin\":\"{}\",\"model\":\"m\",\"expires_at_ms\":1}";
    assert_int_equal(ephemeral_grant_decode(unknown, strlen(unknown), &out), -1);
    free(text);
    free(text2);
}

static void test_token_name(void **state)
{
    (void)state;
    char token[EPHEMERAL_TOKEN_MAX], name[EPHEMERAL_NAME_MAX], again[EPHEMERAL_NAME_MAX];
    assert_int_equal(ephemeral_token_new(token), 0);
    assert_int_equal(ephemeral_token_name(token, strlen(token), name), 0);
    assert_int_equal(strlen(name), 64);
    assert_null(strstr(name, token + 3));
    assert_int_equal(ephemeral_token_name(token, strlen(token), again), 0);
    assert_string_equal(name, again);
    token[5] ^= 1;
    assert_int_equal(ephemeral_token_name(token, strlen(token), again), 0);
    assert_string_not_equal(name, again);
    assert_int_equal(ephemeral_token_name("sk-not-a-token", 14, again), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_single_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_table, setup, teardown),
        cmocka_unit_test(test_grant_text),
        cmocka_unit_test(test_token_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
