/* rekey.h - master-key lifecycle: the sealed proxy-key hashing key in the
 * store, and `byok-proxy --rotate-master-key` (re-seal every connection and
 * secret under a new master key version, in one transaction). */
#ifndef BYOK_REKEY_H
#define BYOK_REKEY_H

#include "common.h"
#include "store.h"

#include <stdio.h>

struct config;

/* At startup, after crypto_init_from_env(): opens the sealed proxy-key
 * hashing key ("proxy_key_hash") from the store and installs it
 * (crypto_set_hash_key); on first start seals and stores the one derived at
 * init. -1 with a message in err (e.g. the store's secret is sealed under
 * another master key version: the master key is wrong). */
MUST_CHECK int rekey_load_pepper(struct store *s, char *err, size_t err_size);

/* The rotation command: the current key comes from BYOK_MASTER_KEY (its
 * version from BYOK_MASTER_KEY_VERSION, default 1), the new one from
 * BYOK_MASTER_KEY_NEW; everything is re-sealed under version+1. Prints what
 * it did and what to set next to out. Returns the process exit code. */
int rekey_rotate(const struct config *cfg, FILE *out);

#endif
