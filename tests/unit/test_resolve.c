/* test_resolve.c - the rule table of DESIGN §3.1-3.2 (resolve_rule). */
#include "common.h"
#include "resolve.h"
#include "providers_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct world {
    struct store_tenant t, a;
    struct store_byok tb, ab;
};

static void tenant(struct store_tenant *t, const char *id, bool byok, bool agency)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->feature_byok = byok;
    t->feature_agency = agency;
}

static void settings(struct store_byok *b, bool enabled, const char *openai, const char *el,
                     const char *az)
{
    memset(b, 0, sizeof(*b));
    b->enabled = enabled;
    snprintf(b->slots[S_OPENAI], ID_MAX, "%s", openai ? openai : "");
    snprintf(b->slots[S_ELEVENLABS], ID_MAX, "%s", el ? el : "");
    snprintf(b->slots[S_AZURE_SPEECH], ID_MAX, "%s", az ? az : "");
}

static struct resolve_rule decide(struct world *w, bool sub, const struct provider *p)
{
    struct resolve_inputs in = {&w->t, sub ? &w->a : NULL, &w->tb, sub ? &w->ab : NULL};
    struct resolve_rule r;
    resolve_rule(&in, p, &r);
    assert_non_null(r.reason);
    return r;
}

static void test_standalone(void **state)
{
    (void)state;
    struct world w;
    tenant(&w.t, "t1", true, false);
    settings(&w.tb, true, "c_oa", NULL, "c_az");

    struct resolve_rule r = decide(&w, false, P_OPENAI);
    assert_true(r.byok);
    assert_string_equal(r.connection_id, "c_oa");
    assert_string_equal(r.payer_id, "t1");
    assert_string_equal(r.owner_id, "t1");

    /* Empty slot: platform. */
    r = decide(&w, false, P_ELEVENLABS);
    assert_false(r.byok);
    assert_string_equal(r.connection_id, "");
    assert_string_equal(r.payer_id, "t1");
    r = decide(&w, false, P_AZURE_SPEECH);
    assert_true(r.byok);
    assert_string_equal(r.connection_id, "c_az");

    /* Platform-only providers never use BYOK. */
    for (size_t i = 0; i < provider_count(); i++) {
        if (provider_at(i)->slot)
            continue;
        r = decide(&w, false, provider_at(i));
        assert_false(r.byok);
        assert_string_equal(r.payer_id, "t1");
    }

    /* Toggle off. */
    w.tb.enabled = false;
    r = decide(&w, false, P_OPENAI);
    assert_false(r.byok);
    assert_non_null(strstr(r.reason, "toggle"));

    /* Feature missing, toggle on. */
    w.tb.enabled = true;
    w.t.feature_byok = false;
    r = decide(&w, false, P_OPENAI);
    assert_false(r.byok);
    assert_non_null(strstr(r.reason, "byok feature"));
}

static void test_subaccount(void **state)
{
    (void)state;
    struct world w;
    tenant(&w.t, "sub", true, false);
    settings(&w.tb, true, "c_sub_own", "c_sub_el", NULL); /* must be ignored */
    tenant(&w.a, "agency", true, true);
    settings(&w.ab, true, "c_agency_oa", NULL, NULL);

    /* Owner has byok + agency, wallet deduction off: the owner's keys. */
    struct resolve_rule r = decide(&w, true, P_OPENAI);
    assert_true(r.byok);
    assert_string_equal(r.connection_id, "c_agency_oa");
    assert_string_equal(r.payer_id, "agency");
    assert_string_equal(r.owner_id, "agency");
    /* The subaccount's own elevenlabs slot is ignored: the owner's is empty. */
    r = decide(&w, true, P_ELEVENLABS);
    assert_false(r.byok);
    assert_string_equal(r.payer_id, "agency");

    /* Wallet deduction on: platform keys, the owner pays. */
    w.a.wallet_deduction = true;
    r = decide(&w, true, P_OPENAI);
    assert_false(r.byok);
    assert_string_equal(r.payer_id, "agency");
    assert_non_null(strstr(r.reason, "wallet deduction"));
    w.a.wallet_deduction = false;

    /* Owner lacking agency, or byok: platform, owner still pays. */
    w.a.feature_agency = false;
    r = decide(&w, true, P_OPENAI);
    assert_false(r.byok);
    assert_string_equal(r.payer_id, "agency");
    w.a.feature_agency = true;
    w.a.feature_byok = false;
    r = decide(&w, true, P_OPENAI);
    assert_false(r.byok);
    assert_string_equal(r.payer_id, "agency");
    w.a.feature_byok = true;

    /* Owner's toggle off: platform. */
    w.ab.enabled = false;
    r = decide(&w, true, P_OPENAI);
    assert_false(r.byok);
    assert_string_equal(r.payer_id, "agency");

    /* A subaccount without the byok feature still follows the owner. */
    w.ab.enabled = true;
    w.t.feature_byok = false;
    r = decide(&w, true, P_OPENAI);
    assert_true(r.byok);
    assert_string_equal(r.connection_id, "c_agency_oa");

    /* Platform-only provider in an agency BYOK setup. */
    r = decide(&w, true, P_ANTHROPIC);
    assert_false(r.byok);
    assert_string_equal(r.payer_id, "agency");
}

