/* sim_tls.c - the simulator's ephemeral certificate and TLS server context
 * (sim_tls.h). */
#include "sim_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define VALID_BEFORE_S (60L * 60)      /* notBefore: now - 1h (clock skew) */
#define VALID_AFTER_S  (24L * 60 * 60) /* notAfter: now + 1 day */

static int fail(char *err, size_t err_size, const char *what)
{
    char reason[256];
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    else
        snprintf(reason, sizeof(reason), "unknown error");
    ERR_clear_error();
    snprintf(err, err_size, "simulate.tls: %s: %s", what, reason);
    return -1;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

static char *to_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL;
    BUF_MEM *mem = NULL;
    if (b != NULL && PEM_write_bio_X509(b, x) == 1 && BIO_get_mem_ptr(b, &mem) == 1 &&
        (pem = malloc(mem->length + 1)) != NULL) {
        memcpy(pem, mem->data, mem->length);
        pem[mem->length] = '\0';
    }
    BIO_free(b);
    return pem;
}

int sim_tls_cert_make(struct sim_tls_cert *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    out->key = EVP_EC_gen("P-256");
    if (out->key == NULL)
        return fail(err, err_size, "cannot make a P-256 key");
    X509 *x = out->cert = X509_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *sn = NULL;
    X509_NAME *name = NULL;
    bool ok = x != NULL && X509_set_version(x, 2) == 1 && RAND_bytes(serial, sizeof(serial)) == 1;
    if (ok) {
        serial[0] &= 0x7f; /* positive */
        ok = (bn = BN_bin2bn(serial, sizeof(serial), NULL)) != NULL &&
             (sn = BN_to_ASN1_INTEGER(bn, NULL)) != NULL && X509_set_serialNumber(x, sn) == 1;
    }
    BN_free(bn);
    ASN1_INTEGER_free(sn);
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -VALID_BEFORE_S) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(x), VALID_AFTER_S) != NULL &&
         X509_set_pubkey(x, out->key) == 1 && (name = X509_get_subject_name(x)) != NULL &&
         X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"byok-sim", -1,
                                    -1, 0) == 1 &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                    (const unsigned char *)"byok-sim ephemeral", -1, -1, 0) == 1 &&
         X509_set_issuer_name(x, name) == 1 &&
         add_ext(x, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
         add_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign") == 0 &&
         add_ext(x, NID_ext_key_usage, "serverAuth") == 0 &&
         add_ext(x, NID_subject_key_identifier, "hash") == 0 &&
         add_ext(x, NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost") == 0 &&
         X509_sign(x, out->key, EVP_sha256()) > 0;
    if (!ok) {
        sim_tls_cert_free(out);
        return fail(err, err_size, "cannot make the certificate");
    }
    out->pem = to_pem(x);
    if (out->pem == NULL) {
        sim_tls_cert_free(out);
        return fail(err, err_size, "cannot write the certificate");
    }
    return 0;
}

void sim_tls_cert_free(struct sim_tls_cert *c)
{
    if (c == NULL)
        return;
    X509_free(c->cert);
    EVP_PKEY_free(c->key);
    free(c->pem);
    memset(c, 0, sizeof(*c));
}

/* HTTP/1.1 only, as the project's server speaks (http.c does the same). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, h11, sizeof(h11) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *sim_tls_server_ctx(const struct sim_tls_cert *c, char *err, size_t err_size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        fail(err, err_size, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (SSL_CTX_use_certificate(ctx, c->cert) != 1 || SSL_CTX_use_PrivateKey(ctx, c->key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fail(err, err_size, "cannot use the certificate");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
