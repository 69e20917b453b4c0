/* test_sim_tls.c - the simulator's ephemeral certificate (sim_tls.h): a
 * valid X.509 v3 certificate for the loopback names, its own trust anchor,
 * matching its key; the server context made from it; and a sim started
 * with simulate.tls serving https:// URLs and exposing the PEM. */
#include "common.h"

#include "config.h"
#include "sim.h"
#include "sim_tls.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <event2/thread.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* Verifies x against a store holding only anchor, for the given host or IP
 * (NULL: no name check). Returns the verify error (X509_V_OK on success). */
static int verify_with(X509 *x, X509 *anchor, const char *host, const char *ip)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, anchor), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, x, NULL), 1);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
    if (host != NULL)
        assert_int_equal(X509_VERIFY_PARAM_set1_host(param, host, 0), 1);
    if (ip != NULL)
        assert_int_equal(X509_VERIFY_PARAM_set1_ip_asc(param, ip), 1);
    int rc = X509_verify_cert(ctx);
    int e = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rc == 1 ? X509_V_OK : (e != X509_V_OK ? e : -1);
}

static bool san_has(X509 *x, int type, const char *want)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type != type)
            continue;
        if (type == GEN_DNS) {
            const ASN1_IA5STRING *s = g->d.dNSName;
            found |= (size_t)s->length == strlen(want) && memcmp(s->data, want, s->length) == 0;
        } else if (type == GEN_IPADD) {
            unsigned char ip4[4] = {127, 0, 0, 1};
            found |= g->d.iPAddress->length == 4 && memcmp(g->d.iPAddress->data, ip4, 4) == 0 &&
                     strcmp(want, "127.0.0.1") == 0;
        }
    }
    GENERAL_NAMES_free(names);
    return found;
}

static void test_cert(void **state)
{
    (void)state;
    struct sim_tls_cert c;
    char err[256];
    assert_int_equal(sim_tls_cert_make(&c, err, sizeof(err)), 0);
    assert_non_null(c.cert);
    assert_non_null(c.key);
    assert_non_null(c.pem);

    /* X.509 v3, P-256, CA:TRUE, the loopback names. */
    assert_int_equal(X509_get_version(c.cert), 2);
    assert_int_equal(EVP_PKEY_get_base_id(c.key), EVP_PKEY_EC);
    char group[64];
    size_t gl = 0;
    assert_int_equal(EVP_PKEY_get_group_name(c.key, group, sizeof(group), &gl), 1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(X509_check_ca(c.cert), 1);
    assert_true(san_has(c.cert, GEN_IPADD, "127.0.0.1"));
    assert_true(san_has(c.cert, GEN_DNS, "localhost"));

    /* Valid now, from about an hour ago to about a day from now. */
    time_t now = time(NULL);
    assert_true(X509_cmp_time(X509_get0_notBefore(c.cert), &now) < 0);
    assert_true(X509_cmp_time(X509_get0_notAfter(c.cert), &now) > 0);
    time_t later = now + 2 * 24 * 60 * 60, earlier = now - 2 * 60 * 60;
    assert_true(X509_cmp_time(X509_get0_notAfter(c.cert), &later) < 0);
    assert_true(X509_cmp_time(X509_get0_notBefore(c.cert), &earlier) > 0);

    /* The key matches; the signature is its own. */
    assert_int_equal(X509_check_private_key(c.cert, c.key), 1);
    assert_int_equal(X509_verify(c.cert, c.key), 1);

    /* The PEM is the certificate; it verifies against itself for the
     * loopback names and not for another host. */
    BIO *b = BIO_new_mem_buf(c.pem, -1);
    X509 *parsed = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(parsed);
    assert_int_equal(X509_cmp(parsed, c.cert), 0);
    assert_int_equal(verify_with(c.cert, parsed, NULL, NULL), X509_V_OK);
    assert_int_equal(verify_with(c.cert, parsed, "localhost", NULL), X509_V_OK);
    assert_int_equal(verify_with(c.cert, parsed, NULL, "127.0.0.1"), X509_V_OK);
    assert_int_equal(verify_with(c.cert, parsed, "api.openai.com", NULL),
                     X509_V_ERR_HOSTNAME_MISMATCH);
    assert_int_equal(verify_with(c.cert, parsed, NULL, "10.0.0.1"), X509_V_ERR_IP_ADDRESS_MISMATCH);

    /* Another certificate is not trusted by this one, nor by a store of it. */
    struct sim_tls_cert other;
    assert_int_equal(sim_tls_cert_make(&other, err, sizeof(err)), 0);
    assert_int_not_equal(X509_cmp(other.cert, c.cert), 0);
    assert_int_not_equal(verify_with(other.cert, parsed, "localhost", NULL), X509_V_OK);
    assert_int_not_equal(X509_check_private_key(c.cert, other.key), 1);
    X509_free(parsed);

    /* The server context takes it. */
    SSL_CTX *ctx = sim_tls_server_ctx(&c, err, sizeof(err));
    assert_non_null(ctx);
    assert_int_equal(X509_cmp(SSL_CTX_get0_certificate(ctx), c.cert), 0);
    SSL_CTX_free(ctx);
    sim_tls_cert_free(&other);
    sim_tls_cert_free(&c);
    sim_tls_cert_free(&c); /* cleared: a second free is harmless */
}

static void test_sim_urls(void **state)
{
    (void)state;
    char *err = NULL;
    struct config *cfg = config_parse("{}", &err);
    assert_non_null(cfg);
    struct sim_listen ls[] = {{"openai", NULL}};
    char msg[256];

    struct sim *plain = sim_start(&cfg->simulate, &cfg->limits, ls, 1, msg, sizeof(msg));
    assert_non_null(plain);
    assert_null(sim_ca_pem(plain));
    assert_true(strncmp(sim_url(plain, 0), "http://127.0.0.1:", 17) == 0);
    sim_stop(plain);

    cfg->simulate.tls = true;
    struct sim *tls = sim_start(&cfg->simulate, &cfg->limits, ls, 1, msg, sizeof(msg));
    assert_non_null(tls);
    assert_true(strncmp(sim_url(tls, 0), "https://127.0.0.1:", 18) == 0);
    assert_non_null(sim_ca_pem(tls));
    assert_non_null(strstr(sim_ca_pem(tls), "-----BEGIN CERTIFICATE-----"));
    sim_stop(tls);
    config_free(cfg);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cert),
        cmocka_unit_test(test_sim_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