/* A pin written down and read back (another instance's view) is the same
 * decision, reasons included; malformed text is refused. */
static void test_pin_text(void **state)
{
    (void)state;
    struct world w;
    tenant(&w.t, "sub", true, false);
    settings(&w.tb, true, NULL, NULL, NULL);
    tenant(&w.a, "agency", true, true);
    settings(&w.ab, true, "c_agency_oa", NULL, NULL);
    struct session_pin pin;
    memset(&pin, 0, sizeof(pin));
    for (size_t i = 0; i < provider_slot_count(); i++) {
        struct resolve_rule r = decide(&w, true, provider_slot_at(i));
        snprintf(pin.payer_id, sizeof(pin.payer_id), "%s", r.payer_id);
        snprintf(pin.owner_id, sizeof(pin.owner_id), "%s", r.owner_id);
        pin.byok[i] = r.byok;
        snprintf(pin.connection_id[i], ID_MAX, "%s", r.connection_id);
        pin.reason[i] = r.reason;
    }
    char *text = resolve_pin_encode(&pin);
    assert_non_null(text);
    struct session_pin back;
    assert_int_equal(resolve_pin_decode(text, strlen(text), &back), 0);
    free(text);
    assert_string_equal(back.payer_id, "agency");
    assert_string_equal(back.owner_id, "agency");
    for (size_t i = 0; i < provider_slot_count(); i++) {
        assert_int_equal(back.byok[i], pin.byok[i]);
        assert_string_equal(back.connection_id[i], pin.connection_id[i]);
        assert_string_equal(back.reason[i], pin.reason[i]);
    }
    assert_true(back.byok[S_OPENAI]);
    assert_string_equal(back.connection_id[S_OPENAI], "c_agency_oa");
    /* A slot the text does not name: platform. */
    const char *partial = "{\"payer\":\"p\",\"owner\":\"p\",\"slots\":{\"openai\":"
                          "{\"byok\":true,\"conn\":\"c_1\",\"reason\":8}}}";
    assert_int_equal(resolve_pin_decode(partial, strlen(partial), &back), 0);
    assert_true(back.byok[S_OPENAI]);
    assert_false(back.byok[S_ELEVENLABS]);
    assert_non_null(back.reason[S_ELEVENLABS]);
    const char *bad[] = {
        "",
        "[]",
        "{\"payer\":\"p\",\"slots\":{}}",
        ("{\"payer\":\"p\",\"owner\":\"p\",\"slots\":{\"openai\":{\"byok\":true,"
         "\"conn\":\"\",\"reason\":8}}}"),
        "{\"payer\":\"p\",\"owner\":\"p\",\"slots\":{\"openai\":{\"byok\":true}}}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(resolve_pin_decode(bad[i], strlen(bad[i]), &back), -1);
        assert_string_equal(back.payer_id, "");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standalone),
        cmocka_unit_test(test_subaccount),
        cmocka_unit_test(test_pin_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
