/* sim_tls.h - the simulator's TLS (sim.h, "simulate": {"tls": true}): an
 * ephemeral self-signed certificate made at start and the server context
 * that serves it, so a simulated upstream is reached over https:// and
 * wss:// like a real provider. The certificate is its own trust anchor
 * (CA:TRUE): a client trusts exactly it (its PEM as a CA file or blob) and
 * keeps verifying peer and host. */
#ifndef BYOK_SIM_TLS_H
#define BYOK_SIM_TLS_H

#include "common.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

struct sim_tls_cert {
    X509 *cert;
    EVP_PKEY *key;
    char *pem; /* the certificate, PEM (NUL-terminated) */
};

/* Makes an EC P-256 key and a self-signed X.509 v3 certificate for it:
 * subjectAltName IP:127.0.0.1, IP:::1 and DNS:localhost, basicConstraints
 * CA:TRUE, valid from an hour ago to a day from now. -1 with a message in
 * err. Free with sim_tls_cert_free(). */
MUST_CHECK int sim_tls_cert_make(struct sim_tls_cert *out, char *err, size_t err_size);
void sim_tls_cert_free(struct sim_tls_cert *c);

/* A server context serving c (borrowed: the context holds its own
 * references): TLS 1.2+, ALPN "http/1.1". NULL with a message in err.
 * Caller frees with SSL_CTX_free(). */
MUST_CHECK SSL_CTX *sim_tls_server_ctx(const struct sim_tls_cert *c, char *err, size_t err_size);

#endif
